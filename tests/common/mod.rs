//! `TestApp`: the real server on port 0 against a real SQLite file in a temporary
//! directory, with one method per endpoint.
#![allow(dead_code)]

pub mod pg;
pub mod procs;
pub mod synthetic;

use footfall::config::{self, Layer};
use footfall::domain::{Event, Site};
use footfall::storage::sqlite::SqliteStore;
use footfall::storage::Store;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::oneshot;

pub const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
pub const CHROME_WIN: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
pub const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";

pub struct TestApp {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestApp {
    /// A server that trusts forwarding headers from 127.0.0.1, so tests can choose the
    /// client address with `X-Forwarded-For`.
    pub async fn spawn() -> TestApp {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut app = TestApp::spawn_with(&dir, vec!["127.0.0.1".into()]).await;
        app._tmp = Some(tmp);
        app
    }

    pub async fn spawn_with(data_dir: &Path, trusted: Vec<String>) -> TestApp {
        TestApp::spawn_with_layer(data_dir, Layer { trusted_proxy: Some(trusted), ..Default::default() }).await
    }

    pub async fn spawn_with_layer(data_dir: &Path, layer: Layer) -> TestApp {
        let flags = Layer { listen: Some("127.0.0.1:0".into()), data_dir: Some(data_dir.to_path_buf()), ..layer };
        let cfg = config::load(flags, None, &HashMap::new()).expect("valid test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(footfall::startup::serve(cfg, listener, async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::new();
        // Ready when health answers; the listener is bound already, so this is quick.
        for _ in 0..200 {
            if client.get(format!("http://{addr}/api/health")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        TestApp { addr, data_dir: data_dir.to_path_buf(), client, shutdown: Some(tx), handle: Some(handle), _tmp: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A separate connection to the same database, as another process would have.
    pub fn store(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.data_dir).expect("open store"))
    }

    pub async fn add_site(&self, domain: &str, tz: &str) -> Site {
        footfall::admin::add_site(self.store().as_ref(), domain, tz).await.expect("add site")
    }

    pub async fn post_event(&self, body: &str, user_agent: &str, client_ip: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/event"))
            .header("content-type", "text/plain")
            .header("user-agent", user_agent)
            .header("x-forwarded-for", client_ip)
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn events(&self, site: &Site) -> Vec<Event> {
        self.store().events(site.id, 0, i64::MAX).await.expect("events")
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap()
    }

    /// Asks for a graceful stop without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Graceful stop: in-flight requests finish and the queue drains.
    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server result");
        }
    }

    /// Keeps the data directory alive beyond this server (for restart tests).
    pub fn take_dir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }
}

/// Sends a pageview of `https://example.com{path}` from `client_ip` (through the trusted
/// proxy header). Owns its inputs, so spawned tasks can send many at once.
pub async fn send_pageview(client: reqwest::Client, url: String, path: String, client_ip: String) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("user-agent", FIREFOX)
        .header("x-forwarded-for", client_ip)
        .body(format!(r#"{{"n":"pageview","u":"https://example.com{path}"}}"#))
        .send()
        .await
}

pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}
