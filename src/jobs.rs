//! Scheduled jobs. They run only on the leader: on one machine that is always this
//! process; in a cluster, the worker holding the leader lease.

use crate::coordination::Coordinator;
use crate::query::engine;
use crate::storage::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often closed days are looked for and rolled up.
pub const DAY_CLOSE_EVERY: Duration = Duration::from_secs(60);

/// Runs the day close: builds the rollups of every closed day that has none, for every
/// site. Cheap when there is nothing to do (one indexed read per site).
pub async fn close_days_once(store: &dyn Store, now_ms: i64) -> anyhow::Result<usize> {
    let mut built = 0;
    for site in store.sites().await? {
        built += engine::close_days(store, &site, now_ms).await?;
    }
    Ok(built)
}

pub fn spawn_day_close(store: Arc<dyn Store>, coordinator: Arc<dyn Coordinator>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(DAY_CLOSE_EVERY);
        loop {
            tick.tick().await;
            if !coordinator.is_leader() {
                continue;
            }
            match close_days_once(store.as_ref(), chrono::Utc::now().timestamp_millis()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(days = n, "closed days rolled up"),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "day close failed; retrying next time"),
            }
        }
    })
}
