//! Layered configuration: defaults < `--config` TOML file < `FOOTFALL_*` environment <
//! command-line flags. Everything is validated once, right after loading, so the rest of
//! the program only sees valid values. The environment is a parameter, not read here, so
//! the precedence rules are unit-testable.

use crate::ingest::client_ip::parse_trusted_proxy;
use anyhow::{anyhow, bail, Context};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8000";
pub const DEFAULT_DATA_DIR: &str = "./footfall-data";
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
pub const DEFAULT_API_RATE_LIMIT: u32 = 600;

/// One layer of settings. Every key is optional; absent keys fall through to the layer
/// below. The TOML file uses these names in snake case.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub redis: Option<String>,
    pub trusted_proxy: Option<Vec<String>>,
    pub base_url: Option<String>,
    pub geoip: Option<PathBuf>,
    pub queue_capacity: Option<usize>,
    pub log_format: Option<String>,
    pub api_rate_limit: Option<u32>,
    /// Seconds between runs of the day close (and of every scheduled job's slot).
    pub day_close_every: Option<u64>,
    /// Seconds the leader lease lasts without renewal (cluster mode).
    pub leader_lease: Option<u64>,
    /// This worker's name in logs, health and job records [default: host name and pid].
    pub worker_name: Option<String>,
}

impl Layer {
    /// Reads `FOOTFALL_<KEY>` variables. Lists are comma-separated.
    pub fn from_env(env: &HashMap<String, String>) -> anyhow::Result<Layer> {
        let get = |k: &str| env.get(&format!("FOOTFALL_{k}")).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        Ok(Layer {
            listen: get("LISTEN"),
            data_dir: get("DATA_DIR").map(PathBuf::from),
            database: get("DATABASE"),
            redis: get("REDIS"),
            trusted_proxy: get("TRUSTED_PROXY").map(|v| v.split(',').map(|s| s.trim().to_string()).collect()),
            base_url: get("BASE_URL"),
            geoip: get("GEOIP").map(PathBuf::from),
            queue_capacity: get("QUEUE_CAPACITY")
                .map(|v| v.parse().map_err(|_| anyhow!("FOOTFALL_QUEUE_CAPACITY: {v:?} is not a positive integer")))
                .transpose()?,
            log_format: get("LOG_FORMAT"),
            api_rate_limit: get("API_RATE_LIMIT")
                .map(|v| v.parse().map_err(|_| anyhow!("FOOTFALL_API_RATE_LIMIT: {v:?} is not a whole number")))
                .transpose()?,
            day_close_every: get("DAY_CLOSE_EVERY")
                .map(|v| v.parse().map_err(|_| anyhow!("FOOTFALL_DAY_CLOSE_EVERY: {v:?} is not a whole number of seconds")))
                .transpose()?,
            leader_lease: get("LEADER_LEASE")
                .map(|v| v.parse().map_err(|_| anyhow!("FOOTFALL_LEADER_LEASE: {v:?} is not a whole number of seconds")))
                .transpose()?,
            worker_name: get("WORKER_NAME"),
        })
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Layer> {
        let text = std::fs::read_to_string(path).with_context(|| format!("while reading the config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow!("config file {}: {e}", path.display()))
    }

    /// `self` wins over `lower` key by key.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            listen: self.listen.or(lower.listen),
            data_dir: self.data_dir.or(lower.data_dir),
            database: self.database.or(lower.database),
            redis: self.redis.or(lower.redis),
            trusted_proxy: self.trusted_proxy.or(lower.trusted_proxy),
            base_url: self.base_url.or(lower.base_url),
            geoip: self.geoip.or(lower.geoip),
            queue_capacity: self.queue_capacity.or(lower.queue_capacity),
            log_format: self.log_format.or(lower.log_format),
            api_rate_limit: self.api_rate_limit.or(lower.api_rate_limit),
            day_close_every: self.day_close_every.or(lower.day_close_every),
            leader_lease: self.leader_lease.or(lower.leader_lease),
            worker_name: self.worker_name.or(lower.worker_name),
        }
    }
}

/// Where data lives. Every command takes these.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the embedded store (cluster mode).
    pub database: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    pub trusted_proxies: Vec<IpNet>,
    pub base_url: Option<url::Url>,
    pub geoip: Option<PathBuf>,
    pub queue_capacity: usize,
    pub log_format: LogFormat,
    /// Stats API requests per minute per API key.
    pub api_rate_limit: u32,
    /// Redis for cluster coordination; `None` on one machine.
    pub redis: Option<String>,
    pub day_close_every: std::time::Duration,
    pub leader_lease: std::time::Duration,
    pub worker_name: String,
}

/// Merges the layers (flags first) and validates the result.
pub fn load(flags: Layer, config_file: Option<&Path>, env: &HashMap<String, String>) -> anyhow::Result<Config> {
    let file_path = config_file.map(Path::to_path_buf).or_else(|| env.get("FOOTFALL_CONFIG").map(PathBuf::from));
    let file = match &file_path {
        Some(p) => Layer::from_file(p)?,
        None => Layer::default(),
    };
    let merged = flags.over(Layer::from_env(env)?).over(file);
    validate(merged)
}

fn validate(l: Layer) -> anyhow::Result<Config> {
    let listen_raw = l.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen: SocketAddr = listen_raw
        .parse()
        .map_err(|_| anyhow!("listen: {listen_raw:?} is not an address like 0.0.0.0:8000"))?;
    if let Some(db) = &l.database {
        if !(db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            bail!("database: {db:?} is not a postgres:// URL");
        }
    }
    if let Some(redis) = &l.redis {
        if !redis.starts_with("redis://") {
            bail!("redis: {redis:?} is not a redis:// URL");
        }
        if l.database.is_none() {
            bail!("redis: cluster mode needs --database postgres://... too (workers share PostgreSQL)");
        }
    }
    let seconds = |v: Option<u64>, default: u64, what: &str| match v {
        Some(0) => Err(anyhow!("{what}: must be at least 1 second")),
        Some(n) => Ok(std::time::Duration::from_secs(n)),
        None => Ok(std::time::Duration::from_secs(default)),
    };
    let day_close_every = seconds(l.day_close_every, 60, "day-close-every")?;
    let leader_lease = seconds(l.leader_lease, 10, "leader-lease")?;
    let worker_name = l.worker_name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let trusted_proxies = l
        .trusted_proxy
        .unwrap_or_default()
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_trusted_proxy(s).map_err(|e| anyhow!("trusted-proxy: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let base_url = l
        .base_url
        .map(|u| {
            url::Url::parse(&u)
                .ok()
                .filter(|p| matches!(p.scheme(), "http" | "https"))
                .ok_or_else(|| anyhow!("base-url: {u:?} is not an http(s) URL"))
        })
        .transpose()?;
    let queue_capacity = l.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY);
    if queue_capacity == 0 {
        bail!("queue-capacity: must be at least 1");
    }
    let log_format = match l.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => bail!("log-format: {other:?} is neither text nor json"),
    };
    Ok(Config {
        listen,
        storage: StorageConfig { data_dir: l.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)), database: l.database.clone() },
        redis: l.redis.clone(),
        day_close_every,
        leader_lease,
        worker_name,
        trusted_proxies,
        base_url,
        geoip: l.geoip,
        queue_capacity,
        log_format,
        api_rate_limit: match l.api_rate_limit {
            Some(0) => bail!("api-rate-limit: must be at least 1 request per minute"),
            Some(n) => n,
            None => DEFAULT_API_RATE_LIMIT,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults() {
        let c = load(Layer::default(), None, &env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.storage.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(c.trusted_proxies.is_empty());
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("footfall.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:1\"\ndata_dir = \"/from/file\"\ntrusted_proxy = [\"10.0.0.0/8\"]\nqueue_capacity = 7\n").unwrap();
        let e = env(&[("FOOTFALL_LISTEN", "127.0.0.1:2"), ("FOOTFALL_DATA_DIR", "/from/env")]);
        let flags = Layer { listen: Some("127.0.0.1:3".into()), ..Default::default() };
        let c = load(flags, Some(&file), &e).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3");
        assert_eq!(c.storage.data_dir, PathBuf::from("/from/env"));
        assert_eq!(c.trusted_proxies, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        assert_eq!(c.queue_capacity, 7);
        // The file can also come from the environment.
        let e = env(&[("FOOTFALL_CONFIG", file.to_str().unwrap())]);
        assert_eq!(load(Layer::default(), None, &e).unwrap().listen.to_string(), "127.0.0.1:1");
    }

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best inline
    fn bad_values_are_named() {
        let cases: &[(Layer, &[(&str, &str)], &str)] = &[
            (Layer { listen: Some("nope".into()), ..Default::default() }, &[], "listen: \"nope\""),
            (Layer::default(), &[("FOOTFALL_TRUSTED_PROXY", "10.0.0.0/8, bogus")], "trusted-proxy: trusted proxy \"bogus\""),
            (Layer::default(), &[("FOOTFALL_QUEUE_CAPACITY", "many")], "FOOTFALL_QUEUE_CAPACITY"),
            (Layer { base_url: Some("ftp://x".into()), ..Default::default() }, &[], "base-url"),
            (Layer { database: Some("mysql://x".into()), ..Default::default() }, &[], "database: \"mysql://x\""),
            (Layer { redis: Some("redis://r".into()), ..Default::default() }, &[], "redis: cluster mode needs --database"),
            (Layer::default(), &[("FOOTFALL_LEADER_LEASE", "0")], "leader-lease: must be at least 1 second"),
            (Layer { log_format: Some("xml".into()), ..Default::default() }, &[], "log-format"),
        ];
        for (flags, e, want) in cases {
            let err = format!("{:#}", load(flags.clone(), None, &env(e)).unwrap_err());
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    #[test]
    fn the_example_worker_configuration_is_valid() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/footfall.toml");
        let c = load(Layer::default(), Some(&file), &env(&[])).unwrap();
        assert!(c.storage.database.is_some() && c.redis.is_some());
        assert_eq!(c.worker_name, "worker-1");
        assert_eq!(c.leader_lease, std::time::Duration::from_secs(10));
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "lisen = \"x\"\n").unwrap();
        let err = format!("{:#}", load(Layer::default(), Some(&file), &env(&[])).unwrap_err());
        assert!(err.contains("lisen"), "{err}");
    }
}
