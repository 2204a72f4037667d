//! Answering a `StatsQuery` for a site and a date range: the planner. Closed days with
//! built rollups are read from them; every other day is scanned from raw events. Both
//! produce the same integer sums (tested), so the answer does not depend on the path.

use super::range::DateRange;
use super::derived;
use super::scan::{self, Sums};
use super::segment::DaySegment;
use super::{Dimension, Filter, Row, StatsQuery};
use crate::domain::{LocalDay, Site, SiteId};
use crate::storage::{RollupRow, Store, StoreResult};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// The dimensions rolled up per closed day (besides the day's total).
pub const ROLLUP_DIMENSIONS: &[&str] = &[
    "event:page",
    "event:name",
    "event:hostname",
    "visit:source",
    "visit:referrer",
    "visit:utm_source",
    "visit:utm_medium",
    "visit:utm_campaign",
    "visit:utm_content",
    "visit:utm_term",
    "visit:device",
    "visit:browser",
    "visit:browser_version",
    "visit:os",
    "visit:os_version",
    "visit:country",
    "visit:region",
    "visit:city",
    "visit:entry_page",
    "visit:exit_page",
];

/// A day is closed this long after it ends, so requests in flight at midnight are in.
pub const CLOSE_GRACE_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub rows: Vec<Row>,
    /// The resolved range, `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Closed days kept in memory: rollup rows keyed by (site, dimension, day), and columnar
/// segments keyed by (site, day). Every entry is tagged with its day's `built_at`, which
/// every query reads from storage, so a rebuilt or dropped day (by this process or
/// another) is never answered from a stale copy.
#[derive(Default)]
pub struct DayCache {
    entries: Mutex<HashMap<CacheKey, (i64, DayRows)>>,
    segments: Mutex<SegmentMap>,
}

#[derive(Default)]
struct SegmentMap {
    map: HashMap<(SiteId, LocalDay), (i64, Arc<DaySegment>)>,
    events: usize,
}

/// Bound on the events held in cached segments (about 40 bytes each); past it the
/// segment cache starts over.
const SEGMENT_EVENTS: usize = 12_000_000;

/// (site, dimension, day)
type CacheKey = (SiteId, String, LocalDay);
/// One day's rollup rows of one dimension: (value, sums).
type DayRows = Arc<Vec<(String, Sums)>>;

/// Bound on cached (site, dimension, day) entries; past it the cache starts over.
const CACHE_ENTRIES: usize = 200_000;

impl DayCache {
    /// The rollup rows of `dimension` for each of `days` (day → built_at).
    async fn rows(
        &self,
        store: &dyn Store,
        site: SiteId,
        dimension: &str,
        days: &BTreeMap<LocalDay, i64>,
    ) -> StoreResult<Vec<(LocalDay, DayRows)>> {
        let missing: Vec<LocalDay> = {
            let entries = self.entries.lock().expect("rollup cache poisoned");
            days.iter()
                .filter(|(day, built)| entries.get(&(site, dimension.to_string(), **day)).is_none_or(|(b, _)| b != *built))
                .map(|(day, _)| *day)
                .collect()
        };
        if let (Some(lo), Some(hi)) = (missing.first(), missing.last()) {
            let mut loaded: HashMap<LocalDay, Vec<(String, Sums)>> = missing.iter().map(|d| (*d, Vec::new())).collect();
            for (day, value, sums) in store.rollups(site, dimension, *lo, *hi).await? {
                if let Some(rows) = loaded.get_mut(&day) {
                    rows.push((value, sums));
                }
            }
            let mut entries = self.entries.lock().expect("rollup cache poisoned");
            if entries.len() + loaded.len() > CACHE_ENTRIES {
                entries.clear();
            }
            for (day, rows) in loaded {
                entries.insert((site, dimension.to_string(), day), (days[&day], Arc::new(rows)));
            }
        }
        let entries = self.entries.lock().expect("rollup cache poisoned");
        Ok(days
            .keys()
            .filter_map(|day| entries.get(&(site, dimension.to_string(), *day)).map(|(_, rows)| (*day, rows.clone())))
            .collect())
    }

    /// The segment of a closed day, built from its raw events when not cached.
    async fn segment(&self, store: &dyn Store, site: &Site, day: LocalDay, built_at: i64) -> StoreResult<Arc<DaySegment>> {
        if let Some((b, seg)) = self.segments.lock().expect("segment cache poisoned").map.get(&(site.id, day)) {
            if *b == built_at {
                return Ok(seg.clone());
            }
        }
        let (from, to) = site.timezone.day_bounds(day);
        let events = store.events(site.id, from, to).await?;
        let seg = Arc::new(DaySegment::build(day, &site.timezone, &events));
        let mut cache = self.segments.lock().expect("segment cache poisoned");
        if cache.events + seg.len() > SEGMENT_EVENTS {
            cache.map.clear();
            cache.events = 0;
        }
        cache.events += seg.len();
        if let Some((_, old)) = cache.map.insert((site.id, day), (built_at, seg.clone())) {
            cache.events -= old.len();
        }
        Ok(seg)
    }
}

/// Answers without a shared cache (tests, one-off callers).
pub async fn answer(store: &dyn Store, site: &Site, q: &StatsQuery, range: &DateRange, now_ms: i64) -> StoreResult<Answer> {
    answer_with(store, &DayCache::default(), site, q, range, now_ms).await
}

pub async fn answer_with(
    store: &dyn Store,
    cache: &DayCache,
    site: &Site,
    q: &StatsQuery,
    range: &DateRange,
    now_ms: i64,
) -> StoreResult<Answer> {
    // Only `all` needs the site's first day; other ranges skip the read.
    let first_day = match range {
        DateRange::All => store.first_event_ms(site.id).await?.map(|ms| site.timezone.local_day(ms)),
        _ => None,
    };
    let (from_ms, to_ms) = range.resolve(&site.timezone, now_ms, first_day);
    let day_aligned = !matches!(range, DateRange::Instants(..) | DateRange::Last24Hours | DateRange::Realtime);
    let rows = if derived::is_plain(q) {
        plain_rows(store, cache, site, q, day_aligned, from_ms, to_ms).await?
    } else {
        let goals = if derived::needs_goals(q) { store.goals(site.id).await? } else { Vec::new() };
        let plan = derived::Plan::new(q, &goals);
        let mut answers = Vec::with_capacity(plan.parts.len());
        for part in &plan.parts {
            answers.push(plain_rows(store, cache, site, part, day_aligned, from_ms, to_ms).await?);
        }
        let extras = extra_sums(store, cache, site, &plan.extras, from_ms, to_ms).await?;
        plan.combine(answers, extras)
    };
    Ok(Answer { rows, from_ms, to_ms })
}

/// Answers a plain question (core metrics, no goals) by the fastest exact path.
async fn plain_rows(
    store: &dyn Store,
    cache: &DayCache,
    site: &Site,
    q: &StatsQuery,
    day_aligned: bool,
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<Vec<Row>> {
    let rollable = q.filter == Filter::All
        && q.dimensions.len() <= 1
        && q.dimensions.iter().all(|d| matches!(d, Dimension::Day | Dimension::Week | Dimension::Month) || rollup_name(d).is_some());
    if day_aligned && rollable && to_ms > from_ms {
        from_rollups(store, cache, site, q, from_ms, to_ms).await
    } else if day_aligned && q.dimensions.len() <= 2 && to_ms > from_ms {
        from_segments(store, cache, site, q, from_ms, to_ms).await
    } else {
        let events = store.events(site.id, from_ms, to_ms).await?;
        Ok(scan::evaluate(q, &site.timezone, &events))
    }
}

/// Engagement and revenue sums for each selection over `[from_ms, to_ms)`, one local day
/// at a time (visits never cross midnight, so the days' sums add up), off the async
/// runtime: closed days wholly in the range from their cached segments, the others from
/// raw events.
async fn extra_sums(
    store: &dyn Store,
    cache: &DayCache,
    site: &Site,
    selections: &[(Vec<Dimension>, Filter)],
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<Vec<derived::ExtraGroups>> {
    let mut out: Vec<derived::ExtraGroups> = vec![HashMap::new(); selections.len()];
    if selections.is_empty() || to_ms <= from_ms {
        return Ok(out);
    }
    let tz = &site.timezone;
    let (mut day, last) = (tz.local_day(from_ms), tz.local_day(to_ms - 1));
    let rolled: BTreeMap<LocalDay, i64> = store.rolled_up_days(site.id, day, last).await?.into_iter().collect();
    while day <= last {
        let (start, end) = tz.day_bounds(day);
        let from_segment = match rolled.get(&day) {
            Some(built_at) if start >= from_ms && end <= to_ms => {
                let segment = cache.segment(store, site, day, *built_at).await?;
                let selections = selections.to_vec();
                tokio::task::spawn_blocking(move || selections.iter().map(|(dims, filter)| segment.extra_sums(dims, filter)).collect::<Option<Vec<_>>>())
                    .await
                    .map_err(|e| anyhow::anyhow!("an engagement scan failed: {e}"))?
            }
            _ => None,
        };
        let day_sums = match from_segment {
            Some(sums) => sums,
            None => {
                let events = store.events(site.id, start.max(from_ms), end.min(to_ms)).await?;
                let (selections, tz) = (selections.to_vec(), *tz);
                tokio::task::spawn_blocking(move || selections.iter().map(|(dims, filter)| scan::extra_sums(dims, filter, &tz, &events)).collect::<Vec<_>>())
                    .await
                    .map_err(|e| anyhow::anyhow!("an engagement scan failed: {e}"))?
            }
        };
        for (acc, groups) in out.iter_mut().zip(day_sums) {
            for (key, e) in groups {
                acc.entry(key).or_default().add(&e);
            }
        }
        day = day.next();
    }
    Ok(out)
}

fn rollup_name(d: &Dimension) -> Option<String> {
    let name = d.to_string();
    ROLLUP_DIMENSIONS.contains(&name.as_str()).then_some(name)
}

async fn from_rollups(store: &dyn Store, cache: &DayCache, site: &Site, q: &StatsQuery, from_ms: i64, to_ms: i64) -> StoreResult<Vec<Row>> {
    let tz = &site.timezone;
    let (first, last) = (tz.local_day(from_ms), tz.local_day(to_ms - 1));
    let rolled: BTreeMap<LocalDay, i64> = store.rolled_up_days(site.id, first, last).await?.into_iter().collect();
    let dim = q.dimensions.first();
    let mut groups: HashMap<Vec<String>, Sums> = HashMap::new();
    let mut total = Sums::default();

    for (day, rows) in cache.rows(store, site.id, "", &rolled).await? {
        for (_, sums) in rows.iter() {
            total.add(sums);
            // A scan yields no bucket for a day without traffic; neither do rollups.
            if let Some(d) = dim.filter(|d| d.is_time() && *sums != Sums::default()) {
                groups.entry(vec![d.day_bucket(day).expect("rollups hold day-granular buckets")]).or_default().add(sums);
            }
        }
    }
    if let Some(name) = dim.and_then(rollup_name) {
        let mut by_value: HashMap<&str, Sums> = HashMap::new();
        let per_day = cache.rows(store, site.id, &name, &rolled).await?;
        for (_, rows) in &per_day {
            for (value, sums) in rows.iter() {
                by_value.entry(value.as_str()).or_default().add(sums);
            }
        }
        groups.extend(by_value.into_iter().map(|(v, s)| (vec![v.to_string()], s)));
    }

    scan_raw_days(store, site, q, from_ms, to_ms, &rolled, &mut groups, &mut total).await?;
    Ok(scan::finish(q, groups.into_iter().collect(), &total))
}

/// Days without rollups (the open day, days not closed yet) come from raw events, one run
/// of consecutive days at a time; their sums are added to `groups` and `total`.
#[allow(clippy::too_many_arguments)]
async fn scan_raw_days(
    store: &dyn Store,
    site: &Site,
    q: &StatsQuery,
    from_ms: i64,
    to_ms: i64,
    rolled: &BTreeMap<LocalDay, i64>,
    groups: &mut HashMap<Vec<String>, Sums>,
    total: &mut Sums,
) -> StoreResult<()> {
    let tz = &site.timezone;
    let (first, last) = (tz.local_day(from_ms), tz.local_day(to_ms - 1));
    let mut day = first;
    while day <= last {
        if rolled.contains_key(&day) {
            day = day.next();
            continue;
        }
        let run_start = day;
        while day <= last && !rolled.contains_key(&day) {
            day = day.next();
        }
        let start = tz.day_bounds(run_start).0.max(from_ms);
        let end = tz.day_bounds(LocalDay(day.0 - 1)).1.min(to_ms);
        let events = store.events(site.id, start, end).await?;
        let (scanned, scanned_total) = scan::group_sums(&q.dimensions, &q.filter, tz, &events);
        total.add(&scanned_total);
        for (key, sums) in scanned {
            groups.entry(key).or_default().add(&sums);
        }
    }
    Ok(())
}

/// Closed days from their columnar segments, the rest from raw events.
async fn from_segments(store: &dyn Store, cache: &DayCache, site: &Site, q: &StatsQuery, from_ms: i64, to_ms: i64) -> StoreResult<Vec<Row>> {
    let tz = &site.timezone;
    let (first, last) = (tz.local_day(from_ms), tz.local_day(to_ms - 1));
    let rolled: BTreeMap<LocalDay, i64> = store.rolled_up_days(site.id, first, last).await?.into_iter().collect();
    let mut groups: HashMap<Vec<String>, Sums> = HashMap::new();
    let mut total = Sums::default();
    let mut segments = Vec::with_capacity(rolled.len());
    for (day, built_at) in &rolled {
        segments.push(cache.segment(store, site, *day, *built_at).await?);
    }
    // Days are independent: split them across cores, off the async runtime.
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
    let chunk = segments.len().div_ceil(workers).max(1);
    let mut tasks = Vec::new();
    for part in segments.chunks(chunk) {
        let (part, dims, filter) = (part.to_vec(), q.dimensions.clone(), q.filter.clone());
        tasks.push(tokio::task::spawn_blocking(move || {
            let mut groups: HashMap<Vec<String>, Sums> = HashMap::new();
            let mut total = Sums::default();
            for segment in part {
                let (day_groups, day_total) = segment.group_sums(&dims, &filter).expect("at most two dimensions");
                total.add(&day_total);
                for (key, sums) in day_groups {
                    groups.entry(key).or_default().add(&sums);
                }
            }
            (groups, total)
        }));
    }
    for task in tasks {
        let (part_groups, part_total) = task.await.map_err(|e| anyhow::anyhow!("a segment scan failed: {e}"))?;
        total.add(&part_total);
        for (key, sums) in part_groups {
            groups.entry(key).or_default().add(&sums);
        }
    }
    scan_raw_days(store, site, q, from_ms, to_ms, &rolled, &mut groups, &mut total).await?;
    Ok(scan::finish(q, groups.into_iter().collect(), &total))
}

/// Builds the rollups of one closed day from its raw events. `Conflict` when an import
/// changed the day meanwhile (nothing is written; the next day close builds it again).
pub async fn build_day(store: &dyn Store, site: &Site, day: LocalDay) -> StoreResult<()> {
    let (from, to) = site.timezone.day_bounds(day);
    let events = store.events(site.id, from, to).await?;
    let dims: Vec<Dimension> = ROLLUP_DIMENSIONS.iter().map(|n| Dimension::parse(n).expect("rollup dimensions parse")).collect();
    let (per_dim, total) = scan::sums_by_each(&dims, &site.timezone, &events);
    let mut rows = vec![RollupRow { dimension: String::new(), value: String::new(), sums: total }];
    for (name, groups) in ROLLUP_DIMENSIONS.iter().zip(per_dim) {
        rows.extend(groups.into_iter().map(|(value, sums)| RollupRow { dimension: name.to_string(), value, sums }));
    }
    store.replace_rollups(site.id, day, from, to, events.len() as u64, rows).await
}

/// Builds the rollups of every closed day of `site` that has none. Returns how many days
/// it built.
pub async fn close_days(store: &dyn Store, site: &Site, now_ms: i64) -> StoreResult<usize> {
    let Some(first_ms) = store.first_event_ms(site.id).await? else {
        return Ok(0);
    };
    let tz = &site.timezone;
    let first = tz.local_day(first_ms);
    let last_closed = LocalDay(tz.local_day(now_ms - CLOSE_GRACE_MS).0 - 1);
    if last_closed < first {
        return Ok(0);
    }
    let rolled: BTreeSet<LocalDay> = store.rolled_up_days(site.id, first, last_closed).await?.into_iter().map(|(d, _)| d).collect();
    let mut built = 0;
    let mut day = first;
    while day <= last_closed {
        if !rolled.contains(&day) {
            match build_day(store, site, day).await {
                Ok(()) => built += 1,
                // An import landed while the day was read; it is rebuilt next time.
                Err(crate::storage::StoreError::Conflict) => {}
                Err(e) => return Err(e),
            }
        }
        day = day.next();
    }
    Ok(built)
}
