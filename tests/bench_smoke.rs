//! The ingest benchmark runs end to end (tiny and short), so it cannot rot unnoticed.

use std::process::Command;

#[test]
fn the_ingest_benchmark_prints_its_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_footfall-loadgen"))
        .args(["--connections", "8", "--duration", "1", "--warmup", "0", "--rounds", "1"])
        .output()
        .expect("run footfall-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in ["no-op axum (reference)", "footfall (durable)", "footfall / no-op:", "group commit:", "events stored:"] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
    let stored: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("events stored: "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("a stored count");
    assert!(stored > 0, "the benchmark stored nothing:\n{stdout}");
}

#[test]
fn the_query_benchmark_prints_its_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_footfall-querybench"))
        .args(["--events", "3000", "--days", "3", "--runs", "1"])
        .output()
        .expect("run footfall-querybench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for want in ["imported 3000 events", "day close of 3 days", "dashboard unfiltered:", "dashboard filtered by page:", "dashboard filtered by country:", "MB per million events"] {
        assert!(stdout.contains(want), "{want:?} missing from:\n{stdout}");
    }
}
