//! The tracker in a real browser: Debian's Chromium, driven by Playwright
//! (tests/browser/run.mjs), loads a small multi-page site served on 127.0.0.1 with
//! Footfall's script variants, Plausible's script-tag conventions and Plausible's own npm
//! tracker. The test checks what Footfall stored, and that no page saw a JavaScript error.
//! `scripts/test` installs Chromium and the npm packages when they are missing.

mod common;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use common::TestApp;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

struct Site {
    footfall: String,
}

/// The test site: pages from tests/browser/site with `{{FOOTFALL}}` replaced by the
/// server's origin; app-style routes serve their page; `/missing-page` answers 404.
async fn page(State(site): State<Arc<Site>>, path: Option<UrlPath<String>>) -> Response {
    let path = path.map(|p| p.0).unwrap_or_default();
    if path == "plausible.js" {
        let js = std::fs::read(browser_dir().join("node_modules/@plausible-analytics/tracker/plausible.js")).unwrap_or_default();
        return ([(header::CONTENT_TYPE, "text/javascript")], js).into_response();
    }
    let (file, status) = match path.as_str() {
        "" | "index.html" => ("index.html", StatusCode::OK),
        p if p.starts_with("spa/") => ("index.html", StatusCode::OK),
        p if p.starts_with("admin/") => ("excluded.html", StatusCode::OK),
        "missing-page" => ("missing.html", StatusCode::NOT_FOUND),
        p if !p.contains("..") && p.ends_with(".html") => (p, StatusCode::OK),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    match std::fs::read_to_string(browser_dir().join("site").join(file)) {
        Ok(html) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html.replace("{{FOOTFALL}}", &site.footfall)).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// (name, pathname, props) of a stored event.
type Seen = (String, String, BTreeMap<String, String>);

fn seen(e: &footfall::domain::Event) -> Seen {
    (e.facts.name.clone(), e.facts.pathname.clone(), e.facts.props.iter().cloned().collect())
}

fn expect(name: &str, path: &str, props: &[(&str, &str)]) -> Seen {
    (name.into(), path.into(), props.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracker_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium is missing at {chromium}: install Debian's chromium package (scripts/test does) or set CHROMIUM"
    );
    assert!(
        browser_dir().join("node_modules/playwright-core").exists(),
        "the browser tests' npm packages are missing: run `npm ci --prefix tests/browser` (scripts/test does)"
    );
    let app = TestApp::spawn().await;
    let site = app.add_site("test.example", "UTC").await;

    let web = axum::Router::new()
        .route("/", axum::routing::get(page))
        .route("/{*path}", axum::routing::get(page))
        .with_state(Arc::new(Site { footfall: format!("http://{}", app.addr) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, web).await });

    let (script, chromium_env, site_origin) = (browser_dir().join("run.mjs"), chromium.clone(), origin.clone());
    let out = tokio::task::spawn_blocking(move || std::process::Command::new("node").arg(script).arg(site_origin).env("CHROMIUM", chromium_env).output())
        .await
        .unwrap()
        .expect("node is missing: install Node.js 20 to run the browser tests");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the browser run failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("the run's JSON report");
    assert_eq!(report["errors"], serde_json::json!([]), "pages saw JavaScript errors");
    assert_eq!(report["values"]["purchaseStatus"], 202, "the custom event's callback got the server's answer");
    assert_eq!(report["values"]["optedOutCalls"], "skipped", "the opt-out flag stops events");
    assert_eq!(report["values"]["offlineCallback"], "error", "a network failure reaches the callback, not the page");

    let o = |p: &str| format!("{origin}{p}");
    let mut want: Vec<Seen> = vec![
        // The home page: pageview, the call queued before load, a custom event, SPA
        // navigations (a replaceState on the same path is not a new page), popstate back.
        expect("pageview", "/", &[]),
        expect("Queued", "/", &[("when", "before load")]),
        expect("Purchase", "/", &[("plan", "pro"), ("seats", "3")]),
        expect("pageview", "/spa/a", &[]),
        expect("pageview", "/spa/b", &[]),
        expect("pageview", "/spa/a", &[]),
        expect("pageview", "/", &[]),
        // Hash-based routing.
        expect("pageview", "/hash.html", &[]),
        expect("pageview", "/hash.html#/x", &[]),
        expect("pageview", "/hash.html#/y", &[]),
        // Outbound, download and tagged clicks; an internal link sends nothing.
        expect("pageview", "/links.html", &[]),
        expect("Outbound Link: Click", "/links.html", &[("url", "https://elsewhere.example/page?x=1")]),
        expect("File Download", "/links.html", &[("url", &o("/files/report.pdf"))]),
        expect("Newsletter Signup", "/links.html", &[("position", "footer")]),
        expect("Cta", "/links.html", &[("url", &o("/pricing"))]),
        expect("Outbound Link: Click", "/links.html", &[("url", "https://elsewhere.example/page?x=1")]),
        // The long page (its engagement is checked below).
        expect("pageview", "/long.html", &[]),
        // /admin/* is excluded and 127.0.0.1 without data-include-localhost is ignored;
        // a 404 page sends its pageview and a 404 event.
        expect("pageview", "/missing-page", &[]),
        expect("404", "/missing-page", &[("path", "/missing-page")]),
        // Manual pageviews: only the one the page sends, with its own URL.
        expect("pageview", "/manual/chosen-url", &[]),
        // A Plausible script tag and Plausible's queue snippet.
        expect("pageview", "/plausible-tag.html", &[]),
        expect("Plausible Queued", "/plausible-tag.html", &[("from", "snippet")]),
        expect("Plausible Later", "/plausible-tag.html", &[]),
        // Plausible's npm tracker.
        expect("pageview", "/plausible-npm.html", &[]),
        expect("Npm Signup", "/plausible-npm.html", &[("plan", "team")]),
        expect("Outbound Link: Click", "/plausible-npm.html", &[("url", "https://elsewhere.example/npm")]),
        expect("pageview", "/npm/next", &[]),
    ];
    want.sort();

    // Events are durable once answered; engagement sent while leaving a page may land a
    // moment after the run.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = app.events(&site).await;
        let engaged = events.iter().any(|e| e.facts.name == "engagement" && e.facts.pathname == "/long.html");
        let npm = events.iter().any(|e| e.facts.name == "engagement" && e.facts.pathname == "/npm/next");
        if engaged && npm && events.iter().filter(|e| e.facts.name != "engagement").count() >= want.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut got: Vec<Seen> = events.iter().filter(|e| e.facts.name != "engagement").map(seen).collect();
    got.sort();
    assert_eq!(got, want);

    let purchase = events.iter().find(|e| e.facts.name == "Purchase").unwrap();
    let revenue = purchase.facts.revenue.as_ref().expect("the purchase's revenue");
    assert_eq!((revenue.amount.as_str(), revenue.currency.as_str()), ("49.90", "EUR"));
    let npm = events.iter().find(|e| e.facts.name == "Npm Signup").unwrap();
    assert_eq!(npm.facts.revenue.as_ref().map(|r| r.currency.as_str()), Some("USD"));
    assert!(events.iter().all(|e| e.facts.browser == "Chrome"), "the browser is recognised (and not dropped as a bot)");

    // Engagement: the long page was read to the end; Plausible's tracker reports too.
    let long = events.iter().filter(|e| e.facts.name == "engagement" && e.facts.pathname == "/long.html").collect::<Vec<_>>();
    let engagement: Vec<_> = events.iter().filter(|e| e.facts.name == "engagement").map(|e| (&e.facts.pathname, e.facts.scroll_depth, e.facts.engaged_ms)).collect();
    assert!(!long.is_empty(), "an engagement event for the long page; engagement events: {engagement:?}");
    assert!(long.iter().any(|e| e.facts.scroll_depth.is_some_and(|sd| sd >= 90)), "scrolled to the end: {long:?}");
    assert!(long.iter().all(|e| e.facts.engaged_ms.is_some()), "engaged time is reported");
    // Plausible's npm tracker reports engagement too: for the first page when the SPA
    // navigates, and for the second when the tab closes; Footfall stores what it sends.
    for page in ["/plausible-npm.html", "/npm/next"] {
        assert!(engagement.iter().any(|(p, sd, e)| *p == page && sd.is_some() && e.is_some()), "{page}: {engagement:?}");
    }
}
