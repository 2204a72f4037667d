//! The one HTTP error type. Client errors carry their message; server-side failures are
//! logged with their whole cause chain and answered without internal detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    /// The caller should retry: overload or a dependency that is down.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u32) -> ApiError {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, message: message.into(), retry_after: Some(retry_after_secs) }
    }
    pub fn too_many(message: impl Into<String>, retry_after_secs: u32) -> ApiError {
        ApiError { status: StatusCode::TOO_MANY_REQUESTS, message: message.into(), retry_after: Some(retry_after_secs.max(1)) }
    }
    /// A dependency failed: log the cause, tell the client only to retry.
    pub fn dependency(what: &str, cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(dependency = what, error = %cause, "request failed on a dependency");
        ApiError::unavailable(format!("{what} is unavailable, retry later"), 1)
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
