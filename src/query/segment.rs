//! Columnar day segments: one closed (site, local day) partition decoded once into
//! dictionary-coded columns — visits with their attributes, counting events with their
//! page, name, hostname and props. Filters compile to per-code truth tables and grouping
//! runs on integer codes, so a filtered question over a month touches only integers.
//! A segment answers exactly what `scan::group_sums` answers for the same events
//! (property-tested); it is derived data, rebuilt from raw events whenever needed.

use super::scan::{self, GroupedSums, Sums, NO_PROP};
use super::{Condition, Dimension, Filter, VisitProperty};
use crate::domain::{counts_as_event, Event, EventKind, LocalDay, Timezone};
use chrono::{DateTime, Timelike};
use crate::visits::VisitKeyHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::OnceLock;

const VISIT_PROPERTIES: [VisitProperty; 20] = [
    VisitProperty::Source,
    VisitProperty::Referrer,
    VisitProperty::UtmSource,
    VisitProperty::UtmMedium,
    VisitProperty::UtmCampaign,
    VisitProperty::UtmContent,
    VisitProperty::UtmTerm,
    VisitProperty::Device,
    VisitProperty::Browser,
    VisitProperty::BrowserVersion,
    VisitProperty::Os,
    VisitProperty::OsVersion,
    VisitProperty::Country,
    VisitProperty::Region,
    VisitProperty::City,
    VisitProperty::CountryName,
    VisitProperty::RegionName,
    VisitProperty::CityName,
    VisitProperty::EntryPage,
    VisitProperty::ExitPage,
];

fn property_index(p: VisitProperty) -> usize {
    VISIT_PROPERTIES.iter().position(|x| *x == p).expect("every visit property is listed")
}

/// The code of an absent prop value.
const NONE: u32 = u32::MAX;

struct SegVisit {
    visitor: u32,
    duration_ms: u64,
    bounce: bool,
    /// Pageviews and counting events among the visit's (non-engagement) events.
    pageviews: u32,
    events: u32,
    /// The visit's events are `events[first_event .. first_event + event_count]`.
    first_event: u32,
    event_count: u32,
    attrs: [u32; 20],
}

struct SegEvent {
    visit: u32,
    page: u32,
    name: u32,
    hostname: u32,
    hour: u8,
    pageview: bool,
    counting: bool,
    props_start: u32,
    props_len: u16,
}

/// Events are stored ordered by (visitor, visit), and visits by visitor, so each group can
/// count distinct visits and visitors by remembering the last one it saw: once a visit's
/// (or visitor's) run of events ends, it never appears again.
/// Sums of one group, counting distinct visits and visitors by the last one seen.
struct Acc {
    last_visit: u32,
    last_visitor: u32,
    sums: Sums,
}

impl Default for Acc {
    fn default() -> Acc {
        Acc { last_visit: u32::MAX, last_visitor: u32::MAX, sums: Sums::default() }
    }
}

impl Acc {
    fn count_visit(&mut self, visit: u32, v: &SegVisit) {
        if self.last_visit != visit {
            self.last_visit = visit;
            self.sums.visits += 1;
            self.sums.bounces += v.bounce as u64;
            self.sums.duration_ms += v.duration_ms;
            if self.last_visitor != v.visitor {
                self.last_visitor = v.visitor;
                self.sums.visitors += 1;
            }
        }
    }

    fn add_event(&mut self, e: &SegEvent, v: &SegVisit) {
        self.count_visit(e.visit, v);
        self.sums.pageviews += e.pageview as u64;
        self.sums.events += e.counting as u64;
    }

    fn add_visit(&mut self, visit: u32, v: &SegVisit) {
        self.count_visit(visit, v);
        self.sums.pageviews += v.pageviews as u64;
        self.sums.events += v.events as u64;
    }
}

/// Whether a filter only reads visit properties (or a closed day's constant date), so
/// it gives one answer for all events of a visit.
fn visit_level_filter(f: &Filter) -> bool {
    match f {
        Filter::All => true,
        Filter::And(fs) | Filter::Or(fs) => fs.iter().all(visit_level_filter),
        Filter::Not(f) => visit_level_filter(f),
        Filter::HasDone(_) => true,
        Filter::Match { dimension, .. } => matches!(dimension, Dimension::Visit(_) | Dimension::Day | Dimension::Week | Dimension::Month),
    }
}

impl SegEvent {
    /// A stand-in event for testing visit-level predicates and keys, which read only
    /// the event's visit.
    fn of_visit(visit: u32) -> SegEvent {
        SegEvent { visit, page: 0, name: 0, hostname: 0, hour: 0, pageview: false, counting: false, props_start: 0, props_len: 0 }
    }
}

/// An engagement event, held as the pageview it reports on (its name reads `pageview`),
/// with what it reported.
struct SegEngagement {
    twin: SegEvent,
    scroll_depth: Option<u8>,
    engaged_ms: Option<u32>,
}

pub struct DaySegment {
    day: LocalDay,
    strings: Vec<String>,
    visits: Vec<SegVisit>,
    events: Vec<SegEvent>,
    engagements: Vec<SegEngagement>,
    /// Events with revenue: (event index, amount in millionths, currency code).
    revenue: Vec<(u32, i128, u32)>,
    props: Vec<(u32, u32)>,
    /// Event indices by page code, ascending.
    page_events: HashMap<u32, Vec<u32>>,
    /// Per visit property, visit indices by value code (ascending), built on first use.
    visit_index: Vec<OnceLock<HashMap<u32, Vec<u32>>>>,
}

#[derive(Default)]
struct Dict {
    strings: Vec<String>,
    index: HashMap<String, u32>,
}

impl Dict {
    fn code(&mut self, s: &str) -> u32 {
        if let Some(c) = self.index.get(s) {
            return *c;
        }
        let c = self.strings.len() as u32;
        self.strings.push(s.to_string());
        self.index.insert(s.to_string(), c);
        c
    }
}

/// A filter compiled against one segment's dictionary.
enum Pred {
    Const(bool),
    And(Vec<Pred>),
    Or(Vec<Pred>),
    /// Some event of the tested event's visit passes.
    HasDone(Box<Pred>),
    Not(Box<Pred>),
    /// The truth table is indexed by the code of the event's value.
    Page(Vec<bool>),
    Name(Vec<bool>),
    Hostname(Vec<bool>),
    Visit(usize, Vec<bool>),
    /// Prop key code; truth table of value codes; truth for events without the prop.
    Prop(u32, Vec<bool>, bool),
    Hour([bool; 24]),
}

fn cond_matches(c: &Condition, s: &str) -> bool {
    match c {
        Condition::Is(values) => values.iter().any(|v| v == s),
        Condition::Contains(values) => values.iter().any(|v| s.contains(v.as_str())),
        Condition::Matches(patterns) => patterns.iter().any(|p| p.is_match(s)),
    }
}

impl DaySegment {
    /// Builds the segment of one day from all of its events.
    pub fn build(day: LocalDay, tz: &Timezone, events: &[Event]) -> DaySegment {
        let (visits, visit_of) = scan::rebuild_visits(events);
        let mut dict = Dict::default();
        let mut visitors: HashMap<u64, u32> = HashMap::new();
        let seg_visits: Vec<SegVisit> = visits
            .iter()
            .map(|v| {
                let n = visitors.len() as u32;
                let visitor = *visitors.entry(v.visitor).or_insert(n);
                let mut attrs = [0u32; 20];
                for (i, p) in VISIT_PROPERTIES.iter().enumerate() {
                    attrs[i] = dict.code(scan::visit_value(*p, v, events));
                }
                SegVisit { visitor, duration_ms: (v.last_ts - v.first_ts) as u64, bounce: v.counting == 1, pageviews: 0, events: 0, first_event: 0, event_count: 0, attrs }
            })
            .collect();
        // Visits numbered in visitor order; events in (visitor, visit, time) order.
        let mut visit_order: Vec<usize> = (0..seg_visits.len()).collect();
        visit_order.sort_by_key(|&v| (seg_visits[v].visitor, v));
        let mut renumber = vec![0u32; seg_visits.len()];
        for (new, &old) in visit_order.iter().enumerate() {
            renumber[old] = new as u32;
        }
        let mut slots: Vec<Option<SegVisit>> = seg_visits.into_iter().map(Some).collect();
        let mut seg_visits: Vec<SegVisit> = visit_order.iter().map(|&old| slots[old].take().expect("each visit once")).collect();
        let mut event_order: Vec<usize> = (0..events.len()).filter(|&i| events[i].facts.kind != EventKind::Engagement).collect();
        event_order.sort_by_key(|&i| (renumber[visit_of[i]], events[i].ts_ms, i));
        let mut seg_events = Vec::with_capacity(event_order.len());
        let mut props = Vec::new();
        let mut revenue = Vec::new();
        for i in event_order {
            let e = &events[i];
            let hour = DateTime::from_timestamp_millis(e.ts_ms).unwrap_or_default().with_timezone(&tz.tz()).hour() as u8;
            let props_start = props.len() as u32;
            for (k, v) in &e.facts.props {
                props.push((dict.code(k), dict.code(v)));
            }
            let visit = renumber[visit_of[i]];
            let sv = &mut seg_visits[visit as usize];
            if sv.event_count == 0 {
                sv.first_event = seg_events.len() as u32;
            }
            sv.event_count += 1;
            sv.pageviews += (e.facts.kind == EventKind::Pageview) as u32;
            sv.events += counts_as_event(e.facts.kind, e.facts.interactive) as u32;
            if let Some(r) = &e.facts.revenue {
                if let Some(m) = super::derived::micros(&r.amount) {
                    revenue.push((seg_events.len() as u32, m, dict.code(&r.currency)));
                }
            }
            seg_events.push(SegEvent {
                visit,
                page: dict.code(&e.facts.pathname),
                name: dict.code(&e.facts.name),
                hostname: dict.code(&e.facts.hostname),
                hour,
                pageview: e.facts.kind == EventKind::Pageview,
                counting: counts_as_event(e.facts.kind, e.facts.interactive),
                props_start,
                props_len: (props.len() as u32 - props_start) as u16,
            });
        }
        // Engagement events that reported something, as pageviews of their page.
        let pageview = dict.code("pageview");
        let mut engagements = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if e.facts.kind != EventKind::Engagement || (e.facts.scroll_depth.is_none() && e.facts.engaged_ms.is_none()) {
                continue;
            }
            let props_start = props.len() as u32;
            for (k, v) in &e.facts.props {
                props.push((dict.code(k), dict.code(v)));
            }
            let twin = SegEvent {
                visit: renumber[visit_of[i]],
                page: dict.code(&e.facts.pathname),
                name: pageview,
                hostname: dict.code(&e.facts.hostname),
                hour: DateTime::from_timestamp_millis(e.ts_ms).unwrap_or_default().with_timezone(&tz.tz()).hour() as u8,
                pageview: true,
                counting: true,
                props_start,
                props_len: (props.len() as u32 - props_start) as u16,
            };
            engagements.push(SegEngagement { twin, scroll_depth: e.facts.scroll_depth, engaged_ms: e.facts.engaged_ms });
        }
        let mut page_events: HashMap<u32, Vec<u32>> = HashMap::new();
        for (i, e) in seg_events.iter().enumerate() {
            page_events.entry(e.page).or_default().push(i as u32);
        }
        let visit_index = (0..VISIT_PROPERTIES.len()).map(|_| OnceLock::new()).collect();
        DaySegment { day, strings: dict.strings, visits: seg_visits, events: seg_events, engagements, revenue, props, page_events, visit_index }
    }

    fn code_of(&self, s: &str) -> Option<u32> {
        self.strings.iter().position(|x| x == s).map(|c| c as u32)
    }

    /// The visits a filter's visit-level conjuncts select, in storage order; `None` when
    /// it has none. An `is` condition on a visit property is answered from the
    /// property's posting lists; the other visit-level conjuncts are tested per visit.
    fn visit_candidates(&self, conjuncts: &[&Filter]) -> Option<Vec<u32>> {
        let visit_level: Vec<Filter> = conjuncts.iter().filter(|c| visit_level_filter(c)).map(|c| (*c).clone()).collect();
        if visit_level.is_empty() {
            return None;
        }
        let indexed = conjuncts.iter().find_map(|c| match c {
            Filter::Match { dimension: Dimension::Visit(p), condition: Condition::Is(values) } => Some((property_index(*p), values)),
            _ => None,
        });
        let only_indexed = visit_level.len() == 1 && indexed.is_some();
        let pred = self.compile(&Filter::And(visit_level));
        let keep = |vi: &u32| only_indexed || self.test(&pred, &SegEvent::of_visit(*vi));
        Some(match indexed {
            Some((p, values)) => {
                let index = self.visit_index[p].get_or_init(|| {
                    let mut m: HashMap<u32, Vec<u32>> = HashMap::new();
                    for (vi, v) in self.visits.iter().enumerate() {
                        m.entry(v.attrs[p]).or_default().push(vi as u32);
                    }
                    m
                });
                let lists: Vec<&Vec<u32>> = values.iter().filter_map(|v| self.code_of(v)).filter_map(|c| index.get(&c)).collect();
                match lists.as_slice() {
                    // One value: its posting list is already in storage order.
                    [one] => one.iter().copied().filter(keep).collect(),
                    many => {
                        let mut out: Vec<u32> = many.iter().flat_map(|l| l.iter().copied()).filter(keep).collect();
                        out.sort_unstable();
                        out.dedup();
                        out
                    }
                }
            }
            None => (0..self.visits.len() as u32).filter(keep).collect(),
        })
    }

    /// The events a filter can possibly select, in storage order, when a conjunct of the
    /// filter narrows them cheaply: a page `is` condition (posting lists), or conditions
    /// on visit properties (tested once per visit). `None` means every event.
    fn candidates(&self, filter: &Filter) -> Option<Vec<u32>> {
        let conjuncts: Vec<&Filter> = match filter {
            Filter::And(fs) => fs.iter().collect(),
            f => vec![f],
        };
        for c in &conjuncts {
            if let Filter::Match { dimension: Dimension::Page, condition: Condition::Is(values) } = c {
                let mut out: Vec<u32> = values
                    .iter()
                    .filter_map(|v| self.code_of(v))
                    .flat_map(|code| self.page_events.get(&code).cloned().unwrap_or_default())
                    .collect();
                out.sort_unstable();
                out.dedup();
                return Some(out);
            }
        }
        let visits = self.visit_candidates(&conjuncts)?;
        let mut out = Vec::new();
        for vi in visits {
            let v = &self.visits[vi as usize];
            out.extend(v.first_event..v.first_event + v.event_count);
        }
        Some(out)
    }

    /// Counting and custom events held (for cache accounting).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn table(&self, c: &Condition) -> Vec<bool> {
        self.strings.iter().map(|s| cond_matches(c, s)).collect()
    }

    fn time_value(&self, d: &Dimension) -> String {
        d.day_bucket(self.day).expect("a day-granular dimension")
    }

    fn compile(&self, f: &Filter) -> Pred {
        match f {
            Filter::All => Pred::Const(true),
            Filter::And(fs) => Pred::And(fs.iter().map(|f| self.compile(f)).collect()),
            Filter::Or(fs) => Pred::Or(fs.iter().map(|f| self.compile(f)).collect()),
            Filter::Not(f) => Pred::Not(Box::new(self.compile(f))),
            Filter::HasDone(f) => Pred::HasDone(Box::new(self.compile(f))),
            Filter::Match { dimension, condition } => match dimension {
                Dimension::Page => Pred::Page(self.table(condition)),
                Dimension::Name => Pred::Name(self.table(condition)),
                Dimension::Hostname => Pred::Hostname(self.table(condition)),
                // Goals are rewritten into plain filters before this (query::derived);
                // like a scan, read the goal of an event as empty.
                Dimension::Goal => Pred::Const(cond_matches(condition, "")),
                Dimension::Visit(p) => Pred::Visit(property_index(*p), self.table(condition)),
                Dimension::Prop(key) => match self.code_of(key) {
                    Some(k) => Pred::Prop(k, self.table(condition), cond_matches(condition, NO_PROP)),
                    None => Pred::Const(cond_matches(condition, NO_PROP)),
                },
                Dimension::Day | Dimension::Week | Dimension::Month => Pred::Const(cond_matches(condition, &self.time_value(dimension))),
                Dimension::Hour => {
                    let mut t = [false; 24];
                    for (h, slot) in t.iter_mut().enumerate() {
                        *slot = cond_matches(condition, &format!("{} {h:02}:00:00", self.day));
                    }
                    Pred::Hour(t)
                }
            },
        }
    }

    fn prop_code(&self, e: &SegEvent, key: u32) -> u32 {
        let s = e.props_start as usize;
        self.props[s..s + e.props_len as usize].iter().find(|(k, _)| *k == key).map(|(_, v)| *v).unwrap_or(NONE)
    }

    fn test(&self, p: &Pred, e: &SegEvent) -> bool {
        match p {
            Pred::Const(b) => *b,
            Pred::And(ps) => ps.iter().all(|p| self.test(p, e)),
            Pred::Or(ps) => ps.iter().any(|p| self.test(p, e)),
            Pred::Not(p) => !self.test(p, e),
            Pred::HasDone(p) => {
                let v = &self.visits[e.visit as usize];
                (v.first_event..v.first_event + v.event_count).any(|k| self.test(p, &self.events[k as usize]))
            }
            Pred::Page(t) => t[e.page as usize],
            Pred::Name(t) => t[e.name as usize],
            Pred::Hostname(t) => t[e.hostname as usize],
            Pred::Visit(i, t) => t[self.visits[e.visit as usize].attrs[*i] as usize],
            Pred::Prop(k, t, none) => match self.prop_code(e, *k) {
                NONE => *none,
                v => t[v as usize],
            },
            Pred::Hour(t) => t[e.hour as usize],
        }
    }

    fn key_part(&self, d: &Dimension, e: &SegEvent, prop_keys: &HashMap<String, Option<u32>>) -> u32 {
        match d {
            Dimension::Page => e.page,
            Dimension::Name => e.name,
            Dimension::Hostname => e.hostname,
            Dimension::Visit(p) => self.visits[e.visit as usize].attrs[property_index(*p)],
            Dimension::Prop(k) => match prop_keys.get(k).copied().flatten() {
                Some(code) => self.prop_code(e, code),
                None => NONE,
            },
            Dimension::Hour => e.hour as u32,
            Dimension::Day | Dimension::Week | Dimension::Month | Dimension::Goal => 0,
        }
    }

    fn key_string(&self, d: &Dimension, code: u32) -> String {
        match d {
            Dimension::Hour => format!("{} {code:02}:00:00", self.day),
            Dimension::Day | Dimension::Week | Dimension::Month => self.time_value(d),
            Dimension::Goal => String::new(),
            _ if code == NONE => NO_PROP.to_string(),
            _ => self.strings[code as usize].clone(),
        }
    }

    /// The same as `scan::extra_sums` over this day's events (engagement and revenue), for
    /// up to two dimensions (`None` for more).
    pub fn extra_sums(&self, dimensions: &[Dimension], filter: &Filter) -> Option<super::derived::ExtraGroups> {
        if dimensions.len() > 2 {
            return None;
        }
        let pred = self.compile(filter);
        let prop_keys = self.prop_codes(dimensions);
        let mut out: HashMap<u64, super::derived::Extras> = HashMap::new();
        let mut engagement = super::derived::EngagementAcc::default();
        for g in &self.engagements {
            if self.test(&pred, &g.twin) {
                let key = self.group_key(dimensions, &g.twin, &prop_keys);
                engagement.add(key, g.twin.visit, || g.twin.page, g.engaged_ms, g.scroll_depth);
            }
        }
        engagement.finish_into(&mut out);
        for &(i, micros, currency) in &self.revenue {
            let e = &self.events[i as usize];
            if self.test(&pred, e) {
                out.entry(self.group_key(dimensions, e, &prop_keys)).or_default().add_revenue_micros(micros, &self.strings[currency as usize]);
            }
        }
        Some(out.into_iter().map(|(key, x)| (self.key_strings(dimensions, key), x)).collect())
    }

    /// The codes of the prop keys among `dimensions` (`None` for keys this day lacks).
    fn prop_codes(&self, dimensions: &[Dimension]) -> HashMap<String, Option<u32>> {
        dimensions
            .iter()
            .filter_map(|d| match d {
                Dimension::Prop(k) => Some((k.clone(), self.code_of(k))),
                _ => None,
            })
            .collect()
    }

    /// An event's group: its dimension codes packed 32 bits each (at most two).
    fn group_key(&self, dimensions: &[Dimension], e: &SegEvent, prop_keys: &HashMap<String, Option<u32>>) -> u64 {
        dimensions.iter().fold(0u64, |key, d| (key << 32) | self.key_part(d, e, prop_keys) as u64)
    }

    /// The dimension values of a packed group key.
    fn key_strings(&self, dimensions: &[Dimension], key: u64) -> Vec<String> {
        let n = dimensions.len();
        dimensions.iter().enumerate().map(|(i, d)| self.key_string(d, (key >> (32 * (n - 1 - i))) as u32)).collect()
    }

    /// The same as `scan::group_sums` over this day's events, for up to two dimensions
    /// (returns `None` for more; the caller scans instead).
    pub fn group_sums(&self, dimensions: &[Dimension], filter: &Filter) -> Option<GroupedSums> {
        if dimensions.len() > 2 {
            return None;
        }
        let pred = self.compile(filter);
        let prop_keys = self.prop_codes(dimensions);
        let mut groups: HashMap<u64, Acc, BuildHasherDefault<VisitKeyHasher>> = HashMap::default();
        let mut total = Acc::default();
        let visit_level = dimensions.iter().all(|d| matches!(d, Dimension::Visit(_) | Dimension::Day | Dimension::Week | Dimension::Month))
            && visit_level_filter(filter);
        if visit_level {
            // Every event of a visit gives the same answer: iterate visits.
            let conjuncts: Vec<&Filter> = match filter {
                Filter::And(fs) => fs.iter().collect(),
                f => vec![f],
            };
            let selected: Vec<u32> = match self.visit_candidates(&conjuncts) {
                Some(visits) => visits,
                None => (0..self.visits.len() as u32).collect(),
            };
            for vi in selected {
                let v = &self.visits[vi as usize];
                let vi = vi as usize;
                let e = SegEvent::of_visit(vi as u32);
                if !self.test(&pred, &e) {
                    continue;
                }
                let key = self.group_key(dimensions, &e, &prop_keys);
                groups.entry(key).or_default().add_visit(vi as u32, v);
                total.add_visit(vi as u32, v);
            }
        } else {
            let candidates = self.candidates(filter);
            let all = 0..self.events.len() as u32;
            let indices: Box<dyn Iterator<Item = u32>> = match &candidates {
                Some(list) => Box::new(list.iter().copied()),
                None => Box::new(all),
            };
            for i in indices {
                let e = &self.events[i as usize];
                if !self.test(&pred, e) {
                    continue;
                }
                let v = &self.visits[e.visit as usize];
                let key = self.group_key(dimensions, e, &prop_keys);
                groups.entry(key).or_default().add_event(e, v);
                total.add_event(e, v);
            }
        }
        let out = groups.iter().map(|(key, acc)| (self.key_strings(dimensions, *key), acc.sums)).collect();
        Some((out, total.sums))
    }
}
