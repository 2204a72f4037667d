//! PostgreSQL backend for cluster mode: the same schema design as SQLite (events with
//! indexed columns and an encoded facts blob, per-day rollups, salts apart from events),
//! shared by every worker. Connections come from a pool that reconnects by itself, so a
//! restarted server needs no worker restart. Migrations run under an advisory lock, so
//! workers starting together apply each one once.

use super::{codec, ApiKey, EncodedEvent, ImportBatch, ImportKey, NewApiKey, PartitionEvent, RollupRow, Store, StoreError, StoreResult};
use crate::domain::{Domain, Event, EventKind, Goal, GoalKind, LocalDay, Site, SiteId, Timezone, VisitId, VisitorId};
use crate::identity::DailySalt;
use crate::query::scan::Sums;
use crate::visits::LiveVisit;
use anyhow::{anyhow, Context};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashSet;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// Schema versions, applied in order; `footfall_schema` records how many ran.
/// Append only: a released migration never changes.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE sites (
    id BIGSERIAL PRIMARY KEY,
    domain TEXT NOT NULL UNIQUE,
    timezone TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    site_id BIGINT REFERENCES sites(id),
    created_at BIGINT NOT NULL
);
-- Salts live apart from events and are deleted after their day (SPEC §3).
CREATE TABLE salts (
    site_id BIGINT NOT NULL REFERENCES sites(id),
    day INTEGER NOT NULL,
    salt BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (site_id, day)
);
CREATE TABLE events (
    id BIGSERIAL PRIMARY KEY,
    site_id BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    day INTEGER NOT NULL,
    visitor_id BIGINT NOT NULL,
    visit_id BIGINT NOT NULL,
    kind SMALLINT NOT NULL,
    facts BYTEA NOT NULL
);
CREATE INDEX events_site_ts ON events(site_id, ts);
CREATE TABLE import_keys (
    site_id BIGINT NOT NULL,
    key BYTEA NOT NULL,
    PRIMARY KEY (site_id, key)
);
CREATE TABLE day_rollups (
    site_id BIGINT NOT NULL,
    dimension TEXT NOT NULL,
    day INTEGER NOT NULL,
    value TEXT NOT NULL,
    visitors BIGINT NOT NULL,
    visits BIGINT NOT NULL,
    pageviews BIGINT NOT NULL,
    events BIGINT NOT NULL,
    bounces BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (site_id, dimension, day, value)
);
CREATE TABLE rolled_up_days (
    site_id BIGINT NOT NULL,
    day INTEGER NOT NULL,
    events BIGINT NOT NULL,
    built_at BIGINT NOT NULL,
    PRIMARY KEY (site_id, day)
);
CREATE TABLE goals (
    id BIGSERIAL PRIMARY KEY,
    site_id BIGINT NOT NULL REFERENCES sites(id),
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (site_id, display_name)
);
-- One row per (job, slot) that ran, with the leader's fencing token.
CREATE TABLE job_runs (
    job TEXT NOT NULL,
    slot BIGINT NOT NULL,
    token BIGINT NOT NULL,
    worker TEXT NOT NULL,
    ran_at BIGINT NOT NULL,
    PRIMARY KEY (job, slot)
);
"#];

/// The advisory lock key migrations run under.
const MIGRATION_LOCK: i64 = 0x466f_6f74_6661_6c6c; // "Footfall"

pub struct PostgresStore {
    pool: Pool,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(anyhow!("PostgreSQL: {e}"))
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn to_site(id: i64, domain: String, tz: String) -> StoreResult<Site> {
    Ok(Site {
        id: SiteId(id),
        domain: Domain::parse(&domain).map_err(|e| anyhow!("stored site {id} has a bad domain: {e}"))?,
        timezone: Timezone::parse(&tz).map_err(|e| anyhow!("stored site {id} has a bad timezone: {e}"))?,
    })
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host/db`) and migrates the database.
    pub async fn open(url: &str) -> anyhow::Result<PostgresStore> {
        let config: tokio_postgres::Config = url.parse().with_context(|| format!("database: {url:?} is not a PostgreSQL URL"))?;
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(16)
            .wait_timeout(Some(std::time::Duration::from_secs(5)))
            .create_timeout(Some(std::time::Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("while creating the PostgreSQL pool")?;
        let store = PostgresStore { pool };
        store.migrate().await.context("while migrating the PostgreSQL database")?;
        Ok(store)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(db_err)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut c = self.pool.get().await.map_err(|e| anyhow!("while connecting: {e}"))?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS footfall_schema (version INTEGER NOT NULL)").await?;
        let done: i64 = tx.query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM footfall_schema", &[]).await?.get(0);
        if done as usize > MIGRATIONS.len() {
            return Err(anyhow!("the database was written by a newer Footfall (schema version {done}, this build knows {})", MIGRATIONS.len()));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            tx.batch_execute(sql).await.with_context(|| format!("while applying migration {}", i + 1))?;
            tx.execute("INSERT INTO footfall_schema (version) VALUES ($1)", &[&((i + 1) as i32)]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every run of `job` recorded: (slot, token, worker), by slot.
    pub async fn job_runs(&self, job: &str) -> StoreResult<Vec<(i64, i64, String)>> {
        let c = self.client().await?;
        let rows = c.query("SELECT slot, token, worker FROM job_runs WHERE job = $1 ORDER BY slot", &[&job]).await.map_err(db_err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

async fn insert_all(c: &impl deadpool_postgres::GenericClient, events: &[EncodedEvent]) -> Result<(), tokio_postgres::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let sites: Vec<i64> = events.iter().map(|e| e.site_id.0).collect();
    let ts: Vec<i64> = events.iter().map(|e| e.ts_ms).collect();
    let days: Vec<i32> = events.iter().map(|e| e.day.0).collect();
    let visitors: Vec<i64> = events.iter().map(|e| e.visitor_id.0 as i64).collect();
    let visits: Vec<i64> = events.iter().map(|e| e.visit_id.0 as i64).collect();
    let kinds: Vec<i16> = events.iter().map(|e| e.kind.code() as i16).collect();
    let facts: Vec<&[u8]> = events.iter().map(|e| &e.facts[..]).collect();
    c.execute(
        "INSERT INTO events (site_id, ts, day, visitor_id, visit_id, kind, facts)
         SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::INTEGER[], $4::BIGINT[], $5::BIGINT[], $6::SMALLINT[], $7::BYTEA[])",
        &[&sites, &ts, &days, &visitors, &visits, &kinds, &facts],
    )
    .await?;
    Ok(())
}

async fn delete_rollups(c: &impl deadpool_postgres::GenericClient, site: SiteId, day: LocalDay) -> Result<(), tokio_postgres::Error> {
    c.execute("DELETE FROM day_rollups WHERE site_id = $1 AND day = $2", &[&site.0, &day.0]).await?;
    c.execute("DELETE FROM rolled_up_days WHERE site_id = $1 AND day = $2", &[&site.0, &day.0]).await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.client().await?.simple_query("SELECT 1").await.map_err(db_err)?;
        Ok(())
    }

    async fn add_site(&self, domain: &Domain, timezone: Timezone) -> StoreResult<Site> {
        let c = self.client().await?;
        match c
            .query_one(
                "INSERT INTO sites (domain, timezone, created_at) VALUES ($1, $2, $3) RETURNING id",
                &[&domain.as_str(), &timezone.name(), &now_ms()],
            )
            .await
        {
            Ok(row) => Ok(Site { id: SiteId(row.get(0)), domain: domain.clone(), timezone }),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("site {domain}"))),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn site_by_domain(&self, domain: &str) -> StoreResult<Option<Site>> {
        let c = self.client().await?;
        let row = c.query_opt("SELECT id, domain, timezone FROM sites WHERE domain = $1", &[&domain]).await.map_err(db_err)?;
        row.map(|r| to_site(r.get(0), r.get(1), r.get(2))).transpose()
    }

    async fn sites(&self) -> StoreResult<Vec<Site>> {
        let c = self.client().await?;
        let rows = c.query("SELECT id, domain, timezone FROM sites ORDER BY id", &[]).await.map_err(db_err)?;
        rows.into_iter().map(|r| to_site(r.get(0), r.get(1), r.get(2))).collect()
    }

    async fn add_goal(&self, site: SiteId, goal: &Goal) -> StoreResult<()> {
        let (kind, value) = match &goal.kind {
            GoalKind::Page(p) => ("page", p),
            GoalKind::Event(n) => ("event", n),
        };
        let c = self.client().await?;
        match c
            .execute(
                "INSERT INTO goals (site_id, kind, value, display_name, created_at) VALUES ($1, $2, $3, $4, $5)",
                &[&site.0, &kind, value, &goal.display_name, &now_ms()],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("goal {:?}", goal.display_name))),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn goals(&self, site: SiteId) -> StoreResult<Vec<Goal>> {
        let c = self.client().await?;
        let rows = c.query("SELECT kind, value, display_name FROM goals WHERE site_id = $1 ORDER BY id", &[&site.0]).await.map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                let (kind, value, display_name): (String, String, String) = (r.get(0), r.get(1), r.get(2));
                let kind = match kind.as_str() {
                    "page" => GoalKind::Page(value),
                    "event" => GoalKind::Event(value),
                    other => return Err(StoreError::Other(anyhow!("goal {display_name:?} has unknown kind {other:?}"))),
                };
                Ok(Goal { display_name, kind })
            })
            .collect()
    }

    async fn add_user(&self, email: &str, password_hash: &str, admin: bool) -> StoreResult<i64> {
        let c = self.client().await?;
        match c
            .query_one(
                "INSERT INTO users (email, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&email, &password_hash, &admin, &now_ms()],
            )
            .await
        {
            Ok(row) => Ok(row.get(0)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("user {email}"))),
            Err(e) => Err(db_err(e)),
        }
    }

    async fn add_api_key(&self, key: NewApiKey) -> StoreResult<i64> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "INSERT INTO api_keys (name, key_hash, key_prefix, site_id, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[&key.name, &key.key_hash, &key.prefix, &key.site.map(|s| s.0), &now_ms()],
            )
            .await
            .map_err(db_err)?;
        Ok(row.get(0))
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        let c = self.client().await?;
        let row = c.query_opt("SELECT id, name, site_id FROM api_keys WHERE key_hash = $1", &[&key_hash]).await.map_err(db_err)?;
        Ok(row.map(|r| ApiKey { id: r.get(0), name: r.get(1), site: r.get::<_, Option<i64>>(2).map(SiteId) }))
    }

    async fn first_event_ms(&self, site: SiteId) -> StoreResult<Option<i64>> {
        let c = self.client().await?;
        Ok(c.query_one("SELECT MIN(ts) FROM events WHERE site_id = $1", &[&site.0]).await.map_err(db_err)?.get(0))
    }

    async fn salt(&self, site: SiteId, day: LocalDay, candidate: DailySalt, expires_at_ms: i64) -> StoreResult<DailySalt> {
        let c = self.client().await?;
        // The first writer's salt wins; every worker reads that one.
        c.execute(
            "INSERT INTO salts (site_id, day, salt, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&site.0, &day.0, &&candidate.0[..], &expires_at_ms],
        )
        .await
        .map_err(db_err)?;
        let bytes: Vec<u8> = c.query_one("SELECT salt FROM salts WHERE site_id = $1 AND day = $2", &[&site.0, &day.0]).await.map_err(db_err)?.get(0);
        let arr: [u8; 16] = bytes.try_into().map_err(|_| anyhow!("a stored salt is not 16 bytes"))?;
        Ok(DailySalt(arr))
    }

    async fn delete_expired_salts(&self, now_ms: i64) -> StoreResult<u64> {
        let c = self.client().await?;
        c.execute("DELETE FROM salts WHERE expires_at < $1", &[&now_ms]).await.map_err(db_err)
    }

    async fn insert_events(&self, events: Vec<EncodedEvent>) -> StoreResult<()> {
        // One statement, one transaction: committed (and synced, with PostgreSQL's default
        // synchronous_commit) before the events are acknowledged.
        let c = self.client().await?;
        insert_all(&c, &events).await.map_err(db_err)
    }

    async fn recent_visits(&self, since_ms: i64) -> StoreResult<Vec<LiveVisit>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT DISTINCT ON (site_id, visitor_id) site_id, visitor_id, visit_id, ts FROM events
                 WHERE ts >= $1 ORDER BY site_id, visitor_id, ts DESC",
                &[&since_ms],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| LiveVisit {
                site: SiteId(r.get(0)),
                visitor: VisitorId(r.get::<_, i64>(1) as u64),
                visit: VisitId(r.get::<_, i64>(2) as u64),
                last_ms: r.get(3),
            })
            .collect())
    }

    async fn partition(&self, site: SiteId, from_ms: i64, to_ms: i64) -> StoreResult<Vec<PartitionEvent>> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT id, visitor_id, ts, kind, visit_id FROM events WHERE site_id = $1 AND ts >= $2 AND ts < $3", &[&site.0, &from_ms, &to_ms])
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| PartitionEvent {
                id: r.get(0),
                visitor: VisitorId(r.get::<_, i64>(1) as u64),
                ts_ms: r.get(2),
                kind: EventKind::from_code(r.get::<_, i16>(3) as i64).unwrap_or(EventKind::Custom),
                visit: VisitId(r.get::<_, i64>(4) as u64),
            })
            .collect())
    }

    async fn known_import_keys(&self, site: SiteId, keys: Vec<ImportKey>) -> StoreResult<HashSet<ImportKey>> {
        let c = self.client().await?;
        let list: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        let rows = c.query("SELECT key FROM import_keys WHERE site_id = $1 AND key = ANY($2)", &[&site.0, &list]).await.map_err(db_err)?;
        Ok(rows.iter().filter_map(|r| r.get::<_, Vec<u8>>(0).try_into().ok()).collect())
    }

    async fn apply_import(&self, batch: ImportBatch) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        // Imports of one site serialise on the site's row; live inserts do not take it, so
        // the count below detects them.
        tx.execute("SELECT 1 FROM sites WHERE id = $1 FOR UPDATE", &[&batch.site.0]).await.map_err(db_err)?;
        let existing: i64 = tx
            .query_one("SELECT COUNT(*) FROM events WHERE site_id = $1 AND ts >= $2 AND ts < $3", &[&batch.site.0, &batch.from_ms, &batch.to_ms])
            .await
            .map_err(db_err)?
            .get(0);
        if existing as usize != batch.expected_existing {
            return Err(StoreError::Conflict);
        }
        let keys: Vec<&[u8]> = batch.keys.iter().map(|k| &k[..]).collect();
        let sites = vec![batch.site.0; keys.len()];
        match tx.execute("INSERT INTO import_keys (site_id, key) SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[])", &[&sites, &keys]).await {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict),
            Err(e) => return Err(db_err(e)),
        }
        let ids: Vec<i64> = batch.visit_updates.iter().map(|(id, _)| *id).collect();
        let visits: Vec<i64> = batch.visit_updates.iter().map(|(_, v)| v.0 as i64).collect();
        tx.execute(
            "UPDATE events SET visit_id = u.visit FROM UNNEST($1::BIGINT[], $2::BIGINT[]) AS u(id, visit) WHERE events.id = u.id",
            &[&ids, &visits],
        )
        .await
        .map_err(db_err)?;
        insert_all(&tx, &batch.events).await.map_err(db_err)?;
        delete_rollups(&tx, batch.site, batch.day).await.map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn replace_rollups(&self, site: SiteId, day: LocalDay, from_ms: i64, to_ms: i64, event_count: u64, rows: Vec<RollupRow>) -> StoreResult<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        // Imports take the same lock, so the count below cannot change before the commit.
        tx.execute("SELECT 1 FROM sites WHERE id = $1 FOR UPDATE", &[&site.0]).await.map_err(db_err)?;
        let now: i64 = tx
            .query_one("SELECT COUNT(*) FROM events WHERE site_id = $1 AND ts >= $2 AND ts < $3", &[&site.0, &from_ms, &to_ms])
            .await
            .map_err(db_err)?
            .get(0);
        if now as u64 != event_count {
            return Err(StoreError::Conflict);
        }
        delete_rollups(&tx, site, day).await.map_err(db_err)?;
        let col = |f: fn(&Sums) -> u64| rows.iter().map(|r| f(&r.sums) as i64).collect::<Vec<i64>>();
        let dims: Vec<&str> = rows.iter().map(|r| r.dimension.as_str()).collect();
        let values: Vec<&str> = rows.iter().map(|r| r.value.as_str()).collect();
        let (visitors, visits, pageviews) = (col(|s| s.visitors), col(|s| s.visits), col(|s| s.pageviews));
        let (events, bounces, duration) = (col(|s| s.events), col(|s| s.bounces), col(|s| s.duration_ms));
        tx.execute(
            "INSERT INTO day_rollups (site_id, day, dimension, value, visitors, visits, pageviews, events, bounces, duration_ms)
             SELECT $1, $2, * FROM UNNEST($3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[])",
            &[&site.0, &day.0, &dims, &values, &visitors, &visits, &pageviews, &events, &bounces, &duration],
        )
        .await
        .map_err(db_err)?;
        // built_at versions the day's rollups for caches: it grows on every rebuild.
        let last: i64 = tx
            .query_one("SELECT COALESCE(MAX(built_at), 0) FROM rolled_up_days WHERE site_id = $1", &[&site.0])
            .await
            .map_err(db_err)?
            .get(0);
        tx.execute(
            "INSERT INTO rolled_up_days (site_id, day, events, built_at) VALUES ($1, $2, $3, $4)",
            &[&site.0, &day.0, &(event_count as i64), &now_ms().max(last + 1)],
        )
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn rolled_up_days(&self, site: SiteId, first: LocalDay, last: LocalDay) -> StoreResult<Vec<(LocalDay, i64)>> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT day, built_at FROM rolled_up_days WHERE site_id = $1 AND day >= $2 AND day <= $3 ORDER BY day", &[&site.0, &first.0, &last.0])
            .await
            .map_err(db_err)?;
        Ok(rows.iter().map(|r| (LocalDay(r.get(0)), r.get(1))).collect())
    }

    async fn rollups(&self, site: SiteId, dimension: &str, first: LocalDay, last: LocalDay) -> StoreResult<Vec<(LocalDay, String, Sums)>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT day, value, visitors, visits, pageviews, events, bounces, duration_ms FROM day_rollups
                 WHERE site_id = $1 AND dimension = $2 AND day >= $3 AND day <= $4",
                &[&site.0, &dimension, &first.0, &last.0],
            )
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| {
                let n = |i: usize| r.get::<_, i64>(i) as u64;
                (
                    LocalDay(r.get(0)),
                    r.get(1),
                    Sums { visitors: n(2), visits: n(3), pageviews: n(4), events: n(5), bounces: n(6), duration_ms: n(7) },
                )
            })
            .collect())
    }

    async fn events(&self, site: SiteId, from_ms: i64, to_ms: i64) -> StoreResult<Vec<Event>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT site_id, ts, day, visitor_id, visit_id, kind, facts FROM events
                 WHERE site_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts, id",
                &[&site.0, &from_ms, &to_ms],
            )
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let kind = EventKind::from_code(r.get::<_, i16>(5) as i64).unwrap_or(EventKind::Custom);
                let facts = codec::decode(kind, r.get::<_, &[u8]>(6)).map_err(|e| anyhow!("a stored event does not decode: {e}"))?;
                Ok(Event {
                    site_id: SiteId(r.get(0)),
                    ts_ms: r.get(1),
                    day: LocalDay(r.get(2)),
                    visitor_id: VisitorId(r.get::<_, i64>(3) as u64),
                    visit_id: VisitId(r.get::<_, i64>(4) as u64),
                    facts,
                })
            })
            .collect()
    }

    async fn claim_job_run(&self, job: &str, slot: i64, token: i64, worker: &str) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db_err)?;
        // Runs of one job serialise here; a leader whose token is older than one already
        // recorded has lost its lease and is refused (fencing).
        tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&job]).await.map_err(db_err)?;
        let newest: Option<i64> = tx.query_one("SELECT MAX(token) FROM job_runs WHERE job = $1", &[&job]).await.map_err(db_err)?.get(0);
        if newest.is_some_and(|t| token < t) {
            return Ok(false);
        }
        let inserted = tx
            .execute(
                "INSERT INTO job_runs (job, slot, token, worker, ran_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&job, &slot, &token, &worker, &now_ms()],
            )
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(inserted == 1)
    }

    async fn last_job_slot(&self, job: &str) -> StoreResult<Option<i64>> {
        let c = self.client().await?;
        Ok(c.query_one("SELECT MAX(slot) FROM job_runs WHERE job = $1", &[&job]).await.map_err(db_err)?.get(0))
    }
}
