//! `GET /js/script*.js`: variants, caching headers, ETag revalidation, gzip, and clear
//! errors for names that are not variants.

mod common;

use common::TestApp;

#[tokio::test]
async fn the_script_is_served_with_caching_and_variants() {
    let app = TestApp::spawn().await;
    let resp = app.client.get(app.url("/js/script.js")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/javascript; charset=utf-8");
    assert!(h["cache-control"].to_str().unwrap().contains("max-age=86400"));
    let etag = h["etag"].to_str().unwrap().to_string();
    let body = resp.text().await.unwrap();
    assert!(body.starts_with("!function(){") && body.contains("/api/event"));
    assert!(!body.contains("hashchange"), "the default has no hash routing");

    // Revalidation answers 304 without a body.
    let resp = app.client.get(app.url("/js/script.js")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), 304);
    assert!(resp.bytes().await.unwrap().is_empty());

    // Gzip for clients that take it (reqwest here does not decode it).
    let resp = app.client.get(app.url("/js/script.js")).header("accept-encoding", "br, gzip").send().await.unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let gz = resp.bytes().await.unwrap();
    assert!(gz.len() < body.len() && gz.len() <= 1024, "default script: {} bytes gzipped", gz.len());

    // Variants: features in any order name the same script.
    let a = app.client.get(app.url("/js/script.hash.outbound-links.js")).send().await.unwrap();
    let b = app.client.get(app.url("/js/script.outbound-links.hash.js")).send().await.unwrap();
    assert_eq!(a.headers()["etag"], b.headers()["etag"]);
    assert!(a.text().await.unwrap().contains("hashchange"));

    for (path, error) in [
        ("/js/script.bogus.js", "unknown tracker feature \"bogus\""),
        ("/js/other.js", "no tracker named \"other.js\""),
    ] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains(error), "{path}: {body}");
    }
}
