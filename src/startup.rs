//! Builds the running application from a validated `Config`, an already-bound listener
//! and a shutdown future, so production and tests start Footfall the same way (tests bind
//! port 0).

use crate::config::{Config, StorageConfig};
use crate::coordination::redis::RedisCoordinator;
use crate::coordination::{Coordinator, LocalCoordinator};
use crate::ingest::client_ip::TrustedProxies;
use crate::ingest::geo::GeoIp;
use crate::ingest::user_agent::UserAgentCache;
use crate::metrics::Metrics;
use crate::sites::SiteDirectory;
use crate::storage::sqlite::SqliteStore;
use crate::storage::Store;
use crate::web::{self, AppState};
use crate::writer::EventWriter;
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often finished visits are forgotten and expired salts deleted.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

pub async fn open_store(storage: &StorageConfig) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &storage.database {
        return Ok(Arc::new(crate::storage::postgres::PostgresStore::open(url).await?));
    }
    let dir = storage.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir))
        .await
        .context("while opening storage")??;
    Ok(Arc::new(store))
}

pub fn load_geoip(config: &Config) -> anyhow::Result<GeoIp> {
    match &config.geoip {
        Some(path) => GeoIp::open(path),
        None => Ok(GeoIp::embedded()),
    }
}

/// Runs `footfall serve` until `shutdown` resolves, then stops accepting, finishes the
/// requests in flight and drains the event queue before returning.
pub async fn serve(config: Config, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let store = open_store(&config.storage).await?;
    let geo = Arc::new(load_geoip(&config)?);
    let now = chrono::Utc::now().timestamp_millis();
    let (coordinator, lease): (Arc<dyn Coordinator>, Option<Arc<RedisCoordinator>>) = match &config.redis {
        Some(url) => {
            let redis = RedisCoordinator::connect(url, store.clone(), &config.worker_name, config.leader_lease).await?;
            redis.lease_round().await;
            (redis.clone(), Some(redis))
        }
        None => (Arc::new(LocalCoordinator::start(store.clone(), now).await.context("while resuming open visits")?), None),
    };
    let lease_task = lease.as_ref().map(|l| l.spawn_lease());
    let metrics = Arc::new(Metrics::default());
    let (writer, writer_task) = EventWriter::spawn(store.clone(), config.queue_capacity, metrics.clone());

    let housekeeping = {
        let coordinator = coordinator.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = coordinator.housekeeping(chrono::Utc::now().timestamp_millis()).await {
                    tracing::warn!(error = %format!("{e:#}"), "housekeeping failed; retrying next time");
                }
            }
        })
    };

    let day_close = crate::jobs::spawn_day_close(store.clone(), coordinator.clone(), config.day_close_every, config.worker_name.clone());

    let state = Arc::new(AppState {
        store: store.clone(),
        coordinator: coordinator.clone(),
        sites: SiteDirectory::new(store.clone()),
        writer,
        metrics,
        geo: geo.clone(),
        user_agents: UserAgentCache::new(16_384),
        trusted_proxies: TrustedProxies::new(config.trusted_proxies.clone()),
        live_visits: {
            let c = coordinator.clone();
            Box::new(move || c.live_visits())
        },
        api_rate_limit: config.api_rate_limit,
        rollups: Default::default(),
        tracker: Default::default(),
        worker: axum::http::HeaderValue::from_str(&config.worker_name).unwrap_or(axum::http::HeaderValue::from_static("worker")),
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, storage = store.backend(), worker = %config.worker_name, cluster = config.redis.is_some(), geoip = %geo.description, "footfall is listening");
    let app = web::router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("while serving HTTP")?;

    // The router, and with it the writer's last sender, is gone: the writer drains the
    // queue and stops.
    housekeeping.abort();
    day_close.abort();
    if let (Some(task), Some(lease)) = (lease_task, &lease) {
        task.abort();
        lease.resign().await;
    }
    tracing::info!("draining the event queue");
    writer_task.await.context("the event writer failed")?;
    tracing::info!("stopped");
    Ok(())
}
