//! Exact evaluation of a `StatsQuery` by scanning raw events. This is the reference every
//! faster path (per-day aggregates, columnar segments) must agree with, and the path for
//! the open day.

use super::{Condition, Dimension, Filter, Metric, Row, StatsQuery, VisitProperty};
use crate::domain::{counts_as_event, Event, EventKind, Timezone};
use chrono::{DateTime, Timelike};
use std::collections::{HashMap, HashSet};

pub const NOT_SET: &str = "(not set)";
pub const NO_PROP: &str = "(none)";

/// What the metrics need to know about one visit.
pub(crate) struct Visit {
    pub(crate) visitor: u64,
    /// Index of the visit's first event (its attributes come from there).
    pub(crate) first: usize,
    pub(crate) entry: Option<usize>,
    pub(crate) exit: Option<usize>,
    pub(crate) first_ts: i64,
    pub(crate) last_ts: i64,
    pub(crate) counting: u32,
    /// Indices of the visit's events, in time order.
    pub(crate) members: Vec<usize>,
}

/// The English name of a country by its ISO 3166-1 alpha-2 code ("" when unknown).
pub fn country_name(code: &str) -> &'static str {
    isocountry::CountryCode::for_alpha2(code).map(|c| c.name()).unwrap_or("")
}

pub(crate) fn visit_value<'a>(p: VisitProperty, v: &Visit, events: &'a [Event]) -> &'a str {
    use VisitProperty as V;
    let f = &events[v.first].facts;
    let s: &str = match p {
        V::Source => &f.source,
        V::Referrer => &f.referrer,
        V::UtmSource => &f.utm.source,
        V::UtmMedium => &f.utm.medium,
        V::UtmCampaign => &f.utm.campaign,
        V::UtmContent => &f.utm.content,
        V::UtmTerm => &f.utm.term,
        V::Device => &f.device,
        V::Browser => &f.browser,
        V::BrowserVersion => &f.browser_version,
        V::Os => &f.os,
        V::OsVersion => &f.os_version,
        V::Country => &f.country,
        V::Region => &f.region,
        V::City | V::CityName => &f.city,
        V::CountryName => country_name(&f.country),
        V::RegionName => &f.region_name,
        V::EntryPage => v.entry.map(|i| events[i].facts.pathname.as_str()).unwrap_or(""),
        V::ExitPage => v.exit.map(|i| events[i].facts.pathname.as_str()).unwrap_or(""),
    };
    if s.is_empty() {
        NOT_SET
    } else {
        s
    }
}

fn value(d: &Dimension, e: &Event, v: &Visit, events: &[Event], tz: &Timezone) -> String {
    match d {
        Dimension::Page => e.facts.pathname.clone(),
        Dimension::Name => e.facts.name.clone(),
        Dimension::Hostname => e.facts.hostname.clone(),
        // Goals are rewritten into plain filters before a scan (query::derived).
        Dimension::Goal => String::new(),
        Dimension::Prop(k) => {
            e.facts.props.iter().find(|(pk, _)| pk == k).map(|(_, pv)| pv.clone()).unwrap_or_else(|| NO_PROP.to_string())
        }
        Dimension::Visit(p) => visit_value(*p, v, events).to_string(),
        Dimension::Hour => {
            let local = DateTime::from_timestamp_millis(e.ts_ms).unwrap_or_default().with_timezone(&tz.tz());
            format!("{} {:02}:00:00", local.date_naive(), local.hour())
        }
        Dimension::Day | Dimension::Week | Dimension::Month => d.day_bucket(tz.local_day(e.ts_ms)).expect("a day-granular dimension"),
    }
}

fn matches(f: &Filter, e: &Event, v: &Visit, events: &[Event], tz: &Timezone) -> bool {
    match f {
        Filter::All => true,
        Filter::And(fs) => fs.iter().all(|f| matches(f, e, v, events, tz)),
        Filter::Or(fs) => fs.iter().any(|f| matches(f, e, v, events, tz)),
        Filter::Not(f) => !matches(f, e, v, events, tz),
        Filter::HasDone(f) => {
            v.members.iter().any(|&j| events[j].facts.kind != EventKind::Engagement && matches(f, &events[j], v, events, tz))
        }
        Filter::Match { dimension, condition } => {
            let actual = value(dimension, e, v, events, tz);
            match condition {
                Condition::Is(values) => values.contains(&actual),
                Condition::Contains(values) => values.iter().any(|x| actual.contains(x.as_str())),
                Condition::Matches(patterns) => patterns.iter().any(|p| p.is_match(&actual)),
            }
        }
    }
}

#[derive(Default)]
struct Group {
    visitors: HashSet<u64>,
    visits: HashSet<usize>,
    pageviews: u64,
    events: u64,
}

/// Answers `q` over `events` (all events of one site in the query's time range).
pub fn evaluate(q: &StatsQuery, tz: &Timezone, events: &[Event]) -> Vec<Row> {
    let (groups, total) = group_sums(&q.dimensions, &q.filter, tz, events);
    finish(q, groups, &total)
}

/// Turns per-group sums into sorted result rows. `total` is the whole selection's sums
/// (percentages are relative to its visitors).
pub fn finish(q: &StatsQuery, mut groups: Vec<(Vec<String>, Sums)>, total: &Sums) -> Vec<Row> {
    if q.dimensions.is_empty() {
        // Without dimensions the one row is the whole selection.
        groups = vec![(Vec::new(), *total)];
    }
    let total_visitors = total.visitors;
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(dims, s)| Row { metrics: s.metrics(&q.metrics, total_visitors), dimensions: dims, currency: None })
        .collect();
    sort_rows(q, &mut rows);
    rows
}

/// The default order: by time when a time dimension is asked, else by the first metric,
/// largest first; ties by dimension values.
pub fn sort_rows(q: &StatsQuery, rows: &mut [Row]) {
    let by_time = q.dimensions.iter().any(Dimension::is_time);
    rows.sort_by(|a, b| {
        if by_time {
            a.dimensions.cmp(&b.dimensions)
        } else {
            // `null` values (NaN: nothing to average) sort below every number.
            let first = |r: &Row| r.metrics.first().copied().filter(|v| !v.is_nan()).unwrap_or(f64::NEG_INFINITY);
            first(b).total_cmp(&first(a)).then_with(|| a.dimensions.cmp(&b.dimensions))
        }
    });
}

/// Sums per group (dimension values in query order), and the whole selection's sums.
pub type GroupedSums = (Vec<(Vec<String>, Sums)>, Sums);

/// The integer sums every metric is computed from. Because visitor ids and visits never
/// cross a site's local midnight, the sums of a date range are the sums of its days,
/// which is what lets per-day rollups answer exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    pub visitors: u64,
    pub visits: u64,
    pub pageviews: u64,
    pub events: u64,
    pub bounces: u64,
    pub duration_ms: u64,
}

impl Sums {
    pub fn add(&mut self, o: &Sums) {
        self.visitors += o.visitors;
        self.visits += o.visits;
        self.pageviews += o.pageviews;
        self.events += o.events;
        self.bounces += o.bounces;
        self.duration_ms += o.duration_ms;
    }

    pub fn metrics(&self, metrics: &[Metric], total_visitors: u64) -> Vec<f64> {
        let visits = self.visits as f64;
        let per_visit = |x: f64| if visits > 0.0 { x / visits } else { 0.0 };
        metrics
            .iter()
            .map(|m| match m {
                Metric::Visitors => self.visitors as f64,
                Metric::Visits => visits,
                Metric::Pageviews => self.pageviews as f64,
                Metric::Events => self.events as f64,
                Metric::ViewsPerVisit => per_visit(self.pageviews as f64),
                Metric::BounceRate => 100.0 * per_visit(self.bounces as f64),
                Metric::VisitDuration => per_visit(self.duration_ms as f64 / 1000.0),
                Metric::Percentage if total_visitors == 0 => 0.0,
                Metric::Percentage => 100.0 * self.visitors as f64 / total_visitors as f64,
                // Not computable from one selection's sums: see query::derived.
                m => {
                    debug_assert!(!m.is_core());
                    f64::NAN
                }
            })
            .collect()
    }
}

/// Rebuilds the visits of `events`: the visits, and for each event its visit's index.
pub(crate) fn rebuild_visits(events: &[Event]) -> (Vec<Visit>, Vec<usize>) {
    // In time order within each visit. At equal times counting events come before
    // engagement events, as when visits were split (visits::assign_visits), so the
    // visit's first event is the same one everywhere.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| (events[i].visit_id, events[i].ts_ms, events[i].facts.kind == EventKind::Engagement, i));
    let mut visits: Vec<Visit> = Vec::new();
    let mut visit_of = vec![0usize; events.len()];
    let mut index: HashMap<u64, usize> = HashMap::new();
    for &i in &order {
        let e = &events[i];
        let vi = *index.entry(e.visit_id.0).or_insert_with(|| {
            visits.push(Visit {
                visitor: e.visitor_id.0,
                first: i,
                entry: None,
                exit: None,
                first_ts: e.ts_ms,
                last_ts: e.ts_ms,
                counting: 0,
                members: Vec::new(),
            });
            visits.len() - 1
        });
        visit_of[i] = vi;
        let v = &mut visits[vi];
        v.members.push(i);
        v.last_ts = e.ts_ms;
        if counts_as_event(e.facts.kind, e.facts.interactive) {
            v.counting += 1;
        }
        if e.facts.kind == EventKind::Pageview {
            v.entry.get_or_insert(i);
            v.exit = Some(i);
        }
    }
    (visits, visit_of)
}

impl Group {
    fn add(&mut self, e: &Event, visitor: u64, visit: usize) {
        self.visitors.insert(visitor);
        self.visits.insert(visit);
        if e.facts.kind == EventKind::Pageview {
            self.pageviews += 1;
        }
        if counts_as_event(e.facts.kind, e.facts.interactive) {
            self.events += 1;
        }
    }

    fn sums(&self, visits: &[Visit]) -> Sums {
        Sums {
            visitors: self.visitors.len() as u64,
            visits: self.visits.len() as u64,
            pageviews: self.pageviews,
            events: self.events,
            bounces: self.visits.iter().filter(|&&vi| visits[vi].counting == 1).count() as u64,
            duration_ms: self.visits.iter().map(|&vi| (visits[vi].last_ts - visits[vi].first_ts) as u64).sum(),
        }
    }
}

/// For each dimension on its own, the sums per value over all events (no filter), and
/// the total: what a day's rollups hold, computed with one rebuild of the visits.
pub fn sums_by_each(dimensions: &[Dimension], tz: &Timezone, events: &[Event]) -> (Vec<Vec<(String, Sums)>>, Sums) {
    let (visits, visit_of) = rebuild_visits(events);
    let mut per_dim: Vec<HashMap<String, Group>> = dimensions.iter().map(|_| HashMap::new()).collect();
    let mut total = Group::default();
    for (i, e) in events.iter().enumerate() {
        if e.facts.kind == EventKind::Engagement {
            continue;
        }
        let v = &visits[visit_of[i]];
        total.add(e, v.visitor, visit_of[i]);
        for (d, groups) in dimensions.iter().zip(per_dim.iter_mut()) {
            groups.entry(value(d, e, v, events, tz)).or_default().add(e, v.visitor, visit_of[i]);
        }
    }
    let out = per_dim.into_iter().map(|groups| groups.into_iter().map(|(k, g)| (k, g.sums(&visits))).collect()).collect();
    (out, total.sums(&visits))
}

/// Groups the selected events by the dimensions and sums each group; also returns the
/// sums of the whole selection.
pub fn group_sums(dimensions: &[Dimension], filter: &Filter, tz: &Timezone, events: &[Event]) -> GroupedSums {
    let (visits, visit_of) = rebuild_visits(events);

    // Engagement events only carry data for their visit; they never select it.
    let mut groups: HashMap<Vec<String>, Group> = HashMap::new();
    let mut total = Group::default();
    for (i, e) in events.iter().enumerate() {
        if e.facts.kind == EventKind::Engagement {
            continue;
        }
        let v = &visits[visit_of[i]];
        if !matches(filter, e, v, events, tz) {
            continue;
        }
        let key: Vec<String> = dimensions.iter().map(|d| value(d, e, v, events, tz)).collect();
        groups.entry(key).or_default().add(e, v.visitor, visit_of[i]);
        total.add(e, v.visitor, visit_of[i]);
    }
    (groups.iter().map(|(k, g)| (k.clone(), g.sums(&visits))).collect(), total.sums(&visits))
}

/// Sums per group beyond the core ones: engagement (scroll depth, engaged time) and
/// revenue. An engagement event reports on a pageview of its page, so the filter and
/// dimensions see it as one (its name reads `pageview`); its visit's attributes are the
/// visit's, as for every event. Revenue is summed over the selected events that carry it.
pub fn extra_sums(dimensions: &[Dimension], filter: &Filter, tz: &Timezone, events: &[Event]) -> super::derived::ExtraGroups {
    let (visits, visit_of) = rebuild_visits(events);
    let mut out: super::derived::ExtraGroups = HashMap::new();
    let mut engagement = super::derived::EngagementAcc::default();
    for (i, e) in events.iter().enumerate() {
        let v = &visits[visit_of[i]];
        if e.facts.kind != EventKind::Engagement {
            if let Some(r) = &e.facts.revenue {
                if matches(filter, e, v, events, tz) {
                    let key: Vec<String> = dimensions.iter().map(|d| value(d, e, v, events, tz)).collect();
                    out.entry(key).or_default().add_revenue(&r.amount, &r.currency);
                }
            }
            continue;
        }
        if e.facts.engaged_ms.is_none() && e.facts.scroll_depth.is_none() {
            continue;
        }
        let mut twin = e.clone();
        twin.facts.kind = EventKind::Pageview;
        twin.facts.name = "pageview".into();
        if !matches(filter, &twin, v, events, tz) {
            continue;
        }
        let key: Vec<String> = dimensions.iter().map(|d| value(d, &twin, v, events, tz)).collect();
        engagement.add(key, visit_of[i], || e.facts.pathname.clone(), e.facts.engaged_ms, e.facts.scroll_depth);
    }
    engagement.finish_into(&mut out);
    out
}
