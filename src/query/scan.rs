//! Exact evaluation of a `StatsQuery` by scanning raw events. This is the reference every
//! faster path (per-day aggregates, columnar segments) must agree with, and the path for
//! the open day.

use super::{Condition, Dimension, Filter, Metric, Row, StatsQuery, VisitProperty};
use crate::domain::{counts_as_event, Event, EventKind, Timezone};
use chrono::{DateTime, Datelike, Timelike};
use std::collections::{HashMap, HashSet};

pub const NOT_SET: &str = "(not set)";
pub const NO_PROP: &str = "(none)";

/// What the metrics need to know about one visit.
struct Visit {
    visitor: u64,
    /// Index of the visit's first event (its attributes come from there).
    first: usize,
    entry: Option<usize>,
    exit: Option<usize>,
    first_ts: i64,
    last_ts: i64,
    counting: u32,
}

fn visit_value<'a>(p: VisitProperty, v: &Visit, events: &'a [Event]) -> &'a str {
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
        V::City => &f.city,
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
        Dimension::Prop(k) => {
            e.facts.props.iter().find(|(pk, _)| pk == k).map(|(_, pv)| pv.clone()).unwrap_or_else(|| NO_PROP.to_string())
        }
        Dimension::Visit(p) => visit_value(*p, v, events).to_string(),
        Dimension::Day => tz.local_day(e.ts_ms).to_string(),
        Dimension::Hour => {
            let local = DateTime::from_timestamp_millis(e.ts_ms).unwrap_or_default().with_timezone(&tz.tz());
            format!("{} {:02}:00:00", local.date_naive(), local.hour())
        }
        Dimension::Week => {
            let d = tz.local_day(e.ts_ms).date();
            (d - chrono::Duration::days(d.weekday().num_days_from_monday() as i64)).to_string()
        }
        Dimension::Month => {
            let d = tz.local_day(e.ts_ms).date();
            d.with_day(1).unwrap_or(d).to_string()
        }
    }
}

fn matches(f: &Filter, e: &Event, v: &Visit, events: &[Event], tz: &Timezone) -> bool {
    match f {
        Filter::All => true,
        Filter::And(fs) => fs.iter().all(|f| matches(f, e, v, events, tz)),
        Filter::Or(fs) => fs.iter().any(|f| matches(f, e, v, events, tz)),
        Filter::Not(f) => !matches(f, e, v, events, tz),
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
    // Rebuild visits, in time order within each visit.
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| (events[i].visit_id, events[i].ts_ms, i));
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
            });
            visits.len() - 1
        });
        visit_of[i] = vi;
        let v = &mut visits[vi];
        v.last_ts = e.ts_ms;
        if counts_as_event(e.facts.kind, e.facts.interactive) {
            v.counting += 1;
        }
        if e.facts.kind == EventKind::Pageview {
            v.entry.get_or_insert(i);
            v.exit = Some(i);
        }
    }

    // Engagement events only carry data for their visit; they never select it.
    let mut groups: HashMap<Vec<String>, Group> = HashMap::new();
    let mut all_visitors: HashSet<u64> = HashSet::new();
    for (i, e) in events.iter().enumerate() {
        if e.facts.kind == EventKind::Engagement {
            continue;
        }
        let v = &visits[visit_of[i]];
        if !matches(&q.filter, e, v, events, tz) {
            continue;
        }
        all_visitors.insert(v.visitor);
        let key: Vec<String> = q.dimensions.iter().map(|d| value(d, e, v, events, tz)).collect();
        let g = groups.entry(key).or_default();
        g.visitors.insert(v.visitor);
        g.visits.insert(visit_of[i]);
        if e.facts.kind == EventKind::Pageview {
            g.pageviews += 1;
        }
        if counts_as_event(e.facts.kind, e.facts.interactive) {
            g.events += 1;
        }
    }
    if q.dimensions.is_empty() && groups.is_empty() {
        groups.insert(Vec::new(), Group::default());
    }

    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|(dims, g)| {
            let n_visits = g.visits.len() as f64;
            let bounces = g.visits.iter().filter(|&&vi| visits[vi].counting == 1).count() as f64;
            let duration_ms: i64 = g.visits.iter().map(|&vi| visits[vi].last_ts - visits[vi].first_ts).sum();
            let per_visit = |x: f64| if n_visits > 0.0 { x / n_visits } else { 0.0 };
            let metrics = q
                .metrics
                .iter()
                .map(|m| match m {
                    Metric::Visitors => g.visitors.len() as f64,
                    Metric::Visits => n_visits,
                    Metric::Pageviews => g.pageviews as f64,
                    Metric::Events => g.events as f64,
                    Metric::ViewsPerVisit => per_visit(g.pageviews as f64),
                    Metric::BounceRate => 100.0 * per_visit(bounces),
                    Metric::VisitDuration => per_visit(duration_ms as f64 / 1000.0),
                    Metric::Percentage if all_visitors.is_empty() => 0.0,
                    Metric::Percentage => 100.0 * g.visitors.len() as f64 / all_visitors.len() as f64,
                })
                .collect();
            Row { dimensions: dims, metrics }
        })
        .collect();
    let by_time = q.dimensions.iter().any(Dimension::is_time);
    rows.sort_by(|a, b| {
        if by_time {
            a.dimensions.cmp(&b.dimensions)
        } else {
            let first = |r: &Row| r.metrics.first().copied().unwrap_or(0.0);
            first(b).total_cmp(&first(a)).then_with(|| a.dimensions.cmp(&b.dimensions))
        }
    });
    rows
}
