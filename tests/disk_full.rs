//! A full disk: events are refused with 503 (never acknowledged and lost), health turns
//! 503 so a load balancer routes around the worker, and both recover by themselves once
//! space is free again. Uses a real small tmpfs, which needs root (or CAP_SYS_ADMIN).

mod common;

use common::*;
use std::process::Command;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_events_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let status = Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&mnt).status();
    assert!(
        matches!(status, Ok(s) if s.success()),
        "this test needs to mount a 4 MB tmpfs (run as root or with CAP_SYS_ADMIN); mount failed: {status:?}"
    );
    let _mount = Mount(mnt.clone());
    let data = mnt.join("data");

    let app = TestApp::spawn_with(&data, vec!["127.0.0.1".into()]).await;
    let site = app.add_site("example.com", "UTC").await;
    // The first event creates the day's salt, which needs disk space too.
    assert_eq!(app.post_event(r#"{"n":"pageview","u":"https://example.com/first"}"#, FIREFOX, "81.2.69.142").await.status(), 202);
    let filler = mnt.join("filler");
    // Fill the file system to the last byte.
    let _ = Command::new("dd").args(["if=/dev/zero", "bs=64k"]).arg(format!("of={}", filler.display())).output();

    let mut acked = Vec::new();
    let mut refused = 0;
    let props = "x".repeat(1900);
    for i in 0..400 {
        let body = format!(r#"{{"n":"pageview","u":"https://example.com/{i}","p":{{"pad":"{props}"}}}}"#);
        let resp = app.post_event(&body, FIREFOX, "81.2.69.142").await;
        match resp.status().as_u16() {
            202 => acked.push(format!("/{i}")),
            503 => {
                refused += 1;
                break;
            }
            other => panic!("unexpected status {other} on a full disk"),
        }
    }
    assert!(refused > 0, "a full disk must make a commit fail");
    assert!(metric(&app.metrics().await, "footfall_batches_failed_total") >= 1);
    let health = app.client.get(app.url("/api/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["failing"], "storage");

    std::fs::remove_file(&filler).unwrap();
    let resp = app.post_event(r#"{"n":"pageview","u":"https://example.com/after"}"#, FIREFOX, "81.2.69.142").await;
    assert_eq!(resp.status(), 202, "space is back: events are accepted again without a restart");
    assert_eq!(app.client.get(app.url("/api/health")).send().await.unwrap().status(), 200);

    let stored: std::collections::HashSet<String> = app.events(&site).await.into_iter().map(|e| e.facts.pathname).collect();
    for p in acked.iter().chain(std::iter::once(&"/after".to_string())) {
        assert!(stored.contains(p), "acknowledged event {p} is missing");
    }
    app.stop().await;
}
