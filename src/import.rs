//! `footfall import --format ndjson`: historical events through the same enrichment,
//! identity and visit rules as live ones, each with its own timestamp (SPEC §2).
//!
//! Lines may come in any order, so the import works per (site, local day) partition:
//! a first pass validates every line and notes its day; a second pass reads each day's
//! lines, merges them with the events the day already holds, splits visits over the
//! whole day again, and writes the day in one transaction.
//!
//! Safe to interrupt: each day commits atomically with the digests of its lines (a
//! line's digest plus its occurrence number among identical lines). A rerun of the same
//! file skips what is already stored and imports the rest, so nothing is half-imported
//! or duplicated.

use crate::domain::{Event, EventKind, LocalDay, Site};
use crate::identity;
use crate::ingest::geo::GeoIp;
use crate::ingest::user_agent::UserAgentCache;
use crate::ingest::{self, payload};
use crate::storage::{EncodedEvent, ImportBatch, ImportKey, Store, StoreError};
use crate::visits::{assign_visits, Timed};
use anyhow::{anyhow, Context};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::IpAddr;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub imported: u64,
    pub already_imported: u64,
    /// (line number, reason), in line order.
    pub rejected: Vec<(u64, String)>,
}

/// One validated line, ready to become an event.
struct Parsed {
    ts_ms: i64,
    ip: IpAddr,
    user_agent: String,
    req: payload::EventRequest,
}

fn parse_line(line: &str, site: &Site, user_agents: &UserAgentCache) -> Result<Parsed, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON ({e})"))?;
    let obj = value.as_object().ok_or("not a JSON object")?;
    let ts = match obj.get("timestamp") {
        Some(serde_json::Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|_| format!("timestamp: {s:?} is not an RFC 3339 time such as 2026-11-02T10:11:12Z"))?
            .timestamp_millis(),
        Some(_) => return Err("timestamp: must be a string".into()),
        None => return Err("timestamp: is required".into()),
    };
    let ip: IpAddr = match obj.get("ip") {
        Some(serde_json::Value::String(s)) => s.trim().parse().map_err(|_| format!("ip: {s:?} is not an IP address"))?,
        Some(_) => return Err("ip: must be a string".into()),
        None => return Err("ip: is required".into()),
    };
    let user_agent = match obj.get("user_agent") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err("user_agent: must be a string".into()),
        None => return Err("user_agent: is required".into()),
    };
    let req = payload::parse_event_object(obj).map_err(|e| e.0)?;
    if !req.domains.iter().any(|d| d == site.domain.as_str()) {
        return Err(format!("domain: the line is for {}, not for --site {}", req.domains.join(","), site.domain));
    }
    if user_agents.get(&user_agent).is_bot {
        return Err("user_agent: a bot or an empty user agent (dropped as live traffic would be)".into());
    }
    Ok(Parsed { ts_ms: ts, ip, user_agent, req })
}

struct LineRef {
    line_no: u64,
    offset: u64,
    len: u32,
}

/// Imports NDJSON from a seekable file. `on_progress` is called with the number of lines
/// handled so far in each pass (for a progress bar).
pub async fn import_file(
    store: &dyn Store,
    site: &Site,
    file: &mut std::fs::File,
    geo: &GeoIp,
    mut on_progress: impl FnMut(&'static str, u64),
) -> anyhow::Result<ImportReport> {
    let user_agents = UserAgentCache::new(16_384);
    let mut report = ImportReport::default();

    // Pass 1: validate and index lines by local day.
    let mut days: BTreeMap<LocalDay, Vec<LineRef>> = BTreeMap::new();
    {
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::with_capacity(1 << 20, &mut *file);
        let mut buf = Vec::new();
        let (mut offset, mut line_no) = (0u64, 0u64);
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).context("while reading the import file")?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let start = offset;
            offset += n as u64;
            let text = match std::str::from_utf8(&buf) {
                Ok(t) => t.trim(),
                Err(_) => {
                    report.rejected.push((line_no, "not valid UTF-8".into()));
                    continue;
                }
            };
            if text.is_empty() {
                continue;
            }
            match parse_line(text, site, &user_agents) {
                Ok(p) => days.entry(site.timezone.local_day(p.ts_ms)).or_default().push(LineRef {
                    line_no,
                    offset: start,
                    len: n as u32,
                }),
                Err(why) => report.rejected.push((line_no, why)),
            }
            if line_no % 10_000 == 0 {
                on_progress("validating", line_no);
            }
        }
        on_progress("validating", line_no);
    }

    // Pass 2: one partition at a time.
    let mut done = 0u64;
    for (day, refs) in days {
        let mut lines = Vec::with_capacity(refs.len());
        let mut buf = Vec::new();
        for r in &refs {
            file.seek(SeekFrom::Start(r.offset))?;
            buf.resize(r.len as usize, 0);
            file.read_exact(&mut buf)?;
            lines.push((r.line_no, String::from_utf8_lossy(&buf).trim().to_string()));
        }
        import_day(store, site, day, lines, geo, &user_agents, &mut report).await?;
        done += refs.len() as u64;
        on_progress("importing", done);
    }
    report.rejected.sort();
    Ok(report)
}

async fn import_day(
    store: &dyn Store,
    site: &Site,
    day: LocalDay,
    lines: Vec<(u64, String)>,
    geo: &GeoIp,
    user_agents: &UserAgentCache,
    report: &mut ImportReport,
) -> anyhow::Result<()> {
    let salt = store
        .salt(site.id, day, identity::DailySalt::random(), identity::salt_expiry_ms(&site.timezone, day))
        .await
        .context("while fetching the day's salt")?;
    let mut occurrences: HashMap<[u8; 32], u32> = HashMap::new();
    let mut fresh: Vec<(u64, ImportKey, Event)> = Vec::with_capacity(lines.len());
    for (line_no, text) in &lines {
        let p = parse_line(text, site, user_agents).map_err(|e| anyhow!("line {line_no} changed while importing: {e}"))?;
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        let n = occurrences.entry(digest).or_insert(0);
        *n += 1;
        let key: ImportKey = Sha256::new().chain_update(digest).chain_update(n.to_le_bytes()).finalize().into();
        let ua = user_agents.get(&p.user_agent);
        let facts = ingest::enrich(&p.req, &ua, geo.lookup(p.ip));
        let visitor = identity::visitor_id(&salt, site.id, p.ip, &p.user_agent);
        fresh.push((
            *line_no,
            key,
            Event { site_id: site.id, ts_ms: p.ts_ms, day, visitor_id: visitor, visit_id: identity::visit_id(visitor, 0), facts },
        ));
    }
    report.already_imported += drop_already_imported(store, site, &mut fresh).await?;
    if fresh.is_empty() {
        return Ok(());
    }

    let (from_ms, to_ms) = site.timezone.day_bounds(day);
    for attempt in 0.. {
        let existing = store.partition(site.id, from_ms, to_ms).await?;
        let timed: Vec<Timed> = existing
            .iter()
            .map(|e| Timed { visitor: e.visitor, ts_ms: e.ts_ms, kind: e.kind })
            .chain(fresh.iter().map(|(_, _, e)| Timed { visitor: e.visitor_id, ts_ms: e.ts_ms, kind: e.facts.kind }))
            .collect();
        let visits = assign_visits(&timed);
        let (old_visits, new_visits) = visits.split_at(existing.len());
        let visit_updates = existing
            .iter()
            .zip(old_visits)
            .filter_map(|(e, v)| v.filter(|v| *v != e.visit).map(|v| (e.id, v)))
            .collect();
        let mut events = Vec::with_capacity(fresh.len());
        let mut keys = Vec::with_capacity(fresh.len());
        let mut orphans = Vec::new();
        for ((line_no, key, event), visit) in fresh.iter().zip(new_visits) {
            match visit {
                Some(v) => {
                    let mut e = EncodedEvent::new(event);
                    e.visit_id = *v;
                    events.push(e);
                    keys.push(*key);
                }
                None => {
                    debug_assert_eq!(event.facts.kind, EventKind::Engagement);
                    orphans.push((*line_no, "an engagement event with no visit to extend (dropped as live traffic would be)".to_string()));
                }
            }
        }
        let imported = events.len() as u64;
        let batch = ImportBatch { site: site.id, day, from_ms, to_ms, expected_existing: existing.len(), events, keys, visit_updates };
        match store.apply_import(batch).await {
            Ok(()) => {
                report.imported += imported;
                report.rejected.extend(orphans);
                return Ok(());
            }
            Err(StoreError::Conflict) if attempt < 20 => {
                // Live events (or another import) changed the day meanwhile: re-read it.
                tracing::debug!(%day, attempt, "partition changed during import; retrying");
                // Lines another import stored in the meantime are duplicates now.
                report.already_imported += drop_already_imported(store, site, &mut fresh).await?;
                if fresh.is_empty() {
                    return Ok(());
                }
            }
            Err(e) => return Err(e).with_context(|| format!("while importing {day}")),
        }
    }
    unreachable!("the retry loop returns")
}

/// Removes the lines whose digests are already stored; returns how many.
async fn drop_already_imported(store: &dyn Store, site: &Site, fresh: &mut Vec<(u64, ImportKey, Event)>) -> anyhow::Result<u64> {
    let known = store.known_import_keys(site.id, fresh.iter().map(|(_, k, _)| *k).collect()).await?;
    let before = fresh.len();
    fresh.retain(|(_, k, _)| !known.contains(k));
    Ok((before - fresh.len()) as u64)
}

/// Copies standard input to a temporary file, since the import reads its input twice.
pub fn spool_stdin() -> anyhow::Result<std::fs::File> {
    let mut tmp = tempfile_in_env()?;
    std::io::copy(&mut std::io::stdin().lock(), &mut tmp).context("while reading standard input")?;
    Ok(tmp)
}

fn tempfile_in_env() -> anyhow::Result<std::fs::File> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("footfall-import-{}-{}", std::process::id(), rand::random::<u64>()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)
        .with_context(|| format!("while creating a temporary file in {}", dir.display()))?;
    // Unlinked at once: the open handle keeps it until the import ends.
    let _ = std::fs::remove_file(&path);
    Ok(file)
}
