//! `POST /api/event`: Plausible-compatible event ingestion.

use super::error::ApiError;
use super::AppState;
use crate::domain::Site;
use crate::storage::{codec, EncodedEvent};
use crate::ingest::{self, payload};
use crate::metrics::Rejection;
use crate::writer::SubmitError;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Event bodies are small; anything larger is a mistake or an attack.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

const DROPPED_HEADER: &str = "x-footfall-dropped";

fn with_cors(mut resp: Response) -> Response {
    resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

pub async fn preflight() -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    with_cors(resp)
}

pub async fn post_event(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let result = ingest_event(&app, peer, &parts.headers, body).await;
    let resp = match result {
        Ok(resp) => resp,
        Err((why, e)) => {
            app.metrics.reject(why);
            tracing::debug!(route = "POST /api/event", status = e.status().as_u16(), reason = ?why, "event rejected");
            e.into_response()
        }
    };
    let mut resp = with_cors(resp);
    // Which worker answered: for operators behind a load balancer, and for tests.
    resp.headers_mut().insert("x-footfall-worker", app.worker.clone());
    resp
}

type Rejected = (Rejection, ApiError);

async fn ingest_event(app: &AppState, peer: SocketAddr, headers: &HeaderMap, body: Body) -> Result<Response, Rejected> {
    let too_large = || {
        (
            Rejection::TooLarge,
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("body: larger than {MAX_BODY_BYTES} bytes")),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| too_large())?;
    let req = payload::parse_event_body(&bytes)
        .map_err(|e| (Rejection::InvalidPayload, ApiError::bad_request(e.0)))?;

    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let ua = app.user_agents.get(user_agent);
    if ua.is_bot {
        app.metrics.events_dropped_bot.fetch_add(1, Relaxed);
        let mut resp = accepted();
        resp.headers_mut().insert(DROPPED_HEADER, HeaderValue::from_static("bot"));
        return Ok(resp);
    }

    let mut sites: Vec<Arc<Site>> = Vec::with_capacity(req.domains.len());
    for d in &req.domains {
        match app.sites.lookup(d).await {
            Ok(Some(site)) => sites.push(site),
            Ok(None) => {}
            Err(e) => return Err((Rejection::StorageUnavailable, ApiError::dependency("storage", &e))),
        }
    }
    if sites.is_empty() {
        return Err((
            Rejection::UnknownSite,
            ApiError::new(StatusCode::NOT_FOUND, format!("domain: no site is registered for {}", req.domains.join(", "))),
        ));
    }

    let ip = app.trusted_proxies.client_ip(
        peer.ip(),
        headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        headers.get("forwarded").and_then(|v| v.to_str().ok()),
    );
    let facts = ingest::enrich(&req, &ua, app.geo.lookup(ip));
    let now = chrono::Utc::now().timestamp_millis();

    let mut events: Vec<EncodedEvent> = Vec::with_capacity(sites.len());
    for site in &sites {
        let day = site.timezone.local_day(now);
        let salt = app
            .coordinator
            .salt(site, day)
            .await
            .map_err(|e| (Rejection::StorageUnavailable, ApiError::dependency("storage", &e)))?;
        let visitor = crate::identity::visitor_id(&salt, site.id, ip, user_agent);
        let visit = app
            .coordinator
            .touch_visit(site.id, visitor, facts.kind, now)
            .await
            .map_err(|e| (Rejection::StorageUnavailable, ApiError::dependency("coordination", &e)))?;
        if let Some(visit) = visit {
            let mut encoded = Vec::with_capacity(256);
            codec::encode(&facts, &mut encoded);
            events.push(EncodedEvent { site_id: site.id, ts_ms: now, day, visitor_id: visitor, visit_id: visit, kind: facts.kind, facts: encoded });
        }
    }
    if events.is_empty() {
        // An engagement event for a visit that already ended: nothing to extend.
        app.metrics.reject(Rejection::NoVisit);
        let mut resp = accepted();
        resp.headers_mut().insert(DROPPED_HEADER, HeaderValue::from_static("no-visit"));
        return Ok(resp);
    }

    let receipt = app.writer.submit(events).map_err(|e| match e {
        SubmitError::Overloaded => (Rejection::Overloaded, ApiError::unavailable("overloaded, retry later", 1)),
        SubmitError::Closed => (Rejection::Overloaded, ApiError::unavailable("shutting down, retry later", 1)),
    })?;
    if receipt.durable().await {
        Ok(accepted())
    } else {
        Err((Rejection::StorageUnavailable, ApiError::unavailable("storage is unavailable, retry later", 1)))
    }
}
