//! The storage boundary. Everything durable goes through `Store`; no SQLite (or, later,
//! PostgreSQL) type appears outside its backend module. Each backend owns its schema and
//! migrations and runs them when opened.

pub mod codec;
pub mod postgres;
pub mod sqlite;

use crate::domain::{Domain, Event, EventKind, Goal, LocalDay, Site, SiteId, Timezone, VisitId, VisitorId};
use crate::identity::DailySalt;
use crate::query::scan::Sums;
use crate::visits::LiveVisit;
use async_trait::async_trait;
use std::collections::HashSet;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    /// Another writer changed a day partition while an import was rebuilding it.
    #[error("the day partition changed during the import")]
    Conflict,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Import deduplication key: a digest of the imported line and its occurrence number.
pub type ImportKey = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionEvent {
    pub id: i64,
    pub visitor: VisitorId,
    pub ts_ms: i64,
    pub kind: EventKind,
    pub visit: VisitId,
}

/// An event as storage writes it: the columns storage indexes or updates, and the rest of
/// its facts encoded by `codec`. Encoding happens before an event reaches the writer, so
/// the serial commit path only copies bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub site_id: SiteId,
    pub ts_ms: i64,
    pub day: LocalDay,
    pub visitor_id: VisitorId,
    pub visit_id: VisitId,
    pub kind: EventKind,
    pub facts: Vec<u8>,
}

impl EncodedEvent {
    pub fn new(e: &Event) -> EncodedEvent {
        let mut facts = Vec::with_capacity(256);
        codec::encode(&e.facts, &mut facts);
        EncodedEvent {
            site_id: e.site_id,
            ts_ms: e.ts_ms,
            day: e.day,
            visitor_id: e.visitor_id,
            visit_id: e.visit_id,
            kind: e.facts.kind,
            facts,
        }
    }
}

/// Everything an import writes for one (site, local day), applied atomically.
#[derive(Debug, Clone)]
pub struct ImportBatch {
    pub site: SiteId,
    pub day: LocalDay,
    pub from_ms: i64,
    pub to_ms: i64,
    /// How many events the partition held when the import read it; a different count at
    /// apply time means a concurrent writer, and the import retries.
    pub expected_existing: usize,
    pub events: Vec<EncodedEvent>,
    pub keys: Vec<ImportKey>,
    /// Existing events whose visit changed because imported events joined or split visits.
    pub visit_updates: Vec<(i64, VisitId)>,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub site: Option<SiteId>,
    /// SHA-256 of the secret, hex; the secret itself is never stored.
    pub key_hash: String,
    /// The first characters of the secret, to recognise a key in listings.
    pub prefix: String,
}

/// One rollup row: the sums of the events of a day whose `dimension` has `value`.
/// `dimension` is the query name (`visit:source`, `event:page`, ...), or empty for the
/// day's total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupRow {
    pub dimension: String,
    pub value: String,
    pub sums: Sums,
}

/// A stored API key (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    /// The one site the key may read, or every site when `None`.
    pub site: Option<SiteId>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> StoreResult<()>;

    async fn add_site(&self, domain: &Domain, timezone: Timezone) -> StoreResult<Site>;
    async fn site_by_domain(&self, domain: &str) -> StoreResult<Option<Site>>;
    async fn sites(&self) -> StoreResult<Vec<Site>>;
    /// Records that `job` runs for `slot` under the leader's fencing `token`. `false` when
    /// the slot already ran, or a newer token has run the job (this leader is stale).
    async fn claim_job_run(&self, job: &str, slot: i64, token: i64, worker: &str) -> StoreResult<bool>;
    /// The latest slot `job` ran for.
    async fn last_job_slot(&self, job: &str) -> StoreResult<Option<i64>>;
    /// Adds a goal; `AlreadyExists` when the site has one with the same display name.
    async fn add_goal(&self, site: SiteId, goal: &Goal) -> StoreResult<()>;
    /// The site's goals in the order they were added.
    async fn goals(&self, site: SiteId) -> StoreResult<Vec<Goal>>;
    async fn add_user(&self, email: &str, password_hash: &str, admin: bool) -> StoreResult<i64>;
    async fn add_api_key(&self, key: NewApiKey) -> StoreResult<i64>;
    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;

    /// The salt of (site, day): the stored one, or `candidate` if none was stored yet.
    /// Atomic, so concurrent callers (threads or processes) agree on one salt.
    async fn salt(&self, site: SiteId, day: LocalDay, candidate: DailySalt, expires_at_ms: i64) -> StoreResult<DailySalt>;
    async fn delete_expired_salts(&self, now_ms: i64) -> StoreResult<u64>;

    /// Stores a batch of live events in one transaction: all of them or none.
    async fn insert_events(&self, events: Vec<EncodedEvent>) -> StoreResult<()>;
    /// The latest event of every visitor seen since `since_ms`, to resume visits after a
    /// restart.
    async fn recent_visits(&self, since_ms: i64) -> StoreResult<Vec<LiveVisit>>;

    async fn partition(&self, site: SiteId, from_ms: i64, to_ms: i64) -> StoreResult<Vec<PartitionEvent>>;
    async fn known_import_keys(&self, site: SiteId, keys: Vec<ImportKey>) -> StoreResult<HashSet<ImportKey>>;
    async fn apply_import(&self, batch: ImportBatch) -> StoreResult<()>;

    /// Replaces the rollups of a closed day (`[from_ms, to_ms)`), marking the day as rolled
    /// up. `Conflict`, writing nothing, when the day no longer holds the `event_count`
    /// events the rollups were built from (an import landed in between).
    async fn replace_rollups(&self, site: SiteId, day: LocalDay, from_ms: i64, to_ms: i64, event_count: u64, rows: Vec<RollupRow>) -> StoreResult<()>;
    /// The days in `[first, last]` whose rollups are built, with when they were built
    /// (which identifies that version of the day's rollups, for caches).
    async fn rolled_up_days(&self, site: SiteId, first: LocalDay, last: LocalDay) -> StoreResult<Vec<(LocalDay, i64)>>;
    /// The rollup rows of one dimension over `[first, last]`.
    async fn rollups(&self, site: SiteId, dimension: &str, first: LocalDay, last: LocalDay) -> StoreResult<Vec<(LocalDay, String, Sums)>>;

    /// The time of the site's first stored event.
    async fn first_event_ms(&self, site: SiteId) -> StoreResult<Option<i64>>;

    /// Raw events of a site in `[from_ms, to_ms)`, oldest first.
    async fn events(&self, site: SiteId, from_ms: i64, to_ms: i64) -> StoreResult<Vec<Event>>;
}
