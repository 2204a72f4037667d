//! The raw-scan query engine gives exactly the numbers SPEC §3 defines, checked against
//! an independent computation that rebuilds visits from visitor ids and timestamps alone
//! (not from the stored visit ids), over random event streams in several timezones.

mod common;

use footfall::domain::*;
use footfall::query::{scan, Condition, Dimension, Filter, Metric, StatsQuery, VisitProperty};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

use common::synthetic::{build, raw, Raw, ALL_METRICS, MIN, PAGES, SOURCES, TIMEZONES};

/// The independent side: visits from (visitor, time) with the 30-minute rule.
struct RefVisit {
    events: Vec<usize>,
}

fn reference_visits(events: &[Event]) -> (Vec<RefVisit>, Vec<usize>) {
    let mut by_visitor: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        by_visitor.entry(e.visitor_id.0).or_default().push(i);
    }
    let mut visits: Vec<RefVisit> = Vec::new();
    let mut of = vec![usize::MAX; events.len()];
    for (_, mut idx) in by_visitor {
        idx.sort_by_key(|&i| (events[i].ts_ms, events[i].facts.kind == EventKind::Engagement, i));
        let mut last: Option<i64> = None;
        for i in idx {
            let ts = events[i].ts_ms;
            if last.is_none_or(|l| ts - l > 30 * MIN) {
                visits.push(RefVisit { events: Vec::new() });
            }
            last = Some(ts);
            of[i] = visits.len() - 1;
            visits.last_mut().unwrap().events.push(i);
        }
    }
    (visits, of)
}

fn ref_dim(d: &Dimension, e: &Event, v: &RefVisit, events: &[Event], tz: &Timezone) -> String {
    let first = &events[v.events[0]].facts;
    let or_not_set = |s: &str| if s.is_empty() { scan::NOT_SET.to_string() } else { s.to_string() };
    let pageviews: Vec<&Event> = v.events.iter().map(|&i| &events[i]).filter(|e| e.facts.kind == EventKind::Pageview).collect();
    match d {
        Dimension::Page => e.facts.pathname.clone(),
        Dimension::Name => e.facts.name.clone(),
        Dimension::Prop(k) => e.facts.props.iter().find(|(pk, _)| pk == k).map(|(_, v)| v.clone()).unwrap_or(scan::NO_PROP.into()),
        Dimension::Visit(VisitProperty::Source) => or_not_set(&first.source),
        Dimension::Visit(VisitProperty::Country) => or_not_set(&first.country),
        Dimension::Visit(VisitProperty::EntryPage) => or_not_set(pageviews.first().map(|e| e.facts.pathname.as_str()).unwrap_or("")),
        Dimension::Visit(VisitProperty::ExitPage) => or_not_set(pageviews.last().map(|e| e.facts.pathname.as_str()).unwrap_or("")),
        Dimension::Day => tz.local_day(e.ts_ms).to_string(),
        Dimension::Month => format!("{}-01", &tz.local_day(e.ts_ms).to_string()[..7]),
        Dimension::Week => {
            // Walk back to Monday one day at a time.
            let mut d = tz.local_day(e.ts_ms).date();
            while d.format("%a").to_string() != "Mon" {
                d = d.pred_opt().unwrap();
            }
            d.to_string()
        }
        other => panic!("the reference does not know {other}"),
    }
}

fn ref_filter(f: &Filter, e: &Event, v: &RefVisit, events: &[Event], tz: &Timezone) -> bool {
    match f {
        Filter::All => true,
        Filter::And(fs) => fs.iter().all(|f| ref_filter(f, e, v, events, tz)),
        Filter::Or(fs) => fs.iter().any(|f| ref_filter(f, e, v, events, tz)),
        Filter::Not(f) => !ref_filter(f, e, v, events, tz),
        Filter::Match { dimension, condition } => {
            let x = ref_dim(dimension, e, v, events, tz);
            match condition {
                Condition::Is(vals) => vals.contains(&x),
                Condition::Contains(vals) => vals.iter().any(|s| x.contains(s.as_str())),
                Condition::Matches(res) => res.iter().any(|r| r.is_match(&x)),
            }
        }
    }
}

fn reference(q: &StatsQuery, tz: &Timezone, events: &[Event]) -> HashMap<Vec<String>, Vec<f64>> {
    let (visits, of) = reference_visits(events);
    let selected: Vec<usize> = (0..events.len())
        .filter(|&i| events[i].facts.kind != EventKind::Engagement && ref_filter(&q.filter, &events[i], &visits[of[i]], events, tz))
        .collect();
    let total_visitors: HashSet<u64> = selected.iter().map(|&i| events[i].visitor_id.0).collect();
    let mut keys: HashMap<Vec<String>, Vec<usize>> = HashMap::new();
    for &i in &selected {
        let key = q.dimensions.iter().map(|d| ref_dim(d, &events[i], &visits[of[i]], events, tz)).collect();
        keys.entry(key).or_default().push(i);
    }
    if q.dimensions.is_empty() && keys.is_empty() {
        keys.insert(Vec::new(), Vec::new());
    }
    keys.into_iter()
        .map(|(key, idx)| {
            let visitors: HashSet<u64> = idx.iter().map(|&i| events[i].visitor_id.0).collect();
            let vs: HashSet<usize> = idx.iter().map(|&i| of[i]).collect();
            let pageviews = idx.iter().filter(|&&i| events[i].facts.kind == EventKind::Pageview).count() as f64;
            let counting = |e: &Event| e.facts.kind == EventKind::Pageview || (e.facts.kind == EventKind::Custom && e.facts.interactive);
            let evs = idx.iter().filter(|&&i| counting(&events[i])).count() as f64;
            let bounces = vs.iter().filter(|&&v| visits[v].events.iter().filter(|&&i| counting(&events[i])).count() == 1).count() as f64;
            let dur: f64 = vs
                .iter()
                .map(|&v| {
                    let ts: Vec<i64> = visits[v].events.iter().map(|&i| events[i].ts_ms).collect();
                    (ts.iter().max().unwrap() - ts.iter().min().unwrap()) as f64 / 1000.0
                })
                .sum();
            let n = vs.len() as f64;
            let metrics = q
                .metrics
                .iter()
                .map(|m| match m {
                    Metric::Visitors => visitors.len() as f64,
                    Metric::Visits => n,
                    Metric::Pageviews => pageviews,
                    Metric::Events => evs,
                    Metric::ViewsPerVisit => if n > 0.0 { pageviews / n } else { 0.0 },
                    Metric::BounceRate => if n > 0.0 { 100.0 * bounces / n } else { 0.0 },
                    Metric::VisitDuration => if n > 0.0 { dur / n } else { 0.0 },
                    Metric::Percentage => if total_visitors.is_empty() { 0.0 } else { 100.0 * visitors.len() as f64 / total_visitors.len() as f64 },
                })
                .collect();
            (key, metrics)
        })
        .collect()
}


fn dimension() -> impl Strategy<Value = Option<Dimension>> {
    prop_oneof![
        Just(None),
        Just(Some(Dimension::Page)),
        Just(Some(Dimension::Name)),
        Just(Some(Dimension::Prop("plan".into()))),
        Just(Some(Dimension::Visit(VisitProperty::Source))),
        Just(Some(Dimension::Visit(VisitProperty::Country))),
        Just(Some(Dimension::Visit(VisitProperty::EntryPage))),
        Just(Some(Dimension::Visit(VisitProperty::ExitPage))),
        Just(Some(Dimension::Day)),
        Just(Some(Dimension::Week)),
        Just(Some(Dimension::Month)),
    ]
}

fn leaf() -> impl Strategy<Value = Filter> {
    prop_oneof![
        Just(Filter::All),
        (0..PAGES.len()).prop_map(|p| Filter::Match { dimension: Dimension::Page, condition: Condition::Is(vec![PAGES[p].into()]) }),
        Just(Filter::Match { dimension: Dimension::Page, condition: Condition::Contains(vec!["blog".into()]) }),
        (0..SOURCES.len()).prop_map(|s| Filter::Match { dimension: Dimension::Visit(VisitProperty::Source), condition: Condition::Is(vec![SOURCES[s].into()]) }),
        Just(Filter::Match { dimension: Dimension::Visit(VisitProperty::Country), condition: Condition::Is(vec!["DE".into(), "US".into()]) }),
        Just(Filter::Match { dimension: Dimension::Visit(VisitProperty::EntryPage), condition: Condition::Is(vec!["/a".into()]) }),
        Just(Filter::Match { dimension: Dimension::Name, condition: Condition::Is(vec!["Signup".into()]) }),
        Just(Filter::Match { dimension: Dimension::Page, condition: Condition::Matches(vec![regex::Regex::new("^/(a|b)$").unwrap()]) }),
        Just(Filter::Match { dimension: Dimension::Prop("plan".into()), condition: Condition::Is(vec!["p1".into()]) }),
        Just(Filter::Match { dimension: Dimension::Prop("plan".into()), condition: Condition::Is(vec!["(none)".into()]) }),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(2, 6, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..3).prop_map(Filter::And),
            proptest::collection::vec(inner.clone(), 1..3).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn raw_scan_matches_the_independent_computation(
        raws in proptest::collection::vec(raw(), 0..150),
        tz in 0..TIMEZONES.len(),
        dim in dimension(),
        filter in filter(),
    ) {
        let tz = Timezone::parse(TIMEZONES[tz]).unwrap();
        let events = build(&raws, &tz);
        let q = StatsQuery { metrics: ALL_METRICS.to_vec(), dimensions: dim.into_iter().collect(), filter };
        let got: HashMap<Vec<String>, Vec<f64>> = scan::evaluate(&q, &tz, &events).into_iter().map(|r| (r.dimensions, r.metrics)).collect();
        let want = reference(&q, &tz, &events);
        prop_assert_eq!(got.len(), want.len(), "groups differ: {:?} vs {:?}", got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (key, w) in &want {
            let g = got.get(key);
            prop_assert!(g.is_some(), "group {:?} missing", key);
            for (m, (a, b)) in ALL_METRICS.iter().zip(g.unwrap().iter().zip(w)) {
                prop_assert!((a - b).abs() < 1e-9, "{} for {:?}: engine {} vs reference {}", m.name(), key, a, b);
            }
        }
    }
}

/// Per-day values combine into the range's values: visits and visitor ids never cross a
/// local midnight, so scanning days one by one and adding up gives the same counts.
#[test]
fn days_add_up_to_the_range() {
    let tz = Timezone::parse("Europe/Berlin").unwrap();
    let raws: Vec<Raw> = (0..400)
        .map(|i| Raw { visitor: (i % 7) as u8, minute: (i * 37) % (3 * 24 * 60), kind: (i % 10) as u8, page: (i % 4) as usize, source: (i % 3) as usize, country: (i % 3) as usize, interactive: i % 3 != 0, plan: None })
        .collect();
    let events = build(&raws, &tz);
    let q = StatsQuery { metrics: vec![Metric::Visitors, Metric::Visits, Metric::Pageviews, Metric::Events], dimensions: vec![], filter: Filter::All };
    let whole = &scan::evaluate(&q, &tz, &events)[0].metrics;
    let mut days: BTreeMap<LocalDay, Vec<Event>> = BTreeMap::new();
    for e in &events {
        days.entry(e.day).or_default().push(e.clone());
    }
    assert!(days.len() >= 3);
    let mut sum = vec![0.0; 4];
    for evs in days.values() {
        for (s, v) in sum.iter_mut().zip(&scan::evaluate(&q, &tz, evs)[0].metrics) {
            *s += v;
        }
    }
    assert_eq!(&sum, whole);
}

fn sums_map(groups: Vec<(Vec<String>, scan::Sums)>) -> HashMap<Vec<String>, scan::Sums> {
    groups.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// A columnar day segment answers exactly what a scan of the same day answers.
    #[test]
    fn day_segments_match_the_raw_scan(
        raws in proptest::collection::vec(raw(), 0..150),
        tz in 0..TIMEZONES.len(),
        dims in proptest::collection::vec(dimension(), 0..3),
        hour in any::<bool>(),
        filter in filter(),
    ) {
        let tz = Timezone::parse(TIMEZONES[tz]).unwrap();
        let events = build(&raws, &tz);
        let mut dims: Vec<Dimension> = dims.into_iter().flatten().collect();
        if hour {
            dims.push(Dimension::Hour);
        }
        dims.truncate(2);
        let mut days: BTreeMap<LocalDay, Vec<Event>> = BTreeMap::new();
        for e in events {
            days.entry(e.day).or_default().push(e);
        }
        for (day, evs) in days {
            let segment = footfall::query::segment::DaySegment::build(day, &tz, &evs);
            let (seg_groups, seg_total) = segment.group_sums(&dims, &filter).unwrap();
            let (scan_groups, scan_total) = scan::group_sums(&dims, &filter, &tz, &evs);
            prop_assert_eq!(seg_total, scan_total, "total on {} for {:?}", day, dims);
            prop_assert_eq!(sums_map(seg_groups), sums_map(scan_groups), "groups on {} for {:?}", day, dims);
        }
    }
}
