//! The tracker script's variants, built from `tracker/script.js` (embedded in the binary).
//!
//! `script.js` is the default; `script.FEATURE.FEATURE.js` adds features (in any order);
//! `script.full.js` has them all, each then switched on by its `data-FEATURE` attribute.
//! Building a variant keeps the `//#if` blocks of its features, drops comment lines and
//! indentation, and writes its feature list where the source says `FEATURES`.

use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

const SOURCE: &str = include_str!("../tracker/script.js");

/// Every optional feature, by its name in file names and `data-` attributes.
pub const FEATURES: &[&str] = &["hash", "outbound-links", "file-downloads", "tagged-events", "404", "engagement", "manual", "exclusions"];

/// One built variant.
#[derive(Debug, Clone)]
pub struct Variant {
    pub body: String,
    /// A strong validator of `body`.
    pub etag: String,
}

/// What a variant holds: the features whose code it has, and those always on (the others
/// are switched on by their `data-` attribute).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selection {
    pub code: BTreeSet<&'static str>,
    pub active: BTreeSet<&'static str>,
}

/// The variant a file name asks for (`script.js`, `script.hash.engagement.js`,
/// `script.full.js`), or an error naming what is wrong with it.
pub fn selection_of(file: &str) -> Result<Selection, String> {
    let middle = file
        .strip_prefix("script")
        .and_then(|f| f.strip_suffix(".js"))
        .ok_or_else(|| format!("no tracker named {file:?}; the tracker is script.js or script.FEATURE....js"))?;
    let mut out = Selection::default();
    let mut parts = 0;
    for part in middle.split('.').filter(|p| !p.is_empty()) {
        parts += 1;
        if part == "full" {
            out.code.extend(FEATURES.iter().copied());
            continue;
        }
        match FEATURES.iter().find(|f| **f == part) {
            Some(f) => {
                out.code.insert(*f);
                out.active.insert(*f);
            }
            None => return Err(format!("unknown tracker feature {part:?} in {file:?}; features: full, {}", FEATURES.join(", "))),
        }
    }
    if !middle.is_empty() && parts == 0 {
        return Err(format!("no tracker named {file:?}"));
    }
    Ok(out)
}

/// Builds a variant.
pub fn build(selection: &Selection) -> Variant {
    let features = &selection.code;
    let mut kept: Vec<&str> = Vec::new();
    // Whether each enclosing `//#if` block is kept.
    let mut stack: Vec<bool> = Vec::new();
    for line in SOURCE.lines() {
        let line = line.trim();
        if let Some(names) = line.strip_prefix("//#if ") {
            let on = names.split_whitespace().any(|n| features.contains(n));
            stack.push(on);
            continue;
        }
        if line == "//#endif" {
            stack.pop();
            continue;
        }
        if line.is_empty() || line.starts_with("//") || !stack.iter().all(|on| *on) {
            continue;
        }
        kept.push(line);
    }
    let list: Vec<&str> = selection.active.iter().copied().collect();
    let body = kept.join("\n").replace("FEATURES", &format!("\" {} \"", list.join(" ")));
    let digest = Sha256::digest(body.as_bytes());
    let etag = format!("\"{}\"", digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
    Variant { body, etag }
}

/// Variants built on first request and kept (there are at most 2^8 of them).
#[derive(Default)]
pub struct Variants {
    built: Mutex<HashMap<Selection, std::sync::Arc<Variant>>>,
}

impl Variants {
    pub fn get(&self, file: &str) -> Result<std::sync::Arc<Variant>, String> {
        let selection = selection_of(file)?;
        let mut built = self.built.lock().expect("tracker cache poisoned");
        Ok(built.entry(selection.clone()).or_insert_with(|| std::sync::Arc::new(build(&selection))).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_select_features() {
        assert_eq!(selection_of("script.js").unwrap(), Selection::default());
        let s = selection_of("script.hash.404.js").unwrap();
        assert_eq!((s.code.clone(), s.active), (BTreeSet::from(["hash", "404"]), s.code));
        let full = selection_of("script.full.js").unwrap();
        assert_eq!((full.code.len(), full.active.len()), (FEATURES.len(), 0), "full: all code, switched on by attributes");
        assert!(selection_of("script.tagged-events.bogus.js").unwrap_err().contains("unknown tracker feature \"bogus\""));
        assert!(selection_of("other.js").is_err());
        assert!(selection_of("script..js").is_err());
    }

    #[test]
    fn variants_keep_only_their_blocks() {
        let only = |f: &'static str| build(&Selection { code: BTreeSet::from([f]), active: BTreeSet::from([f]) });
        let default = build(&Selection::default());
        assert!(!default.body.contains("//") || default.body.contains("://"), "comments are dropped");
        assert!(!default.body.contains("hashchange") && !default.body.contains("engagement"));
        assert!(default.body.contains("\"  \""), "an empty feature list: {}", &default.body[..200]);
        let hash = only("hash");
        assert!(hash.body.contains("hashchange") && hash.body.contains("\" hash \""));
        assert_ne!(hash.etag, default.etag);
        // The manual block wraps the automatic pageviews: without the feature the wrapper
        // goes and the pageview code stays.
        assert!(default.body.contains("page();") && !default.body.contains("on(\"manual\")"));
        assert!(only("manual").body.contains("if(!on(\"manual\")){"));
        let full = build(&selection_of("script.full.js").unwrap());
        assert!(full.body.contains("hashchange") && full.body.contains("\"  \""), "all code, nothing on by itself");
    }
}
