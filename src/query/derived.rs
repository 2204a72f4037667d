//! Questions that need more than one selection: goals (`event:goal` as a filter or a
//! dimension), conversion rates, the engagement metrics (`scroll_depth`, `time_on_page`)
//! and revenue. A `Plan` rewrites such a question into plain questions — only core
//! metrics, no goals — that every path answers (rollups, segments, raw scans), plus
//! engagement and revenue sums (`Extras`), and then combines their answers.
//!
//! - A goal filter becomes a filter on what completes the goals it names: a pageview goal
//!   is `event:name is pageview` and `event:page` matching its path pattern; an event goal
//!   is `event:name is NAME`.
//! - A goal dimension becomes one plain question per goal, with that goal's filter added.
//! - `conversion_rate` divides a row's visitors by the visitors of the question without its
//!   top-level goal filters and without dimensions; `group_conversion_rate` by those of the
//!   same dimension group.
//! - `percentage` in a goal breakdown is relative to the visitors who completed any of the
//!   site's goals.

use super::scan;
use super::{Condition, Dimension, Filter, Metric, Row, StatsQuery};
use crate::domain::{Goal, GoalKind};
use std::collections::HashMap;

/// Sums of one group beyond the core ones. Like `Sums`, they add up across days: visits
/// never cross a local midnight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// Visits with engaged time reported on the group's pages, and that time.
    pub time_visits: u64,
    pub engaged_ms: u64,
    /// (visit, page) pairs with a scroll depth reported, and the sum of their deepest.
    pub scroll_pairs: u64,
    pub scroll_sum: u64,
    /// Events with revenue, and its exact sum in millionths of the currency unit.
    pub revenue_events: u64,
    pub revenue_micros: i128,
    /// The revenue's currency; `Mixed` when the group's events used several.
    pub currency: Currency,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Currency {
    #[default]
    None,
    One(String),
    Mixed,
}

/// A decimal amount in millionths (digits past the sixth decimal are dropped).
pub fn micros(amount: &str) -> Option<i128> {
    let (neg, digits) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, amount),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty() || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || whole.len() > 24 {
        return None;
    }
    let frac6: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
    let v = whole.parse::<i128>().unwrap_or(0) * 1_000_000 + frac6.parse::<i128>().ok()?;
    Some(if neg { -v } else { v })
}

impl Extras {
    pub fn add(&mut self, o: &Extras) {
        self.time_visits += o.time_visits;
        self.engaged_ms += o.engaged_ms;
        self.scroll_pairs += o.scroll_pairs;
        self.scroll_sum += o.scroll_sum;
        self.revenue_events += o.revenue_events;
        self.revenue_micros += o.revenue_micros;
        self.currency = match (std::mem::take(&mut self.currency), &o.currency) {
            (c, Currency::None) => c,
            (Currency::None, c) => c.clone(),
            (Currency::One(a), Currency::One(b)) if a == *b => Currency::One(a),
            _ => Currency::Mixed,
        };
    }

    pub fn add_revenue(&mut self, amount: &str, currency: &str) {
        if let Some(m) = micros(amount) {
            self.add_revenue_micros(m, currency);
        }
    }

    pub fn add_revenue_micros(&mut self, micros: i128, currency: &str) {
        self.add(&Extras { revenue_events: 1, revenue_micros: micros, currency: Currency::One(currency.to_string()), ..Extras::default() });
    }

    /// `None` when nothing was reported (the API answers `null`).
    pub fn scroll_depth(&self) -> Option<f64> {
        (self.scroll_pairs > 0).then(|| self.scroll_sum as f64 / self.scroll_pairs as f64)
    }

    pub fn time_on_page(&self) -> Option<f64> {
        (self.time_visits > 0).then(|| self.engaged_ms as f64 / 1000.0 / self.time_visits as f64)
    }

    /// Total and average revenue, when the group's revenue is in one currency.
    pub fn revenue(&self) -> Option<(f64, f64, &str)> {
        match &self.currency {
            Currency::One(c) if self.revenue_events > 0 => {
                let total = self.revenue_micros as f64 / 1e6;
                Some((total, total / self.revenue_events as f64, c))
            }
            _ => None,
        }
    }
}

/// Collects engagement per group while events are read: the visits with engaged time and
/// that time, and each (visit, page)'s deepest scroll. `K` keys groups, `V` visits and
/// `P` pages, as each reader numbers them.
pub struct EngagementAcc<K, V, P> {
    time: HashMap<K, (std::collections::HashSet<V>, u64)>,
    scroll: HashMap<K, HashMap<(V, P), u8>>,
}

impl<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq, P: std::hash::Hash + Eq> Default for EngagementAcc<K, V, P> {
    fn default() -> Self {
        EngagementAcc { time: HashMap::new(), scroll: HashMap::new() }
    }
}

impl<K: std::hash::Hash + Eq + Clone, V: std::hash::Hash + Eq + Copy, P: std::hash::Hash + Eq> EngagementAcc<K, V, P> {
    /// One engagement event of `visit` on `page`, with what it reported.
    pub fn add(&mut self, key: K, visit: V, page: impl FnOnce() -> P, engaged_ms: Option<u32>, scroll_depth: Option<u8>) {
        if let Some(ms) = engaged_ms {
            let t = self.time.entry(key.clone()).or_default();
            t.0.insert(visit);
            t.1 += ms as u64;
        }
        if let Some(sd) = scroll_depth {
            let deepest = self.scroll.entry(key).or_default().entry((visit, page())).or_insert(0);
            *deepest = (*deepest).max(sd);
        }
    }

    /// Adds the collected sums to `out`.
    pub fn finish_into(self, out: &mut HashMap<K, Extras>) {
        for (key, (visits, ms)) in self.time {
            let x = out.entry(key).or_default();
            x.time_visits = visits.len() as u64;
            x.engaged_ms = ms;
        }
        for (key, pairs) in self.scroll {
            let x = out.entry(key).or_default();
            x.scroll_pairs = pairs.len() as u64;
            x.scroll_sum = pairs.values().map(|&d| d as u64).sum();
        }
    }
}

/// Extras sums per group, keyed by dimension values.
pub type ExtraGroups = HashMap<Vec<String>, Extras>;

/// Whether `q` can be answered by one plain selection.
pub fn is_plain(q: &StatsQuery) -> bool {
    q.metrics.iter().all(|m| m.is_core()) && !q.dimensions.contains(&Dimension::Goal) && !q.filter.mentions(&Dimension::Goal)
}

/// Whether answering `q` needs the site's goals.
pub fn needs_goals(q: &StatsQuery) -> bool {
    q.dimensions.contains(&Dimension::Goal) || q.filter.mentions(&Dimension::Goal)
}

/// What completes `goal`, as a filter on plain dimensions.
pub fn goal_filter(goal: &Goal) -> Filter {
    let name = |n: &str| Filter::Match { dimension: Dimension::Name, condition: Condition::Is(vec![n.to_string()]) };
    match &goal.kind {
        GoalKind::Event(n) => name(n),
        GoalKind::Page(pattern) => {
            // Escaped literals and `.*`: always a valid, small expression.
            let re = regex::Regex::new(&Goal::page_regex(pattern)).expect("an escaped page pattern is a valid regex");
            Filter::And(vec![name("pageview"), Filter::Match { dimension: Dimension::Page, condition: Condition::Matches(vec![re]) }])
        }
    }
}

/// The goals a condition on `event:goal` selects, by display name.
pub fn selected_goals<'a>(condition: &Condition, goals: &'a [Goal]) -> Vec<&'a Goal> {
    goals
        .iter()
        .filter(|g| match condition {
            Condition::Is(names) => names.contains(&g.display_name),
            Condition::Contains(parts) => parts.iter().any(|p| g.display_name.contains(p.as_str())),
            Condition::Matches(res) => res.iter().any(|r| r.is_match(&g.display_name)),
        })
        .collect()
}

/// Replaces every goal condition in `f` by what completes the goals it selects.
fn expand(f: &Filter, goals: &[Goal]) -> Filter {
    match f {
        Filter::All => Filter::All,
        Filter::Match { dimension: Dimension::Goal, condition } => {
            // No goal selected: an empty `or`, which nothing matches.
            Filter::Or(selected_goals(condition, goals).into_iter().map(goal_filter).collect())
        }
        Filter::Match { .. } => f.clone(),
        Filter::And(fs) => Filter::And(fs.iter().map(|f| expand(f, goals)).collect()),
        Filter::Or(fs) => Filter::Or(fs.iter().map(|f| expand(f, goals)).collect()),
        Filter::Not(f) => Filter::Not(Box::new(expand(f, goals))),
        Filter::HasDone(f) => Filter::HasDone(Box::new(expand(f, goals))),
    }
}

/// `f` without its top-level goal conditions: the selection conversion rates divide by.
fn without_goal_filters(f: &Filter) -> Filter {
    let is_goal = |f: &Filter| matches!(f, Filter::Match { dimension: Dimension::Goal, .. });
    match f {
        f if is_goal(f) => Filter::All,
        Filter::And(fs) => {
            let rest: Vec<Filter> = fs.iter().filter(|f| !is_goal(f)).cloned().collect();
            if rest.is_empty() {
                Filter::All
            } else {
                Filter::And(rest)
            }
        }
        other => other.clone(),
    }
}

fn and(a: Filter, b: Filter) -> Filter {
    match a {
        Filter::All => b,
        a => Filter::And(vec![a, b]),
    }
}

/// A question rewritten into plain parts.
pub struct Plan {
    q: StatsQuery,
    /// Position of `event:goal` among the question's dimensions.
    goal_dim: Option<usize>,
    /// The plain questions to answer, in order; answers are passed back in the same order.
    pub parts: Vec<StatsQuery>,
    /// For each main part (one per goal in a goal breakdown, else one): the goal's name.
    mains: Vec<(usize, Option<String>)>,
    base_total: Option<usize>,
    base_groups: Option<usize>,
    union_total: Option<usize>,
    /// Selections whose engagement and revenue to sum, one per main part, when those
    /// metrics are asked.
    pub extras: Vec<(Vec<Dimension>, Filter)>,
    core: Vec<Metric>,
}

impl Plan {
    /// `goals` are the site's goals (needed only when the question names `event:goal`).
    pub fn new(q: &StatsQuery, goals: &[Goal]) -> Plan {
        let goal_dim = q.dimensions.iter().position(|d| *d == Dimension::Goal);
        let dims: Vec<Dimension> = q.dimensions.iter().filter(|d| **d != Dimension::Goal).cloned().collect();
        let filter = expand(&q.filter, goals);
        // Visitors and events are always asked: rates divide by visitors, and a goal
        // without conversions is left out of a goal breakdown.
        let mut core: Vec<Metric> = q.metrics.iter().copied().filter(|m| m.is_core() && *m != Metric::Percentage).collect();
        for m in [Metric::Visitors, Metric::Events] {
            if !core.contains(&m) {
                core.push(m);
            }
        }
        let plain = |dims: Vec<Dimension>, filter: Filter| StatsQuery { metrics: core.clone(), dimensions: dims, filter };
        let mut parts = Vec::new();
        let mut mains = Vec::new();
        let mut extras = Vec::new();
        let wants_extras =
            q.metrics.iter().any(|m| matches!(m, Metric::ScrollDepth | Metric::TimeOnPage | Metric::TotalRevenue | Metric::AverageRevenue));
        let mut add_main = |filter: Filter, goal: Option<String>, parts: &mut Vec<StatsQuery>| {
            if wants_extras {
                extras.push((dims.clone(), filter.clone()));
            }
            parts.push(plain(dims.clone(), filter));
            mains.push((parts.len() - 1, goal));
        };
        match goal_dim {
            Some(_) => {
                for g in goals {
                    add_main(and(filter.clone(), goal_filter(g)), Some(g.display_name.clone()), &mut parts);
                }
            }
            None => add_main(filter.clone(), None, &mut parts),
        }
        let push = |q: StatsQuery, parts: &mut Vec<StatsQuery>| {
            parts.push(q);
            Some(parts.len() - 1)
        };
        let base = expand(&without_goal_filters(&q.filter), goals);
        let base_total = if q.metrics.contains(&Metric::ConversionRate) { push(plain(vec![], base.clone()), &mut parts) } else { None };
        let base_groups =
            if q.metrics.contains(&Metric::GroupConversionRate) { push(plain(dims.clone(), base.clone()), &mut parts) } else { None };
        let union_total = if q.metrics.contains(&Metric::Percentage) {
            let selection = match goal_dim {
                Some(_) => and(filter.clone(), Filter::Or(goals.iter().map(goal_filter).collect())),
                None => filter.clone(),
            };
            push(plain(vec![], selection), &mut parts)
        } else {
            None
        };
        Plan { q: q.clone(), goal_dim, parts, mains, base_total, base_groups, union_total, extras, core }
    }

    /// Combines the answers to `parts` (same order) and the sums of `extras` (same order)
    /// into the question's rows.
    pub fn combine(&self, answers: Vec<Vec<Row>>, extras: Vec<ExtraGroups>) -> Vec<Row> {
        let at = |m: Metric| self.core.iter().position(|c| *c == m).expect("visitors and events are always asked");
        let (visitors_at, events_at) = (at(Metric::Visitors), at(Metric::Events));
        let total_visitors = |i: Option<usize>| i.and_then(|i| answers[i].first()).map(|r| r.metrics[visitors_at]).unwrap_or(0.0);
        let base_total = total_visitors(self.base_total);
        let union_total = total_visitors(self.union_total);
        let base_groups: HashMap<&[String], f64> = self
            .base_groups
            .map(|i| answers[i].iter().map(|r| (r.dimensions.as_slice(), r.metrics[visitors_at])).collect())
            .unwrap_or_default();
        let rate = |part: f64, whole: f64| if whole > 0.0 { 100.0 * part / whole } else { 0.0 };
        let mut rows = Vec::new();
        for (main_no, (part, goal)) in self.mains.iter().enumerate() {
            for row in &answers[*part] {
                let visitors = row.metrics[visitors_at];
                if goal.is_some() && visitors == 0.0 && row.metrics[events_at] == 0.0 {
                    continue;
                }
                let none = Extras::default();
                let eng = extras.get(main_no).and_then(|e| e.get(&row.dimensions)).unwrap_or(&none);
                let metrics = self
                    .q
                    .metrics
                    .iter()
                    .map(|m| match m {
                        Metric::ConversionRate => rate(visitors, base_total),
                        Metric::GroupConversionRate => rate(visitors, base_groups.get(row.dimensions.as_slice()).copied().unwrap_or(0.0)),
                        Metric::Percentage => rate(visitors, union_total),
                        Metric::ScrollDepth => eng.scroll_depth().unwrap_or(f64::NAN),
                        Metric::TimeOnPage => eng.time_on_page().unwrap_or(f64::NAN),
                        Metric::TotalRevenue => eng.revenue().map(|r| r.0).unwrap_or(f64::NAN),
                        Metric::AverageRevenue => eng.revenue().map(|r| r.1).unwrap_or(f64::NAN),
                        core => row.metrics[at(*core)],
                    })
                    .collect();
                let mut dimensions = row.dimensions.clone();
                if let (Some(pos), Some(name)) = (self.goal_dim, goal) {
                    dimensions.insert(pos, name.clone());
                }
                rows.push(Row { dimensions, metrics, currency: eng.revenue().map(|r| r.2.to_string()) });
            }
        }
        scan::sort_rows(&self.q, &mut rows);
        rows
    }
}

/// Answers a question that may not be plain from one site's events in its range, by
/// scanning: the reference the planner's faster paths are compared with.
pub fn evaluate(q: &StatsQuery, goals: &[Goal], tz: &crate::domain::Timezone, events: &[crate::domain::Event]) -> Vec<Row> {
    let plan = Plan::new(q, goals);
    let answers = plan.parts.iter().map(|p| scan::evaluate(p, tz, events)).collect();
    let extras = plan.extras.iter().map(|(dims, filter)| scan::extra_sums(dims, filter, tz, events)).collect();
    plan.combine(answers, extras)
}
