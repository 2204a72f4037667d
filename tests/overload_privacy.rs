//! Backpressure, graceful shutdown, and what never reaches the disk.

mod common;

use common::*;
use footfall::config::Layer;
use footfall::storage::Store;
use std::time::Duration;

/// While storage is blocked (another process holds the write lock), the bounded queue
/// fills and further events get 503 with Retry-After; once storage frees up, every
/// queued event is stored and acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = Layer { trusted_proxy: Some(vec!["127.0.0.1".into()]), queue_capacity: Some(4), ..Default::default() };
    let app = TestApp::spawn_with_layer(tmp.path(), layer).await;
    let site = app.add_site("example.com", "UTC").await;

    // The first event creates the day's salt, which needs the write lock too.
    assert_eq!(app.post_event(r#"{"n":"pageview","u":"https://example.com/first"}"#, FIREFOX, "81.2.69.142").await.status(), 202);

    // Another writer takes SQLite's write lock and keeps it.
    let blocker = rusqlite::Connection::open(tmp.path().join("footfall.db")).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let mut pending = Vec::new();
    for i in 0..40 {
        let client = app.client.clone();
        let url = app.url("/api/event");
        pending.push(tokio::spawn(async move {
            let resp = send_pageview(client, url, format!("/{i}"), "81.2.69.142".into()).await.unwrap();
            let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            (i, resp.status().as_u16(), retry)
        }));
    }
    // Release storage only once the server has refused some events for a full queue
    // (bounded wait; the requests may take a while to arrive on a busy machine).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&app.metrics().await, "footfall_events_rejected_total{reason=\"overloaded\"}") == 0 {
        assert!(std::time::Instant::now() < deadline, "the queue never overflowed while storage was blocked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    blocker.execute_batch("ROLLBACK").unwrap();

    let mut accepted = vec!["/first".to_string()];
    let mut refused = 0;
    for p in pending {
        let (i, status, retry) = p.await.unwrap();
        match status {
            202 => accepted.push(format!("/{i}")),
            503 => {
                assert_eq!(retry.as_deref(), Some("1"), "503 carries Retry-After");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(refused > 0, "a queue of 4 must overflow with 40 requests while storage is blocked");
    assert!(!accepted.is_empty());
    let stored: Vec<String> = app.events(&site).await.into_iter().map(|e| e.facts.pathname).collect();
    accepted.sort();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort();
    assert_eq!(stored_sorted, accepted, "exactly the acknowledged events are stored");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "footfall_events_rejected_total{reason=\"overloaded\"}"), refused);
    app.stop().await;
}

/// A graceful stop finishes the requests in flight: whatever got 202 is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_the_queue() {
    let mut app = TestApp::spawn().await;
    let site = app.add_site("example.com", "UTC").await;
    let mut pending = Vec::new();
    for i in 0..200 {
        let client = app.client.clone();
        let url = app.url("/api/event");
        pending.push(tokio::spawn(async move {
            let resp = send_pageview(client, url, format!("/{i}"), format!("81.2.69.{}", i % 200)).await;
            (i, resp.map(|r| r.status().as_u16()).ok())
        }));
    }
    tokio::time::sleep(Duration::from_millis(2)).await;
    app.begin_stop();
    let mut acked = Vec::new();
    for p in pending {
        if let (i, Some(202)) = p.await.unwrap() {
            acked.push(format!("/{i}"));
        }
    }
    let store = app.store();
    app.stop().await;
    let stored: std::collections::HashSet<String> =
        store.events(site.id, 0, i64::MAX).await.unwrap().into_iter().map(|e| e.facts.pathname).collect();
    for p in &acked {
        assert!(stored.contains(p), "acknowledged event {p} was lost in shutdown");
    }
}

/// Neither the client's IP address nor its user agent string nor the day's salt is
/// written with the events; the salt lives apart and is deleted after its day.
#[tokio::test]
async fn no_ip_user_agent_or_salt_reaches_the_event_store() {
    let mut app = TestApp::spawn().await;
    let dir = app.take_dir().unwrap();
    let site = app.add_site("example.com", "UTC").await;
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0 UniqueMarker/42";
    assert_eq!(app.post_event(r#"{"n":"pageview","u":"https://example.com/"}"#, ua, "203.0.113.77").await.status(), 202);
    app.stop().await;

    let store = footfall::storage::sqlite::SqliteStore::open(dir.path()).unwrap();
    let day = site.timezone.local_day(chrono::Utc::now().timestamp_millis());
    let salt = store.salt(site.id, day, footfall::identity::DailySalt([0; 16]), 0).await.unwrap();
    assert_ne!(salt.0, [0; 16], "the salt created by the live path is the stored one");

    // Every event byte on disk: the events table's rows, the database file and its WAL.
    let mut event_bytes = Vec::new();
    {
        let conn = rusqlite::Connection::open(dir.path().join("footfall.db")).unwrap();
        let mut s = conn.prepare("SELECT site_id, ts, day, visitor_id, visit_id, kind, facts FROM events").unwrap();
        let mut rows = s.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..6 {
                event_bytes.extend(r.get::<_, i64>(i).unwrap().to_le_bytes());
            }
            event_bytes.extend(r.get::<_, Vec<u8>>(6).unwrap());
        }
    }
    assert!(!event_bytes.is_empty());
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(&event_bytes, &salt.0), "the salt is not stored with events");
    let mut files = Vec::new();
    for name in ["footfall.db", "footfall.db-wal"] {
        files.extend(std::fs::read(dir.path().join(name)).unwrap_or_default());
    }
    assert!(!contains(&files, b"203.0.113.77"), "the IP address is not stored");
    assert!(!contains(&files, &[203, 0, 113, 77]), "not even as bytes");
    assert!(!contains(&files, b"UniqueMarker"), "the raw user agent is not stored");

    // Expired salts are deleted; a new salt for the day is then random again.
    let removed = store.delete_expired_salts(i64::MAX).await.unwrap();
    assert!(removed >= 1);
    let again = store.salt(site.id, day, footfall::identity::DailySalt([9; 16]), 0).await.unwrap();
    assert_eq!(again.0, [9; 16], "the old salt is gone for good");
}
