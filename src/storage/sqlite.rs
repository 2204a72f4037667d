//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`, so a
//! committed transaction survives a crash or power loss. Blocking calls run on tokio's
//! blocking pool. Events are written through one connection (SQLite has one writer at a
//! time anyway); reads use another so they never queue behind a batch commit.

use super::{codec, ApiKey, EncodedEvent, ImportBatch, RollupRow, ImportKey, NewApiKey, PartitionEvent, Store, StoreError, StoreResult};
use crate::domain::{
    Domain, Event, EventKind, Goal, GoalKind, LocalDay, Site, SiteId, Timezone, VisitId, VisitorId,
};
use crate::identity::DailySalt;
use crate::query::scan::Sums;
use crate::visits::LiveVisit;
use anyhow::{anyhow, Context};
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const DB_FILE: &str = "footfall.db";

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
/// Append only: a released migration never changes.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE sites (
    id INTEGER PRIMARY KEY,
    domain TEXT NOT NULL UNIQUE,
    timezone TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    site_id INTEGER REFERENCES sites(id),
    created_at INTEGER NOT NULL
);
-- Salts live apart from events and are deleted after their day (SPEC §3).
CREATE TABLE salts (
    site_id INTEGER NOT NULL REFERENCES sites(id),
    day INTEGER NOT NULL,
    salt BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (site_id, day)
) WITHOUT ROWID;
-- The indexed and updatable parts of an event are columns; the rest of its facts are
-- one compact blob (see storage/codec.rs).
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    site_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    day INTEGER NOT NULL,
    visitor_id INTEGER NOT NULL,
    visit_id INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    facts BLOB NOT NULL
);
CREATE INDEX events_site_ts ON events(site_id, ts);
-- Digests of imported lines, so rerunning an import never stores an event twice.
CREATE TABLE import_keys (
    site_id INTEGER NOT NULL,
    key BLOB NOT NULL,
    PRIMARY KEY (site_id, key)
) WITHOUT ROWID;
"#, r#"
-- Per closed (site, local day) sums by dimension value; `dimension` '' is the day's total.
CREATE TABLE day_rollups (
    site_id INTEGER NOT NULL,
    dimension TEXT NOT NULL,
    day INTEGER NOT NULL,
    value TEXT NOT NULL,
    visitors INTEGER NOT NULL,
    visits INTEGER NOT NULL,
    pageviews INTEGER NOT NULL,
    events INTEGER NOT NULL,
    bounces INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (site_id, dimension, day, value)
) WITHOUT ROWID;
-- Days whose rollups are built; a day missing here is answered from raw events.
CREATE TABLE rolled_up_days (
    site_id INTEGER NOT NULL,
    day INTEGER NOT NULL,
    events INTEGER NOT NULL,
    built_at INTEGER NOT NULL,
    PRIMARY KEY (site_id, day)
) WITHOUT ROWID;
"#, r#"
-- A site's goals: kind 'page' (value: path with * wildcards) or 'event' (value: name).
CREATE TABLE goals (
    id INTEGER PRIMARY KEY,
    site_id INTEGER NOT NULL REFERENCES sites(id),
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    display_name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (site_id, display_name)
);
"#, r#"
-- One row per (job, slot) that ran, with the leader's fencing token.
CREATE TABLE job_runs (
    job TEXT NOT NULL,
    slot INTEGER NOT NULL,
    token INTEGER NOT NULL,
    worker TEXT NOT NULL,
    ran_at INTEGER NOT NULL,
    PRIMARY KEY (job, slot)
) WITHOUT ROWID;
"#];

pub struct SqliteStore {
    path: PathBuf,
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    commits: std::sync::mpsc::Sender<CommitJob>,
}

type CommitJob = (Vec<EncodedEvent>, tokio::sync::oneshot::Sender<StoreResult<()>>);

/// Event batches are committed on one dedicated thread. It asks for a raised scheduling
/// priority (granted to root or with CAP_SYS_NICE, e.g. by the systemd unit); every
/// acknowledged request waits for this thread, so on a busy machine it should not queue
/// behind request handling for CPU. Without the privilege it runs at normal priority.
fn spawn_committer(writer: Arc<Mutex<Connection>>) -> anyhow::Result<std::sync::mpsc::Sender<CommitJob>> {
    let (tx, rx) = std::sync::mpsc::channel::<CommitJob>();
    std::thread::Builder::new()
        .name("sqlite-commit".into())
        .spawn(move || {
            #[cfg(target_os = "linux")]
            unsafe {
                // SAFETY: setpriority on the calling thread (tid from gettid) has no
                // memory effects; failure only leaves the priority unchanged.
                let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                let _ = libc::setpriority(libc::PRIO_PROCESS, tid, -10);
            }
            // Ends when the store (the only sender) is dropped.
            for (events, done) in rx {
                let result = match writer.lock() {
                    Ok(mut c) => (|| {
                        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
                        insert_all(&tx, &events).map_err(db_err)?;
                        tx.commit().map_err(db_err)
                    })(),
                    Err(_) => Err(StoreError::Other(anyhow!("the database connection was poisoned by a panic"))),
                };
                let _ = done.send(result);
            }
        })
        .context("while starting the commit thread")?;
    Ok(tx)
}

fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("while opening {}", path.display()))?;
    // Other processes (`footfall import`, `site add`) write to the same file; wait for
    // them rather than fail.
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: every commit syncs the WAL, which is what makes a 202 durable.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database under `data_dir` and migrates it.
    pub fn open(data_dir: &Path) -> anyhow::Result<SqliteStore> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("while creating the data directory {}", data_dir.display()))?;
        let path = data_dir.join(DB_FILE);
        let mut writer = open_connection(&path)?;
        migrate(&mut writer).context("while migrating the database")?;
        // Every commit rewrites the same partly filled tail pages into the WAL, and a
        // checkpoint copies each distinct page once. Checkpointing every 32 MB instead of
        // SQLite's default 4 MB therefore copies far fewer pages per event, and stalls the
        // event writer (which runs it inside a commit) eight times less often.
        writer.pragma_update(None, "wal_autocheckpoint", 8192)?;
        writer.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        let reader = open_connection(&path)?;
        let writer = Arc::new(Mutex::new(writer));
        let commits = spawn_committer(writer.clone())?;
        Ok(SqliteStore { path, writer, reader: Arc::new(Mutex::new(reader)), commits })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with<T: Send + 'static>(
        conn: &Arc<Mutex<Connection>>,
        f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| anyhow!("a database connection was poisoned by a panic"))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Other(anyhow!("database task failed: {e}")))?
    }

    async fn write<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        Self::with(&self.writer, f).await
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        Self::with(&self.reader, f).await
    }
}

fn delete_rollups(tx: &rusqlite::Transaction<'_>, site: SiteId, day: LocalDay) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM day_rollups WHERE site_id = ?1 AND day = ?2", params![site.0, day.0])?;
    tx.execute("DELETE FROM rolled_up_days WHERE site_id = ?1 AND day = ?2", params![site.0, day.0])?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let done: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if done > MIGRATIONS.len() {
        return Err(anyhow!(
            "the database was written by a newer Footfall (schema version {done}, this build knows {})",
            MIGRATIONS.len()
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.execute_batch(sql).with_context(|| format!("while applying migration {}", i + 1))?;
        tx.pragma_update(None, "user_version", i + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn db_err(e: rusqlite::Error) -> StoreError {
    StoreError::Other(anyhow::Error::new(e))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn site_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn to_site((id, domain, tz): (i64, String, String)) -> StoreResult<Site> {
    Ok(Site {
        id: SiteId(id),
        domain: Domain::parse(&domain).map_err(|e| anyhow!("stored site {id} has a bad domain: {e}"))?,
        timezone: Timezone::parse(&tz).map_err(|e| anyhow!("stored site {id} has a bad timezone: {e}"))?,
    })
}

const INSERT_EVENT: &str =
    "INSERT INTO events (site_id, ts, day, visitor_id, visit_id, kind, facts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

fn insert_all(tx: &rusqlite::Transaction<'_>, events: &[EncodedEvent]) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(INSERT_EVENT)?;
    for e in events {
        stmt.execute(params![
            e.site_id.0,
            e.ts_ms,
            e.day.0,
            e.visitor_id.0 as i64,
            e.visit_id.0 as i64,
            e.kind.code(),
            &e.facts[..],
        ])?;
    }
    Ok(())
}

const SELECT_EVENT: &str = "SELECT site_id, ts, day, visitor_id, visit_id, kind, facts FROM events";

fn event_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    let kind = EventKind::from_code(r.get(5)?).unwrap_or(EventKind::Custom);
    let blob = r.get_ref(6)?.as_blob()?;
    let facts = codec::decode(kind, blob).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Blob, e.into())
    })?;
    Ok(Event {
        site_id: SiteId(r.get(0)?),
        ts_ms: r.get(1)?,
        day: LocalDay(r.get(2)?),
        visitor_id: VisitorId(r.get::<_, i64>(3)? as u64),
        visit_id: VisitId(r.get::<_, i64>(4)? as u64),
        facts,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(db_err)).await
    }

    async fn add_site(&self, domain: &Domain, timezone: Timezone) -> StoreResult<Site> {
        let domain = domain.clone();
        self.write(move |c| {
            let res = c.execute(
                "INSERT INTO sites (domain, timezone, created_at) VALUES (?1, ?2, ?3)",
                params![domain.as_str(), timezone.name(), now_ms()],
            );
            match res {
                Ok(_) => Ok(Site { id: SiteId(c.last_insert_rowid()), domain, timezone }),
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("site {domain}"))),
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn site_by_domain(&self, domain: &str) -> StoreResult<Option<Site>> {
        let domain = domain.to_string();
        let row = self
            .read(move |c| {
                c.query_row("SELECT id, domain, timezone FROM sites WHERE domain = ?1", [&domain], site_from_row)
                    .optional()
                    .map_err(db_err)
            })
            .await?;
        row.map(to_site).transpose()
    }

    async fn sites(&self) -> StoreResult<Vec<Site>> {
        let rows = self
            .read(|c| {
                let mut s = c.prepare("SELECT id, domain, timezone FROM sites ORDER BY id").map_err(db_err)?;
                let rows = s.query_map([], site_from_row).map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await?;
        rows.into_iter().map(to_site).collect()
    }

    async fn claim_job_run(&self, job: &str, slot: i64, token: i64, worker: &str) -> StoreResult<bool> {
        let (job, worker) = (job.to_string(), worker.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
            let newest: Option<i64> = tx.query_row("SELECT MAX(token) FROM job_runs WHERE job = ?1", [&job], |r| r.get(0)).map_err(db_err)?;
            if newest.is_some_and(|t| token < t) {
                return Ok(false);
            }
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO job_runs (job, slot, token, worker, ran_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![job, slot, token, worker, now_ms()],
                )
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            Ok(n == 1)
        })
        .await
    }

    async fn last_job_slot(&self, job: &str) -> StoreResult<Option<i64>> {
        let job = job.to_string();
        self.read(move |c| c.query_row("SELECT MAX(slot) FROM job_runs WHERE job = ?1", [&job], |r| r.get(0)).map_err(db_err)).await
    }

    async fn add_goal(&self, site: SiteId, goal: &Goal) -> StoreResult<()> {
        let goal = goal.clone();
        self.write(move |c| {
            let (kind, value) = match &goal.kind {
                GoalKind::Page(p) => ("page", p),
                GoalKind::Event(n) => ("event", n),
            };
            let res = c.execute(
                "INSERT INTO goals (site_id, kind, value, display_name, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![site.0, kind, value, goal.display_name, now_ms()],
            );
            match res {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("goal {:?}", goal.display_name))),
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn goals(&self, site: SiteId) -> StoreResult<Vec<Goal>> {
        let rows = self
            .read(move |c| {
                let mut s = c.prepare_cached("SELECT kind, value, display_name FROM goals WHERE site_id = ?1 ORDER BY id").map_err(db_err)?;
                let rows = s.query_map([site.0], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))).map_err(db_err)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
            })
            .await?;
        rows.into_iter()
            .map(|(kind, value, display_name)| {
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
        let (email, hash) = (email.to_string(), password_hash.to_string());
        self.write(move |c| {
            match c.execute(
                "INSERT INTO users (email, password_hash, is_admin, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![email, hash, admin, now_ms()],
            ) {
                Ok(_) => Ok(c.last_insert_rowid()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists(format!("user {email}"))),
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn add_api_key(&self, key: NewApiKey) -> StoreResult<i64> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO api_keys (name, key_hash, key_prefix, site_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key.name, key.key_hash, key.prefix, key.site.map(|s| s.0), now_ms()],
            )
            .map_err(db_err)?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        let key_hash = key_hash.to_string();
        self.read(move |c| {
            c.query_row("SELECT id, name, site_id FROM api_keys WHERE key_hash = ?1", [&key_hash], |r| {
                Ok(ApiKey { id: r.get(0)?, name: r.get(1)?, site: r.get::<_, Option<i64>>(2)?.map(SiteId) })
            })
            .optional()
            .map_err(db_err)
        })
        .await
    }

    async fn first_event_ms(&self, site: SiteId) -> StoreResult<Option<i64>> {
        self.read(move |c| {
            c.query_row("SELECT MIN(ts) FROM events WHERE site_id = ?1", [site.0], |r| r.get(0)).map_err(db_err)
        })
        .await
    }

    async fn salt(&self, site: SiteId, day: LocalDay, candidate: DailySalt, expires_at_ms: i64) -> StoreResult<DailySalt> {
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO salts (site_id, day, salt, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![site.0, day.0, &candidate.0[..], expires_at_ms],
            )
            .map_err(db_err)?;
            let bytes: Vec<u8> = c
                .query_row("SELECT salt FROM salts WHERE site_id = ?1 AND day = ?2", params![site.0, day.0], |r| r.get(0))
                .map_err(db_err)?;
            let arr: [u8; 16] = bytes.try_into().map_err(|_| anyhow!("a stored salt is not 16 bytes"))?;
            Ok(DailySalt(arr))
        })
        .await
    }

    async fn delete_expired_salts(&self, now_ms: i64) -> StoreResult<u64> {
        self.write(move |c| {
            c.execute("DELETE FROM salts WHERE expires_at < ?1", [now_ms]).map(|n| n as u64).map_err(db_err)
        })
        .await
    }

    async fn insert_events(&self, events: Vec<EncodedEvent>) -> StoreResult<()> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.commits.send((events, done)).map_err(|_| anyhow!("the commit thread has stopped"))?;
        result.await.map_err(|_| anyhow!("the commit thread stopped during a commit"))?
    }

    async fn recent_visits(&self, since_ms: i64) -> StoreResult<Vec<LiveVisit>> {
        let sites = self.sites().await?;
        self.read(move |c| {
            // SQLite returns the other columns of the row holding MAX(ts).
            let mut s = c
                .prepare(
                    "SELECT visitor_id, visit_id, MAX(ts) FROM events
                     WHERE site_id = ?1 AND ts >= ?2 GROUP BY visitor_id",
                )
                .map_err(db_err)?;
            let mut out = Vec::new();
            for site in sites {
                let rows = s
                    .query_map(params![site.id.0, since_ms], |r| {
                        Ok(LiveVisit {
                            site: site.id,
                            visitor: VisitorId(r.get::<_, i64>(0)? as u64),
                            visit: VisitId(r.get::<_, i64>(1)? as u64),
                            last_ms: r.get(2)?,
                        })
                    })
                    .map_err(db_err)?;
                for row in rows {
                    out.push(row.map_err(db_err)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn partition(&self, site: SiteId, from_ms: i64, to_ms: i64) -> StoreResult<Vec<PartitionEvent>> {
        self.read(move |c| {
            let mut s = c
                .prepare("SELECT id, visitor_id, ts, kind, visit_id FROM events WHERE site_id = ?1 AND ts >= ?2 AND ts < ?3")
                .map_err(db_err)?;
            let rows = s
                .query_map(params![site.0, from_ms, to_ms], |r| {
                    Ok(PartitionEvent {
                        id: r.get(0)?,
                        visitor: VisitorId(r.get::<_, i64>(1)? as u64),
                        ts_ms: r.get(2)?,
                        kind: EventKind::from_code(r.get(3)?).unwrap_or(EventKind::Custom),
                        visit: VisitId(r.get::<_, i64>(4)? as u64),
                    })
                })
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn known_import_keys(&self, site: SiteId, keys: Vec<ImportKey>) -> StoreResult<HashSet<ImportKey>> {
        self.read(move |c| {
            let mut s = c.prepare_cached("SELECT 1 FROM import_keys WHERE site_id = ?1 AND key = ?2").map_err(db_err)?;
            let mut known = HashSet::new();
            for k in keys {
                if s.exists(params![site.0, &k[..]]).map_err(db_err)? {
                    known.insert(k);
                }
            }
            Ok(known)
        })
        .await
    }

    async fn apply_import(&self, batch: ImportBatch) -> StoreResult<()> {
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
            let existing: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM events WHERE site_id = ?1 AND ts >= ?2 AND ts < ?3",
                    params![batch.site.0, batch.from_ms, batch.to_ms],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            if existing as usize != batch.expected_existing {
                return Err(StoreError::Conflict);
            }
            {
                let mut s = tx.prepare_cached("INSERT INTO import_keys (site_id, key) VALUES (?1, ?2)").map_err(db_err)?;
                for k in &batch.keys {
                    match s.execute(params![batch.site.0, &k[..]]) {
                        Ok(_) => {}
                        // Another import of the same lines committed first.
                        Err(e) if is_unique_violation(&e) => return Err(StoreError::Conflict),
                        Err(e) => return Err(db_err(e)),
                    }
                }
                let mut s = tx.prepare_cached("UPDATE events SET visit_id = ?1 WHERE id = ?2").map_err(db_err)?;
                for (id, visit) in &batch.visit_updates {
                    s.execute(params![visit.0 as i64, id]).map_err(db_err)?;
                }
            }
            insert_all(&tx, &batch.events).map_err(db_err)?;
            // The day changed, so its rollups no longer hold; they are rebuilt later.
            delete_rollups(&tx, batch.site, batch.day).map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn replace_rollups(&self, site: SiteId, day: LocalDay, from_ms: i64, to_ms: i64, event_count: u64, rows: Vec<RollupRow>) -> StoreResult<()> {
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err)?;
            let now: i64 = tx
                .query_row("SELECT COUNT(*) FROM events WHERE site_id = ?1 AND ts >= ?2 AND ts < ?3", params![site.0, from_ms, to_ms], |r| r.get(0))
                .map_err(db_err)?;
            if now as u64 != event_count {
                return Err(StoreError::Conflict);
            }
            delete_rollups(&tx, site, day).map_err(db_err)?;
            {
                let mut s = tx
                    .prepare_cached(
                        "INSERT INTO day_rollups (site_id, dimension, day, value, visitors, visits, pageviews, events, bounces, duration_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )
                    .map_err(db_err)?;
                for r in &rows {
                    let x = &r.sums;
                    s.execute(params![
                        site.0, r.dimension, day.0, r.value, x.visitors as i64, x.visits as i64, x.pageviews as i64,
                        x.events as i64, x.bounces as i64, x.duration_ms as i64
                    ])
                    .map_err(db_err)?;
                }
            }
            // built_at versions the day's rollups for caches, so it must grow on every
            // rebuild, even two within one millisecond.
            let last_built: i64 = tx
                .query_row("SELECT COALESCE(MAX(built_at), 0) FROM rolled_up_days WHERE site_id = ?1", [site.0], |r| r.get(0))
                .map_err(db_err)?;
            tx.execute(
                "INSERT INTO rolled_up_days (site_id, day, events, built_at) VALUES (?1, ?2, ?3, ?4)",
                params![site.0, day.0, event_count as i64, now_ms().max(last_built + 1)],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn rolled_up_days(&self, site: SiteId, first: LocalDay, last: LocalDay) -> StoreResult<Vec<(LocalDay, i64)>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached("SELECT day, built_at FROM rolled_up_days WHERE site_id = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day")
                .map_err(db_err)?;
            let rows = s.query_map(params![site.0, first.0, last.0], |r| Ok((LocalDay(r.get(0)?), r.get(1)?))).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn rollups(&self, site: SiteId, dimension: &str, first: LocalDay, last: LocalDay) -> StoreResult<Vec<(LocalDay, String, Sums)>> {
        let dimension = dimension.to_string();
        self.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT day, value, visitors, visits, pageviews, events, bounces, duration_ms FROM day_rollups
                     WHERE site_id = ?1 AND dimension = ?2 AND day >= ?3 AND day <= ?4",
                )
                .map_err(db_err)?;
            let rows = s
                .query_map(params![site.0, dimension, first.0, last.0], |r| {
                    Ok((
                        LocalDay(r.get(0)?),
                        r.get::<_, String>(1)?,
                        Sums {
                            visitors: r.get::<_, i64>(2)? as u64,
                            visits: r.get::<_, i64>(3)? as u64,
                            pageviews: r.get::<_, i64>(4)? as u64,
                            events: r.get::<_, i64>(5)? as u64,
                            bounces: r.get::<_, i64>(6)? as u64,
                            duration_ms: r.get::<_, i64>(7)? as u64,
                        },
                    ))
                })
                .map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }

    async fn events(&self, site: SiteId, from_ms: i64, to_ms: i64) -> StoreResult<Vec<Event>> {
        self.read(move |c| {
            let mut s = c
                .prepare(&format!("{SELECT_EVENT} WHERE site_id = ?1 AND ts >= ?2 AND ts < ?3 ORDER BY ts, id"))
                .map_err(db_err)?;
            let rows = s.query_map(params![site.0, from_ms, to_ms], event_from_row).map_err(db_err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
        })
        .await
    }
}
