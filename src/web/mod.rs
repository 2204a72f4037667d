//! HTTP: routing and handlers. Handlers parse the wire format, call the domain, and map
//! results to responses; they never touch SQL or a connection.

pub mod error;
mod event;
mod ops;
mod stats;
mod stats_v1;
mod script;

use crate::coordination::Coordinator;
use crate::ingest::client_ip::TrustedProxies;
use crate::ingest::geo::GeoIp;
use crate::ingest::user_agent::UserAgentCache;
use crate::metrics::Metrics;
use crate::sites::SiteDirectory;
use crate::storage::Store;
use crate::writer::EventWriter;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub coordinator: Arc<dyn Coordinator>,
    pub sites: SiteDirectory,
    pub writer: EventWriter,
    pub metrics: Arc<Metrics>,
    pub geo: Arc<GeoIp>,
    pub user_agents: UserAgentCache,
    pub trusted_proxies: TrustedProxies,
    pub live_visits: Box<dyn Fn() -> usize + Send + Sync>,
    pub api_rate_limit: u32,
    pub rollups: crate::query::engine::DayCache,
    pub tracker: crate::tracker::Variants,
    /// This worker's name, as a ready header value.
    pub worker: axum::http::HeaderValue,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/event", post(event::post_event).options(event::preflight))
        .route("/api/v2/query", post(stats::query_v2))
        .route("/api/v1/stats/realtime/visitors", get(stats_v1::realtime_visitors))
        .route("/api/v1/stats/aggregate", get(stats_v1::aggregate))
        .route("/api/v1/stats/timeseries", get(stats_v1::timeseries))
        .route("/api/v1/stats/breakdown", get(stats_v1::breakdown))
        .route("/js/{file}", get(script::tracker))
        .route("/api/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .route("/", get(ops::index))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .with_state(state)
}
