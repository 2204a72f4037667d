//! Coordination: state that every worker must agree on — daily salts, live visits, rate
//! limits and who leads. On one machine it lives in this process, persisted through the
//! store where a restart must not lose it; in a cluster it lives in Redis (`redis`).

pub mod redis;

use crate::domain::{EventKind, LocalDay, Site, SiteId, VisitId, VisitorId};
use crate::identity::{self, DailySalt};
use crate::storage::{Store, StoreResult};
use crate::visits::{LiveVisits, VISIT_GAP_MS};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// The salt of (site, local day), created once and shared by every caller.
    async fn salt(&self, site: &Site, day: LocalDay) -> StoreResult<DailySalt>;
    /// The visit an event belongs to (see `visits::LiveVisits::touch`).
    async fn touch_visit(&self, site: SiteId, visitor: VisitorId, kind: EventKind, ts_ms: i64) -> StoreResult<Option<VisitId>>;
    /// Periodic housekeeping: forget finished visits and cached salts, delete expired
    /// salts from storage.
    async fn housekeeping(&self, now_ms: i64) -> StoreResult<()>;
    /// Counts one Stats API request of `key_id` and says whether it is within
    /// `per_minute` (fixed one-minute windows).
    async fn allow_api_request(&self, key_id: i64, per_minute: u32, now_ms: i64) -> bool;
    fn is_leader(&self) -> bool;
    /// The leader's fencing token, recorded with every job run; `None` when not leading.
    fn fencing_token(&self) -> Option<i64>;
    /// Whether coordination works right now (health).
    async fn check(&self) -> Result<(), String>;
    /// Visits held in this process (a metric; 0 when they live elsewhere).
    fn live_visits(&self) -> usize;
}

/// Salts in use, with the time each may be forgotten. Salts are created once in the
/// store (the first writer wins), so every worker and every restart agrees on them.
#[derive(Default)]
pub struct SaltCache {
    salts: RwLock<HashMap<(SiteId, LocalDay), (DailySalt, i64)>>,
}

impl SaltCache {
    pub async fn get_or_create(&self, store: &dyn Store, site: &Site, day: LocalDay) -> StoreResult<DailySalt> {
        if let Some((s, _)) = self.salts.read().expect("salt cache poisoned").get(&(site.id, day)) {
            return Ok(*s);
        }
        let expires = identity::salt_expiry_ms(&site.timezone, day);
        let salt = store.salt(site.id, day, DailySalt::random(), expires).await?;
        self.salts.write().expect("salt cache poisoned").insert((site.id, day), (salt, expires));
        Ok(salt)
    }

    pub fn forget_expired(&self, now_ms: i64) {
        self.salts.write().expect("salt cache poisoned").retain(|_, (_, expires)| *expires >= now_ms);
    }
}

/// Single-machine coordination: this process is always the leader.
pub struct LocalCoordinator {
    store: Arc<dyn Store>,
    salts: SaltCache,
    visits: LiveVisits,
    /// Per API key: (minute number, requests in that minute).
    api_requests: std::sync::Mutex<HashMap<i64, (i64, u32)>>,
}

impl LocalCoordinator {
    /// Creates the coordinator and resumes the visits still open in storage, so a visitor
    /// who comes back within 30 minutes of a restart continues the same visit.
    pub async fn start(store: Arc<dyn Store>, now_ms: i64) -> StoreResult<LocalCoordinator> {
        let visits = LiveVisits::default();
        visits.restore(store.recent_visits(now_ms - VISIT_GAP_MS).await?);
        Ok(LocalCoordinator { store, salts: SaltCache::default(), visits, api_requests: Default::default() })
    }
}

#[async_trait]
impl Coordinator for LocalCoordinator {
    async fn salt(&self, site: &Site, day: LocalDay) -> StoreResult<DailySalt> {
        self.salts.get_or_create(self.store.as_ref(), site, day).await
    }

    async fn touch_visit(&self, site: SiteId, visitor: VisitorId, kind: EventKind, ts_ms: i64) -> StoreResult<Option<VisitId>> {
        Ok(self.visits.touch(site, visitor, kind, ts_ms))
    }

    async fn housekeeping(&self, now_ms: i64) -> StoreResult<()> {
        self.visits.evict_before(now_ms);
        self.salts.forget_expired(now_ms);
        let minute = now_ms.div_euclid(60_000);
        self.api_requests.lock().expect("rate limits poisoned").retain(|_, (m, _)| *m >= minute);
        self.store.delete_expired_salts(now_ms).await?;
        Ok(())
    }

    async fn allow_api_request(&self, key_id: i64, per_minute: u32, now_ms: i64) -> bool {
        let minute = now_ms.div_euclid(60_000);
        let mut map = self.api_requests.lock().expect("rate limits poisoned");
        let entry = map.entry(key_id).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        entry.1 <= per_minute
    }

    fn is_leader(&self) -> bool {
        true
    }

    fn fencing_token(&self) -> Option<i64> {
        // Alone on one machine: always the leader, one constant token.
        Some(0)
    }

    async fn check(&self) -> Result<(), String> {
        Ok(())
    }

    fn live_visits(&self) -> usize {
        self.visits.len()
    }
}
