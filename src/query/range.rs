//! Date ranges in a site's timezone, resolved to half-open UTC millisecond ranges.
//! Shorthands follow Plausible: `Nd` is the N whole days before today, `Nmo` the N whole
//! months before the current one, `day`/`month`/`year` the current one, `all` from the
//! site's first day to today.

use crate::domain::{LocalDay, Timezone};
use chrono::{Datelike, NaiveDate};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateRange {
    Day,
    LastDays(u32),
    Month,
    LastMonths(u32),
    Year,
    All,
    /// The last 24 hours up to now.
    Last24Hours,
    /// The last 5 minutes (realtime).
    Realtime,
    /// Local dates, both inclusive.
    Dates(NaiveDate, NaiveDate),
    /// Absolute instants in milliseconds, both inclusive (Plausible's datetime ranges).
    Instants(i64, i64),
}

impl DateRange {
    pub fn parse_shorthand(s: &str) -> Option<DateRange> {
        Some(match s {
            "day" => DateRange::Day,
            "month" => DateRange::Month,
            "year" => DateRange::Year,
            "all" => DateRange::All,
            "24h" => DateRange::Last24Hours,
            "realtime" => DateRange::Realtime,
            other => {
                if let Some(n) = other.strip_suffix("mo") {
                    DateRange::LastMonths(n.parse().ok().filter(|n| (1..=100).contains(n))?)
                } else if let Some(n) = other.strip_suffix('d') {
                    DateRange::LastDays(n.parse().ok().filter(|n| (1..=5000).contains(n))?)
                } else {
                    return None;
                }
            }
        })
    }

    /// `[from, to)` in UTC milliseconds. `first_day` is the site's first day with data
    /// (for `all`).
    pub fn resolve(&self, tz: &Timezone, now_ms: i64, first_day: Option<LocalDay>) -> (i64, i64) {
        let today = tz.local_day(now_ms).date();
        let days = |first: NaiveDate, last: NaiveDate| {
            (tz.day_bounds(LocalDay::from_date(first)).0, tz.day_bounds(LocalDay::from_date(last)).1)
        };
        let month_start = |d: NaiveDate| d.with_day(1).expect("day 1 exists");
        let shift_months = |d: NaiveDate, n: i32| {
            let total = d.year() * 12 + d.month0() as i32 + n;
            NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1).expect("first of month")
        };
        match self {
            DateRange::Day => days(today, today),
            DateRange::LastDays(n) => days(today - chrono::Duration::days(*n as i64), today - chrono::Duration::days(1)),
            DateRange::Month => days(month_start(today), shift_months(today, 1) - chrono::Duration::days(1)),
            DateRange::LastMonths(n) => days(shift_months(today, -(*n as i32)), month_start(today) - chrono::Duration::days(1)),
            DateRange::Year => days(
                NaiveDate::from_ymd_opt(today.year(), 1, 1).expect("jan 1"),
                NaiveDate::from_ymd_opt(today.year(), 12, 31).expect("dec 31"),
            ),
            DateRange::All => days(first_day.map(|d| d.date()).unwrap_or(today).min(today), today),
            DateRange::Last24Hours => (now_ms - 24 * 3600 * 1000, now_ms + 1),
            DateRange::Realtime => (now_ms - 5 * 60 * 1000, now_ms + 1),
            DateRange::Dates(a, b) => days(*a, *b),
            DateRange::Instants(a, b) => (*a, *b + 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(r: &str, tz: &str, now: &str) -> String {
        let tz = Timezone::parse(tz).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339(now).unwrap().timestamp_millis();
        let first = Some(LocalDay::from_date(NaiveDate::from_ymd_opt(2026, 10, 15).unwrap()));
        let (a, b) = DateRange::parse_shorthand(r).unwrap().resolve(&tz, now, first);
        let fmt = |ms: i64| chrono::DateTime::from_timestamp_millis(ms).unwrap().with_timezone(&tz.tz()).format("%Y-%m-%dT%H:%M:%S%:z").to_string();
        format!("{} .. {}", fmt(a), fmt(b))
    }

    #[test]
    fn shorthands() {
        let now = "2026-12-03T10:00:00Z";
        let cases = [
            ("day", "UTC", "2026-12-03T00:00:00+00:00 .. 2026-12-04T00:00:00+00:00"),
            ("7d", "UTC", "2026-11-26T00:00:00+00:00 .. 2026-12-03T00:00:00+00:00"),
            ("28d", "Europe/Berlin", "2026-11-05T00:00:00+01:00 .. 2026-12-03T00:00:00+01:00"),
            ("month", "UTC", "2026-12-01T00:00:00+00:00 .. 2027-01-01T00:00:00+00:00"),
            ("6mo", "UTC", "2026-06-01T00:00:00+00:00 .. 2026-12-01T00:00:00+00:00"),
            ("12mo", "UTC", "2025-12-01T00:00:00+00:00 .. 2026-12-01T00:00:00+00:00"),
            ("year", "UTC", "2026-01-01T00:00:00+00:00 .. 2027-01-01T00:00:00+00:00"),
            ("all", "UTC", "2026-10-15T00:00:00+00:00 .. 2026-12-04T00:00:00+00:00"),
            ("24h", "UTC", "2026-12-02T10:00:00+00:00 .. 2026-12-03T10:00:00+00:00"),
        ];
        for (r, tz, want) in cases {
            assert_eq!(show(r, tz, now), want, "{r} in {tz}");
        }
        // Across the DST change in Berlin (2026-10-25), days keep local midnights.
        assert_eq!(show("7d", "Europe/Berlin", "2026-10-28T12:00:00Z"), "2026-10-21T00:00:00+02:00 .. 2026-10-28T00:00:00+01:00");
        for bad in ["0d", "5001d", "101mo", "week", "7x", ""] {
            assert_eq!(DateRange::parse_shorthand(bad), None, "{bad}");
        }
    }
}
