//! Cluster mode with real processes on 127.0.0.1: three Footfall workers behind Caddy
//! (HTTPS with `tls internal`, least connections, active health checks), sharing a
//! PostgreSQL database and a Redis that persists every write. Under a bounded load
//! through Caddy, one worker is killed with `kill -9` and restarted, then the leader is
//! killed: every event that got a 202 is stored exactly once, visitors keep one visit
//! across workers, the leader role moves within two lease periods, and the day-close job
//! ran exactly once per slot across the failover. A second test restarts Redis mid-run.

mod common;

use common::pg::TestDatabase;
use common::procs::{footfall_bin, free_port, redis, wait_for_port, Proc};
use footfall::storage::postgres::PostgresStore;
use footfall::storage::Store;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LEASE_SECS: u64 = 2;

fn worker(name: &str, port: u16, db: &str, redis_port: u16, dir: &std::path::Path) -> Proc {
    let args: Vec<String> = [
        "serve", "--listen", &format!("127.0.0.1:{port}"), "--database", db, "--redis", &format!("redis://127.0.0.1:{redis_port}"),
        "--trusted-proxy", "127.0.0.1", "--leader-lease", &LEASE_SECS.to_string(), "--day-close-every", "1", "--worker-name", name,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::new(name, footfall_bin(), &args, &[("RUST_LOG", "info")], dir)
}

fn caddy(dir: &std::path::Path, https: u16, http: u16, upstreams: &[u16]) -> Proc {
    let file = dir.join("Caddyfile");
    let to: Vec<String> = upstreams.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    std::fs::write(
        &file,
        format!(
            "{{\n\tadmin off\n\tskip_install_trust\n\thttp_port {http}\n\thttps_port {https}\n}}\n\
             https://localhost:{https} {{\n\tbind 127.0.0.1\n\ttls internal\n\treverse_proxy {} {{\n\
             \t\tlb_policy least_conn\n\t\tlb_try_duration 5s\n\t\tlb_try_interval 100ms\n\
             \t\thealth_uri /api/health\n\t\thealth_interval 300ms\n\t\thealth_timeout 1s\n\
             \t\tfail_duration 2s\n\t}}\n}}\n",
            to.join(" ")
        ),
    )
    .unwrap();
    let home = dir.display().to_string();
    let args: Vec<String> = ["run", "--config", &file.display().to_string(), "--adapter", "caddyfile"].iter().map(|s| s.to_string()).collect();
    Proc::new("caddy", "caddy", &args, &[("HOME", &home), ("XDG_DATA_HOME", &home), ("XDG_CONFIG_HOME", &home)], dir)
}

async fn role(client: &reqwest::Client, port: u16) -> Option<String> {
    let resp = client.get(format!("http://127.0.0.1:{port}/api/health")).timeout(Duration::from_millis(800)).send().await.ok()?;
    let body: serde_json::Value = resp.json().await.ok()?;
    body["role"].as_str().map(str::to_string)
}

async fn leader_among(client: &reqwest::Client, ports: &[u16]) -> Option<u16> {
    for p in ports {
        if role(client, *p).await.as_deref() == Some("leader") {
            return Some(*p);
        }
    }
    None
}

/// What the load saw: for each acknowledged event, its path and the worker that answered.
#[derive(Default)]
struct Seen {
    acked: Vec<(String, String)>,
    refused: u64,
}

/// Sends events until `stop`: `visitors` tasks, each one visitor (its own user agent),
/// each event a unique path.
fn load(url: String, client: reqwest::Client, visitors: std::ops::Range<usize>, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) -> Vec<tokio::task::JoinHandle<()>> {
    visitors
        .map(|v| {
            let (url, client, stop, seen) = (url.clone(), client.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                let ua = format!("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 visitor{v}");
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("/v{v}/e{n}");
                    n += 1;
                    let resp = client
                        .post(&url)
                        .header("user-agent", &ua)
                        .header("content-type", "text/plain")
                        .body(format!(r#"{{"n":"pageview","u":"https://cluster.example{path}","d":"cluster.example"}}"#))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match resp {
                        Ok(r) if r.status() == 202 => {
                            let w = r.headers().get("x-footfall-worker").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
                            seen.lock().unwrap().acked.push((path, w));
                        }
                        _ => {
                            seen.lock().unwrap().refused += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Every acknowledged event is stored exactly once, and nothing is stored twice.
async fn check_exactly_once(store: &PostgresStore, site: &footfall::domain::Site, seen: &Seen) -> HashMap<String, Vec<footfall::domain::Event>> {
    let events = store.events(site.id, 0, i64::MAX).await.unwrap();
    let mut by_path: HashMap<String, Vec<footfall::domain::Event>> = HashMap::new();
    for e in events {
        by_path.entry(e.facts.pathname.clone()).or_default().push(e);
    }
    for (path, stored) in &by_path {
        assert_eq!(stored.len(), 1, "{path} is stored {} times", stored.len());
    }
    for (path, _) in &seen.acked {
        assert!(by_path.contains_key(path), "{path} got 202 but is not stored");
    }
    by_path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_behind_caddy_survive_kill_9_and_leader_failover() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = TestDatabase::create().await;
    let redis_port = free_port();
    let mut redis = redis(dir, redis_port);
    redis.start();
    wait_for_port(redis_port, "redis-server");

    let store = PostgresStore::open(&db.url).await.unwrap();
    let site = footfall::admin::add_site(&store, "cluster.example", "UTC").await.unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut workers: Vec<Proc> = ports.iter().enumerate().map(|(i, p)| worker(&format!("w{i}"), *p, &db.url, redis_port, dir)).collect();
    for (w, p) in workers.iter_mut().zip(&ports) {
        w.start();
        wait_for_port(*p, &w.name);
    }
    let (https, http) = (free_port(), free_port());
    let mut caddy = caddy(dir, https, http, &ports);
    caddy.start();
    wait_for_port(https, "caddy");

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("localhost", ([127, 0, 0, 1], https).into())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("https://localhost:{https}/api/event");
    // Caddy serves HTTPS and routes to a healthy worker.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client.get(format!("https://localhost:{https}/api/health")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "Caddy never answered over HTTPS:\n{}", caddy.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probe = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while leader_among(&probe, &ports).await.is_none() {
        assert!(Instant::now() < deadline, "no worker became the leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let tasks = load(url, client.clone(), 0..8, stop.clone(), seen.clone());

    // A follower dies mid-load and comes back.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = leader_among(&probe, &ports).await.expect("a leader");
    let victim = ports.iter().position(|p| *p != leader).unwrap();
    workers[victim].kill9();
    tokio::time::sleep(Duration::from_secs(2)).await;
    workers[victim].start();
    wait_for_port(ports[victim], "the restarted worker");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Then the leader dies; another worker must lead within two lease periods.
    let leader = leader_among(&probe, &ports).await.expect("a leader");
    let li = ports.iter().position(|p| *p == leader).unwrap();
    let killed_at = Instant::now();
    workers[li].kill9();
    let others: Vec<u16> = ports.iter().copied().filter(|p| *p != leader).collect();
    let new_leader = loop {
        if let Some(p) = leader_among(&probe, &others).await {
            break p;
        }
        assert!(killed_at.elapsed() < Duration::from_secs(4 * LEASE_SECS), "no new leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let moved_in = killed_at.elapsed();
    assert!(moved_in <= Duration::from_secs(2 * LEASE_SECS), "the leader role took {moved_in:?} to move (lease {LEASE_SECS} s)");
    tokio::time::sleep(Duration::from_secs(2)).await;
    workers[li].start();
    wait_for_port(ports[li], "the restarted leader");
    tokio::time::sleep(Duration::from_secs(2)).await;

    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.acked.len() > 100, "the load got {} events through ({} refused)", seen.acked.len(), seen.refused);
    let stored = check_exactly_once(&store, &site, &seen).await;

    // Each visitor kept one visit although its requests were answered by several workers.
    let workers_seen: HashSet<&str> = seen.acked.iter().map(|(_, w)| w.as_str()).collect();
    assert!(workers_seen.len() >= 3, "Caddy spread the load: {workers_seen:?}");
    for v in 0..8 {
        let prefix = format!("/v{v}/");
        let visits: HashSet<u64> = stored.iter().filter(|(p, _)| p.starts_with(&prefix)).flat_map(|(_, es)| es.iter().map(|e| e.visit_id.0)).collect();
        let answered_by: HashSet<&str> = seen.acked.iter().filter(|(p, _)| p.starts_with(&prefix)).map(|(_, w)| w.as_str()).collect();
        assert_eq!(visits.len(), 1, "visitor {v} (answered by {answered_by:?}) has {} visits", visits.len());
    }

    // The day close ran once per one-second slot, with no slot missed across the
    // failover, under non-decreasing fencing tokens.
    let runs = store.job_runs(footfall::jobs::DAY_CLOSE).await.unwrap();
    let slots: Vec<i64> = runs.iter().map(|r| r.0).collect();
    assert!(slots.len() >= 8, "{runs:?}");
    assert_eq!(slots.last().unwrap() - slots.first().unwrap() + 1, slots.len() as i64, "a slot was skipped: {slots:?}");
    assert!(runs.windows(2).all(|w| w[0].1 <= w[1].1), "tokens go back: {runs:?}");
    let tokens: HashSet<i64> = runs.iter().map(|r| r.1).collect();
    assert!(tokens.len() >= 2, "the job moved to the new leader: {runs:?}");
    let new_name = format!("w{}", ports.iter().position(|p| *p == new_leader).unwrap());
    assert!(runs.iter().any(|r| r.2 == new_name), "the new leader {new_name} ran slots: {runs:?}");
    println!("leader moved in {moved_in:?}; {} events acknowledged, {} refused; {} day-close slots", seen.acked.len(), seen.refused, runs.len());

    drop(caddy);
    drop(workers);
    drop(redis);
    db.drop().await;
}

/// Workers for a dependency-outage test: `n` of them on the shared database and Redis.
fn start_workers(prefix: &str, n: usize, db: &str, redis_port: u16, dir: &std::path::Path) -> (Vec<u16>, Vec<Proc>) {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let mut workers: Vec<Proc> = ports.iter().enumerate().map(|(i, p)| worker(&format!("{prefix}{i}"), *p, db, redis_port, dir)).collect();
    for (w, p) in workers.iter_mut().zip(&ports) {
        w.start();
        wait_for_port(*p, &w.name);
    }
    (ports, workers)
}

/// Loads two workers directly (two visitors each), takes a dependency away with `crash`
/// and checks that health names it and nothing is acknowledged meanwhile, brings it back
/// with `restart`, waits until the workers serve again by themselves, and returns what
/// the load saw.
async fn ride_out_outage(ports: &[u16], workers: &[Proc], failing: &str, crash: impl FnOnce(), restart: impl FnOnce()) -> Seen {
    let client = reqwest::Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = load(format!("http://127.0.0.1:{}/api/event", ports[0]), client.clone(), 0..2, stop.clone(), seen.clone());
    tasks.extend(load(format!("http://127.0.0.1:{}/api/event", ports[1]), client.clone(), 2..4, stop.clone(), seen.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    crash();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let health = client.get(format!("http://127.0.0.1:{}/api/health", ports[0])).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["failing"], failing, "{body}");
    let acked_while_down = seen.lock().unwrap().acked.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(seen.lock().unwrap().acked.len(), acked_while_down, "nothing is acknowledged while {failing} is down");
    restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = client.get(format!("http://127.0.0.1:{}/api/health", ports[1])).send().await.is_ok_and(|r| r.status() == 200);
        if ok && seen.lock().unwrap().acked.len() > acked_while_down + 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the workers did not recover after {failing} came back:\n{}", workers[1].log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(seen.refused > 0, "events were refused while {failing} was down");
    seen
}

/// Redis dies (kill -9) and comes back mid-run: workers refuse events with 503 while it is
/// away, recover by themselves, and every acknowledged event is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_recover_from_a_redis_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = TestDatabase::create().await;
    let redis_port = free_port();
    let redis = std::cell::RefCell::new(redis(dir, redis_port));
    redis.borrow_mut().start();
    wait_for_port(redis_port, "redis-server");
    let store = PostgresStore::open(&db.url).await.unwrap();
    let site = footfall::admin::add_site(&store, "cluster.example", "UTC").await.unwrap();
    let (ports, workers) = start_workers("r", 2, &db.url, redis_port, dir);
    let seen = ride_out_outage(&ports, &workers, "coordination", || redis.borrow_mut().kill9(), || {
        redis.borrow_mut().start();
        wait_for_port(redis_port, "redis-server");
    })
    .await;
    let stored = check_exactly_once(&store, &site, &seen).await;
    // Redis persisted the visits (AOF, appendfsync always): each visitor still has one.
    for v in 0..4 {
        let prefix = format!("/v{v}/");
        let visits: HashSet<u64> = stored.iter().filter(|(p, _)| p.starts_with(&prefix)).flat_map(|(_, es)| es.iter().map(|e| e.visit_id.0)).collect();
        assert_eq!(visits.len(), 1, "visitor {v} has {} visits", visits.len());
    }
    drop(workers);
    drop(redis);
    db.drop().await;
}

/// PostgreSQL crashes (`pg_ctl stop -m immediate`) and comes back mid-run: workers answer
/// 503 while it is away, reconnect by themselves, and every acknowledged event is stored
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_recover_from_a_postgresql_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pg = common::procs::PgInstance::init(free_port());
    pg.start();
    let redis_port = free_port();
    let mut redis = redis(dir, redis_port);
    redis.start();
    wait_for_port(redis_port, "redis-server");
    let store = PostgresStore::open(&pg.url()).await.unwrap();
    let site = footfall::admin::add_site(&store, "cluster.example", "UTC").await.unwrap();
    let (ports, workers) = start_workers("p", 2, &pg.url(), redis_port, dir);
    let seen = ride_out_outage(&ports, &workers, "storage", || pg.crash(), || pg.start()).await;
    let store = PostgresStore::open(&pg.url()).await.unwrap();
    check_exactly_once(&store, &site, &seen).await;
    drop(workers);
    drop(redis);
}
