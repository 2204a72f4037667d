//! A 202 means durable: `kill -9` of `footfall serve` in the middle of a load run loses no
//! acknowledged event, and the data directory opens cleanly afterwards.

mod common;

use common::FIREFOX;
use footfall::storage::sqlite::SqliteStore;
use footfall::storage::Store;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Starts `footfall serve` on an ephemeral port and returns it with its address, read
/// from the startup log line.
fn start_server(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_footfall"))
        .args(["serve", "--listen", "127.0.0.1:0", "--trusted-proxy", "127.0.0.1", "--data-dir"])
        .arg(dir)
        .env("FOOTFALL_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start footfall serve");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited before listening").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_event() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    {
        let store = SqliteStore::open(&dir).unwrap();
        footfall::admin::add_site(&store, "example.com", "UTC").await.unwrap();
    }
    let (mut child, addr) = start_server(&dir);

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut tasks = Vec::new();
    for worker in 0..64 {
        let (acked, stop, client, addr) = (acked.clone(), stop.clone(), client.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            // Bounded: stops when told to, or after 100k requests at most.
            while !stop.load(Ordering::Relaxed) && i < 100_000 {
                let path = format!("/w{worker}/e{i}");
                i += 1;
                let body = format!(r#"{{"n":"pageview","u":"https://example.com{path}"}}"#);
                let resp = client
                    .post(format!("http://{addr}/api/event"))
                    .header("user-agent", FIREFOX)
                    .header("x-forwarded-for", format!("10.{}.{}.{}", worker, i % 250, i % 7))
                    .body(body)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 202 => acked.lock().unwrap().push(path),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }

    // Kill once a good number of events has been acknowledged, while requests are in flight.
    for _ in 0..600 {
        if acked.lock().unwrap().len() >= 3000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("kill -9"); // SIGKILL on Unix
    child.wait().unwrap();
    let acked_at_kill = acked.lock().unwrap().len();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked_at_kill >= 1000, "the load run acknowledged only {acked_at_kill} events before the kill");

    let store = SqliteStore::open(&dir).expect("the database opens after kill -9");
    let site = store.site_by_domain("example.com").await.unwrap().unwrap();
    let mut stored: HashMap<String, u32> = HashMap::new();
    for e in store.events(site.id, 0, i64::MAX).await.unwrap() {
        *stored.entry(e.facts.pathname).or_default() += 1;
    }
    let lost: Vec<&String> = acked.iter().filter(|p| !stored.contains_key(*p)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged events were lost, e.g. {:?}", lost.len(), acked.len(), &lost[..lost.len().min(5)]);
    assert!(stored.values().all(|n| *n == 1), "an event was stored twice");
    drop(store);

    // And the server starts again on the same data.
    let (mut child, addr) = start_server(&dir);
    let resp = client
        .post(format!("http://{addr}/api/event"))
        .header("user-agent", FIREFOX)
        .body(r#"{"n":"pageview","u":"https://example.com/after"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    child.kill().unwrap();
    child.wait().unwrap();
}
