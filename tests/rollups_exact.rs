//! Rollups, day segments and raw scans give the same answers (SPEC §3: "Rollups must give the same
//! numbers as a scan of raw events, always"), on a real SQLite store with a random mix of
//! rolled-up and raw days; an import into a closed day drops its rollups.

mod common;

use common::synthetic::{build, raw, ALL_METRICS, TIMEZONES};
use footfall::domain::{LocalDay, Site, Timezone};
use footfall::query::engine::{self, ROLLUP_DIMENSIONS};
use footfall::query::range::DateRange;
use footfall::query::{scan, Dimension, Filter, Row, StatsQuery};
use footfall::storage::sqlite::SqliteStore;
use footfall::storage::{EncodedEvent, Store};
use proptest::prelude::*;
use std::collections::HashMap;


fn as_map(rows: Vec<Row>) -> HashMap<Vec<String>, Vec<f64>> {
    rows.into_iter().map(|r| (r.dimensions, r.metrics)).collect()
}

fn filtered_queries() -> Vec<(Vec<Dimension>, Filter)> {
    use footfall::query::{Condition, VisitProperty};
    let filters = vec![
        Filter::Match { dimension: Dimension::Visit(VisitProperty::Country), condition: Condition::Is(vec!["DE".into()]) },
        Filter::Match { dimension: Dimension::Page, condition: Condition::Contains(vec!["blog".into()]) },
        Filter::Not(Box::new(Filter::Match { dimension: Dimension::Visit(VisitProperty::Source), condition: Condition::Is(vec!["Google".into()]) })),
        Filter::Match { dimension: Dimension::Prop("plan".into()), condition: Condition::Is(vec!["(none)".into()]) },
        Filter::HasDone(Box::new(Filter::Match { dimension: Dimension::Page, condition: Condition::Is(vec!["/a".into()]) })),
        Filter::Not(Box::new(Filter::HasDone(Box::new(Filter::Match { dimension: Dimension::Name, condition: Condition::Is(vec!["Signup".into()]) })))),
    ];
    let dims = [
        vec![],
        vec![Dimension::Page],
        vec![Dimension::Visit(VisitProperty::Source)],
        vec![Dimension::Day],
        vec![Dimension::Hour],
        vec![Dimension::Prop("plan".into())],
        vec![Dimension::Visit(VisitProperty::Country), Dimension::Page],
        vec![Dimension::Visit(VisitProperty::CountryName)],
    ];
    let mut out: Vec<(Vec<Dimension>, Filter)> = dims.iter().map(|d| (d.clone(), Filter::All)).collect();
    for f in &filters {
        out.extend(dims.iter().map(|d| (d.clone(), f.clone())));
    }
    out
}

fn dimensions() -> Vec<Option<Dimension>> {
    let mut d: Vec<Option<Dimension>> = vec![None, Some(Dimension::Day), Some(Dimension::Week), Some(Dimension::Month)];
    d.extend(ROLLUP_DIMENSIONS.iter().map(|n| Some(Dimension::parse(n).unwrap())));
    d
}

async fn check(store: &SqliteStore, cache: &engine::DayCache, site: &Site, first: LocalDay, last: LocalDay) -> Result<(), TestCaseError> {
    let range = DateRange::Dates(first.date(), last.date());
    let (from, to) = (site.timezone.day_bounds(first).0, site.timezone.day_bounds(last).1);
    let events = store.events(site.id, from, to).await.unwrap();
    let far_future = to + 400 * 86_400_000;
    // Unfiltered questions read rollups; the others go through day segments.
    let unfiltered = dimensions().into_iter().map(|d| (d.into_iter().collect::<Vec<_>>(), Filter::All));
    for (dims, filter) in unfiltered.chain(filtered_queries()) {
        let q = StatsQuery { metrics: ALL_METRICS.to_vec(), dimensions: dims.clone(), filter: filter.clone() };
        let planned = as_map(engine::answer_with(store, cache, site, &q, &range, far_future).await.unwrap().rows);
        let scanned = as_map(scan::evaluate(&q, &site.timezone, &events));
        prop_assert_eq!(planned.len(), scanned.len(), "groups for {:?} {:?}", dims, filter);
        for (k, v) in &scanned {
            let p = planned.get(k);
            prop_assert!(p.is_some(), "{:?} {:?}: group {:?} missing", dims, filter, k);
            for (a, b) in p.unwrap().iter().zip(v) {
                prop_assert!((a - b).abs() < 1e-9, "{:?} {:?} {:?}: planned {:?} vs scan {:?}", dims, filter, k, p, v);
            }
        }
    }
    // Goals, conversion rates and engagement metrics: plain parts by the planner's paths,
    // against the same rewrite answered by scans.
    let goals = store.goals(site.id).await.unwrap();
    let goal = |name: &str| Filter::Match { dimension: Dimension::Goal, condition: footfall::query::Condition::Is(vec![name.into()]) };
    let page = Filter::Match { dimension: Dimension::Page, condition: footfall::query::Condition::Contains(vec!["/".into()]) };
    let derived_queries = [
        (vec![Dimension::Goal], Filter::All),
        (vec![Dimension::Visit(footfall::query::VisitProperty::Source)], goal("Signup")),
        (vec![], goal("Visit /blog*")),
        (vec![Dimension::Page], Filter::All),
        (vec![Dimension::Goal, Dimension::Day], page.clone()),
    ];
    for (dims, filter) in derived_queries {
        let q = StatsQuery { metrics: DERIVED_METRICS.to_vec(), dimensions: dims.clone(), filter: filter.clone() };
        let planned = as_map(engine::answer_with(store, cache, site, &q, &range, far_future).await.unwrap().rows);
        let scanned = as_map(footfall::query::derived::evaluate(&q, &goals, &site.timezone, &events));
        prop_assert_eq!(planned.len(), scanned.len(), "groups for {:?} {:?}", dims, filter);
        for (k, v) in &scanned {
            let p = planned.get(k);
            prop_assert!(p.is_some(), "{:?} {:?}: group {:?} missing", dims, filter, k);
            for (a, b) in p.unwrap().iter().zip(v) {
                prop_assert!((a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-9, "{:?} {:?} {:?}: planned {:?} vs scan {:?}", dims, filter, k, p, v);
            }
        }
    }
    Ok(())
}

const DERIVED_METRICS: [footfall::query::Metric; 6] = {
    use footfall::query::Metric::*;
    [Visitors, Percentage, ConversionRate, GroupConversionRate, ScrollDepth, TimeOnPage]
};

async fn add_goals(store: &SqliteStore, site: &Site) {
    use footfall::domain::GoalKind;
    for kind in [GoalKind::Page("/blog*".into()), GoalKind::Event("Signup".into()), GoalKind::Page("/".into())] {
        footfall::admin::add_goal(store, site.domain.as_str(), kind, None).await.unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn rollups_and_raw_scans_agree(
        raws in proptest::collection::vec(raw(), 1..120),
        tz in 0..TIMEZONES.len(),
        rolled_mask in any::<u8>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            let tz = Timezone::parse(TIMEZONES[tz]).unwrap();
            let site = footfall::admin::add_site(&store, "example.com", tz.name()).await.unwrap();
            add_goals(&store, &site).await;
            let events = build(&raws, &tz);
            store.insert_events(events.iter().map(EncodedEvent::new).collect()).await.unwrap();
            let first = events.iter().map(|e| e.day).min().unwrap_or(LocalDay(20_000));
            let last = events.iter().map(|e| e.day).max().unwrap_or(first);
            // Roll up a random subset of the days; the rest stay raw.
            let mut day = first;
            let mut i = 0;
            while day <= last {
                if rolled_mask & (1 << (i % 8)) != 0 {
                    engine::build_day(&store, &site, day).await.unwrap();
                }
                day = day.next();
                i += 1;
            }
            check(&store, &engine::DayCache::default(), &site, first, last).await
        })?;
    }
}

#[tokio::test]
async fn day_close_rolls_up_closed_days_and_imports_invalidate_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let site = footfall::admin::add_site(&store, "example.com", "Europe/Berlin").await.unwrap();
    add_goals(&store, &site).await;
    let raws: Vec<_> = (0..300)
        .map(|i| common::synthetic::Raw { visitor: (i % 6) as u8, minute: (i * 29) % (3 * 24 * 60), kind: (i % 10) as u8, page: (i % 4) as usize, source: (i % 3) as usize, country: (i % 3) as usize, interactive: true, plan: None })
        .collect();
    let events = build(&raws, &site.timezone);
    store.insert_events(events.iter().map(EncodedEvent::new).collect()).await.unwrap();
    let first = events.iter().map(|e| e.day).min().unwrap();
    let last = events.iter().map(|e| e.day).max().unwrap();
    assert_eq!(last.0 - first.0, 3, "the fixture spans four local days");

    // One cache across everything below: it must never answer from a stale day.
    let cache = engine::DayCache::default();

    // "Now" is the second day: only the first is closed.
    let middle = LocalDay(first.0 + 1);
    let now = site.timezone.day_bounds(middle).0 + 3_600_000;
    assert_eq!(footfall::jobs::close_days_once(&store, now).await.unwrap(), 1);
    let days = |v: Vec<(LocalDay, i64)>| v.into_iter().map(|(d, _)| d).collect::<Vec<_>>();
    assert_eq!(days(store.rolled_up_days(site.id, first, last).await.unwrap()), vec![first]);
    assert_eq!(footfall::jobs::close_days_once(&store, now).await.unwrap(), 0, "nothing twice");
    // Within the grace period after midnight, the day just ended is not closed yet.
    let just_after = site.timezone.day_bounds(last).0 + 60_000;
    // Just after the last day's midnight, the day that just ended is in its grace period.
    assert_eq!(footfall::jobs::close_days_once(&store, just_after).await.unwrap(), 1, "only the second day");
    let later = site.timezone.day_bounds(last).1 + 3_600_000;
    assert_eq!(footfall::jobs::close_days_once(&store, later).await.unwrap(), 2);
    assert_eq!(store.rolled_up_days(site.id, first, last).await.unwrap().len(), 4);
    check(&store, &cache, &site, first, last).await.unwrap();

    // Importing into the first day drops its rollups; answers stay exact meanwhile.
    let ts = chrono::DateTime::from_timestamp_millis(site.timezone.day_bounds(first).0 + 7_200_000).unwrap();
    let line = serde_json::json!({"timestamp": ts.to_rfc3339(), "domain": "example.com", "name": "pageview",
        "url": "https://example.com/imported", "ip": "81.2.69.142", "user_agent": common::FIREFOX}).to_string();
    let path = dir.path().join("late.ndjson");
    std::fs::write(&path, line).unwrap();
    let report = footfall::import::import_file(&store, &site, &mut std::fs::File::open(&path).unwrap(), &footfall::ingest::geo::GeoIp::embedded(), |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.imported, 1);
    assert_eq!(store.rolled_up_days(site.id, first, last).await.unwrap().len(), 3, "the imported day lost its rollups");
    check(&store, &cache, &site, first, last).await.unwrap();
    assert_eq!(footfall::jobs::close_days_once(&store, later).await.unwrap(), 1, "and the next day close rebuilds them");
    check(&store, &cache, &site, first, last).await.unwrap();

    // Rollups built from a read that an import overtook are refused, not stored.
    let (from, to) = site.timezone.day_bounds(first);
    let stale = store.events(site.id, from, to).await.unwrap().len() as u64 - 1;
    let refused = store.replace_rollups(site.id, first, from, to, stale, vec![]).await;
    assert!(matches!(refused, Err(footfall::storage::StoreError::Conflict)), "{refused:?}");
    assert_eq!(store.rolled_up_days(site.id, first, last).await.unwrap().len(), 4, "the day keeps its rollups");
    check(&store, &cache, &site, first, last).await.unwrap();
}
