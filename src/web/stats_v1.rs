//! Plausible-compatible Stats API v1: realtime visitors, aggregate, timeseries and
//! breakdown, as query-string requests. They ask the same `StatsQuery` as v2.

use super::error::ApiError;
use super::stats::{authorize, change, comparison_range, execute, find_site, round, time_buckets, Comparison};
use super::AppState;
use crate::domain::Site;
use crate::query::range::DateRange;
use crate::query::{Condition, Dimension, Filter, Metric, StatsQuery};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::{Datelike, NaiveDate};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

type Params = Query<HashMap<String, String>>;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

async fn site_for(app: &AppState, headers: &HeaderMap, params: &HashMap<String, String>) -> Result<Arc<Site>, ApiError> {
    let site_id = params.get("site_id").ok_or_else(|| bad("site_id: is required"))?;
    let site = find_site(app, site_id).await?;
    authorize(app, headers, &site).await?;
    Ok(site)
}

fn date(s: &str, what: &str) -> Result<NaiveDate, ApiError> {
    s.trim().parse().map_err(|_| bad(format!("{what}: {s:?} is not a date like 2026-11-02")))
}

/// `period` (default 30d) and `date`: `custom` takes `date=FROM,TO`; `day` and `month`
/// take `date` as the day to show.
fn period(params: &HashMap<String, String>) -> Result<DateRange, ApiError> {
    let p = params.get("period").map(String::as_str).unwrap_or("30d");
    let date_param = params.get("date");
    match (p, date_param) {
        ("custom", Some(d)) => {
            let (a, b) = d.split_once(',').ok_or_else(|| bad("date: custom periods take date=FROM,TO"))?;
            let (a, b) = (date(a, "date")?, date(b, "date")?);
            if a > b {
                return Err(bad("date: FROM is after TO"));
            }
            Ok(DateRange::Dates(a, b))
        }
        ("custom", None) => Err(bad("date: custom periods take date=FROM,TO")),
        ("day", Some(d)) => {
            let d = date(d, "date")?;
            Ok(DateRange::Dates(d, d))
        }
        ("month", Some(d)) => {
            let d = date(d, "date")?;
            let first = d.with_day0(0).unwrap_or(d);
            let next = if first.month() == 12 {
                NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
            } else {
                NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
            }
            .unwrap_or(first);
            Ok(DateRange::Dates(first, next.pred_opt().unwrap_or(next)))
        }
        (p, _) => DateRange::parse_shorthand(p).ok_or_else(|| bad(format!("period: invalid value {p:?}"))),
    }
}
fn metrics(params: &HashMap<String, String>) -> Result<Vec<Metric>, ApiError> {
    params
        .get("metrics")
        .map(String::as_str)
        .unwrap_or("visitors")
        .split(',')
        .map(|m| Metric::parse(m.trim()).ok_or_else(|| bad(format!("metrics: unknown metric {:?}", m.trim()))))
        .collect()
}

/// v1 filters: `visit:browser==Firefox;event:page==/blog/*|/about`, with `==`, `!=`,
/// `~` (contains) and `!~`; `*` in an `==`/`!=` value is a wildcard.
fn filters(params: &HashMap<String, String>) -> Result<Filter, ApiError> {
    let Some(raw) = params.get("filters").filter(|f| !f.trim().is_empty()) else {
        return Ok(Filter::All);
    };
    let mut all = Vec::new();
    for part in raw.split(';').filter(|p| !p.trim().is_empty()) {
        let (dim, op, values) = ["!=", "==", "!~", "~"]
            .iter()
            .find_map(|op| part.split_once(op).map(|(d, v)| (d.trim(), *op, v)))
            .ok_or_else(|| bad(format!("filters: {part:?} has no ==, !=, ~ or !~")))?;
        let dimension = Dimension::parse(dim)
            .filter(|d| !d.is_time())
            .ok_or_else(|| bad(format!("filters: invalid dimension {dim:?}")))?;
        let values: Vec<String> = values.split('|').map(str::to_string).collect();
        let condition = if op.ends_with('~') {
            Condition::Contains(values)
        } else if values.iter().any(|v| v.contains('*')) {
            Condition::Matches(
                values
                    .iter()
                    .map(|v| {
                        let pattern = format!("^{}$", regex::escape(v).replace(r"\*\*", ".*").replace(r"\*", "[^/]*"));
                        regex::Regex::new(&pattern).map_err(|e| bad(format!("filters: {v:?}: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
            )
        } else {
            Condition::Is(values)
        };
        let m = Filter::Match { dimension, condition };
        all.push(if op.starts_with('!') { Filter::Not(Box::new(m)) } else { m });
    }
    Ok(Filter::And(all))
}

pub async fn realtime_visitors(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> Result<Json<Value>, ApiError> {
    let site = site_for(&app, &headers, &params).await?;
    let q = StatsQuery { metrics: vec![Metric::Visitors], dimensions: vec![], filter: Filter::All };
    let (rows, _, _) = execute(&app, &site, &q, &DateRange::Realtime).await?;
    Ok(Json(json!(rows[0].metrics[0] as i64)))
}

pub async fn aggregate(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> Result<Json<Value>, ApiError> {
    let site = site_for(&app, &headers, &params).await?;
    let metrics = metrics(&params)?;
    let q = StatsQuery { metrics: metrics.clone(), dimensions: vec![], filter: filters(&params)? };
    let (rows, from, to) = execute(&app, &site, &q, &period(&params)?).await?;
    // `compare=previous_period` adds each metric's change against the period before.
    let previous = match params.get("compare").map(String::as_str) {
        None => None,
        Some("previous_period") => {
            let (prev, _, _) = execute(&app, &site, &q, &comparison_range(&Comparison::PreviousPeriod, &site, from, to)).await?;
            Some(prev[0].metrics.clone())
        }
        Some(other) => return Err(bad(format!("compare: invalid value {other:?} (previous_period)"))),
    };
    let results: Map<String, Value> = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let value = round(*m, rows[0].metrics[i]);
            let mut entry = json!({ "value": value });
            if let Some(prev) = &previous {
                let as_f64 = |v: f64| round(*m, v).as_f64().unwrap_or(v);
                entry["change"] = json!(change(*m, as_f64(rows[0].metrics[i]), as_f64(prev[i])));
            }
            (m.name().to_string(), entry)
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

pub async fn timeseries(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> Result<Json<Value>, ApiError> {
    let site = site_for(&app, &headers, &params).await?;
    let metrics = metrics(&params)?;
    let dimension = match params.get("interval").map(String::as_str).unwrap_or("date") {
        "date" | "day" => Dimension::Day,
        "month" => Dimension::Month,
        "week" => Dimension::Week,
        "hour" => Dimension::Hour,
        other => return Err(bad(format!("interval: invalid value {other:?} (date, week, month or hour)"))),
    };
    let q = StatsQuery { metrics: metrics.clone(), dimensions: vec![dimension.clone()], filter: filters(&params)? };
    let (rows, from, to) = execute(&app, &site, &q, &period(&params)?).await?;
    let by_label: HashMap<&str, &Vec<f64>> = rows.iter().map(|r| (r.dimensions[0].as_str(), &r.metrics)).collect();
    // Every day (or month) of the range appears, with zeros where there was no traffic.
    let labels: Vec<String> = match dimension {
        Dimension::Day | Dimension::Month => time_buckets(&dimension, &site, from, to).expect("a day-granular dimension"),
        _ => rows.iter().map(|r| r.dimensions[0].clone()).collect(),
    };
    let zeros = vec![0.0; metrics.len()];
    let results: Vec<Value> = labels
        .iter()
        .map(|label| {
            let values = by_label.get(label.as_str()).copied().unwrap_or(&zeros);
            let mut row = Map::new();
            row.insert("date".into(), json!(label));
            for (m, v) in metrics.iter().zip(values) {
                row.insert(m.name().into(), round(*m, *v));
            }
            Value::Object(row)
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

pub async fn breakdown(State(app): State<Arc<AppState>>, headers: HeaderMap, Query(params): Params) -> Result<Json<Value>, ApiError> {
    let site = site_for(&app, &headers, &params).await?;
    let metrics = metrics(&params)?;
    let property = params.get("property").ok_or_else(|| bad("property: is required"))?;
    let dimension = Dimension::parse(property)
        .filter(|d| !d.is_time())
        .ok_or_else(|| bad(format!("property: invalid value {property:?}")))?;
    let number = |k: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match params.get(k) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| bad(format!("{k}: must be a whole number from 1 to {max}"))),
        }
    };
    let (limit, page) = (number("limit", 100, 1000)?, number("page", 1, 1_000_000)?);
    let q = StatsQuery { metrics: metrics.clone(), dimensions: vec![dimension], filter: filters(&params)? };
    let (rows, _, _) = execute(&app, &site, &q, &period(&params)?).await?;
    let key = property.rsplit(':').next().unwrap_or(property).to_string();
    let results: Vec<Value> = rows
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .map(|r| {
            let mut row = Map::new();
            row.insert(key.clone(), json!(r.dimensions[0]));
            for (m, v) in metrics.iter().zip(&r.metrics) {
                row.insert(m.name().into(), round(*m, *v));
            }
            Value::Object(row)
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}
