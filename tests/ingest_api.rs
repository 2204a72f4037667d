//! `POST /api/event` end to end: what a 202 stores, and how identity, visits, sites and
//! forwarding headers behave.

mod common;

use common::*;
use footfall::domain::EventKind;

#[tokio::test]
async fn a_pageview_is_stored_enriched() {
    let app = TestApp::spawn().await;
    let site = app.add_site("example.com", "Europe/Berlin").await;
    let resp = app
        .post_event(
            r#"{"n":"pageview","u":"https://www.example.com/blog/caf%C3%A9?utm_source=news&utm_medium=email&utm_campaign=launch#top","d":"example.com","r":"https://www.google.de/search?q=x","p":{"author":"ann","n":7}}"#,
            CHROME_WIN,
            "8.8.8.8",
        )
        .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.text().await.unwrap(), "{}");

    let events = app.events(&site).await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    let f = &e.facts;
    assert_eq!(f.kind, EventKind::Pageview);
    assert_eq!(f.hostname, "example.com");
    assert_eq!(f.pathname, "/blog/café");
    assert_eq!(f.referrer, "google.de/search");
    assert_eq!(f.source, "news");
    assert_eq!((f.utm.source.as_str(), f.utm.medium.as_str(), f.utm.campaign.as_str()), ("news", "email", "launch"));
    assert_eq!((f.browser.as_str(), f.browser_version.as_str()), ("Chrome", "131.0"));
    assert_eq!((f.os.as_str(), f.os_version.as_str(), f.device.as_str()), ("Windows", "10", "Desktop"));
    assert_eq!(f.country, "US");
    assert_eq!(f.props, vec![("author".to_string(), "ann".to_string()), ("n".to_string(), "7".to_string())]);
    assert_eq!(e.day, site.timezone.local_day(e.ts_ms));
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - e.ts_ms).abs() < 60_000, "timestamp is the receive time");
    app.stop().await;
}

#[tokio::test]
async fn visitors_and_visits() {
    let app = TestApp::spawn().await;
    let site = app.add_site("example.com", "UTC").await;
    let pv = |path: &str| format!(r#"{{"n":"pageview","u":"https://example.com{path}"}}"#);
    for (path, ua, ip) in [
        ("/a", FIREFOX, "81.2.69.142"),
        ("/b", FIREFOX, "81.2.69.142"),
        ("/c", FIREFOX, "81.2.69.143"),
        ("/d", SAFARI_IPHONE, "81.2.69.142"),
    ] {
        assert_eq!(app.post_event(&pv(path), ua, ip).await.status(), 202);
    }
    let signup = r#"{"n":"Signup","u":"https://example.com/b","revenue":{"amount":"9.90","currency":"eur"},"interactive":false}"#;
    assert_eq!(app.post_event(signup, FIREFOX, "81.2.69.142").await.status(), 202);

    let events = app.events(&site).await;
    let by_path = |p: &str| events.iter().find(|e| e.facts.pathname == p && e.facts.kind == EventKind::Pageview).unwrap();
    let (a, b, c, d) = (by_path("/a"), by_path("/b"), by_path("/c"), by_path("/d"));
    assert_eq!(a.visitor_id, b.visitor_id, "same IP and user agent on one day: one visitor");
    assert_eq!(a.visit_id, b.visit_id, "events minutes apart: one visit");
    assert_ne!(a.visitor_id, c.visitor_id, "another IP: another visitor");
    assert_ne!(a.visitor_id, d.visitor_id, "another user agent: another visitor");
    assert_eq!(d.facts.device, "Mobile");
    assert_eq!(c.facts.country, "GB");
    let custom = events.iter().find(|e| e.facts.name == "Signup").unwrap();
    assert_eq!(custom.facts.kind, EventKind::Custom);
    assert!(!custom.facts.interactive);
    assert_eq!(custom.visit_id, a.visit_id);
    let rev = custom.facts.revenue.as_ref().unwrap();
    assert_eq!((rev.amount.as_str(), rev.currency.as_str()), ("9.90", "EUR"));
    app.stop().await;
}

#[tokio::test]
async fn engagement_extends_a_visit_and_is_dropped_without_one() {
    let app = TestApp::spawn().await;
    let site = app.add_site("example.com", "UTC").await;
    let engagement = r#"{"n":"engagement","u":"https://example.com/a","sd":80,"e":12000}"#;
    let resp = app.post_event(engagement, FIREFOX, "81.2.69.142").await;
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.headers()["x-footfall-dropped"], "no-visit");
    assert!(app.events(&site).await.is_empty());

    app.post_event(r#"{"n":"pageview","u":"https://example.com/a"}"#, FIREFOX, "81.2.69.142").await;
    let resp = app.post_event(engagement, FIREFOX, "81.2.69.142").await;
    assert!(resp.headers().get("x-footfall-dropped").is_none());
    let events = app.events(&site).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].facts.kind, EventKind::Engagement);
    assert_eq!((events[1].facts.scroll_depth, events[1].facts.engaged_ms), (Some(80), Some(12000)));
    assert_eq!(events[0].visit_id, events[1].visit_id);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "footfall_events_rejected_total{reason=\"engagement_without_visit\"}"), 1);
    app.stop().await;
}

#[tokio::test]
async fn several_domains_in_one_request() {
    let app = TestApp::spawn().await;
    let a = app.add_site("a.example", "UTC").await;
    let b = app.add_site("b.example", "Asia/Tokyo").await;
    let body = r#"{"n":"pageview","u":"https://a.example/x","d":"a.example,b.example,unknown.example"}"#;
    assert_eq!(app.post_event(body, FIREFOX, "81.2.69.142").await.status(), 202);
    let (ea, eb) = (app.events(&a).await, app.events(&b).await);
    assert_eq!((ea.len(), eb.len()), (1, 1));
    assert_ne!(ea[0].visitor_id, eb[0].visitor_id, "salts and ids are per site");
    assert_eq!(eb[0].day, b.timezone.local_day(eb[0].ts_ms));
    app.stop().await;
}

#[tokio::test]
async fn bots_are_dropped_and_counted() {
    let app = TestApp::spawn().await;
    let site = app.add_site("example.com", "UTC").await;
    for ua in ["Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "curl/8.5.0", ""] {
        let resp = app.post_event(r#"{"n":"pageview","u":"https://example.com/"}"#, ua, "8.8.8.8").await;
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()["x-footfall-dropped"], "bot");
    }
    assert!(app.events(&site).await.is_empty());
    assert_eq!(metric(&app.metrics().await, "footfall_events_dropped_bot_total"), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_site_added_by_another_process_is_seen_at_once() {
    let app = TestApp::spawn().await;
    let body = r#"{"n":"pageview","u":"https://late.example/"}"#;
    assert_eq!(app.post_event(body, FIREFOX, "8.8.8.8").await.status(), 404);
    let site = app.add_site("late.example", "UTC").await;
    assert_eq!(app.post_event(body, FIREFOX, "8.8.8.8").await.status(), 202);
    assert_eq!(app.events(&site).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn forwarding_headers_from_untrusted_peers_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(tmp.path(), vec![]).await;
    let site = app.add_site("example.com", "UTC").await;
    let body = r#"{"n":"pageview","u":"https://example.com/"}"#;
    app.post_event(body, FIREFOX, "8.8.8.8").await;
    app.post_event(body, FIREFOX, "81.2.69.142").await;
    let events = app.events(&site).await;
    assert_eq!(events[0].facts.country, "", "the socket address (127.0.0.1) has no country");
    assert_eq!(events[0].visitor_id, events[1].visitor_id, "spoofed addresses do not make new visitors");
    app.stop().await;
}

#[tokio::test]
async fn a_visit_continues_across_a_restart() {
    let mut app = TestApp::spawn().await;
    let dir = app.take_dir().unwrap();
    let site = app.add_site("example.com", "UTC").await;
    app.post_event(r#"{"n":"pageview","u":"https://example.com/1"}"#, FIREFOX, "81.2.69.142").await;
    app.stop().await;

    let app = TestApp::spawn_with(dir.path(), vec!["127.0.0.1".into()]).await;
    app.post_event(r#"{"n":"pageview","u":"https://example.com/2"}"#, FIREFOX, "81.2.69.142").await;
    let events = app.events(&site).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].visitor_id, events[1].visitor_id, "the day's salt survives the restart");
    assert_eq!(events[0].visit_id, events[1].visit_id, "the open visit survives the restart");
    app.stop().await;
}

#[tokio::test]
async fn cors_preflight_and_health() {
    let app = TestApp::spawn().await;
    let resp = app.client.request(reqwest::Method::OPTIONS, app.url("/api/event")).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(resp.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));

    let health: serde_json::Value = app.client.get(app.url("/api/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["role"], "leader");
    assert_eq!(health["storage"], "sqlite");

    let resp = app.client.get(app.url("/api/event")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"], "method not allowed on this endpoint");

    let resp = app.client.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"], "no such endpoint");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_ingested_events_and_commits() {
    let app = TestApp::spawn().await;
    app.add_site("example.com", "UTC").await;
    for i in 0..5 {
        let body = format!(r#"{{"n":"pageview","u":"https://example.com/{i}"}}"#);
        assert_eq!(app.post_event(&body, FIREFOX, "8.8.8.8").await.status(), 202);
    }
    let m = app.metrics().await;
    assert_eq!(metric(&m, "footfall_events_ingested_total"), 5);
    assert!(metric(&m, "footfall_batches_committed_total") >= 1);
    assert!(metric(&m, "footfall_commit_seconds_count") >= 1);
    assert_eq!(metric(&m, "footfall_ingest_queue_depth"), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_city_database_adds_region_and_city() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = footfall::config::Layer {
        trusted_proxy: Some(vec!["127.0.0.1".into()]),
        geoip: Some(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/city-test.mmdb")),
        ..Default::default()
    };
    let app = TestApp::spawn_with_layer(tmp.path(), layer).await;
    let site = app.add_site("example.com", "UTC").await;
    assert_eq!(app.post_event(r#"{"n":"pageview","u":"https://example.com/"}"#, FIREFOX, "198.51.100.20").await.status(), 202);
    let e = &app.events(&site).await[0];
    assert_eq!((e.facts.country.as_str(), e.facts.region.as_str(), e.facts.city.as_str()), ("DE", "DE-BE", "Berlin"));
    app.stop().await;
}
