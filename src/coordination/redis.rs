//! Cluster coordination through Redis, behind the same `Coordinator` boundary as the
//! in-process version:
//!
//! - live visits: one key per (site, visitor), updated by a Lua script, so two workers
//!   extending the same visitor at once never split a visit;
//! - Stats API rate limits: one counter per key and minute;
//! - the leader lease: `SET NX PX`, renewed by a script that checks the holder, with a
//!   fencing token (`INCR`) that jobs record with each run, so a stale leader is refused;
//! - daily salts are created once in the shared database (an atomic insert; the first
//!   worker's salt wins) and cached, as on one machine: they then survive a Redis restart.
//!
//! The connection manager reconnects by itself after Redis restarts. A worker that cannot
//! reach Redis answers 503 on `/api/health` and refuses events (they would not join their
//! visits), and stops acting as leader once its lease would have run out.

use super::{Coordinator, SaltCache};
use crate::domain::{EventKind, LocalDay, Site, SiteId, VisitId, VisitorId};
use crate::identity::{self, DailySalt};
use crate::storage::{Store, StoreError, StoreResult};
use crate::visits::VISIT_GAP_MS;
use anyhow::{anyhow, Context};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOUCH_VISIT: &str = r#"
local v = redis.call('GET', KEYS[1])
local ts = tonumber(ARGV[1])
if v then
  local sep = string.find(v, ':', 1, true)
  local visit = string.sub(v, 1, sep - 1)
  local last = tonumber(string.sub(v, sep + 1))
  if ts - last <= tonumber(ARGV[4]) then
    if ts > last then redis.call('SET', KEYS[1], visit .. ':' .. ARGV[1], 'PX', ARGV[5]) end
    return visit
  end
end
if ARGV[2] == '1' then return false end
redis.call('SET', KEYS[1], ARGV[3] .. ':' .. ARGV[1], 'PX', ARGV[5])
return ARGV[3]
"#;

const RENEW_LEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const LEADER_KEY: &str = "footfall:leader";
const TOKEN_KEY: &str = "footfall:leader:token";

/// This worker's view of the lease.
#[derive(Debug, Clone, Copy)]
struct Lease {
    token: i64,
    /// The lease certainly holds until then (measured from before the request that
    /// acquired or renewed it).
    valid_until: Instant,
}

pub struct RedisCoordinator {
    conn: ConnectionManager,
    store: Arc<dyn Store>,
    salts: SaltCache,
    /// The value this worker writes into the leader key: its name and a random suffix.
    holder: String,
    lease_length: Duration,
    lease: Mutex<Option<Lease>>,
    reachable: AtomicBool,
    touch: redis::Script,
    renew: redis::Script,
}

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::Other(anyhow!("Redis: {e}"))
}

impl RedisCoordinator {
    pub async fn connect(url: &str, store: Arc<dyn Store>, worker: &str, lease_length: Duration) -> anyhow::Result<Arc<RedisCoordinator>> {
        let client = redis::Client::open(url).with_context(|| format!("redis: {url:?} is not a Redis URL"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_number_of_retries(2)
            .set_max_delay(500);
        let conn = tokio::time::timeout(Duration::from_secs(10), ConnectionManager::new_with_config(client, config))
            .await
            .map_err(|_| anyhow!("redis: no answer from {url} within 10 s"))?
            .with_context(|| format!("while connecting to Redis at {url}"))?;
        Ok(Arc::new(RedisCoordinator {
            conn,
            store,
            salts: SaltCache::default(),
            holder: format!("{worker}:{:016x}", rand::random::<u64>()),
            lease_length,
            lease: Mutex::new(None),
            reachable: AtomicBool::new(true),
            touch: redis::Script::new(TOUCH_VISIT),
            renew: redis::Script::new(RENEW_LEASE),
        }))
    }

    fn current_lease(&self) -> Option<Lease> {
        let lease = *self.lease.lock().expect("lease state poisoned");
        lease.filter(|l| Instant::now() < l.valid_until)
    }

    /// One round of the lease: acquire it when free, renew it when held. Run it every
    /// third of the lease length.
    pub async fn lease_round(&self) {
        let started = Instant::now();
        let mut conn = self.conn.clone();
        let ms = self.lease_length.as_millis() as u64;
        let held = self.current_lease();
        let result: Result<Option<Lease>, redis::RedisError> = async {
            match held {
                Some(l) => {
                    let renewed: i64 = self.renew.key(LEADER_KEY).arg(&self.holder).arg(ms).invoke_async(&mut conn).await?;
                    Ok((renewed == 1).then_some(Lease { token: l.token, valid_until: started + self.lease_length }))
                }
                None => {
                    let acquired: Option<String> =
                        redis::cmd("SET").arg(LEADER_KEY).arg(&self.holder).arg("NX").arg("PX").arg(ms).query_async(&mut conn).await?;
                    if acquired.is_none() {
                        return Ok(None);
                    }
                    let token: i64 = redis::cmd("INCR").arg(TOKEN_KEY).query_async(&mut conn).await?;
                    Ok(Some(Lease { token, valid_until: started + self.lease_length }))
                }
            }
        }
        .await;
        let mut lease = self.lease.lock().expect("lease state poisoned");
        match result {
            Ok(next) => {
                self.reachable.store(true, Ordering::Relaxed);
                if next.is_some() && held.is_none() {
                    tracing::info!(token = next.map(|l| l.token), "this worker is the leader");
                } else if next.is_none() && held.is_some() {
                    tracing::warn!("this worker lost the leader lease");
                }
                *lease = next;
            }
            Err(e) => {
                self.reachable.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "Redis unreachable for the leader lease");
                // Keep the lease only while it certainly still holds.
                *lease = held.filter(|l| Instant::now() < l.valid_until);
            }
        }
    }

    /// Gives the lease up (graceful shutdown), so another worker takes over at once.
    pub async fn resign(&self) {
        if self.lease.lock().expect("lease state poisoned").take().is_some() {
            let mut conn = self.conn.clone();
            let script = redis::Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0");
            let _: Result<i64, _> = script.key(LEADER_KEY).arg(&self.holder).invoke_async(&mut conn).await;
        }
    }

    pub fn spawn_lease(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.lease_length / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.lease_round().await;
            }
        })
    }
}

#[async_trait]
impl Coordinator for RedisCoordinator {
    async fn salt(&self, site: &Site, day: LocalDay) -> StoreResult<DailySalt> {
        self.salts.get_or_create(self.store.as_ref(), site, day).await
    }

    async fn touch_visit(&self, site: SiteId, visitor: VisitorId, kind: EventKind, ts_ms: i64) -> StoreResult<Option<VisitId>> {
        let mut conn = self.conn.clone();
        let key = format!("footfall:visit:{}:{}", site.0, visitor.0);
        let new_visit = identity::visit_id(visitor, ts_ms);
        let result: Result<Option<String>, _> = self
            .touch
            .key(key)
            .arg(ts_ms)
            .arg(if kind == EventKind::Engagement { "1" } else { "0" })
            .arg(new_visit.0.to_string())
            .arg(VISIT_GAP_MS)
            .arg(VISIT_GAP_MS + 10 * 60 * 1000)
            .invoke_async(&mut conn)
            .await;
        self.reachable.store(result.is_ok(), Ordering::Relaxed);
        match result.map_err(redis_err)? {
            Some(v) => Ok(Some(VisitId(v.parse().map_err(|_| anyhow!("Redis holds a bad visit id {v:?}"))?))),
            None => Ok(None),
        }
    }

    async fn housekeeping(&self, now_ms: i64) -> StoreResult<()> {
        // Visit keys expire by themselves in Redis.
        self.salts.forget_expired(now_ms);
        self.store.delete_expired_salts(now_ms).await?;
        Ok(())
    }

    async fn allow_api_request(&self, key_id: i64, per_minute: u32, now_ms: i64) -> bool {
        let mut conn = self.conn.clone();
        let key = format!("footfall:ratelimit:{key_id}:{}", now_ms.div_euclid(60_000));
        let counted: Result<(i64,), _> = redis::pipe().atomic().incr(&key, 1).pexpire(&key, 120_000).ignore().query_async(&mut conn).await;
        match counted {
            Ok((n,)) => n <= per_minute as i64,
            Err(e) => {
                // The limit protects the service, not data: when Redis is away, serve.
                tracing::warn!(error = %e, "Redis unreachable for rate limiting; allowing the request");
                true
            }
        }
    }

    fn is_leader(&self) -> bool {
        self.current_lease().is_some()
    }

    fn fencing_token(&self) -> Option<i64> {
        self.current_lease().map(|l| l.token)
    }

    async fn check(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(Duration::from_secs(2), redis::cmd("PING").query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => {
                self.reachable.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("Redis: {e}")),
            Err(_) => Err("Redis: no answer within 2 s".into()),
        }
    }

    fn live_visits(&self) -> usize {
        0
    }
}
