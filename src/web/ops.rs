//! Operational endpoints: health for the load balancer, metrics for Prometheus, and the
//! front page.

use super::error::ApiError;
use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use std::time::Duration;

pub async fn health(State(app): State<Arc<AppState>>) -> Response {
    let role = if app.coordinator.is_leader() { "leader" } else { "follower" };
    let storage = tokio::time::timeout(Duration::from_secs(2), app.store.ping()).await;
    let failing = match storage {
        Ok(Ok(())) if app.writer.is_failing() => Some(("storage", "the last event commit failed (disk full or I/O error?)".to_string())),
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(("storage", format!("{e:#}"))),
        Err(_) => Some(("storage", "no answer within 2 s".to_string())),
    };
    // Without coordination, events cannot join their visits: refuse them (503) rather
    // than count them wrong, and let the load balancer route around this worker.
    let failing = match failing {
        None => app.coordinator.check().await.err().map(|e| ("coordination", e)),
        some => some,
    };
    match failing {
        None => Json(serde_json::json!({
            "status": "ok",
            "role": role,
            "storage": app.store.backend(),
            "queue_depth": app.writer.queue_depth(),
            "worker": app.worker.to_str().unwrap_or(""),
            "version": env!("CARGO_PKG_VERSION"),
        }))
        .into_response(),
        Some((what, error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "unavailable",
                "role": role,
                "failing": what,
                "worker": app.worker.to_str().unwrap_or(""),
                "error": error,
            })),
        )
            .into_response(),
    }
}

pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let body = app.metrics.render(
        app.writer.queue_depth(),
        app.writer.capacity(),
        (app.live_visits)(),
        app.coordinator.is_leader(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

pub async fn index() -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Footfall</title></head><body>\
         <h1>Footfall</h1><p>Footfall is running. Send events to <code>POST /api/event</code>; \
         health at <a href=\"/api/health\">/api/health</a>, metrics at <a href=\"/metrics\">/metrics</a>.</p>\
         <footer>{}</footer></body></html>",
        crate::ingest::geo::ATTRIBUTION_HTML
    ))
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}
