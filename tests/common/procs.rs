//! Real processes for cluster tests: Footfall workers, Redis and Caddy, each on its own
//! 127.0.0.1 port, killed with SIGKILL (`kill -9`) and restarted as a test needs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process that can be killed with SIGKILL and started again the same way.
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    pub fn new(name: &str, program: impl AsRef<Path>, args: &[String], envs: &[(&str, &str)], log_dir: &Path) -> Proc {
        Proc {
            name: name.into(),
            program: program.as_ref().to_path_buf(),
            args: args.to_vec(),
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            log: log_dir.join(format!("{name}.log")),
            child: None,
        }
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{} is missing: could not start {} ({e}); scripts/test installs it", self.name, self.program.display()));
        self.child = Some(child);
    }

    /// SIGKILL, and wait until the process is gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A Redis of the test's own, persisting every write (AOF, appendfsync always), so it can
/// be killed and restarted without losing what it acknowledged.
pub fn redis(dir: &Path, port: u16) -> Proc {
    let args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir"]
        .iter()
        .map(|s| s.to_string())
        .chain([dir.display().to_string()])
        .collect();
    Proc::new("redis-server", "redis-server", &args, &[], dir)
}

pub fn footfall_bin() -> &'static str {
    env!("CARGO_BIN_EXE_footfall")
}

/// A PostgreSQL server of the test's own (so it can be stopped and started again),
/// run as the `postgres` user from Debian's packages.
pub struct PgInstance {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

impl PgInstance {
    pub fn init(port: u16) -> PgInstance {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).max())
            .expect("PostgreSQL's server binaries are missing (/usr/lib/postgresql/*/bin): scripts/test installs postgresql");
        let dir = std::env::temp_dir().join(format!("footfall-pg-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let me = PgInstance { port, dir, bin };
        me.as_postgres(&["chown", "-R", "postgres", &me.dir.display().to_string()], true);
        let data = me.dir.join("data").display().to_string();
        me.as_postgres(&[&me.bin.join("initdb").display().to_string(), "-D", &data, "-A", "trust", "-U", "postgres"], false);
        me
    }

    fn as_postgres(&self, cmd: &[&str], as_root: bool) {
        let mut c = if as_root {
            Command::new(cmd[0])
        } else {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", cmd[0]]);
            c
        };
        let out = c.args(&cmd[1..]).output().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn start(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        let data = self.dir.join("data").display().to_string();
        let log = self.dir.join("log").display().to_string();
        self.as_postgres(&[&self.bin.join("pg_ctl").display().to_string(), "-D", &data, "-o", &opts, "-l", &log, "-w", "start"], false);
    }

    /// Stops at once, as a crash would (`-m immediate`: no shutdown checkpoint).
    pub fn crash(&self) {
        let data = self.dir.join("data").display().to_string();
        self.as_postgres(&[&self.bin.join("pg_ctl").display().to_string(), "-D", &data, "-m", "immediate", "-w", "stop"], false);
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        let data = self.dir.join("data").display().to_string();
        let _ = Command::new("runuser").args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl")).args(["-D", &data, "-m", "immediate", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
