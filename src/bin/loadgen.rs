//! `footfall-loadgen`: the ingest benchmark (SPEC §5).
//!
//! Starts `footfall serve` (embedded storage, durable acks) and a no-op axum server that
//! parses the same JSON and answers 202, each as its own process, and drives both with the
//! same realistic traffic over N keep-alive connections: Zipf-distributed pages, a mix of
//! real browser user agents, referrers and UTM tags, many client IPs sent through a
//! trusted-proxy header. Rounds alternate between the two servers; the medians are
//! printed side by side, with the ratio.

use anyhow::{anyhow, bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str = "usage: footfall-loadgen [--connections 256] [--duration 10] [--warmup 2] [--rounds 3]
       footfall-loadgen noop-server --listen 127.0.0.1:0
       footfall-loadgen target ADDR [--connections 256] [--duration 10] [--warmup 2]   (a running server or load balancer)";

struct Options {
    connections: usize,
    duration: Duration,
    warmup: Duration,
    rounds: usize,
}

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options { connections: 256, duration: Duration::from_secs(10), warmup: Duration::from_secs(2), rounds: 3 };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
        let n: u64 = value.parse().map_err(|_| anyhow!("{flag}: {value:?} is not a whole number"))?;
        match flag.as_str() {
            "--connections" => o.connections = n.clamp(1, 4096) as usize,
            "--duration" => o.duration = Duration::from_secs(n.clamp(1, 600)),
            "--warmup" => o.warmup = Duration::from_secs(n.min(60)),
            "--rounds" => o.rounds = n.clamp(1, 20) as usize,
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("noop-server") {
        return noop_server(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("target") {
        let addr: SocketAddr = args.get(1).and_then(|a| a.parse().ok()).ok_or_else(|| anyhow!("target needs an address like 127.0.0.1:8080\n{USAGE}"))?;
        let opts = parse_options(&args[2..])?;
        return tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
            let requests = Arc::new(build_requests(200_000, 11));
            let mut r = run_load(addr, requests, opts.connections, opts.warmup, opts.duration).await;
            let f = figures(&mut r);
            println!("{addr}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors ({} connections, {} s)", f.rps, f.p50_ms, f.p99_ms, f.errors, opts.connections, opts.duration.as_secs());
            Ok(())
        });
    }
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let opts = parse_options(&args)?;
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(bench(opts))
}

/// The reference: an axum POST handler that parses the JSON body and answers 202.
fn noop_server(args: &[String]) -> anyhow::Result<()> {
    let listen = args.iter().skip_while(|a| *a != "--listen").nth(1).cloned().unwrap_or_else(|| "127.0.0.1:0".into());
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async move {
        use axum::routing::post;
        async fn handler(body: axum::body::Bytes) -> (axum::http::StatusCode, &'static str) {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(_) => (axum::http::StatusCode::ACCEPTED, "{}"),
                Err(_) => (axum::http::StatusCode::BAD_REQUEST, "{\"error\":\"body\"}"),
            }
        }
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        eprintln!("noop listening addr={}", listener.local_addr()?);
        axum::serve(listener, axum::Router::new().route("/api/event", post(handler))).await?;
        Ok(())
    })
}

fn sibling(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!("{} not found next to footfall-loadgen; build both with `cargo build --release`", path.display());
    }
    Ok(path)
}

/// Spawns a server and reads the `addr=` it logs when it is listening.
fn spawn_server(mut cmd: Command) -> anyhow::Result<(Child, SocketAddr)> {
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().context("while starting a server")?;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().ok_or_else(|| anyhow!("the server exited before listening"))??;
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap_or_default().parse()?;
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok((child, addr))
}

fn rss_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
];

const REFERRERS: &[&str] = &[
    "", "", "", "https://www.google.com/", "https://www.google.de/", "https://www.bing.com/", "https://duckduckgo.com/",
    "https://t.co/abc", "https://news.ycombinator.com/item?id=1", "https://www.reddit.com/r/rust/", "https://github.com/org/repo",
    "https://www.linkedin.com/feed/", "https://blog.example.org/post", "https://l.facebook.com/l.php",
];

const UTM: &[&str] = &["", "", "", "", "?utm_source=newsletter&utm_medium=email&utm_campaign=nov", "?utm_source=twitter&utm_campaign=launch", "?ref=producthunt"];

/// Pre-built raw HTTP requests, so generating traffic costs the load generator nothing.
fn build_requests(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let pages = 2000usize;
    // Zipf (s = 1) over pages by inverse CDF.
    let weights: Vec<f64> = (1..=pages).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(pages);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    (0..n)
        .map(|_| {
            let u: f64 = rng.gen();
            let page = cdf.partition_point(|c| *c < u);
            let path = match page % 5 {
                0 => format!("/blog/post-{page}"),
                1 => format!("/docs/section-{}/page-{page}", page % 17),
                2 => format!("/product/{page}"),
                3 => format!("/p/{page}"),
                _ => format!("/pricing/{page}"),
            };
            let utm = UTM[rng.gen_range(0..UTM.len())];
            let referrer = REFERRERS[rng.gen_range(0..REFERRERS.len())];
            let ua = USER_AGENTS[rng.gen_range(0..USER_AGENTS.len())];
            let ip = format!("{}.{}.{}.{}", rng.gen_range(1..224), rng.gen_range(0..256), rng.gen_range(0..256), rng.gen_range(1..255));
            let name = if rng.gen_ratio(1, 10) { "Signup" } else { "pageview" };
            let body = format!(r#"{{"n":"{name}","u":"https://bench.example{path}{utm}","d":"bench.example","r":"{referrer}"}}"#);
            format!(
                "POST /api/event HTTP/1.1\r\nHost: bench.example\r\nUser-Agent: {ua}\r\nX-Forwarded-For: {ip}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect()
}

struct RunResult {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

/// Reads one HTTP/1.1 response; returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let status: u16 = head.get(9..12).ok_or_else(|| anyhow!("short status line"))?.parse()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok()).flatten()
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn run_load(addr: SocketAddr, requests: Arc<Vec<Vec<u8>>>, connections: usize, warmup: Duration, duration: Duration) -> RunResult {
    let measuring = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (requests, measuring, done) = (requests.clone(), measuring.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut buf = Vec::with_capacity(1024);
            let mut i = c * 7919;
            'outer: while !done.load(Ordering::Relaxed) {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                while !done.load(Ordering::Relaxed) {
                    let req = &requests[i % requests.len()];
                    i += 1;
                    let t = Instant::now();
                    if stream.write_all(req).await.is_err() {
                        errors += 1;
                        continue 'outer;
                    }
                    match read_response(&mut stream, &mut buf).await {
                        Ok(status) => {
                            if measuring.load(Ordering::Relaxed) {
                                if status == 202 {
                                    ok += 1;
                                    lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                                } else {
                                    errors += 1;
                                }
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            continue 'outer;
                        }
                    }
                }
            }
            (ok, errors, lat)
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(duration).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = start.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut result = RunResult { requests: 0, errors: 0, elapsed, latencies_us: Vec::new() };
    for t in tasks {
        if let Ok((ok, errors, lat)) = t.await {
            result.requests += ok;
            result.errors += errors;
            result.latencies_us.extend(lat);
        }
    }
    result
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn figures(r: &mut RunResult) -> Figures {
    r.latencies_us.sort_unstable();
    Figures {
        rps: r.requests as f64 / r.elapsed.as_secs_f64(),
        p50_ms: percentile(&r.latencies_us, 0.50),
        p99_ms: percentile(&r.latencies_us, 0.99),
        errors: r.errors,
    }
}

async fn bench(o: Options) -> anyhow::Result<()> {
    let footfall = sibling("footfall")?;
    let me = std::env::current_exe()?;
    let data = tempfile::tempdir()?;
    let status = Command::new(&footfall)
        .args(["site", "add", "bench.example", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("footfall site add failed");
    }
    let mut ff_cmd = Command::new(&footfall);
    ff_cmd.args(["serve", "--listen", "127.0.0.1:0", "--trusted-proxy", "127.0.0.1", "--data-dir"]).arg(data.path()).env("FOOTFALL_LOG", "warn,footfall::startup=info");
    let (mut ff, ff_addr) = spawn_server(ff_cmd)?;
    let mut noop_cmd = Command::new(&me);
    noop_cmd.args(["noop-server", "--listen", "127.0.0.1:0"]);
    let (mut noop, noop_addr) = spawn_server(noop_cmd)?;
    let idle_rss = rss_kb(ff.id(), "VmRSS:");

    let requests = Arc::new(build_requests(50_000, 42));
    println!(
        "ingest benchmark: {} connections, {} s warm-up + {} s measured per round, {} rounds, {} cores",
        o.connections,
        o.warmup.as_secs(),
        o.duration.as_secs(),
        o.rounds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let (mut ff_runs, mut noop_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=o.rounds {
        let mut r = run_load(noop_addr, requests.clone(), o.connections, o.warmup, o.duration).await;
        let f = figures(&mut r);
        println!("  round {round} no-op axum: {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}", f.rps, f.p50_ms, f.p99_ms, f.errors);
        noop_runs.push(f);
        let mut r = run_load(ff_addr, requests.clone(), o.connections, o.warmup, o.duration).await;
        let f = figures(&mut r);
        println!("  round {round} footfall:   {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}", f.rps, f.p50_ms, f.p99_ms, f.errors);
        let ratio = f.rps / noop_runs.last().map(|n: &Figures| n.rps).unwrap_or(f64::NAN);
        println!("  round {round} footfall / no-op: {:.1}%", 100.0 * ratio);
        ratios.push(ratio);
        ff_runs.push(f);
    }
    let load_rss = rss_kb(ff.id(), "VmHWM:");
    let noop_rss = rss_kb(noop.id(), "VmHWM:");

    // Every acknowledged event must be stored; count them through the metrics endpoint.
    let metrics = http_get(ff_addr, "/metrics").await?;
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let ingested = metric("footfall_events_ingested_total") as u64;
    let batches = metric("footfall_batches_committed_total");
    let commit_mean_ms = 1000.0 * metric("footfall_commit_seconds_sum") / metric("footfall_commit_seconds_count").max(1.0);
    let _ = ff.kill();
    let _ = noop.kill();
    let _ = ff.wait();
    let _ = noop.wait();
    let db_size = std::fs::metadata(data.path().join("footfall.db")).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(data.path().join("footfall.db-wal")).map(|m| m.len()).unwrap_or(0);

    let med = |runs: &Vec<Figures>, f: fn(&Figures) -> f64| median(runs.iter().map(f).collect());
    let (ff_rps, noop_rps) = (med(&ff_runs, |f| f.rps), med(&noop_runs, |f| f.rps));
    println!();
    println!("median of {} rounds          req/s     p50 ms   p99 ms   peak RSS", o.rounds);
    println!(
        "  no-op axum (reference) {:>9.0}  {:>8.2} {:>8.2}   {:>5.1} MB",
        noop_rps,
        med(&noop_runs, |f| f.p50_ms),
        med(&noop_runs, |f| f.p99_ms),
        noop_rss as f64 / 1024.0
    );
    println!(
        "  footfall (durable)     {:>9.0}  {:>8.2} {:>8.2}   {:>5.1} MB (idle {:.1} MB)",
        ff_rps,
        med(&ff_runs, |f| f.p50_ms),
        med(&ff_runs, |f| f.p99_ms),
        load_rss as f64 / 1024.0,
        idle_rss as f64 / 1024.0
    );
    println!(
        "  footfall / no-op: {:.1}% of the reference's requests/s (median of per-round ratios; ratio of medians {:.1}%); target >= 50%, p99 <= 20 ms",
        100.0 * median(ratios),
        100.0 * ff_rps / noop_rps
    );
    println!(
        "  group commit: {batches} batches, {:.1} events per batch, {commit_mean_ms:.2} ms per commit",
        ingested as f64 / batches.max(1.0)
    );
    println!(
        "  events stored: {ingested} ({:.0} bytes per event on disk including indexes and WAL)",
        if ingested > 0 { db_size as f64 / ingested as f64 } else { 0.0 }
    );
    Ok(())
}

async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
