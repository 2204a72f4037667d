//! `POST /api/v2/query`: Plausible-compatible Stats API v2. This module is the edge where
//! the wire format becomes a `StatsQuery`; errors name the offending part of the request.

use super::error::ApiError;
use super::AppState;
use crate::admin::hash_api_key;
use crate::domain::{Goal, LocalDay, Site};
use crate::query::range::DateRange;
use crate::query::{derived, engine, Condition, Dimension, Filter, Metric, Row, StatsQuery};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

const DEFAULT_LIMIT: usize = 10_000;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// Checks the bearer key, that it may read `site`, and its rate limit.
pub(super) async fn authorize(app: &AppState, headers: &HeaderMap, site: &Site) -> Result<(), ApiError> {
    let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, "missing or invalid API key (send Authorization: Bearer KEY)");
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(unauthorized)?;
    let key = app
        .store
        .api_key_by_hash(&hash_api_key(token))
        .await
        .map_err(|e| ApiError::dependency("storage", &e))?
        .ok_or_else(unauthorized)?;
    if key.site.is_some_and(|s| s != site.id) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, format!("this API key cannot read {}", site.domain)));
    }
    let now = chrono::Utc::now().timestamp_millis();
    if !app.coordinator.allow_api_request(key.id, app.api_rate_limit, now).await {
        return Err(ApiError::too_many(
            format!("rate limit of {} requests per minute exceeded for this API key", app.api_rate_limit),
            (60 - now.rem_euclid(60_000) / 1000) as u32,
        ));
    }
    Ok(())
}

/// Looks up a site named by a request, answering 404 when there is none.
pub(super) async fn find_site(app: &AppState, site_id: &str) -> Result<Arc<Site>, ApiError> {
    app.sites
        .lookup(site_id)
        .await
        .map_err(|e| ApiError::dependency("storage", &e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("site_id: no site {site_id:?}")))
}

/// Resolves the range in the site's timezone and answers the query. Returns the rows and
/// the resolved `[from, to)` range.
pub(super) async fn execute(app: &AppState, site: &Site, query: &StatsQuery, range: &DateRange) -> Result<(Vec<Row>, i64, i64), ApiError> {
    query.validate().map_err(bad)?;
    if derived::needs_goals(query) {
        let goals = app.store.goals(site.id).await.map_err(|e| ApiError::dependency("storage", &e))?;
        check_goal_names(&query.filter, &goals)?;
    }
    let now = chrono::Utc::now().timestamp_millis();
    let a = engine::answer_with(app.store.as_ref(), &app.rollups, site, query, range, now).await.map_err(|e| ApiError::dependency("storage", &e))?;
    Ok((a.rows, a.from_ms, a.to_ms))
}

/// An `is` condition on `event:goal` must name configured goals, as in Plausible.
fn check_goal_names(f: &Filter, goals: &[Goal]) -> Result<(), ApiError> {
    match f {
        Filter::All => Ok(()),
        Filter::And(fs) | Filter::Or(fs) => fs.iter().try_for_each(|f| check_goal_names(f, goals)),
        Filter::Not(f) | Filter::HasDone(f) => check_goal_names(f, goals),
        Filter::Match { dimension: Dimension::Goal, condition: Condition::Is(names) } => {
            match names.iter().find(|n| !goals.iter().any(|g| &g.display_name == *n)) {
                Some(missing) => Err(bad(format!("filters: the goal {missing:?} is not configured for this site"))),
                None => Ok(()),
            }
        }
        Filter::Match { .. } => Ok(()),
    }
}

pub(super) fn strings(v: &Value, what: &str) -> Result<Vec<String>, ApiError> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| bad(format!("{what}: every entry must be a string"))))
            .collect(),
        _ => Err(bad(format!("{what}: must be a list"))),
    }
}

fn parse_date_range(v: Option<&Value>) -> Result<DateRange, ApiError> {
    match v {
        None => Err(bad("date_range: is required")),
        Some(Value::String(s)) => DateRange::parse_shorthand(s).ok_or_else(|| bad(format!("date_range: invalid value {s:?}"))),
        Some(Value::Array(pair)) if pair.len() == 2 => {
            let (a, b) = match (pair[0].as_str(), pair[1].as_str()) {
                (Some(a), Some(b)) => (a, b),
                _ => return Err(bad("date_range: a pair of ISO 8601 dates or datetimes")),
            };
            if let (Ok(x), Ok(y)) = (a.parse::<chrono::NaiveDate>(), b.parse::<chrono::NaiveDate>()) {
                if x > y {
                    return Err(bad("date_range: the first date is after the second"));
                }
                return Ok(DateRange::Dates(x, y));
            }
            match (chrono::DateTime::parse_from_rfc3339(a), chrono::DateTime::parse_from_rfc3339(b)) {
                (Ok(x), Ok(y)) if x <= y => Ok(DateRange::Instants(x.timestamp_millis(), y.timestamp_millis())),
                (Ok(_), Ok(_)) => Err(bad("date_range: the first time is after the second")),
                _ => Err(bad(format!("date_range: invalid value [{a:?}, {b:?}]"))),
            }
        }
        Some(other) => Err(bad(format!("date_range: invalid value {other}"))),
    }
}

fn parse_filter(v: &Value) -> Result<Filter, ApiError> {
    let items = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| bad(format!("filters: invalid filter {v}")))?;
    let op = items[0].as_str().ok_or_else(|| bad(format!("filters: invalid filter {v}")))?;
    match (op, items.len()) {
        ("and" | "or", 2) => {
            let subs = items[1].as_array().filter(|a| !a.is_empty()).ok_or_else(|| bad(format!("filters: {op} takes a non-empty list of filters")))?;
            let parsed = subs.iter().map(parse_filter).collect::<Result<Vec<_>, _>>()?;
            Ok(if op == "and" { Filter::And(parsed) } else { Filter::Or(parsed) })
        }
        ("not", 2) => Ok(Filter::Not(Box::new(parse_filter(&items[1])?))),
        ("has_done", 2) => Ok(Filter::HasDone(Box::new(parse_filter(&items[1])?))),
        ("has_not_done", 2) => Ok(Filter::Not(Box::new(Filter::HasDone(Box::new(parse_filter(&items[1])?))))),
        ("is" | "is_not" | "contains" | "contains_not" | "matches" | "matches_not", 3 | 4) => {
            let dim_name = items[1].as_str().ok_or_else(|| bad(format!("filters: invalid dimension in {v}")))?;
            if dim_name == "segment" {
                return Err(bad("filters: saved segments are not supported; give the segment's filters instead"));
            }
            let dimension = Dimension::parse(dim_name)
                .filter(|d| !d.is_time())
                .ok_or_else(|| bad(format!("filters: invalid dimension {dim_name:?}")))?;
            let values = strings(&items[2], "filters")?;
            let case_sensitive = match items.get(3) {
                None => true,
                Some(Value::Object(m)) => match m.get("case_sensitive") {
                    None => true,
                    Some(Value::Bool(b)) => *b,
                    Some(other) => return Err(bad(format!("filters: case_sensitive must be true or false, got {other}"))),
                },
                Some(other) => return Err(bad(format!("filters: modifiers must be an object, got {other}"))),
            };
            let base = op.trim_end_matches("_not");
            if !case_sensitive && base != "matches" {
                // Case-insensitive `is` and `contains` become anchored or free regexes.
                let pattern = |v: &String| if base == "is" { format!("^(?i:{})$", regex::escape(v)) } else { format!("(?i:{})", regex::escape(v)) };
                let res = values.iter().map(|v| regex::Regex::new(&pattern(v)).map_err(|e| bad(format!("filters: {e}")))).collect::<Result<Vec<_>, _>>()?;
                let m = Filter::Match { dimension, condition: Condition::Matches(res) };
                return Ok(if op.ends_with("_not") { Filter::Not(Box::new(m)) } else { m });
            }
            let condition = match base {
                "is" => Condition::Is(values),
                "contains" => Condition::Contains(values),
                _ => Condition::Matches(
                    values
                        .iter()
                        .map(|p| {
                            regex::RegexBuilder::new(p)
                                .size_limit(1 << 20)
                                .case_insensitive(!case_sensitive)
                                .build()
                                .map_err(|e| bad(format!("filters: invalid regular expression {p:?}: {e}")))
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            let m = Filter::Match { dimension, condition };
            Ok(if op.ends_with("_not") { Filter::Not(Box::new(m)) } else { m })
        }
        _ => Err(bad(format!("filters: unknown or malformed operator {op:?}"))),
    }
}

enum SortKey {
    Metric(usize),
    Dimension(usize),
}

/// How the comparison period is chosen (`include.comparisons`).
pub(super) enum Comparison {
    PreviousPeriod,
    YearOverYear,
    Custom(DateRange),
}

fn parse_comparison(include: &Map<String, Value>) -> Result<Option<Comparison>, ApiError> {
    let Some(c) = include.get("comparisons").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let mode = c.get("mode").and_then(Value::as_str).ok_or_else(|| bad("include.comparisons.mode: is required"))?;
    Ok(Some(match mode {
        "previous_period" => Comparison::PreviousPeriod,
        "year_over_year" => Comparison::YearOverYear,
        "custom" => Comparison::Custom(parse_date_range(c.get("date_range")).map_err(|e| bad(format!("include.comparisons.{}", e.message())))?),
        other => return Err(bad(format!("include.comparisons.mode: invalid value {other:?} (previous_period, year_over_year or custom)"))),
    }))
}

/// The comparison range for a resolved `[from, to)`.
pub(super) fn comparison_range(c: &Comparison, site: &Site, from: i64, to: i64) -> DateRange {
    let tz = &site.timezone;
    let (first, last) = (tz.local_day(from).date(), tz.local_day(to - 1).date());
    let day_aligned = tz.day_bounds(tz.local_day(from)).0 == from && tz.day_bounds(tz.local_day(to - 1)).1 == to;
    match c {
        Comparison::Custom(r) => r.clone(),
        Comparison::PreviousPeriod if day_aligned => {
            let days = (last - first).num_days() + 1;
            DateRange::Dates(first - chrono::Duration::days(days), first - chrono::Duration::days(1))
        }
        Comparison::PreviousPeriod => DateRange::Instants(from - (to - from), from - 1),
        Comparison::YearOverYear => {
            let back = |d: chrono::NaiveDate| d.checked_sub_months(chrono::Months::new(12)).unwrap_or(d);
            if day_aligned {
                DateRange::Dates(back(first), back(last))
            } else {
                let shift = tz.day_bounds(LocalDay::from_date(first)).0 - tz.day_bounds(LocalDay::from_date(back(first))).0;
                DateRange::Instants(from - shift, to - 1 - shift)
            }
        }
    }
}

/// Plausible's change: relative percent, rounded; bounce rate as a difference in points.
pub(super) fn change(m: Metric, current: f64, previous: f64) -> Option<i64> {
    if current.is_nan() || previous.is_nan() {
        return None;
    }
    Some(match m {
        Metric::BounceRate => (current.round() - previous.round()) as i64,
        _ if previous == 0.0 && current == 0.0 => 0,
        _ if previous == 0.0 => 100,
        _ => ((current - previous) / previous * 100.0).round() as i64,
    })
}

/// Every bucket of a day-granular time dimension over `[from, to)` in the site's timezone.
pub(super) fn time_buckets(d: &Dimension, site: &Site, from: i64, to: i64) -> Option<Vec<String>> {
    d.day_buckets(site.timezone.local_day(from), site.timezone.local_day(to - 1))
}

pub(super) fn round(m: Metric, v: f64) -> Value {
    if v.is_nan() {
        // Nothing to average (e.g. no scroll depth reported): Plausible answers null.
        return Value::Null;
    }
    match m {
        Metric::Visitors | Metric::Visits | Metric::Pageviews | Metric::Events => json!(v.round() as i64),
        Metric::BounceRate | Metric::VisitDuration => json!(v.round() as i64),
        Metric::ViewsPerVisit => json!((v * 100.0).round() / 100.0),
        Metric::Percentage => json!((v * 10.0).round() / 10.0),
        Metric::ConversionRate | Metric::GroupConversionRate => json!((v * 100.0).round() / 100.0),
        Metric::ScrollDepth | Metric::TimeOnPage => json!(v.round() as i64),
        Metric::TotalRevenue | Metric::AverageRevenue => json!((v * 100.0).round() / 100.0),
    }
}

/// A metric as v2 shows it: revenue as Plausible's `{value, currency, short, long}`.
fn metric_value(m: Metric, v: f64, currency: Option<&str>) -> Value {
    match (m, currency) {
        (Metric::TotalRevenue | Metric::AverageRevenue, Some(c)) if !v.is_nan() => {
            let value = (v * 100.0).round() / 100.0;
            let symbol = match c {
                "USD" => "$".to_string(),
                "EUR" => "€".to_string(),
                "GBP" => "£".to_string(),
                "JPY" => "¥".to_string(),
                other => format!("{other} "),
            };
            let sign = if value < 0.0 { "-" } else { "" };
            let abs = value.abs();
            let cents = format!("{abs:.2}");
            let (whole, frac) = cents.split_once('.').unwrap_or((&cents, "00"));
            let grouped: Vec<String> = whole.as_bytes().rchunks(3).rev().map(|c| String::from_utf8_lossy(c).into_owned()).collect();
            let long = format!("{sign}{symbol}{}.{frac}", grouped.join(","));
            let short = match abs {
                a if a >= 1e9 => format!("{sign}{symbol}{:.1}B", a / 1e9),
                a if a >= 1e6 => format!("{sign}{symbol}{:.1}M", a / 1e6),
                a if a >= 1e3 => format!("{sign}{symbol}{:.1}K", a / 1e3),
                a => format!("{sign}{symbol}{a:.1}"),
            };
            json!({"value": value, "currency": c, "short": short, "long": long})
        }
        (Metric::TotalRevenue | Metric::AverageRevenue, _) => Value::Null,
        _ => round(m, v),
    }
}

pub async fn query_v2(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    let req: Map<String, Value> = match serde_json::from_slice(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(bad("body: must be a JSON object")),
        Err(e) => return Err(bad(format!("body: not valid JSON ({e})"))),
    };
    let site_id = req.get("site_id").and_then(Value::as_str).ok_or_else(|| bad("site_id: is required"))?;
    let site = find_site(&app, site_id).await?;
    authorize(&app, &headers, &site).await?;

    let metric_names = strings(req.get("metrics").ok_or_else(|| bad("metrics: is required"))?, "metrics")?;
    if metric_names.is_empty() {
        return Err(bad("metrics: at least one metric is required"));
    }
    let metrics = metric_names
        .iter()
        .map(|m| Metric::parse(m).ok_or_else(|| bad(format!("metrics: unknown metric {m:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let dimension_names = match req.get("dimensions") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => strings(v, "dimensions")?,
    };
    let dimensions = dimension_names
        .iter()
        .map(|d| Dimension::parse(d).ok_or_else(|| bad(format!("dimensions: unknown dimension {d:?}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let filters_json = req.get("filters").cloned().unwrap_or(Value::Array(vec![]));
    let filter = match &filters_json {
        Value::Array(fs) if fs.is_empty() => Filter::All,
        Value::Array(fs) => Filter::And(fs.iter().map(parse_filter).collect::<Result<Vec<_>, _>>()?),
        _ => return Err(bad("filters: must be a list")),
    };
    let range = parse_date_range(req.get("date_range"))?;

    let mut sort: Vec<(SortKey, bool)> = Vec::new();
    if let Some(order) = req.get("order_by").filter(|v| !v.is_null()) {
        let entries = order.as_array().ok_or_else(|| bad("order_by: must be a list of [name, \"asc\"|\"desc\"]"))?;
        for entry in entries {
            let (name, dir) = match entry.as_array().map(|e| (e.first().and_then(Value::as_str), e.get(1).and_then(Value::as_str))) {
                Some((Some(n), Some(d @ ("asc" | "desc")))) if entry.as_array().map(Vec::len) == Some(2) => (n, d),
                _ => return Err(bad(format!("order_by: invalid entry {entry}"))),
            };
            let key = if let Some(i) = metric_names.iter().position(|m| m == name) {
                SortKey::Metric(i)
            } else if let Some(i) = dimension_names.iter().position(|d| d == name) {
                SortKey::Dimension(i)
            } else {
                return Err(bad(format!("order_by: {name:?} is neither a queried metric nor a queried dimension")));
            };
            sort.push((key, dir == "desc"));
        }
    }
    let include = req.get("include").and_then(Value::as_object).cloned().unwrap_or_default();
    let (limit, offset) = match req.get("pagination").and_then(Value::as_object) {
        None => (DEFAULT_LIMIT, 0),
        Some(p) => {
            let get = |k: &str, d: usize| match p.get(k) {
                None => Ok(d),
                Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| bad(format!("pagination.{k}: must be a non-negative integer"))),
            };
            (get("limit", DEFAULT_LIMIT)?.max(1), get("offset", 0)?)
        }
    };

    let query = StatsQuery { metrics: metrics.clone(), dimensions, filter };
    let (mut rows, from, to) = execute(&app, &site, &query, &range).await?;
    if !sort.is_empty() {
        rows.sort_by(|a, b| {
            for (key, desc) in &sort {
                let ord = match key {
                    SortKey::Metric(i) => {
                        let key = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { v };
                        key(a.metrics[*i]).total_cmp(&key(b.metrics[*i]))
                    }
                    SortKey::Dimension(i) => a.dimensions[*i].cmp(&b.dimensions[*i]),
                };
                let ord = if *desc { ord.reverse() } else { ord };
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
            std::cmp::Ordering::Equal
        });
    }
    let comparison = parse_comparison(&include)?;
    let mut compared: Vec<Option<Row>> = Vec::new();
    if let Some(c) = &comparison {
        let (prev_rows, prev_from, prev_to) = execute(&app, &site, &query, &comparison_range(c, &site, from, to)).await?;
        let zeros = |dims: Vec<String>| Row { dimensions: dims, metrics: vec![0.0; metrics.len()], currency: None };
        let time_dim = query.dimensions.iter().position(Dimension::is_time);
        match time_dim.and_then(|i| Some((i, time_buckets(&query.dimensions[i], &site, from, to)?, time_buckets(&query.dimensions[i], &site, prev_from, prev_to)?))) {
            // A single time dimension: every bucket, paired by position with the
            // comparison period's buckets.
            Some((_, labels, prev_labels)) if query.dimensions.len() == 1 => {
                let cur: HashMap<String, Row> = rows.drain(..).map(|r| (r.dimensions[0].clone(), r)).collect();
                let prev: HashMap<String, Row> = prev_rows.into_iter().map(|r| (r.dimensions[0].clone(), r)).collect();
                for (i, label) in labels.iter().enumerate() {
                    rows.push(cur.get(label).cloned().unwrap_or_else(|| zeros(vec![label.clone()])));
                    let p = prev_labels.get(i).map(|pl| prev.get(pl).cloned().unwrap_or_else(|| zeros(vec![pl.clone()])));
                    compared.push(p);
                }
            }
            _ => {
                let prev: HashMap<Vec<String>, Row> = prev_rows.into_iter().map(|r| (r.dimensions.clone(), r)).collect();
                compared = rows.iter().map(|r| Some(prev.get(&r.dimensions).cloned().unwrap_or_else(|| zeros(r.dimensions.clone())))).collect();
            }
        }
    }
    let total_rows = rows.len();
    let results: Vec<Value> = rows
        .into_iter()
        .enumerate()
        .skip(offset)
        .take(limit)
        .map(|(i, r)| {
            let mut row = json!({
                "metrics": r.metrics.iter().zip(&metrics).map(|(v, m)| metric_value(*m, *v, r.currency.as_deref())).collect::<Vec<_>>(),
                "dimensions": r.dimensions,
            });
            if let Some(Some(p)) = compared.get(i) {
                let rounded = |m: &Metric, v: f64| round(*m, v).as_f64().unwrap_or(v);
                row["comparison"] = json!({
                    "dimensions": p.dimensions,
                    "metrics": p.metrics.iter().zip(&metrics).map(|(v, m)| metric_value(*m, *v, p.currency.as_deref())).collect::<Vec<_>>(),
                    "change": metrics.iter().zip(r.metrics.iter().zip(&p.metrics)).map(|(m, (c, v))| change(*m, rounded(m, *c), rounded(m, *v))).collect::<Vec<_>>(),
                });
            }
            row
        })
        .collect();

    let fmt = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .with_timezone(&site.timezone.tz())
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    };
    let mut meta = Map::new();
    if include.get("total_rows").and_then(Value::as_bool) == Some(true) {
        meta.insert("total_rows".into(), json!(total_rows));
    }
    if include.get("imports").and_then(Value::as_bool) == Some(true) {
        // Imported events are stored like live ones, so they are always included.
        meta.insert("imports_included".into(), json!(true));
    }
    if include.get("time_labels").and_then(Value::as_bool) == Some(true) && query.dimensions.contains(&Dimension::Day) {
        meta.insert("time_labels".into(), json!(time_buckets(&Dimension::Day, &site, from, to)));
    }
    Ok(Json(json!({
        "results": results,
        "meta": meta,
        "query": {
            "site_id": site.domain.as_str(),
            "metrics": metric_names,
            "date_range": [fmt(from), fmt(to - 1000)],
            "dimensions": dimension_names,
            "filters": filters_json,
            "order_by": req.get("order_by").cloned().unwrap_or(Value::Null),
            "include": include,
            "pagination": { "limit": limit, "offset": offset },
        },
    })))
}
