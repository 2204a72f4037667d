//! Scheduled jobs. They run only on the leader: on one machine that is always this
//! process; in a cluster, the worker holding the leader lease.

use crate::coordination::Coordinator;
use crate::query::engine;
use crate::storage::Store;
use std::sync::Arc;
use std::time::Duration;

/// Runs the day close: builds the rollups of every closed day that has none, for every
/// site. Cheap when there is nothing to do (one indexed read per site).
pub async fn close_days_once(store: &dyn Store, now_ms: i64) -> anyhow::Result<usize> {
    let mut built = 0;
    for site in store.sites().await? {
        built += engine::close_days(store, &site, now_ms).await?;
    }
    Ok(built)
}

/// The name day-close runs are recorded under.
pub const DAY_CLOSE: &str = "day_close";

/// How far back a new leader catches up on slots nobody ran (a leaderless gap).
const CATCH_UP_SLOTS: i64 = 100;

/// Runs the day close on the leader once per slot of `every` (slot = now / every). Each
/// slot is claimed in storage with the leader's fencing token before the job runs, so a
/// slot runs once across workers and failovers, and a leader that lost its lease is
/// refused. A new leader also runs the recent slots that went without a leader.
pub fn spawn_day_close(store: Arc<dyn Store>, coordinator: Arc<dyn Coordinator>, every: Duration, worker: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every_ms = every.as_millis().max(1) as i64;
        let mut tick = tokio::time::interval((every / 4).clamp(Duration::from_millis(100), Duration::from_secs(5)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = run_due_slots(store.as_ref(), coordinator.as_ref(), every_ms, &worker).await {
                tracing::warn!(error = %format!("{e:#}"), "day close failed; retrying next time");
            }
        }
    })
}

async fn run_due_slots(store: &dyn Store, coordinator: &dyn Coordinator, every_ms: i64, worker: &str) -> anyhow::Result<()> {
    let Some(token) = coordinator.fencing_token() else {
        return Ok(());
    };
    let now = chrono::Utc::now().timestamp_millis();
    let current = now.div_euclid(every_ms);
    let first = match store.last_job_slot(DAY_CLOSE).await? {
        Some(last) => (last + 1).max(current - CATCH_UP_SLOTS),
        None => current,
    };
    let mut claimed = 0;
    for slot in first..=current {
        // Stop as soon as the lease is gone; the next leader takes over from here.
        if coordinator.fencing_token() != Some(token) {
            break;
        }
        if store.claim_job_run(DAY_CLOSE, slot, token, worker).await? {
            claimed += 1;
        }
    }
    if claimed > 0 {
        match close_days_once(store, now).await? {
            0 => {}
            n => tracing::info!(days = n, "closed days rolled up"),
        }
    }
    Ok(())
}
