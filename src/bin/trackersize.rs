//! `footfall-trackersize`: the tracker benchmark. Prints the size of every single-feature
//! variant of the tracker, the default and the full one, raw and gzipped (level 9), and
//! beside them the scripts of Plausible's npm package `@plausible-analytics/tracker`
//! (the paths given as arguments), measured the same way.

use footfall::tracker::{build, selection_of, FEATURES};
use std::io::Write;

fn gzipped(bytes: &[u8]) -> usize {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(bytes).expect("gzip into memory");
    z.finish().expect("gzip into memory").len()
}

fn main() -> anyhow::Result<()> {
    let mut names = vec!["script.js".to_string()];
    names.extend(FEATURES.iter().map(|f| format!("script.{f}.js")));
    names.push("script.full.js".into());
    println!("{:<52} {:>8} {:>8}", "tracker", "bytes", "gzipped");
    let (mut default_gz, mut full_gz) = (0, 0);
    for name in &names {
        let v = build(&selection_of(name).map_err(anyhow::Error::msg)?);
        let gz = gzipped(v.body.as_bytes());
        match name.as_str() {
            "script.js" => default_gz = gz,
            "script.full.js" => full_gz = gz,
            _ => {}
        }
        println!("{:<52} {:>8} {:>8}", format!("footfall {name}"), v.body.len(), gz);
    }
    for path in std::env::args().skip(1) {
        let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("while reading {path}: {e}"))?;
        let gz = gzipped(&bytes);
        let name = std::path::Path::new(&path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(path.clone());
        println!("{:<52} {:>8} {:>8}", format!("reference: @plausible-analytics/tracker {name}"), bytes.len(), gz);
        println!("  gzipped, footfall's default script is {:.0}% of it, the full one (every feature) {:.0}%", 100.0 * default_gz as f64 / gz as f64, 100.0 * full_gz as f64 / gz as f64);
    }
    println!("target: the default script <= 1024 bytes gzipped: {}", if default_gz <= 1024 { "met" } else { "NOT MET" });
    Ok(())
}
