//! `POST /api/v2/query` end to end: numbers worked out by hand for a small day of
//! traffic, Plausible's request and response shapes, and errors naming what is wrong.

mod common;

use common::*;
use serde_json::{json, Value};

/// One day of traffic on 2026-11-02 (UTC) and one event the next day:
/// visitor A (GB, Firefox): 10:00 `/` from Google, 10:05 `/pricing`, 10:06 Signup;
///   12:00 `/blog` from t.co (a new visit: 114 minutes later);
/// visitor B (US, Chrome): 11:00 `/pricing`, direct;
/// visitor A on 2026-11-03 09:00 `/` (a new day: a new visitor id).
async fn app_with_traffic() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    let site = app.add_site("example.com", "UTC").await;
    let line = |ts: &str, name: &str, path: &str, referrer: &str, ip: &str, ua: &str| {
        json!({"timestamp": ts, "domain": "example.com", "name": name, "url": format!("https://example.com{path}"),
               "referrer": referrer, "ip": ip, "user_agent": ua}).to_string()
    };
    let lines = [
        line("2026-11-02T10:00:00Z", "pageview", "/", "https://www.google.com/", "81.2.69.142", FIREFOX),
        line("2026-11-02T10:05:00Z", "pageview", "/pricing", "", "81.2.69.142", FIREFOX),
        line("2026-11-02T10:06:00Z", "Signup", "/pricing", "", "81.2.69.142", FIREFOX),
        line("2026-11-02T11:00:00Z", "pageview", "/pricing", "", "8.8.8.8", CHROME_WIN),
        line("2026-11-02T12:00:00Z", "pageview", "/blog", "https://t.co/x", "81.2.69.142", FIREFOX),
        line("2026-11-03T09:00:00Z", "pageview", "/", "", "81.2.69.142", FIREFOX),
    ];
    let path = app.data_dir.join("traffic.ndjson");
    std::fs::write(&path, lines.join("\n")).unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    let geo = footfall::ingest::geo::GeoIp::embedded();
    let report = footfall::import::import_file(app.store().as_ref(), &site, &mut file, &geo, |_, _| {}).await.unwrap();
    assert_eq!(report.imported, 6, "{report:?}");
    let key = footfall::admin::create_api_key(app.store().as_ref(), "test", Some("example.com")).await.unwrap();
    (app, key)
}

async fn query(app: &TestApp, key: &str, body: Value) -> (u16, Value) {
    let resp = app.client.post(app.url("/api/v2/query")).bearer_auth(key).json(&body).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn aggregate_breakdown_filters_and_timeseries() {
    let (app, key) = app_with_traffic().await;
    let day = json!(["2026-11-02", "2026-11-02"]);

    let (status, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day,
        "metrics": ["visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration", "views_per_visit"]
    })).await;
    assert_eq!(status, 200, "{body}");
    // 2 visitors, 3 visits, 4 pageviews, 5 events; bounces: B and A's second visit (2 of
    // 3 = 67%); durations 360 s, 0, 0 (mean 120 s); 4 / 3 = 1.33 views per visit.
    assert_eq!(body["results"], json!([{"metrics": [2, 3, 4, 5, 67, 120, 1.33], "dimensions": []}]));
    assert_eq!(body["query"]["date_range"], json!(["2026-11-02T00:00:00+00:00", "2026-11-02T23:59:59+00:00"]));
    assert_eq!(body["query"]["site_id"], "example.com");

    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visitors", "pageviews"],
        "dimensions": ["event:page"], "order_by": [["visitors", "desc"], ["event:page", "asc"]],
        "include": {"total_rows": true}, "pagination": {"limit": 2, "offset": 0}
    })).await;
    assert_eq!(body["results"], json!([
        {"metrics": [2, 2], "dimensions": ["/pricing"]},
        {"metrics": [1, 1], "dimensions": ["/"]},
    ]));
    assert_eq!(body["meta"]["total_rows"], 3);

    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visitors", "visits", "pageviews"],
        "filters": [["is", "visit:country", ["GB"]]]
    })).await;
    assert_eq!(body["results"][0]["metrics"], json!([1, 2, 3]));

    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visits", "pageviews", "events"],
        "filters": [["is", "visit:source", ["Google"]]]
    })).await;
    assert_eq!(body["results"][0]["metrics"], json!([1, 2, 3]), "the whole Google visit, nothing else");

    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visitors"],
        "dimensions": ["visit:source"], "order_by": [["visit:source", "asc"]],
        "filters": [["not", ["contains", "event:page", ["blog"]]]]
    })).await;
    assert_eq!(body["results"], json!([
        {"metrics": [1], "dimensions": ["Direct / None"]},
        {"metrics": [1], "dimensions": ["Google"]},
    ]));

    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": ["2026-11-02", "2026-11-03"], "metrics": ["visitors", "pageviews"],
        "dimensions": ["time:day"], "include": {"time_labels": true}
    })).await;
    assert_eq!(body["results"], json!([
        {"metrics": [2, 4], "dimensions": ["2026-11-02"]},
        {"metrics": [1, 1], "dimensions": ["2026-11-03"]},
    ]));
    assert_eq!(body["meta"]["time_labels"], json!(["2026-11-02", "2026-11-03"]));

    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": ["2026-11-02", "2026-11-03"], "metrics": ["pageviews"],
        "dimensions": ["time:month"], "filters": [["matches", "event:page", ["^/(pricing|blog)$"]]]
    })).await;
    assert_eq!(body["results"], json!([{"metrics": [3], "dimensions": ["2026-11-01"]}]));
    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": ["2026-11-02", "2026-11-03"], "metrics": ["pageviews"],
        "filters": [["matches_not", "event:page", ["^/pr"]]]
    })).await;
    assert_eq!(body["results"][0]["metrics"], json!([3]));
    app.stop().await;
}

#[tokio::test]
async fn authentication_and_bad_queries() {
    let (app, key) = app_with_traffic().await;
    let good = json!({"site_id": "example.com", "date_range": "7d", "metrics": ["visitors"]});
    let (status, _) = query(&app, &key, good.clone()).await;
    assert_eq!(status, 200);

    let resp = app.client.post(app.url("/api/v2/query")).json(&good).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let (status, body) = query(&app, "ff_not_a_real_key", good.clone()).await;
    assert_eq!((status, body["error"].as_str().unwrap().contains("API key")), (401, true));

    app.add_site("other.com", "UTC").await;
    let (status, body) = query(&app, &key, json!({"site_id": "other.com", "date_range": "7d", "metrics": ["visitors"]})).await;
    assert_eq!(status, 403, "{body}");
    let all_sites = footfall::admin::create_api_key(app.store().as_ref(), "all", None).await.unwrap();
    let (status, _) = query(&app, &all_sites, json!({"site_id": "other.com", "date_range": "7d", "metrics": ["visitors"]})).await;
    assert_eq!(status, 200, "a key without a site reads every site");
    let (status, _) = query(&app, &key, json!({"site_id": "nope.com", "date_range": "7d", "metrics": ["visitors"]})).await;
    assert_eq!(status, 404);

    let cases = [
        (json!({"site_id": "example.com", "date_range": "7d", "metrics": ["vistors"]}), "metrics: unknown metric \"vistors\""),
        (json!({"site_id": "example.com", "date_range": "7d", "metrics": []}), "metrics: at least one metric"),
        (json!({"site_id": "example.com", "metrics": ["visitors"]}), "date_range: is required"),
        (json!({"site_id": "example.com", "date_range": "fortnight", "metrics": ["visitors"]}), "date_range: invalid value \"fortnight\""),
        (json!({"site_id": "example.com", "date_range": ["2026-11-05", "2026-11-01"], "metrics": ["visitors"]}), "date_range: the first date is after the second"),
        (json!({"site_id": "example.com", "date_range": "7d", "metrics": ["visitors"], "dimensions": ["visit:shoe_size"]}), "dimensions: unknown dimension \"visit:shoe_size\""),
        (json!({"site_id": "example.com", "date_range": "7d", "metrics": ["visitors"], "filters": [["is", "visit:shoe_size", ["42"]]]}), "filters: invalid dimension \"visit:shoe_size\""),
        (json!({"site_id": "example.com", "date_range": "7d", "metrics": ["visitors"], "filters": [["sounds_like", "event:page", ["/"]]]}), "filters: unknown or malformed operator \"sounds_like\""),
        (json!({"site_id": "example.com", "date_range": "7d", "metrics": ["visitors"], "order_by": [["pageviews", "desc"]]}), "order_by: \"pageviews\" is neither"),
        (json!({"site_id": "example.com", "date_range": "7d", "metrics": ["visitors"], "pagination": {"limit": -1}}), "pagination.limit"),
        (json!({"date_range": "7d", "metrics": ["visitors"]}), "site_id: is required"),
        (json!({"site_id": "example.com", "date_range": "7d", "metrics": ["visitors"], "filters": [["matches", "event:page", ["(unclosed"]]]}), "filters: invalid regular expression \"(unclosed\""),
    ];
    for (body, want) in cases {
        let (status, answer) = query(&app, &key, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(want), "{error:?} should contain {want:?}");
    }
    app.stop().await;
}

async fn v1(app: &TestApp, key: &str, path_and_query: &str) -> (u16, Value) {
    let resp = app.client.get(app.url(path_and_query)).bearer_auth(key).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn v1_aggregate_timeseries_breakdown_and_realtime() {
    let (app, key) = app_with_traffic().await;
    let day = "period=custom&date=2026-11-02,2026-11-02";
    let (status, body) = v1(&app, &key, &format!("/api/v1/stats/aggregate?site_id=example.com&{day}&metrics=visitors,visits,bounce_rate,visit_duration")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"results": {"visitors": {"value": 2}, "visits": {"value": 3}, "bounce_rate": {"value": 67}, "visit_duration": {"value": 120}}}));

    let (_, body) = v1(&app, &key, "/api/v1/stats/aggregate?site_id=example.com&period=day&date=2026-11-03&metrics=visitors,pageviews&compare=previous_period").await;
    assert_eq!(body, json!({"results": {"visitors": {"value": 1, "change": -50}, "pageviews": {"value": 1, "change": -75}}}));

    let (_, body) = v1(&app, &key, "/api/v1/stats/aggregate?site_id=example.com&period=day&date=2026-11-02&filters=visit:country%3D%3DGB;event:page%3D%3D/pri*").await;
    assert_eq!(body, json!({"results": {"visitors": {"value": 1}}}), "Plausible's default metric and wildcard filters");

    let (_, body) = v1(&app, &key, "/api/v1/stats/timeseries?site_id=example.com&period=custom&date=2026-11-01,2026-11-03&metrics=visitors,pageviews").await;
    assert_eq!(body, json!({"results": [
        {"date": "2026-11-01", "visitors": 0, "pageviews": 0},
        {"date": "2026-11-02", "visitors": 2, "pageviews": 4},
        {"date": "2026-11-03", "visitors": 1, "pageviews": 1},
    ]}));

    let (_, body) = v1(&app, &key, &format!("/api/v1/stats/breakdown?site_id=example.com&{day}&property=visit:source&metrics=visitors,visits")).await;
    assert_eq!(body, json!({"results": [
        {"source": "Direct / None", "visitors": 1, "visits": 1},
        {"source": "Google", "visitors": 1, "visits": 1},
        {"source": "Twitter", "visitors": 1, "visits": 1},
    ]}));
    let (_, body) = v1(&app, &key, &format!("/api/v1/stats/breakdown?site_id=example.com&{day}&property=event:page&limit=1&page=2")).await;
    assert_eq!(body["results"].as_array().unwrap().len(), 1);

    for (q, want) in [
        ("/api/v1/stats/aggregate?site_id=example.com&period=fortnight", "period: invalid value"),
        ("/api/v1/stats/aggregate?site_id=example.com&period=custom", "date: custom periods take date=FROM,TO"),
        ("/api/v1/stats/aggregate?site_id=example.com&metrics=visitors,nope", "metrics: unknown metric \"nope\""),
        ("/api/v1/stats/aggregate?site_id=example.com&filters=visit:shoe==42", "filters: invalid dimension"),
        ("/api/v1/stats/breakdown?site_id=example.com", "property: is required"),
        ("/api/v1/stats/aggregate?site_id=example.com&compare=last_year", "compare: invalid value"),
        ("/api/v1/stats/timeseries?site_id=example.com&interval=fortnight", "interval: invalid value"),
    ] {
        let (status, body) = v1(&app, &key, q).await;
        assert_eq!(status, 400, "{q} -> {body}");
        assert!(body["error"].as_str().unwrap().contains(want), "{q}: {body}");
    }

    // Realtime: distinct visitors with an event in the last five minutes.
    let (_, body) = v1(&app, &key, "/api/v1/stats/realtime/visitors?site_id=example.com").await;
    assert_eq!(body, json!(0));
    app.post_event(r#"{"n":"pageview","u":"https://example.com/"}"#, FIREFOX, "81.2.69.142").await;
    app.post_event(r#"{"n":"pageview","u":"https://example.com/x"}"#, FIREFOX, "81.2.69.142").await;
    app.post_event(r#"{"n":"pageview","u":"https://example.com/"}"#, CHROME_WIN, "8.8.8.8").await;
    let (_, body) = v1(&app, &key, "/api/v1/stats/realtime/visitors?site_id=example.com").await;
    assert_eq!(body, json!(2));
    app.stop().await;
}

#[tokio::test]
async fn api_keys_are_rate_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = footfall::config::Layer { api_rate_limit: Some(3), ..Default::default() };
    let app = TestApp::spawn_with_layer(tmp.path(), layer).await;
    app.add_site("example.com", "UTC").await;
    let key = footfall::admin::create_api_key(app.store().as_ref(), "t", None).await.unwrap();
    let other = footfall::admin::create_api_key(app.store().as_ref(), "u", None).await.unwrap();
    let body = json!({"site_id": "example.com", "date_range": "day", "metrics": ["visitors"]});
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let resp = app.client.post(app.url("/api/v2/query")).bearer_auth(&key).json(&body).send().await.unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u32>().unwrap());
        }
    }
    // A minute boundary could fall inside the loop and reset the window once.
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 1, "{statuses:?}");
    assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)));
    let (status, _) = query(&app, &other, body).await;
    assert_eq!(status, 200, "limits are per key");
    app.stop().await;
}

#[tokio::test]
async fn comparisons_with_the_previous_period_and_a_custom_range() {
    let (app, key) = app_with_traffic().await;
    // 2026-11-03: A's one pageview (a bounce). The previous period, 2026-11-02: 2 visitors,
    // 4 pageviews, bounce rate 67.
    let (status, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": ["2026-11-03", "2026-11-03"],
        "metrics": ["visitors", "pageviews", "bounce_rate"],
        "include": {"comparisons": {"mode": "previous_period"}}
    })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([{
        "dimensions": [], "metrics": [1, 1, 100],
        "comparison": {"dimensions": [], "metrics": [2, 4, 67], "change": [-50, -75, 33]}
    }]));

    // With a time dimension every day is listed, paired with the previous period's days.
    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": ["2026-11-03", "2026-11-04"], "metrics": ["pageviews"],
        "dimensions": ["time:day"], "include": {"comparisons": {"mode": "previous_period"}}
    })).await;
    assert_eq!(body["results"], json!([
        {"dimensions": ["2026-11-03"], "metrics": [1], "comparison": {"dimensions": ["2026-11-01"], "metrics": [0], "change": [100]}},
        {"dimensions": ["2026-11-04"], "metrics": [0], "comparison": {"dimensions": ["2026-11-02"], "metrics": [4], "change": [-100]}},
    ]));

    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": ["2026-11-03", "2026-11-03"], "metrics": ["visitors"],
        "dimensions": ["visit:source"],
        "include": {"comparisons": {"mode": "custom", "date_range": ["2026-11-02", "2026-11-02"]}}
    })).await;
    assert_eq!(body["results"], json!([{
        "dimensions": ["Direct / None"], "metrics": [1],
        "comparison": {"dimensions": ["Direct / None"], "metrics": [1], "change": [0]}
    }]));

    for (include, want) in [
        (json!({"comparisons": {"mode": "last_week"}}), "include.comparisons.mode: invalid value \"last_week\""),
        (json!({"comparisons": {}}), "include.comparisons.mode: is required"),
        (json!({"comparisons": {"mode": "custom"}}), "include.comparisons.date_range: is required"),
    ] {
        let (status, body) = query(&app, &key, json!({"site_id": "example.com", "date_range": "7d", "metrics": ["visitors"], "include": include})).await;
        assert_eq!(status, 400);
        assert!(body["error"].as_str().unwrap().contains(want), "{body}");
    }
    app.stop().await;
}

/// Goals from `footfall goal add`, as filters and a dimension, with conversion rates.
#[tokio::test]
async fn goals_and_conversion_rates() {
    let (app, key) = app_with_traffic().await;
    let store = app.store();
    use footfall::domain::GoalKind;
    footfall::admin::add_goal(store.as_ref(), "example.com", GoalKind::Page("/pric*".into()), None).await.unwrap();
    footfall::admin::add_goal(store.as_ref(), "example.com", GoalKind::Event("Signup".into()), None).await.unwrap();
    footfall::admin::add_goal(store.as_ref(), "example.com", GoalKind::Page("/nowhere".into()), None).await.unwrap();
    let day = json!(["2026-11-02", "2026-11-02"]);

    // Both visitors saw /pricing; only A signed up. A goal nobody completed is not listed.
    let (status, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visitors", "events", "conversion_rate"],
        "dimensions": ["event:goal"]
    })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([
        {"dimensions": ["Visit /pric*"], "metrics": [2, 2, 100.0]},
        {"dimensions": ["Signup"], "metrics": [1, 1, 50.0]},
    ]));

    // Signups by source: A's signup visit came from Google, and A was Google's only
    // visitor; 1 of the day's 2 visitors converted.
    let (status, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visitors", "conversion_rate", "group_conversion_rate"],
        "dimensions": ["visit:source"], "filters": [["is", "event:goal", ["Signup"]]]
    })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([{"dimensions": ["Google"], "metrics": [1, 50.0, 100.0]}]));

    // Plausible's behavioural example: a goal filter in an aggregate.
    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visitors", "events", "conversion_rate"],
        "filters": [["contains", "event:goal", ["Visit"]]]
    })).await;
    assert_eq!(body["results"], json!([{"dimensions": [], "metrics": [2, 2, 100.0]}]));

    // Plausible's country-and-city example shape: names instead of codes.
    let (status, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visitors"],
        "dimensions": ["visit:country_name", "visit:city_name"],
        "filters": [["is", "visit:country_name", ["United States of America", "United Kingdom of Great Britain and Northern Ireland"]]]
    })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([
        {"dimensions": ["United Kingdom of Great Britain and Northern Ireland", "(not set)"], "metrics": [1]},
        {"dimensions": ["United States of America", "(not set)"], "metrics": [1]},
    ]));

    // Plausible's imports example: imported events are stored like live ones.
    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": "all", "metrics": ["visitors"], "dimensions": ["visit:source"], "include": {"imports": true}
    })).await;
    assert_eq!(body["meta"]["imports_included"], json!(true));
    assert_eq!(body["results"][0], json!({"dimensions": ["Direct / None"], "metrics": [2]}));

    // Plausible's behavioural-filter example: signups among visits that saw a page.
    let (status, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visitors"],
        "filters": [["is", "event:goal", ["Signup"]], ["has_done", ["is", "event:page", ["/"]]]]
    })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"][0]["metrics"], json!([1]));
    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["visitors", "visits"],
        "filters": [["has_not_done", ["is", "event:goal", ["Signup"]]]]
    })).await;
    assert_eq!(body["results"][0]["metrics"], json!([2, 2]), "B's visit and A's second visit");
    // Case-insensitive modifiers, as in Plausible's example.
    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["pageviews"],
        "filters": [["contains", "event:page", ["PRIC"], {"case_sensitive": false}]]
    })).await;
    assert_eq!(body["results"][0]["metrics"], json!([2]));
    let (_, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": day, "metrics": ["pageviews"],
        "filters": [["is", "event:page", ["/BLOG"], {"case_sensitive": false}]]
    })).await;
    assert_eq!(body["results"][0]["metrics"], json!([1]));

    for (q, error) in [
        (json!({"metrics": ["visitors", "events"], "filters": [["is", "segment", [2]]]}), "filters: saved segments are not supported; give the segment's filters instead"),
        (json!({"metrics": ["visitors"], "filters": [["is", "event:page", ["/"], {"case_sensitive": "no"}]]}), "filters: case_sensitive must be true or false, got \"no\""),
        (json!({"metrics": ["conversion_rate"]}), "metrics: conversion_rate requires an event:goal filter or dimension"),
        (json!({"metrics": ["visitors"], "filters": [["is", "event:goal", ["Nope"]]]}), "filters: the goal \"Nope\" is not configured for this site"),
        (json!({"metrics": ["scroll_depth"]}), "metrics: scroll_depth requires an event:page filter or dimension"),
        (json!({"metrics": ["percentage"]}), "metrics: percentage requires a dimension"),
    ] {
        let mut q = q;
        q["site_id"] = json!("example.com");
        q["date_range"] = day.clone();
        let (status, body) = query(&app, &key, q.clone()).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert_eq!(body["error"], error, "{q}");
    }
}

/// Engagement events carry scroll depth and engaged time per page.
#[tokio::test]
async fn scroll_depth_and_time_on_page() {
    let app = TestApp::spawn().await;
    app.add_site("example.com", "UTC").await;
    let key = footfall::admin::create_api_key(app.store().as_ref(), "test", Some("example.com")).await.unwrap();
    for body in [
        r#"{"n":"pageview","u":"https://example.com/doc","d":"example.com"}"#,
        r#"{"n":"engagement","u":"https://example.com/doc","d":"example.com","sd":40,"e":3000}"#,
        r#"{"n":"engagement","u":"https://example.com/doc","d":"example.com","sd":80,"e":12000}"#,
        r#"{"n":"pageview","u":"https://example.com/other","d":"example.com"}"#,
    ] {
        assert_eq!(app.post_event(body, FIREFOX, "81.2.69.142").await.status(), 202);
    }
    let (status, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": "day", "metrics": ["visitors", "scroll_depth", "time_on_page"],
        "dimensions": ["event:page"], "order_by": [["event:page", "asc"]]
    })).await;
    assert_eq!(status, 200, "{body}");
    // The deepest scroll of the visit on /doc (80), its 15 engaged seconds; /other
    // reported nothing.
    assert_eq!(body["results"], json!([
        {"dimensions": ["/doc"], "metrics": [1, 80, 15]},
        {"dimensions": ["/other"], "metrics": [1, null, null]},
    ]));
}

/// Revenue sent with events, per goal, in Plausible's revenue shape.
#[tokio::test]
async fn revenue_metrics() {
    let app = TestApp::spawn().await;
    app.add_site("example.com", "UTC").await;
    let key = footfall::admin::create_api_key(app.store().as_ref(), "test", Some("example.com")).await.unwrap();
    use footfall::domain::GoalKind;
    footfall::admin::add_goal(app.store().as_ref(), "example.com", GoalKind::Event("Purchase".into()), None).await.unwrap();
    footfall::admin::add_goal(app.store().as_ref(), "example.com", GoalKind::Page("/".into()), None).await.unwrap();
    for (body, ip) in [
        (r#"{"n":"pageview","u":"https://example.com/","d":"example.com"}"#, "81.2.69.142"),
        (r#"{"n":"Purchase","u":"https://example.com/","d":"example.com","revenue":{"amount":"1000.50","currency":"EUR"}}"#, "81.2.69.142"),
        (r#"{"n":"Purchase","u":"https://example.com/","d":"example.com","$":{"amount":2000,"currency":"EUR"}}"#, "8.8.8.8"),
    ] {
        assert_eq!(app.post_event(body, FIREFOX, ip).await.status(), 202);
    }
    // Plausible's documented example: total revenue by goal.
    let (status, body) = query(&app, &key, json!({
        "site_id": "example.com", "date_range": "day", "metrics": ["total_revenue", "average_revenue", "events"], "dimensions": ["event:goal"]
    })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["results"], json!([
        {"dimensions": ["Purchase"], "metrics": [
            {"value": 3000.5, "currency": "EUR", "short": "€3.0K", "long": "€3,000.50"},
            {"value": 1500.25, "currency": "EUR", "short": "€1.5K", "long": "€1,500.25"}, 2]},
        {"dimensions": ["Visit /"], "metrics": [null, null, 1]},
    ]));
    let (status, body) = query(&app, &key, json!({"site_id": "example.com", "date_range": "day", "metrics": ["total_revenue"]})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "metrics: total_revenue requires an event:goal filter or dimension");
}
