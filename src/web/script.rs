//! `GET /js/{file}`: the tracker script and its variants (see `crate::tracker`), with an
//! ETag, a day of caching, and gzip when the client takes it.

use super::error::ApiError;
use super::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::io::Write;
use std::sync::Arc;

pub async fn tracker(State(app): State<Arc<AppState>>, Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    let variant = app.tracker.get(&file).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e))?;
    let etag = HeaderValue::from_str(&variant.etag).expect("an etag is hex in quotes");
    let cache = HeaderValue::from_static("public, max-age=86400, stale-while-revalidate=604800");
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(',').any(|t| t.trim() == variant.etag)) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag), (header::CACHE_CONTROL, cache)]).into_response());
    }
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip")));
    let mut resp = if gzip {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(variant.body.as_bytes()).expect("gzip into memory");
        let mut r = z.finish().expect("gzip into memory").into_response();
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        variant.body.clone().into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/javascript; charset=utf-8"));
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(resp)
}
