//! Domain types shared by every layer. Constructors reject bad input, so a value of one of
//! these types is valid wherever it travels ("parse, don't validate").

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use std::fmt;
use std::str::FromStr;

/// A site's domain as its owner registered it: lower case, trimmed, without a leading
/// `www.`. It does not have to resolve (mobile apps use names like `my.app`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    pub fn parse(raw: &str) -> Result<Domain, String> {
        let d = raw.trim().to_ascii_lowercase();
        let d = d.strip_prefix("www.").unwrap_or(&d).to_string();
        if d.is_empty() {
            return Err("domain is empty".into());
        }
        if d.len() > 253 {
            return Err("domain is longer than 253 bytes".into());
        }
        if let Some(c) = d
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
        {
            return Err(format!("domain contains the character {c:?}"));
        }
        Ok(Domain(d))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IANA timezone such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timezone(chrono_tz::Tz);

impl Timezone {
    pub fn parse(raw: &str) -> Result<Timezone, String> {
        chrono_tz::Tz::from_str(raw.trim())
            .map(Timezone)
            .map_err(|_| format!("unknown timezone {raw:?} (expected an IANA name such as Europe/Berlin)"))
    }
    pub fn utc() -> Timezone {
        Timezone(chrono_tz::UTC)
    }
    pub fn name(&self) -> &'static str {
        self.0.name()
    }
    pub fn tz(&self) -> chrono_tz::Tz {
        self.0
    }

    /// The local calendar day that contains the instant `ts_ms`.
    pub fn local_day(&self, ts_ms: i64) -> LocalDay {
        let utc = DateTime::<Utc>::from_timestamp_millis(ts_ms).unwrap_or_default();
        LocalDay::from_date(utc.with_timezone(&self.0).date_naive())
    }

    /// The half-open UTC range `[start, end)` in milliseconds covered by a local day.
    /// Days around DST changes are 23 or 25 hours long, and a day may even start at a
    /// time other than midnight where a transition skips it.
    pub fn day_bounds(&self, day: LocalDay) -> (i64, i64) {
        (self.day_start(day), self.day_start(day.next()))
    }

    fn day_start(&self, day: LocalDay) -> i64 {
        let midnight: NaiveDateTime = day.date().and_hms_opt(0, 0, 0).expect("midnight exists");
        // Walk forward minute by minute over a skipped local midnight (a DST gap).
        let mut t = midnight;
        for _ in 0..(24 * 60) {
            if let Some(dt) = self.0.from_local_datetime(&t).earliest() {
                return dt.timestamp_millis();
            }
            t += chrono::Duration::minutes(1);
        }
        Utc.from_utc_datetime(&midnight).timestamp_millis()
    }
}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A local calendar day, as the number of days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalDay(pub i32);

impl LocalDay {
    const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
        Some(d) => d,
        None => panic!("epoch"),
    };
    pub fn from_date(d: NaiveDate) -> LocalDay {
        LocalDay((d - Self::EPOCH).num_days() as i32)
    }
    pub fn date(self) -> NaiveDate {
        Self::EPOCH + chrono::Duration::days(self.0 as i64)
    }
    pub fn next(self) -> LocalDay {
        LocalDay(self.0 + 1)
    }
}

impl fmt::Display for LocalDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(pub i64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub id: SiteId,
    pub domain: Domain,
    pub timezone: Timezone,
}

/// A visitor on one site on one local day (see `identity`). Stored as the bit pattern of
/// an `i64` because both SQLite and PostgreSQL integers are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitorId(pub u64);

/// One visit (session) of a visitor: derived from the visitor and the visit's first
/// event time, so every code path that splits visits names them identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Pageview,
    Custom,
    /// Scroll depth and engaged time reported when a page is hidden or left. Never counted
    /// as an event or a pageview; it only extends its visit.
    Engagement,
}

impl EventKind {
    pub fn from_name(name: &str) -> EventKind {
        match name {
            "pageview" => EventKind::Pageview,
            "engagement" => EventKind::Engagement,
            _ => EventKind::Custom,
        }
    }
    pub fn code(self) -> i64 {
        match self {
            EventKind::Pageview => 0,
            EventKind::Custom => 1,
            EventKind::Engagement => 2,
        }
    }
    pub fn from_code(code: i64) -> Option<EventKind> {
        match code {
            0 => Some(EventKind::Pageview),
            1 => Some(EventKind::Custom),
            2 => Some(EventKind::Engagement),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Utm {
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub content: String,
    pub term: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revenue {
    /// Decimal amount as sent, normalised (no exponent), so no float rounding creeps in.
    pub amount: String,
    /// ISO 4217 code, upper case.
    pub currency: String,
}

/// What the client and the environment told us about one event, after validation and
/// enrichment, before identity is attached. Absent text values are empty strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFacts {
    pub kind: EventKind,
    pub name: String,
    pub interactive: bool,
    pub hostname: String,
    pub pathname: String,
    pub referrer: String,
    pub source: String,
    pub utm: Utm,
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: String,
    pub country: String,
    pub region: String,
    /// The region's English name, where the GeoIP database has one.
    pub region_name: String,
    pub city: String,
    pub props: Vec<(String, String)>,
    pub revenue: Option<Revenue>,
    pub scroll_depth: Option<u8>,
    pub engaged_ms: Option<u32>,
}

/// A stored event: facts plus time and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub site_id: SiteId,
    pub ts_ms: i64,
    pub day: LocalDay,
    pub visitor_id: VisitorId,
    pub visit_id: VisitId,
    pub facts: EventFacts,
}

/// Counting events are pageviews and custom events unless sent with
/// `interactive: false` (SPEC §3).
pub fn counts_as_event(kind: EventKind, interactive: bool) -> bool {
    match kind {
        EventKind::Pageview => true,
        EventKind::Custom => interactive,
        EventKind::Engagement => false,
    }
}

/// What completes a goal: a pageview of a path (with `*` wildcards), or a custom event
/// with a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoalKind {
    Page(String),
    Event(String),
}

/// A site's goal, named in queries (`event:goal`) by its display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goal {
    pub display_name: String,
    pub kind: GoalKind,
}

impl Goal {
    /// A goal with its default display name: `Visit /path` for a page goal, the event
    /// name for an event goal (as in Plausible).
    pub fn new(kind: GoalKind, display_name: Option<String>) -> Result<Goal, String> {
        let (what, value) = match &kind {
            GoalKind::Page(p) => ("page path", p),
            GoalKind::Event(n) => ("event name", n),
        };
        if value.trim().is_empty() || value.len() > 2000 {
            return Err(format!("the goal's {what} must be 1 to 2000 characters"));
        }
        if let GoalKind::Page(p) = &kind {
            if !p.starts_with('/') {
                return Err(format!("the goal's page path must start with '/', got {p:?}"));
            }
        }
        let display_name = match display_name {
            Some(n) if n.trim().is_empty() => return Err("the goal's display name must not be empty".into()),
            Some(n) => n,
            None => match &kind {
                GoalKind::Page(p) => format!("Visit {p}"),
                GoalKind::Event(n) => n.clone(),
            },
        };
        Ok(Goal { display_name, kind })
    }

    /// The anchored regular expression of a page goal's path: `*` matches any run of
    /// characters, everything else is literal.
    pub fn page_regex(pattern: &str) -> String {
        let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
        format!("^{}$", parts.join(".*"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_normalises_and_rejects() {
        assert_eq!(Domain::parse(" WWW.Example.com ").unwrap().as_str(), "example.com");
        assert_eq!(Domain::parse("my.app:8080").unwrap().as_str(), "my.app:8080");
        for bad in ["", "   ", "a b.com", "example.com/path", "a,b"] {
            assert!(Domain::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn local_days_follow_the_timezone() {
        let berlin = Timezone::parse("Europe/Berlin").unwrap();
        // 2026-11-02T23:30:00Z is already 2026-11-03 00:30 in Berlin.
        let ts = 1_793_662_200_000;
        assert_eq!(Timezone::utc().local_day(ts).to_string(), "2026-11-02");
        assert_eq!(berlin.local_day(ts).to_string(), "2026-11-03");
        let (start, end) = berlin.day_bounds(berlin.local_day(ts));
        assert!(start <= ts && ts < end);
        assert_eq!(end - start, 24 * 3600 * 1000);
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let berlin = Timezone::parse("Europe/Berlin").unwrap();
        let spring = LocalDay::from_date(NaiveDate::from_ymd_opt(2026, 3, 29).unwrap());
        let autumn = LocalDay::from_date(NaiveDate::from_ymd_opt(2026, 10, 25).unwrap());
        let (s, e) = berlin.day_bounds(spring);
        assert_eq!(e - s, 23 * 3600 * 1000);
        let (s, e) = berlin.day_bounds(autumn);
        assert_eq!(e - s, 25 * 3600 * 1000);
    }

    #[test]
    fn goals_get_plausible_display_names_and_wildcards() {
        let g = Goal::new(GoalKind::Page("/blog*".into()), None).unwrap();
        assert_eq!(g.display_name, "Visit /blog*");
        let re = regex::Regex::new(&Goal::page_regex("/blog*")).unwrap();
        assert!(re.is_match("/blog") && re.is_match("/blog/a/b") && !re.is_match("/x/blog"));
        let re = regex::Regex::new(&Goal::page_regex("/a.b/*/c")).unwrap();
        assert!(re.is_match("/a.b/x/c") && !re.is_match("/aXb/x/c"));
        assert_eq!(Goal::new(GoalKind::Event("Signup".into()), None).unwrap().display_name, "Signup");
        assert!(Goal::new(GoalKind::Page("blog".into()), None).unwrap_err().contains("start with '/'"));
        assert!(Goal::new(GoalKind::Event(" ".into()), None).is_err());
    }

    #[test]
    fn timezone_rejects_unknown_names() {
        assert!(Timezone::parse("Mars/Olympus").unwrap_err().contains("Mars/Olympus"));
    }
}
