//! Bad input never panics, never answers 5xx, never stores a half-event, and the error
//! names what is wrong.

mod common;

use common::*;
use proptest::prelude::*;

#[tokio::test]
async fn bad_bodies_get_4xx_naming_the_problem() {
    let app = TestApp::spawn().await;
    let site = app.add_site("example.com", "UTC").await;
    let long_url = format!(r#"{{"n":"pageview","u":"https://example.com/{}"}}"#, "a".repeat(2100));
    let many_props = format!(
        r#"{{"n":"x","u":"https://example.com/","p":{{{}}}}}"#,
        (0..40).map(|i| format!("\"k{i}\":\"v\"")).collect::<Vec<_>>().join(",")
    );
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{".to_vec(), 400, "body: not valid JSON"),
        (b"".to_vec(), 400, "body: not valid JSON"),
        (b"\xff\xfe\xfd".to_vec(), 400, "body: not valid JSON"),
        (b"null".to_vec(), 400, "body: must be a JSON object"),
        (br#""pageview""#.to_vec(), 400, "body: must be a JSON object"),
        (br#"{"u":"https://example.com/"}"#.to_vec(), 400, "name: is required"),
        (br#"{"n":"pageview"}"#.to_vec(), 400, "url: is required"),
        (br#"{"n":["pageview"],"u":"https://example.com/"}"#.to_vec(), 400, "name: must be a string"),
        (br#"{"n":"pageview","u":"data:text/html;base64,PHNjcmlwdD4="}"#.to_vec(), 400, "url: the data: scheme is not allowed"),
        (br#"{"n":"pageview","u":"example.com/no-scheme"}"#.to_vec(), 400, "url: not an absolute URL"),
        (long_url.into_bytes(), 400, "url: longer than 2000 bytes"),
        (many_props.into_bytes(), 400, "props: more than 30 properties"),
        (br#"{"n":"pageview","u":"https://example.com/","i":"no"}"#.to_vec(), 400, "interactive: must be true or false"),
        (br#"{"n":"pageview","u":"https://example.com/","$":{"amount":"lots","currency":"EUR"}}"#.to_vec(), 400, "revenue.amount"),
        (br#"{"n":"pageview","u":"https://unknown.example/"}"#.to_vec(), 404, "domain: no site is registered for unknown.example"),
        (vec![b' '; 70 * 1024], 413, "body: larger than 65536 bytes"),
    ];
    for (body, status, message) in cases {
        let resp = app
            .client
            .post(app.url("/api/event"))
            .header("user-agent", FIREFOX)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "body {:?}", String::from_utf8_lossy(&body[..body.len().min(80)]));
        let json: serde_json::Value = resp.json().await.expect("errors are JSON");
        let error = json["error"].as_str().expect("an error field");
        assert!(error.contains(message), "{error:?} should contain {message:?}");
    }
    assert!(app.events(&site).await.is_empty(), "nothing is stored from bad input");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "footfall_events_rejected_total{reason=\"invalid_payload\"}"), 14);
    assert_eq!(metric(&m, "footfall_events_rejected_total{reason=\"unknown_site\"}"), 1);
    assert_eq!(metric(&m, "footfall_events_rejected_total{reason=\"too_large\"}"), 1);

    // A chunked body without Content-Length is limited too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..20).map(|_| Ok(vec![b' '; 8192])).collect();
    let resp = app
        .client
        .post(app.url("/api/event"))
        .header("user-agent", FIREFOX)
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    app.stop().await;
}

fn futures_stream(items: Vec<Result<Vec<u8>, std::io::Error>>) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct Iter(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Iter {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| serde_json::json!(f)),
        ".{0,40}".prop_map(serde_json::Value::String),
        Just(serde_json::json!("https://example.com/p?utm_source=x#h")),
        Just(serde_json::json!("example.com")),
        Just(serde_json::json!("pageview")),
        Just(serde_json::json!("engagement")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("n".to_string()), Just("u".to_string()), Just("d".to_string()), Just("r".to_string()),
                    Just("p".to_string()), Just("$".to_string()), Just("i".to_string()), Just("h".to_string()),
                    Just("sd".to_string()), Just("e".to_string()), Just("props".to_string()), Just("revenue".to_string()),
                    Just("amount".to_string()), Just("currency".to_string()), ".{0,8}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

#[test]
fn random_bodies_never_produce_a_server_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(async {
        let app = TestApp::spawn().await;
        app.add_site("example.com", "UTC").await;
        app
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 400, ..Default::default() });
    runner
        .run(&body(), |body| {
            let status = rt.block_on(async {
                app.client
                    .post(app.url("/api/event"))
                    .header("user-agent", FIREFOX)
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .status()
            });
            prop_assert!(status.as_u16() < 500, "status {} for {:?}", status, String::from_utf8_lossy(&body));
            Ok(())
        })
        .unwrap();
    rt.block_on(app.stop());
}
