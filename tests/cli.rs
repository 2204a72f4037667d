//! The `footfall` binary's admin commands and import, run as a user would run them.

mod common;

use common::*;
use footfall::domain::{EventKind, LocalDay};
use footfall::storage::sqlite::SqliteStore;
use footfall::storage::Store;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn footfall(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_footfall"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("FOOTFALL_LISTEN")
        .env_remove("FOOTFALL_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run footfall");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn site_user_and_key_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    let out = footfall(dir, &["site", "add", "Example.com", "--timezone", "Europe/Berlin"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(r#"data-domain="example.com""#));
    let out = footfall(dir, &["site", "add", "example.com"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("site example.com already exists"));
    let out = footfall(dir, &["site", "add", "other.com", "--timezone", "Mars/Base"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown timezone \"Mars/Base\""));
    let out = footfall(dir, &["site", "add", "bad domain.com"], None);
    assert!(text(&out.stderr).contains("domain contains the character ' '"));
    let out = footfall(dir, &["site", "list"], None);
    assert_eq!(text(&out.stdout), "example.com\tEurope/Berlin\n");

    let out = footfall(dir, &["key", "create", "--name", "ci", "--site", "example.com"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = text(&out.stdout);
    assert!(key.starts_with("ff_") && key.trim().len() == 43 && key.lines().count() == 1, "the key alone: {key:?}");
    let out = footfall(dir, &["key", "create", "--name", "all sites"], None);
    assert!(out.status.success());
    let out = footfall(dir, &["key", "create", "--name", "x", "--site", "nope.com"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no site nope.com"));

    let out = footfall(dir, &["user", "add", "--email", "ann@example.com", "--password-stdin", "--admin"], Some("correct horse battery\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = footfall(dir, &["user", "add", "--email", "ann@example.com", "--password-stdin"], Some("another password"));
    assert!(text(&out.stderr).contains("user ann@example.com already exists"));
    let out = footfall(dir, &["user", "add", "--email", "bob@example.com", "--password-stdin"], Some("short"));
    assert!(text(&out.stderr).contains("password: must be at least 8 characters"));
    let out = footfall(dir, &["user", "add", "--email", "not-an-email", "--password-stdin"], Some("long enough pw"));
    assert!(text(&out.stderr).contains("is not an email address"));

    let out = footfall(dir, &["goal", "add", "--site", "example.com", "--page", "/checkout/*/done"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Added goal \"Visit /checkout/*/done\" to example.com.\n");
    let out = footfall(dir, &["goal", "add", "--site", "example.com", "--event", "Signup", "--display-name", "Signups"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (args, error) in [
        (&["goal", "add", "--site", "example.com", "--event", "Other", "--display-name", "Signups"][..], "goal: example.com already has a goal named \"Signups\""),
        (&["goal", "add", "--site", "example.com", "--page", "checkout"][..], "goal: the goal's page path must start with '/'"),
        (&["goal", "add", "--site", "nope.com", "--event", "X"][..], "site: no site nope.com"),
        (&["goal", "add", "--site", "example.com", "--page", "/a", "--event", "X"][..], "cannot be used with"),
        (&["goal", "add", "--site", "example.com"][..], "--page <PATH>"),
    ] {
        let out = footfall(dir, args, None);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out.stderr).contains(error), "{args:?}: {}", text(&out.stderr));
    }
    let out = footfall(dir, &["goal", "list", "--site", "example.com"], None);
    assert_eq!(text(&out.stdout), "Visit /checkout/*/done\tpage\t/checkout/*/done\nSignups\tevent\tSignup\n");
}

#[test]
fn bad_configuration_is_reported_before_anything_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_footfall"));
        cmd.args(args).arg("--data-dir").arg(tmp.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&["serve"], &[("FOOTFALL_LISTEN", "not-an-address")]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("listen: \"not-an-address\""), "{}", text(&out.stderr));
    let out = run(&["serve", "--trusted-proxy", "10.0.0.0/99"], &[]);
    assert!(text(&out.stderr).contains("trusted-proxy"), "{}", text(&out.stderr));
    let out = run(&["serve", "--database", "mysql://localhost/footfall"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("database: \"mysql://localhost/footfall\" is not a postgres:// URL"), "{}", text(&out.stderr));
    let out = run(&["serve", "--redis", "redis://127.0.0.1:6379"], &[]);
    assert!(text(&out.stderr).contains("redis: cluster mode needs --database"), "{}", text(&out.stderr));
    // A database nobody answers for: a clear error, not a hang.
    let out = run(&["site", "list", "--database", "postgres://footfall@127.0.0.1:1/none"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("PostgreSQL"), "{}", text(&out.stderr));
    let out = run(&["serve", "--geoip", "/nonexistent.mmdb", "--listen", "127.0.0.1:0"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("/nonexistent.mmdb"), "{}", text(&out.stderr));
    let out = run(&["serve", "--no-such-flag"], &[]);
    assert!(!out.status.success());
    let cfg = tmp.path().join("footfall.toml");
    std::fs::write(&cfg, "listen = 5\n").unwrap();
    let out = run(&["serve", "--config", cfg.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("footfall.toml"), "{}", text(&out.stderr));
}

fn line(ts: &str, path: &str, ip: &str, ua: &str) -> String {
    serde_json::json!({
        "timestamp": ts, "domain": "example.com", "name": "pageview",
        "url": format!("https://example.com{path}"), "referrer": "https://news.ycombinator.com/item",
        "ip": ip, "user_agent": ua
    })
    .to_string()
}

fn all_events(dir: &Path, domain: &str) -> Vec<footfall::domain::Event> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(dir).unwrap();
        let site = store.site_by_domain(domain).await.unwrap().unwrap();
        store.events(site.id, 0, i64::MAX).await.unwrap()
    })
}

#[test]
fn import_applies_live_rules_in_any_order_and_reruns_safely() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(footfall(dir, &["site", "add", "example.com", "--timezone", "Europe/Berlin"], None).status.success());

    let mut lines = vec![
        // Visitor A: two visits on 2026-11-02 Berlin time; /a3 comes 34 minutes after the
        // engagement event at 10:21 that extended the first visit.
        line("2026-11-02T10:55:00Z", "/a3", "81.2.69.142", FIREFOX),
        line("2026-11-02T10:00:00Z", "/a1", "81.2.69.142", FIREFOX),
        line("2026-11-02T10:00:00Z", "/a1", "81.2.69.142", FIREFOX), // the same pageview twice: both count
        line("2026-11-02T10:20:00Z", "/a2", "81.2.69.142", FIREFOX),
        // Visitor B.
        line("2026-11-02T10:05:00Z", "/b1", "8.8.8.8", CHROME_WIN),
        // 23:30Z is already 2026-11-03 in Berlin: a new day, so a new visitor.
        line("2026-11-02T23:30:00Z", "/late", "81.2.69.142", FIREFOX),
        r#"{"timestamp":"2026-11-02T10:21:00Z","domain":"example.com","name":"engagement","url":"https://example.com/a2","ip":"81.2.69.142","user_agent":"UA","sd":50}"#.replace("\"UA\"", &format!("{:?}", FIREFOX)),
    ];
    // Rejects, each with its reason.
    lines.push("{not json".into());
    lines.push(r#"{"domain":"example.com","name":"pageview","url":"https://example.com/","ip":"1.2.3.4","user_agent":"x"}"#.into());
    lines.push(line("2026-11-02T10:00:00Z", "/x", "1.2.3.4", "Googlebot/2.1").replace("example.com\"", "other.com\""));
    lines.push(line("2026-11-02T10:00:00Z", "/x", "1.2.3.4", "Mozilla/5.0 (compatible; Googlebot/2.1)"));
    lines.push(r#"{"timestamp":"2026-11-02T18:00:00Z","domain":"example.com","name":"engagement","url":"https://example.com/","ip":"9.9.9.9","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}"#.into());
    lines.push(line("yesterday", "/x", "1.2.3.4", FIREFOX));
    let file = dir.join("events.ndjson");
    std::fs::write(&file, lines.join("\n") + "\n\n").unwrap();

    let out = footfall(dir, &["import", "--site", "example.com", "--format", "ndjson", file.to_str().unwrap()], None);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "rejected lines make the exit status 1: {stdout}");
    assert!(stdout.contains("Imported 7 events into example.com (0 already imported, 6 rejected)."), "{stdout}");
    for want in [
        "line 8: not valid JSON",
        "line 9: timestamp: is required",
        "line 10: domain: the line is for other.com, not for --site example.com",
        "line 11: user_agent: a bot",
        "line 12: an engagement event with no visit to extend",
        "line 13: timestamp: \"yesterday\" is not an RFC 3339 time",
    ] {
        assert!(stdout.contains(want), "{want:?} missing from {stdout}");
    }

    let events = all_events(dir, "example.com");
    assert_eq!(events.len(), 7);
    let by_path = |p: &str| events.iter().filter(|e| e.facts.pathname == p).collect::<Vec<_>>();
    let (a1, a2, a3, b1, late) = (by_path("/a1"), by_path("/a2")[0], by_path("/a3")[0], by_path("/b1")[0], by_path("/late")[0]);
    assert_eq!(a1.len(), 2);
    assert_eq!(a1[0].visit_id, a2.visit_id);
    assert_ne!(a2.visit_id, a3.visit_id, "34 minutes after the last event: a new visit");
    assert_eq!(a2.visitor_id, a3.visitor_id);
    assert_ne!(a1[0].visitor_id, b1.visitor_id);
    assert_ne!(late.visitor_id, a1[0].visitor_id, "a new local day: a new visitor");
    assert_eq!(late.day.to_string(), "2026-11-03");
    assert_eq!(a1[0].day.to_string(), "2026-11-02");
    assert_eq!(a1[0].facts.source, "Hacker News");
    assert_eq!(a1[0].facts.country, "GB");
    assert_eq!(a1[0].ts_ms, chrono::DateTime::parse_from_rfc3339("2026-11-02T10:00:00Z").unwrap().timestamp_millis());
    let engagement = events.iter().find(|e| e.facts.kind == EventKind::Engagement).unwrap();
    assert_eq!((engagement.visit_id, engagement.facts.scroll_depth), (a2.visit_id, Some(50)));

    // A rerun stores nothing twice.
    let out = footfall(dir, &["import", "--site", "example.com", "--format", "ndjson", file.to_str().unwrap()], None);
    assert!(text(&out.stdout).contains("Imported 0 events into example.com (7 already imported, 6 rejected)."), "{}", text(&out.stdout));
    assert_eq!(all_events(dir, "example.com").len(), 7);
}

#[test]
fn a_later_import_that_fills_a_gap_joins_the_visits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(footfall(dir, &["site", "add", "example.com"], None).status.success());
    let first = [line("2026-11-02T10:00:00Z", "/1", "81.2.69.142", FIREFOX), line("2026-11-02T10:50:00Z", "/3", "81.2.69.142", FIREFOX)];
    let out = footfall(dir, &["import", "--site", "example.com", "--format", "ndjson", "-"], Some(&first.join("\n")));
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let events = all_events(dir, "example.com");
    assert_ne!(events[0].visit_id, events[1].visit_id, "50 minutes apart: two visits");

    let second = line("2026-11-02T10:25:00Z", "/2", "81.2.69.142", FIREFOX);
    let out = footfall(dir, &["import", "--site", "example.com", "--format", "ndjson", "-"], Some(&second));
    assert!(text(&out.stdout).contains("Imported 1 events"), "{}", text(&out.stdout));
    let events = all_events(dir, "example.com");
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e.visit_id == events[0].visit_id), "no gap above 30 minutes remains: one visit");
    assert_eq!(events[0].day, LocalDay::from_date(chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap()));
}

#[test]
fn import_needs_a_known_site() {
    let tmp = tempfile::tempdir().unwrap();
    let out = footfall(tmp.path(), &["import", "--site", "nope.com", "--format", "ndjson", "-"], Some(""));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no site nope.com"));
    let out = footfall(tmp.path(), &["import", "--site", "nope.com", "--format", "csv", "-"], Some(""));
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("csv"));
}
