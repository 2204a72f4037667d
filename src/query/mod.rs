//! The query model: one typed question about a site's traffic, asked by the stats API,
//! the dashboard, reports and alerts alike. Wire formats (Plausible's JSON) are parsed
//! into it at the edge; this module knows nothing about JSON or SQL.

pub mod derived;
pub mod engine;
pub mod range;
pub mod scan;
pub mod segment;

use crate::domain::LocalDay;
use chrono::Datelike;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Visitors,
    Visits,
    Pageviews,
    Events,
    ViewsPerVisit,
    BounceRate,
    VisitDuration,
    Percentage,
    /// % of visitors who completed the goal, of all visitors without the goal filter.
    ConversionRate,
    /// Like `ConversionRate`, with the divisor taken per dimension group.
    GroupConversionRate,
    /// Mean over (visit, page) of the deepest scroll reported by engagement events.
    ScrollDepth,
    /// Engaged seconds on the page per visit that reported engagement there.
    TimeOnPage,
    /// Sum of the revenue sent with the selected events (one currency).
    TotalRevenue,
    /// `TotalRevenue` per event that carried revenue.
    AverageRevenue,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "visitors" => Metric::Visitors,
            "visits" => Metric::Visits,
            "pageviews" => Metric::Pageviews,
            "events" => Metric::Events,
            "views_per_visit" => Metric::ViewsPerVisit,
            "bounce_rate" => Metric::BounceRate,
            "visit_duration" => Metric::VisitDuration,
            "percentage" => Metric::Percentage,
            "conversion_rate" => Metric::ConversionRate,
            "group_conversion_rate" => Metric::GroupConversionRate,
            "scroll_depth" => Metric::ScrollDepth,
            "time_on_page" => Metric::TimeOnPage,
            "total_revenue" => Metric::TotalRevenue,
            "average_revenue" => Metric::AverageRevenue,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Metric::Visitors => "visitors",
            Metric::Visits => "visits",
            Metric::Pageviews => "pageviews",
            Metric::Events => "events",
            Metric::ViewsPerVisit => "views_per_visit",
            Metric::BounceRate => "bounce_rate",
            Metric::VisitDuration => "visit_duration",
            Metric::Percentage => "percentage",
            Metric::ConversionRate => "conversion_rate",
            Metric::GroupConversionRate => "group_conversion_rate",
            Metric::ScrollDepth => "scroll_depth",
            Metric::TimeOnPage => "time_on_page",
            Metric::TotalRevenue => "total_revenue",
            Metric::AverageRevenue => "average_revenue",
        }
    }

    /// Whether the metric comes straight from a selection's integer sums; the others need
    /// a second selection (conversion rates) or engagement events (see `derived`).
    pub fn is_core(self) -> bool {
        !matches!(
            self,
            Metric::ConversionRate
                | Metric::GroupConversionRate
                | Metric::ScrollDepth
                | Metric::TimeOnPage
                | Metric::TotalRevenue
                | Metric::AverageRevenue
        )
    }
}

/// Properties of a visit, taken from its first event (entry page: first pageview; exit
/// page: last pageview).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VisitProperty {
    Source,
    Referrer,
    UtmSource,
    UtmMedium,
    UtmCampaign,
    UtmContent,
    UtmTerm,
    Device,
    Browser,
    BrowserVersion,
    Os,
    OsVersion,
    Country,
    Region,
    City,
    /// English names: of the country (from its ISO code), of the region and of the city
    /// (from the GeoIP database). `visit:city` holds the city's name too: Footfall does
    /// not keep GeoNames ids.
    CountryName,
    RegionName,
    CityName,
    EntryPage,
    ExitPage,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// `event:page`: the event's pathname.
    Page,
    /// `event:name`.
    Name,
    /// `event:hostname`.
    Hostname,
    /// `event:goal`: the display name of each of the site's goals the event completes.
    Goal,
    /// `event:props:<key>`; events without the prop have the value `(none)`.
    Prop(String),
    Visit(VisitProperty),
    /// `time:day`: the event's local date, `YYYY-MM-DD`.
    Day,
    /// `time:hour`: the event's local hour, `YYYY-MM-DD HH:00:00`.
    Hour,
    /// `time:week`: the local date of the Monday starting the event's week.
    Week,
    /// `time:month`: the local date of the first of the event's month.
    Month,
}

impl Dimension {
    pub fn is_time(&self) -> bool {
        matches!(self, Dimension::Day | Dimension::Hour | Dimension::Week | Dimension::Month)
    }

    /// The label of the bucket holding a local day, for the day-granular time dimensions
    /// (`time:day|week|month`); `None` for every other dimension.
    pub fn day_bucket(&self, day: LocalDay) -> Option<String> {
        let date = day.date();
        match self {
            Dimension::Day => Some(date.to_string()),
            Dimension::Week => Some((date - chrono::Duration::days(date.weekday().num_days_from_monday() as i64)).to_string()),
            Dimension::Month => Some(date.with_day(1).unwrap_or(date).to_string()),
            _ => None,
        }
    }

    /// Every bucket of a day-granular time dimension over the local days `first..=last`,
    /// in order, so that empty buckets can be listed too.
    pub fn day_buckets(&self, first: LocalDay, last: LocalDay) -> Option<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let mut day = first;
        while day <= last {
            let label = self.day_bucket(day)?;
            if out.last() != Some(&label) {
                out.push(label);
            }
            day = day.next();
        }
        Some(out)
    }
}

impl Dimension {
    pub fn parse(s: &str) -> Option<Dimension> {
        use VisitProperty as V;
        Some(match s {
            "event:page" => Dimension::Page,
            "event:name" => Dimension::Name,
            "event:hostname" => Dimension::Hostname,
            "event:goal" => Dimension::Goal,
            "time:day" | "time" => Dimension::Day,
            "time:hour" => Dimension::Hour,
            "time:week" => Dimension::Week,
            "time:month" => Dimension::Month,
            "visit:source" => Dimension::Visit(V::Source),
            "visit:referrer" => Dimension::Visit(V::Referrer),
            "visit:utm_source" => Dimension::Visit(V::UtmSource),
            "visit:utm_medium" => Dimension::Visit(V::UtmMedium),
            "visit:utm_campaign" => Dimension::Visit(V::UtmCampaign),
            "visit:utm_content" => Dimension::Visit(V::UtmContent),
            "visit:utm_term" => Dimension::Visit(V::UtmTerm),
            "visit:device" => Dimension::Visit(V::Device),
            "visit:browser" => Dimension::Visit(V::Browser),
            "visit:browser_version" => Dimension::Visit(V::BrowserVersion),
            "visit:os" => Dimension::Visit(V::Os),
            "visit:os_version" => Dimension::Visit(V::OsVersion),
            "visit:country" => Dimension::Visit(V::Country),
            "visit:region" => Dimension::Visit(V::Region),
            "visit:city" => Dimension::Visit(V::City),
            "visit:country_name" => Dimension::Visit(V::CountryName),
            "visit:region_name" => Dimension::Visit(V::RegionName),
            "visit:city_name" => Dimension::Visit(V::CityName),
            "visit:entry_page" => Dimension::Visit(V::EntryPage),
            "visit:exit_page" => Dimension::Visit(V::ExitPage),
            other => match other.strip_prefix("event:props:") {
                Some(key) if !key.is_empty() => Dimension::Prop(key.to_string()),
                _ => return None,
            },
        })
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use VisitProperty as V;
        let s = match self {
            Dimension::Page => "event:page",
            Dimension::Name => "event:name",
            Dimension::Hostname => "event:hostname",
            Dimension::Goal => "event:goal",
            Dimension::Prop(k) => return write!(f, "event:props:{k}"),
            Dimension::Day => "time:day",
            Dimension::Hour => "time:hour",
            Dimension::Week => "time:week",
            Dimension::Month => "time:month",
            Dimension::Visit(p) => match p {
                V::Source => "visit:source",
                V::Referrer => "visit:referrer",
                V::UtmSource => "visit:utm_source",
                V::UtmMedium => "visit:utm_medium",
                V::UtmCampaign => "visit:utm_campaign",
                V::UtmContent => "visit:utm_content",
                V::UtmTerm => "visit:utm_term",
                V::Device => "visit:device",
                V::Browser => "visit:browser",
                V::BrowserVersion => "visit:browser_version",
                V::Os => "visit:os",
                V::OsVersion => "visit:os_version",
                V::Country => "visit:country",
                V::Region => "visit:region",
                V::City => "visit:city",
                V::CountryName => "visit:country_name",
                V::RegionName => "visit:region_name",
                V::CityName => "visit:city_name",
                V::EntryPage => "visit:entry_page",
                V::ExitPage => "visit:exit_page",
            },
        };
        f.write_str(s)
    }
}

#[derive(Debug, Clone)]
pub enum Condition {
    Is(Vec<String>),
    Contains(Vec<String>),
    /// Regular expressions, matched anywhere in the value unless anchored.
    Matches(Vec<regex::Regex>),
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Condition::Is(a), Condition::Is(b)) | (Condition::Contains(a), Condition::Contains(b)) => a == b,
            (Condition::Matches(a), Condition::Matches(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_str() == y.as_str())
            }
            _ => false,
        }
    }
}

/// A filter is a predicate on events. `visit:*` dimensions are read from the event's
/// visit, so a filter on them alone selects whole visits (SPEC §3).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All,
    Match { dimension: Dimension, condition: Condition },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// Selects whole visits with at least one (non-engagement) event matching the inner
    /// filter (`has_done`; `has_not_done` is its negation).
    HasDone(Box<Filter>),
}

impl Filter {
    /// Whether the filter reads `dim` anywhere.
    pub fn mentions(&self, dim: &Dimension) -> bool {
        match self {
            Filter::All => false,
            Filter::Match { dimension, .. } => dimension == dim,
            Filter::And(fs) | Filter::Or(fs) => fs.iter().any(|f| f.mentions(dim)),
            Filter::Not(f) | Filter::HasDone(f) => f.mentions(dim),
        }
    }
}

/// A question about one site's events. The time range is resolved to UTC milliseconds
/// by the caller (from the site's timezone) before it gets here.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsQuery {
    pub metrics: Vec<Metric>,
    pub dimensions: Vec<Dimension>,
    pub filter: Filter,
}

impl StatsQuery {
    /// Checks what a metric needs from the rest of the question, as Plausible does.
    pub fn validate(&self) -> Result<(), String> {
        let has = |d: &Dimension| self.dimensions.contains(d) || self.filter.mentions(d);
        for m in &self.metrics {
            match m {
                Metric::ConversionRate | Metric::GroupConversionRate | Metric::TotalRevenue | Metric::AverageRevenue if !has(&Dimension::Goal) => {
                    return Err(format!("metrics: {} requires an event:goal filter or dimension", m.name()));
                }
                Metric::ScrollDepth | Metric::TimeOnPage if !has(&Dimension::Page) => {
                    return Err(format!("metrics: {} requires an event:page filter or dimension", m.name()));
                }
                Metric::Percentage if self.dimensions.is_empty() => {
                    return Err("metrics: percentage requires a dimension".into());
                }
                _ => {}
            }
        }
        if self.dimensions.iter().filter(|d| **d == Dimension::Goal).count() > 1 {
            return Err("dimensions: event:goal is listed twice".into());
        }
        Ok(())
    }
}

/// One result row: dimension values in query order, metric values in query order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub dimensions: Vec<String>,
    pub metrics: Vec<f64>,
    /// The currency of the row's revenue metrics, when asked and in one currency.
    pub currency: Option<String>,
}
