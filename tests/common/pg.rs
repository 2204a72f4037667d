//! A fresh PostgreSQL database per test, on the server named by `FOOTFALL_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/postgres`, the one `scripts/test` makes
//! sure answers). Tests fail, saying what is missing, when no server answers.

use std::sync::atomic::{AtomicU32, Ordering};

pub fn admin_url() -> String {
    std::env::var("FOOTFALL_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin() -> tokio_postgres::Client {
    let url = admin_url();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is missing: no server answers at {url} ({e}); run scripts/test, which starts one, or set FOOTFALL_TEST_POSTGRES"));
    tokio::spawn(conn);
    client
}

/// A database of its own for one test; `drop` it at the end.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!("footfall_test_{}_{}_{:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), rand::random::<u32>());
        admin().await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create the test database");
        let base = admin_url();
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => format!("{base}/{name}"),
        };
        TestDatabase { name, url }
    }

    pub async fn drop(self) {
        let _ = admin().await.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
    }
}
