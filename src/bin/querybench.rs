//! `footfall-querybench`: the query benchmark (SPEC §5). Generates realistic traffic over
//! 30 closed days for one site (Zipf pages, hundreds of sources, real user agents, IPs
//! from many countries), loads it through the import path, runs the day close, and times
//! a full dashboard — aggregate with the previous period, daily timeseries, top pages,
//! entry pages, sources, countries, browsers, OS, devices — unfiltered, filtered by one
//! page and by one country. It prints load time, size on disk, and median warm times.

use anyhow::{bail, Context};
use footfall::domain::{LocalDay, Site};
use footfall::query::engine;
use footfall::query::range::DateRange;
use footfall::query::{Condition, Dimension, Filter, Metric, StatsQuery, VisitProperty};
use footfall::storage::sqlite::SqliteStore;
use footfall::storage::Store;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: footfall-querybench [--events 1000000] [--days 30] [--runs 5] [--data-dir DIR | --database postgres://...] [--duckdb-python PYTHON]";

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
];

struct Options {
    events: u64,
    days: i32,
    runs: usize,
    data_dir: Option<std::path::PathBuf>,
    /// A Python with the `duckdb` package: the reference is measured with it.
    duckdb_python: Option<std::path::PathBuf>,
    /// PostgreSQL instead of SQLite (the cluster backend).
    database: Option<String>,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options { events: 1_000_000, days: 30, runs: 5, data_dir: None, duckdb_python: None, database: None };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--events" => o.events = v.parse().context("--events")?,
            "--days" => o.days = v.parse::<i32>().context("--days")?.clamp(1, 365),
            "--runs" => o.runs = v.parse::<usize>().context("--runs")?.clamp(1, 100),
            "--data-dir" => o.data_dir = Some(v.into()),
            "--duckdb-python" => o.duckdb_python = Some(v.into()),
            "--database" => o.database = Some(v.clone()),
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    Ok(o)
}

/// Writes `n` events as NDJSON: visits of 1 to 6 pageviews (and sometimes a custom event),
/// Zipf-distributed pages, a few hundred sources, spread over `days` days ending yesterday.
fn generate(path: &std::path::Path, n: u64, days: i32, today: LocalDay) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(7);
    let pages: Vec<String> = (0..3000).map(|i| match i % 4 {
        0 => format!("/blog/post-{i}"),
        1 => format!("/docs/{}/page-{i}", i % 40),
        2 => format!("/product/{i}"),
        _ => format!("/p/{i}"),
    }).collect();
    let mut zipf_cdf = Vec::with_capacity(pages.len());
    let total: f64 = (1..=pages.len()).map(|k| 1.0 / k as f64).sum();
    let mut acc = 0.0;
    for k in 1..=pages.len() {
        acc += 1.0 / k as f64 / total;
        zipf_cdf.push(acc);
    }
    let mut referrers: Vec<String> = ["", "", "", "https://www.google.com/", "https://www.bing.com/", "https://duckduckgo.com/", "https://t.co/x", "https://news.ycombinator.com/item", "https://www.reddit.com/r/x/", "https://github.com/a/b"]
        .iter().map(|s| s.to_string()).collect();
    referrers.extend((0..300).map(|i| format!("https://site{i}.example.org/link")));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut written = 0u64;
    while written < n {
        let day = LocalDay(today.0 - 1 - rng.gen_range(0..days));
        let start_s = day.0 as i64 * 86_400 + rng.gen_range(0..86_000);
        let ip = format!("{}.{}.{}.{}", rng.gen_range(1..224), rng.gen_range(0..256), rng.gen_range(0..256), rng.gen_range(1..255));
        let ua = USER_AGENTS[rng.gen_range(0..USER_AGENTS.len())];
        let referrer = &referrers[(rng.gen::<f64>().powi(3) * referrers.len() as f64) as usize];
        let utm = if rng.gen_ratio(1, 8) { "?utm_source=newsletter&utm_campaign=launch" } else { "" };
        let mut t = start_s;
        let views = rng.gen_range(1..=6u64);
        for v in 0..views {
            if written >= n { break; }
            let page = &pages[zipf_cdf.partition_point(|c| *c < rng.gen::<f64>()).min(pages.len() - 1)];
            let ts = chrono::DateTime::from_timestamp(t.min(day.0 as i64 * 86_400 + 86_399), 0).unwrap_or_default().to_rfc3339();
            let (r, u) = if v == 0 { (referrer.as_str(), utm) } else { ("", "") };
            writeln!(out, r#"{{"timestamp":"{ts}","domain":"bench.example","name":"pageview","url":"https://bench.example{page}{u}","referrer":"{r}","ip":"{ip}","user_agent":"{ua}"}}"#)?;
            written += 1;
            t += rng.gen_range(5..300);
            if rng.gen_ratio(1, 12) && written < n {
                writeln!(out, r#"{{"timestamp":"{}","domain":"bench.example","name":"Signup","url":"https://bench.example{page}","ip":"{ip}","user_agent":"{ua}","props":{{"plan":"pro"}}}}"#,
                    chrono::DateTime::from_timestamp(t.min(day.0 as i64 * 86_400 + 86_399), 0).unwrap_or_default().to_rfc3339())?;
                written += 1;
            }
        }
    }
    out.flush()?;
    Ok(())
}

fn dashboard(filter: &Filter) -> Vec<(&'static str, StatsQuery, bool)> {
    let q = |metrics: Vec<Metric>, dims: Vec<Dimension>| StatsQuery { metrics, dimensions: dims, filter: filter.clone() };
    use Metric::*;
    use VisitProperty as V;
    vec![
        ("aggregate", q(vec![Visitors, Visits, Pageviews, ViewsPerVisit, BounceRate, VisitDuration], vec![]), false),
        ("aggregate (previous period)", q(vec![Visitors, Visits, Pageviews, ViewsPerVisit, BounceRate, VisitDuration], vec![]), true),
        ("timeseries", q(vec![Visitors, Pageviews], vec![Dimension::Day]), false),
        ("top pages", q(vec![Visitors, Pageviews], vec![Dimension::Page]), false),
        ("entry pages", q(vec![Visitors], vec![Dimension::Visit(V::EntryPage)]), false),
        ("sources", q(vec![Visitors], vec![Dimension::Visit(V::Source)]), false),
        ("countries", q(vec![Visitors], vec![Dimension::Visit(V::Country)]), false),
        ("browsers", q(vec![Visitors], vec![Dimension::Visit(V::Browser)]), false),
        ("os", q(vec![Visitors], vec![Dimension::Visit(V::Os)]), false),
        ("devices", q(vec![Visitors], vec![Dimension::Visit(V::Device)]), false),
    ]
}

/// What a dashboard run needs besides its filter.
struct Bench<'a> {
    store: &'a dyn Store,
    cache: &'a engine::DayCache,
    site: &'a Site,
    current: DateRange,
    previous: DateRange,
    now: i64,
}

/// Timings of one dashboard: the median total and the median of each question (ms), and
/// the aggregate's metrics.
type Timed = (f64, Vec<(String, f64)>, Vec<f64>);

async fn time_dashboard(b: &Bench<'_>, filter: &Filter, runs: usize) -> anyhow::Result<Timed> {
    let Bench { store, cache, site, current, previous, now } = b;
    let (store, now) = (*store, *now);
    let mut totals = Vec::new();
    let mut per_query: Vec<Vec<f64>> = Vec::new();
    let mut aggregate = Vec::new();
    for run in 0..=runs {
        let started = Instant::now();
        let mut times = Vec::new();
        for (name, q, prev) in dashboard(filter) {
            let t = Instant::now();
            let a = engine::answer_with(store, cache, site, &q, if prev { previous } else { current }, now).await?;
            if name == "aggregate" {
                aggregate = a.rows.first().map(|r| r.metrics.clone()).unwrap_or_default();
            }
            times.push((name.to_string(), t.elapsed().as_secs_f64() * 1000.0));
        }
        // The first run warms caches and is not counted.
        if run > 0 {
            totals.push(started.elapsed().as_secs_f64() * 1000.0);
            per_query.push(times.iter().map(|(_, ms)| *ms).collect());
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let names: Vec<String> = dashboard(filter).into_iter().map(|(n, _, _)| n.to_string()).collect();
    let per = names.into_iter().enumerate().map(|(i, n)| (n, median(per_query.iter().map(|r| r[i]).collect()))).collect();
    Ok((median(totals), per, aggregate))
}

/// Writes the site's raw events of `[from, to)` as CSV for the DuckDB reference, one local
/// day at a time. Ids are written as signed 64-bit integers.
async fn export_csv(store: &dyn Store, site: &Site, first: LocalDay, last: LocalDay, path: &std::path::Path) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(out, "ts,visitor,visit,kind,counting,pathname,source,country,browser,os,device")?;
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let mut rows = 0u64;
    let mut day = first;
    while day <= last {
        let (from, to) = site.timezone.day_bounds(day);
        for e in store.events(site.id, from, to).await? {
            let f = &e.facts;
            let kind = match f.kind {
                footfall::domain::EventKind::Pageview => 0,
                footfall::domain::EventKind::Custom => 1,
                footfall::domain::EventKind::Engagement => 2,
            };
            writeln!(
                out,
                "{},{},{},{kind},{},{},{},{},{},{},{}",
                e.ts_ms,
                e.visitor_id.0 as i64,
                e.visit_id.0 as i64,
                footfall::domain::counts_as_event(f.kind, f.interactive) as u8,
                quote(&f.pathname),
                quote(&f.source),
                quote(&f.country),
                quote(&f.browser),
                quote(&f.os),
                quote(&f.device),
            )?;
            rows += 1;
        }
        day = day.next();
    }
    out.flush()?;
    Ok(rows)
}

#[derive(serde::Deserialize)]
struct DuckDbDashboard {
    median_ms: f64,
    per_query: std::collections::BTreeMap<String, f64>,
}

/// Dashboards are keyed "LABEL (MODE)": MODE "events" computes visits in each query,
/// "visits table" reads a table of visits built once after loading.
#[derive(serde::Deserialize)]
struct DuckDbReport {
    load_s: f64,
    visits_table_s: f64,
    aggregate: std::collections::HashMap<String, Vec<Option<f64>>>,
    dashboards: std::collections::HashMap<String, DuckDbDashboard>,
}

/// Exports the events, asks DuckDB the same dashboards, and returns its report.
async fn run_duckdb(python: &std::path::Path, store: &dyn Store, site: &Site, first: LocalDay, days: i32, runs: usize, dir: &std::path::Path) -> anyhow::Result<DuckDbReport> {
    let csv = dir.join("events.csv");
    let t = Instant::now();
    let rows = export_csv(store, site, first, LocalDay(first.0 + days - 1), &csv).await?;
    println!("  DuckDB reference: exported {rows} events as CSV in {:.1} s", t.elapsed().as_secs_f64());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/duckdb_dashboard.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(&csv)
        .args(["--first-day", &first.0.to_string(), "--days", &days.to_string(), "--runs", &runs.to_string()])
        .args(["--page", PAGE, "--country", COUNTRY])
        .output()
        .with_context(|| format!("while running {}", python.display()))?;
    std::fs::remove_file(&csv).ok();
    if !out.status.success() {
        bail!("the DuckDB reference failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let report: DuckDbReport = serde_json::from_slice(&out.stdout).context("while reading the DuckDB reference's report")?;
    println!(
        "  DuckDB reference: loaded the CSV into a native table in {:.1} s, built a visits table in {:.1} s",
        report.load_s, report.visits_table_s
    );
    Ok(report)
}

const PAGE: &str = "/blog/post-8";
const COUNTRY: &str = "US";

/// Generates the traffic, imports it, runs the day close, and reports the load figures.
async fn load(store: &dyn Store, site: &Site, dir: &std::path::Path, o: &Options, now: i64) -> anyhow::Result<()> {
    let today = site.timezone.local_day(now);
    let ndjson = dir.join("bench.ndjson");
    let t = Instant::now();
    generate(&ndjson, o.events, o.days, today)?;
    println!("query benchmark: {} events over {} days ({:.1} s to generate)", o.events, o.days, t.elapsed().as_secs_f64());

    let t = Instant::now();
    let geo = footfall::ingest::geo::GeoIp::embedded();
    let report = footfall::import::import_file(store, site, &mut std::fs::File::open(&ndjson)?, &geo, |_, _| {}).await?;
    let import_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let closed = footfall::jobs::close_days_once(store, now).await?;
    let close_s = t.elapsed().as_secs_f64();
    std::fs::remove_file(&ndjson)?;
    let size: u64 = match &o.database {
        Some(url) => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client.query_one("SELECT pg_database_size(current_database())", &[]).await?.get::<_, i64>(0) as u64
        }
        None => ["footfall.db", "footfall.db-wal"].iter().map(|f| std::fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0)).sum(),
    };
    println!(
        "  load: imported {} events in {:.1} s ({:.0} events/s, {} rejected); day close of {} days {:.1} s",
        report.imported, import_s, report.imported as f64 / import_s, report.rejected.len(), closed, close_s
    );
    println!("  on disk: {:.1} MB ({:.1} MB per million events, rollups included)", size as f64 / 1e6, size as f64 / 1e6 / (report.imported as f64 / 1e6));
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let o = parse(&args)?;
    let tmp = tempfile::tempdir()?;
    let dir = o.data_dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let store: Box<dyn Store> = match &o.database {
        Some(url) => Box::new(footfall::storage::postgres::PostgresStore::open(url).await?),
        None => Box::new(SqliteStore::open(&dir)?),
    };
    println!("query benchmark on {}", store.backend());
    let store = store.as_ref();
    let now = chrono::Utc::now().timestamp_millis();
    // A data directory loaded by an earlier run is reused as it is.
    let site = match store.site_by_domain("bench.example").await? {
        Some(site) => {
            println!("query benchmark: reusing the events already loaded in {}", dir.display());
            let closed = footfall::jobs::close_days_once(store, now).await?;
            println!("  day close of {closed} more days");
            site
        }
        None => {
            let site = footfall::admin::add_site(store, "bench.example", "UTC").await?;
            load(store, &site, &dir, &o, now).await?;
            site
        }
    };
    let today = site.timezone.local_day(now);
    let first = LocalDay(today.0 - o.days);
    let last = LocalDay(today.0 - 1);
    let current = DateRange::Dates(first.date(), last.date());
    let previous = DateRange::Dates(LocalDay(first.0 - o.days).date(), LocalDay(first.0 - 1).date());
    let cache = engine::DayCache::default();
    let bench = Bench { store, cache: &cache, site: &site, current, previous, now };
    let page = Filter::Match { dimension: Dimension::Page, condition: Condition::Is(vec![PAGE.into()]) };
    let country = Filter::Match { dimension: Dimension::Visit(VisitProperty::Country), condition: Condition::Is(vec![COUNTRY.into()]) };
    let reference = match &o.duckdb_python {
        Some(python) => Some(run_duckdb(python, store, &site, first, o.days, o.runs, &dir).await?),
        None => None,
    };
    // Targets (SPEC §5): <= 50 ms and >= 10x DuckDB unfiltered; <= 300 ms and no slower
    // than DuckDB filtered.
    for (label, filter, target, factor) in [("unfiltered", Filter::All, 50.0, 10.0), ("filtered by page", page, 300.0, 1.0), ("filtered by country", country, 300.0, 1.0)] {
        let runs = if filter == Filter::All { o.runs } else { o.runs.min(3) };
        let (total, per, aggregate) = time_dashboard(&bench, &filter, runs).await?;
        println!("  dashboard {label}: {total:.1} ms median of {runs} warm runs (target <= {target} ms)");
        println!("    {}", per.iter().map(|(n, ms)| format!("{n} {ms:.1}")).collect::<Vec<_>>().join(", "));
        if let Some(r) = &reference {
            let mut best = f64::INFINITY;
            for mode in ["events", "visits table"] {
                let Some(d) = r.dashboards.get(&format!("{label} ({mode})")) else { continue };
                best = best.min(d.median_ms);
                println!("    DuckDB, visits from the {mode}: {:.1} ms", d.median_ms);
                println!("      {}", d.per_query.iter().map(|(n, ms)| format!("{n} {ms:.1}")).collect::<Vec<_>>().join(", "));
            }
            println!("    Footfall is {:.1}x faster than DuckDB's faster form (target >= {factor}x)", best / total);
            if filter == Filter::All {
                for (mode, theirs) in &r.aggregate {
                    let agree = aggregate.len() == theirs.len()
                        && aggregate.iter().zip(theirs).all(|(a, b)| b.is_some_and(|b| (a - b).abs() <= 1e-6 * b.abs().max(1.0)));
                    println!("    aggregate: Footfall {aggregate:?}, DuckDB ({mode}) {theirs:?}: {}", if agree { "the same" } else { "DIFFERENT" });
                }
            }
        }
    }
    // Engagement metrics (and revenue) come from the day segments' engagement records.
    let engagement = StatsQuery {
        metrics: vec![Metric::Visitors, Metric::ScrollDepth, Metric::TimeOnPage],
        dimensions: vec![Dimension::Page],
        filter: Filter::All,
    };
    let t = Instant::now();
    let rows = engine::answer_with(store, &cache, &site, &engagement, &bench.current, now).await?.rows.len();
    println!("  top pages with scroll depth and time on page: {:.1} ms ({rows} pages)", t.elapsed().as_secs_f64() * 1000.0);
    Ok(())
}
