//! Random event streams built the way ingestion builds them, for exactness tests.
#![allow(dead_code)]

use footfall::domain::*;
use footfall::query::Metric;
use footfall::visits::{assign_visits, Timed};
use proptest::prelude::*;

pub const MIN: i64 = 60_000;
pub const PAGES: &[&str] = &["/", "/a", "/b", "/blog/x"];
pub const SOURCES: &[&str] = &["Direct / None", "Google", "news"];
pub const COUNTRIES: &[&str] = &["DE", "US", ""];
pub const TIMEZONES: &[&str] = &["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"];

#[derive(Debug, Clone)]
pub struct Raw {
    pub visitor: u8,
    pub minute: i64,
    pub kind: u8,
    pub page: usize,
    pub source: usize,
    pub country: usize,
    pub interactive: bool,
    pub plan: Option<u8>,
}

pub fn raw() -> impl Strategy<Value = Raw> {
    (0u8..5, 0i64..(3 * 24 * 60), 0u8..10, 0..PAGES.len(), 0..SOURCES.len(), 0..COUNTRIES.len(), any::<bool>(), proptest::option::of(0u8..2))
        .prop_map(|(visitor, minute, kind, page, source, country, interactive, plan)| Raw { visitor, minute, kind, page, source, country, interactive, plan })
}

/// Builds stored events the way ingestion does: daily visitor ids, visits split by the
/// production splitter, engagement events without a visit dropped.
pub fn build(raws: &[Raw], tz: &Timezone) -> Vec<Event> {
    let base = 1_790_000_000_000i64;
    let mut events: Vec<Event> = raws
        .iter()
        .map(|r| {
            let ts = base + r.minute * MIN + (r.kind as i64 % 3) * 1000;
            let day = tz.local_day(ts);
            let kind = match r.kind {
                0 | 1 => EventKind::Engagement,
                2 | 3 => EventKind::Custom,
                _ => EventKind::Pageview,
            };
            let name = match kind {
                EventKind::Pageview => "pageview",
                EventKind::Engagement => "engagement",
                EventKind::Custom if r.kind == 2 => "Signup",
                EventKind::Custom => "Download",
            };
            Event {
                site_id: SiteId(1),
                ts_ms: ts,
                day,
                visitor_id: VisitorId((r.visitor as u64) << 32 | day.0 as u32 as u64),
                visit_id: VisitId(0),
                facts: EventFacts {
                    kind,
                    name: name.into(),
                    interactive: r.interactive || kind == EventKind::Pageview,
                    hostname: "example.com".into(),
                    pathname: PAGES[r.page].into(),
                    referrer: String::new(),
                    source: SOURCES[r.source].into(),
                    utm: Utm::default(),
                    browser: "Firefox".into(),
                    browser_version: "133.0".into(),
                    os: "GNU/Linux".into(),
                    os_version: String::new(),
                    device: "Desktop".into(),
                    country: COUNTRIES[r.country].into(),
                    region: String::new(),
                    region_name: String::new(),
                    city: String::new(),
                    props: r.plan.map(|p| vec![("plan".to_string(), format!("p{p}"))]).unwrap_or_default(),
                    // Some custom events carry revenue, now and then in a second currency.
                    revenue: (kind == EventKind::Custom && r.minute % 3 == 0).then(|| Revenue {
                        amount: format!("{}.{:02}", r.minute % 50, r.minute % 100),
                        currency: if r.minute % 11 == 0 { "USD".into() } else { "EUR".into() },
                    }),
                    // Engagement events report a scroll depth and engaged time, now and
                    // then one of them alone.
                    scroll_depth: (kind == EventKind::Engagement && r.minute % 5 != 0).then_some((r.minute * 7 % 101) as u8),
                    engaged_ms: (kind == EventKind::Engagement && r.minute % 7 != 0).then_some((r.minute * 131 % 90_000) as u32),
                },
            }
        })
        .collect();
    let timed: Vec<Timed> = events.iter().map(|e| Timed { visitor: e.visitor_id, ts_ms: e.ts_ms, kind: e.facts.kind }).collect();
    let visits = assign_visits(&timed);
    let mut kept = Vec::new();
    for (mut e, v) in events.drain(..).zip(visits) {
        if let Some(v) = v {
            e.visit_id = v;
            kept.push(e);
        }
    }
    kept
}


/// Every metric the query engine computes, for tests that compare all of them.
pub const ALL_METRICS: [Metric; 8] = [
    Metric::Visitors,
    Metric::Visits,
    Metric::Pageviews,
    Metric::Events,
    Metric::ViewsPerVisit,
    Metric::BounceRate,
    Metric::VisitDuration,
    Metric::Percentage,
];
