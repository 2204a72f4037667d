//! The backend story on PostgreSQL: the same events stored in SQLite and in PostgreSQL
//! give identical answers to every stats question (plain, filtered, goals, conversion
//! rates, engagement, over rollups, segments and raw days alike), and the import path
//! and goals work the same.

mod common;

use common::pg::TestDatabase;
use common::synthetic::{build, raw, TIMEZONES};
use footfall::domain::{GoalKind, LocalDay, Site};
use footfall::query::engine::{self, ROLLUP_DIMENSIONS};
use footfall::query::range::DateRange;
use footfall::query::{Condition, Dimension, Filter, Metric, Row, StatsQuery, VisitProperty};
use footfall::storage::postgres::PostgresStore;
use footfall::storage::sqlite::SqliteStore;
use footfall::storage::{EncodedEvent, Store};
use proptest::prelude::*;

const METRICS: [Metric; 12] = {
    use Metric::*;
    [Visitors, Visits, Pageviews, Events, ViewsPerVisit, BounceRate, VisitDuration, ConversionRate, GroupConversionRate, ScrollDepth, TimeOnPage, TotalRevenue]
};

fn questions() -> Vec<StatsQuery> {
    let is = |d: Dimension, v: &str| Filter::Match { dimension: d, condition: Condition::Is(vec![v.into()]) };
    let filters = [
        Filter::All,
        is(Dimension::Visit(VisitProperty::Country), "DE"),
        is(Dimension::Page, "/a"),
        Filter::Not(Box::new(is(Dimension::Visit(VisitProperty::Source), "Google"))),
        is(Dimension::Goal, "Signup"),
        Filter::HasDone(Box::new(is(Dimension::Page, "/b"))),
    ];
    let mut dims: Vec<Vec<Dimension>> = vec![vec![], vec![Dimension::Day], vec![Dimension::Hour], vec![Dimension::Goal], vec![Dimension::Page, Dimension::Visit(VisitProperty::Country)]];
    dims.extend(ROLLUP_DIMENSIONS.iter().map(|n| vec![Dimension::parse(n).unwrap()]));
    let mut out = Vec::new();
    for f in &filters {
        for d in &dims {
            // Every metric the question allows (scroll depth and time on page need a page,
            // conversion rates and revenue a goal).
            let q = StatsQuery { metrics: METRICS.to_vec(), dimensions: d.clone(), filter: f.clone() };
            let metrics = METRICS.iter().copied().filter(|m| StatsQuery { metrics: vec![*m], ..q.clone() }.validate().is_ok()).collect();
            out.push(StatsQuery { metrics, ..q });
        }
    }
    out
}

fn rows(mut r: Vec<Row>) -> Vec<Row> {
    r.sort_by(|a, b| a.dimensions.cmp(&b.dimensions));
    r
}

async fn same_answers(sqlite: &SqliteStore, a: &Site, pg: &PostgresStore, b: &Site, first: LocalDay, last: LocalDay) -> Result<(), TestCaseError> {
    let range = DateRange::Dates(first.date(), last.date());
    let now = a.timezone.day_bounds(last).1 + 400 * 86_400_000;
    for q in questions() {
        let x = rows(engine::answer(sqlite, a, &q, &range, now).await.unwrap().rows);
        let y = rows(engine::answer(pg, b, &q, &range, now).await.unwrap().rows);
        prop_assert_eq!(x.len(), y.len(), "{:?}", q);
        for (r, s) in x.iter().zip(&y) {
            prop_assert_eq!(&r.dimensions, &s.dimensions, "{:?}", q);
            for (m, (u, v)) in q.metrics.iter().zip(r.metrics.iter().zip(&s.metrics)) {
                prop_assert!((u.is_nan() && v.is_nan()) || u == v, "{} of {:?} for {:?}: SQLite {} vs PostgreSQL {}", m.name(), r.dimensions, q, u, v);
            }
            prop_assert_eq!(&r.currency, &s.currency);
        }
    }
    Ok(())
}

async fn add_goals(store: &dyn Store, site: &Site) {
    for kind in [GoalKind::Event("Signup".into()), GoalKind::Page("/blog*".into())] {
        footfall::admin::add_goal(store, site.domain.as_str(), kind, None).await.unwrap();
    }
}

#[test]
fn sqlite_and_postgres_give_identical_answers() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let db = rt.block_on(TestDatabase::create());
    let pg = rt.block_on(PostgresStore::open(&db.url)).unwrap();
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 12, ..ProptestConfig::default() });
    let result = runner.run(&(proptest::collection::vec(raw(), 1..120), 0..TIMEZONES.len(), any::<u8>()), |(raws, tz, rolled_mask)| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let sqlite = SqliteStore::open(dir.path()).unwrap();
            let tz = TIMEZONES[tz];
            // A site of its own per case in the shared database.
            let domain = format!("case{case}-{:x}.example", rand::random::<u32>());
            let a = footfall::admin::add_site(&sqlite, &domain, tz).await.unwrap();
            let b = footfall::admin::add_site(&pg, &domain, tz).await.unwrap();
            add_goals(&sqlite, &a).await;
            add_goals(&pg, &b).await;
            let events = build(&raws, &a.timezone);
            let encoded: Vec<EncodedEvent> = events.iter().map(EncodedEvent::new).collect();
            sqlite.insert_events(encoded.iter().cloned().map(|e| EncodedEvent { site_id: a.id, ..e }).collect()).await.unwrap();
            pg.insert_events(encoded.into_iter().map(|e| EncodedEvent { site_id: b.id, ..e }).collect()).await.unwrap();
            // A case of only engagement events stores nothing: both must answer empty.
            let first = events.iter().map(|e| e.day).min().unwrap_or(LocalDay(20_400));
            let last = events.iter().map(|e| e.day).max().unwrap_or(first);
            let (mut day, mut i) = (first, 0);
            while day <= last {
                if rolled_mask & (1 << (i % 8)) != 0 {
                    engine::build_day(&sqlite, &a, day).await.unwrap();
                    engine::build_day(&pg, &b, day).await.unwrap();
                }
                day = day.next();
                i += 1;
            }
            same_answers(&sqlite, &a, &pg, &b, first, last).await
        })
    });
    rt.block_on(db.drop());
    result.unwrap();
}

/// Import, goals and job claims on PostgreSQL, as the CLI would use them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_goals_and_job_claims_on_postgres() {
    let db = TestDatabase::create().await;
    let pg = PostgresStore::open(&db.url).await.unwrap();
    // Migrations are idempotent: a second worker opening the same database is fine.
    let again = PostgresStore::open(&db.url).await.unwrap();
    let site = footfall::admin::add_site(&pg, "example.com", "Europe/Berlin").await.unwrap();
    assert!(footfall::admin::add_site(&again, "example.com", "UTC").await.is_err(), "the site exists for every worker");
    let lines: Vec<String> = (0..50)
        .map(|i| serde_json::json!({"timestamp": format!("2026-11-02T10:{:02}:00Z", i), "domain": "example.com", "name": "pageview",
            "url": format!("https://example.com/p{}", i % 5), "ip": format!("81.2.69.{}", i % 7), "user_agent": common::FIREFOX}).to_string())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.ndjson");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let geo = footfall::ingest::geo::GeoIp::embedded();
    let report = footfall::import::import_file(&pg, &site, &mut std::fs::File::open(&path).unwrap(), &geo, |_, _| {}).await.unwrap();
    assert_eq!(report.imported, 50);
    let rerun = footfall::import::import_file(&pg, &site, &mut std::fs::File::open(&path).unwrap(), &geo, |_, _| {}).await.unwrap();
    assert_eq!(rerun.imported, 0, "a rerun skips what is stored: {rerun:?}");
    assert_eq!(pg.events(site.id, 0, i64::MAX).await.unwrap().len(), 50);
    // Rollups built from a stale read are refused.
    let day = site.timezone.local_day(pg.first_event_ms(site.id).await.unwrap().unwrap());
    let (from, to) = site.timezone.day_bounds(day);
    let refused = pg.replace_rollups(site.id, day, from, to, 49, vec![]).await;
    assert!(matches!(refused, Err(footfall::storage::StoreError::Conflict)), "{refused:?}");
    assert!(pg.rolled_up_days(site.id, day, day).await.unwrap().is_empty());
    footfall::query::engine::build_day(&pg, &site, day).await.unwrap();
    assert_eq!(pg.rolled_up_days(site.id, day, day).await.unwrap().len(), 1);

    // Job slots: each runs once; an older token is refused once a newer one ran.
    assert!(pg.claim_job_run("tick", 1, 5, "a").await.unwrap());
    assert!(!again.claim_job_run("tick", 1, 5, "b").await.unwrap(), "a slot runs once");
    assert!(again.claim_job_run("tick", 2, 6, "b").await.unwrap());
    assert!(!pg.claim_job_run("tick", 3, 5, "a").await.unwrap(), "a stale leader is fenced off");
    assert_eq!(pg.last_job_slot("tick").await.unwrap(), Some(2));
    assert_eq!(pg.job_runs("tick").await.unwrap(), vec![(1, 5, "a".to_string()), (2, 6, "b".to_string())]);
    db.drop().await;
}
