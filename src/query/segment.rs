//! Columnar day segments: one closed (site, local day) partition decoded once into
//! dictionary-coded columns — visits with their attributes, counting events with their
//! page, name, hostname and props. Filters compile to per-code truth tables and grouping
//! runs on integer codes, so a filtered question over a month touches only integers.
//! A segment answers exactly what `scan::group_sums` answers for the same events
//! (property-tested); it is derived data, rebuilt from raw events whenever needed.

use super::scan::{self, Sums, NO_PROP};
use super::{Condition, Dimension, Filter, VisitProperty};
use crate::domain::{counts_as_event, Event, EventKind, LocalDay, Timezone};
use chrono::{DateTime, Datelike, Timelike};
use std::collections::{HashMap, HashSet};

const VISIT_PROPERTIES: [VisitProperty; 17] = [
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
    attrs: [u32; 17],
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

pub struct DaySegment {
    day: LocalDay,
    strings: Vec<String>,
    visits: Vec<SegVisit>,
    events: Vec<SegEvent>,
    props: Vec<(u32, u32)>,
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
                let mut attrs = [0u32; 17];
                for (i, p) in VISIT_PROPERTIES.iter().enumerate() {
                    attrs[i] = dict.code(scan::visit_value(*p, v, events));
                }
                SegVisit { visitor, duration_ms: (v.last_ts - v.first_ts) as u64, bounce: v.counting == 1, attrs }
            })
            .collect();
        let mut seg_events = Vec::with_capacity(events.len());
        let mut props = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if e.facts.kind == EventKind::Engagement {
                continue;
            }
            let hour = DateTime::from_timestamp_millis(e.ts_ms).unwrap_or_default().with_timezone(&tz.tz()).hour() as u8;
            let props_start = props.len() as u32;
            for (k, v) in &e.facts.props {
                props.push((dict.code(k), dict.code(v)));
            }
            seg_events.push(SegEvent {
                visit: visit_of[i] as u32,
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
        DaySegment { day, strings: dict.strings, visits: seg_visits, events: seg_events, props }
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
        let date = self.day.date();
        match d {
            Dimension::Week => (date - chrono::Duration::days(date.weekday().num_days_from_monday() as i64)).to_string(),
            Dimension::Month => date.with_day(1).unwrap_or(date).to_string(),
            _ => date.to_string(),
        }
    }

    fn compile(&self, f: &Filter) -> Pred {
        match f {
            Filter::All => Pred::Const(true),
            Filter::And(fs) => Pred::And(fs.iter().map(|f| self.compile(f)).collect()),
            Filter::Or(fs) => Pred::Or(fs.iter().map(|f| self.compile(f)).collect()),
            Filter::Not(f) => Pred::Not(Box::new(self.compile(f))),
            Filter::Match { dimension, condition } => match dimension {
                Dimension::Page => Pred::Page(self.table(condition)),
                Dimension::Name => Pred::Name(self.table(condition)),
                Dimension::Hostname => Pred::Hostname(self.table(condition)),
                Dimension::Visit(p) => Pred::Visit(property_index(*p), self.table(condition)),
                Dimension::Prop(key) => match self.strings.iter().position(|s| s == key) {
                    Some(k) => Pred::Prop(k as u32, self.table(condition), cond_matches(condition, NO_PROP)),
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
            Dimension::Day | Dimension::Week | Dimension::Month => 0,
        }
    }

    fn key_string(&self, d: &Dimension, code: u32) -> String {
        match d {
            Dimension::Hour => format!("{} {code:02}:00:00", self.day),
            Dimension::Day | Dimension::Week | Dimension::Month => self.time_value(d),
            _ if code == NONE => NO_PROP.to_string(),
            _ => self.strings[code as usize].clone(),
        }
    }

    /// The same as `scan::group_sums` over this day's events, for up to two dimensions
    /// (returns `None` for more; the caller scans instead).
    pub fn group_sums(&self, dimensions: &[Dimension], filter: &Filter) -> Option<(Vec<(Vec<String>, Sums)>, Sums)> {
        if dimensions.len() > 2 {
            return None;
        }
        let pred = self.compile(filter);
        let prop_keys: HashMap<String, Option<u32>> = dimensions
            .iter()
            .filter_map(|d| match d {
                Dimension::Prop(k) => Some((k.clone(), self.strings.iter().position(|s| s == k).map(|c| c as u32))),
                _ => None,
            })
            .collect();
        #[derive(Default)]
        struct Acc {
            visitors: HashSet<u32>,
            visits: HashSet<u32>,
            pageviews: u64,
            events: u64,
        }
        impl Acc {
            fn add(&mut self, e: &SegEvent, visitor: u32) {
                self.visitors.insert(visitor);
                self.visits.insert(e.visit);
                self.pageviews += e.pageview as u64;
                self.events += e.counting as u64;
            }
        }
        let mut groups: HashMap<u64, Acc> = HashMap::new();
        let mut total = Acc::default();
        for e in &self.events {
            if !self.test(&pred, e) {
                continue;
            }
            let visitor = self.visits[e.visit as usize].visitor;
            let mut key = 0u64;
            for d in dimensions {
                key = (key << 32) | self.key_part(d, e, &prop_keys) as u64;
            }
            groups.entry(key).or_default().add(e, visitor);
            total.add(e, visitor);
        }
        let sums = |a: &Acc| Sums {
            visitors: a.visitors.len() as u64,
            visits: a.visits.len() as u64,
            pageviews: a.pageviews,
            events: a.events,
            bounces: a.visits.iter().filter(|v| self.visits[**v as usize].bounce).count() as u64,
            duration_ms: a.visits.iter().map(|v| self.visits[*v as usize].duration_ms).sum(),
        };
        let out = groups
            .iter()
            .map(|(key, acc)| {
                let n = dimensions.len();
                let parts: Vec<String> = dimensions
                    .iter()
                    .enumerate()
                    .map(|(i, d)| self.key_string(d, (key >> (32 * (n - 1 - i))) as u32))
                    .collect();
                (parts, sums(acc))
            })
            .collect();
        Some((out, sums(&total)))
    }
}
