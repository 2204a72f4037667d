//! The compact binary form of an event's facts, stored in one column beside the few
//! columns storage must index or update (site, time, visitor, visit, kind). One blob binds
//! and stores several times faster than thirty text columns, and the query engine reads
//! events in Rust, not in SQL, so nothing is lost. Shared by every backend.
//!
//! Layout (version 1): version byte, flags byte, then the text fields in `TEXT_FIELDS`
//! order as varint length + UTF-8 bytes, then props (varint count, key/value pairs), then
//! the optional revenue, scroll depth, engaged time and region name announced by the flags.

use crate::domain::{EventFacts, EventKind, Revenue, Utm};

const VERSION: u8 = 1;
const INTERACTIVE: u8 = 1;
const REVENUE: u8 = 2;
const SCROLL: u8 = 4;
const ENGAGED: u8 = 8;
/// A region name follows (added after version 1's first layout; older blobs lack it).
const REGION_NAME: u8 = 16;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn text_fields(f: &EventFacts) -> [&str; 18] {
    [
        &f.name, &f.hostname, &f.pathname, &f.referrer, &f.source, &f.utm.source, &f.utm.medium, &f.utm.campaign,
        &f.utm.content, &f.utm.term, &f.browser, &f.browser_version, &f.os, &f.os_version, &f.device, &f.country,
        &f.region, &f.city,
    ]
}

/// Encodes everything but the kind (a column of its own).
pub fn encode(f: &EventFacts, out: &mut Vec<u8>) {
    out.clear();
    out.push(VERSION);
    let mut flags = 0;
    if f.interactive {
        flags |= INTERACTIVE;
    }
    if f.revenue.is_some() {
        flags |= REVENUE;
    }
    if f.scroll_depth.is_some() {
        flags |= SCROLL;
    }
    if f.engaged_ms.is_some() {
        flags |= ENGAGED;
    }
    if !f.region_name.is_empty() {
        flags |= REGION_NAME;
    }
    out.push(flags);
    for s in text_fields(f) {
        put_str(out, s);
    }
    put_varint(out, f.props.len() as u64);
    for (k, v) in &f.props {
        put_str(out, k);
        put_str(out, v);
    }
    if let Some(r) = &f.revenue {
        put_str(out, &r.amount);
        put_str(out, &r.currency);
    }
    if let Some(sd) = f.scroll_depth {
        out.push(sd);
    }
    if let Some(e) = f.engaged_ms {
        put_varint(out, e as u64);
    }
    if !f.region_name.is_empty() {
        put_str(out, &f.region_name);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("event blob ends early")?;
        self.pos += 1;
        Ok(b)
    }
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("event blob has an overlong varint".into())
    }
    fn string(&mut self) -> Result<String, String> {
        let len = self.varint()? as usize;
        let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len()).ok_or("event blob ends inside a string")?;
        let s = std::str::from_utf8(&self.buf[self.pos..end]).map_err(|_| "event blob holds invalid UTF-8")?;
        self.pos = end;
        Ok(s.to_string())
    }
}

pub fn decode(kind: EventKind, buf: &[u8]) -> Result<EventFacts, String> {
    let mut r = Reader { buf, pos: 0 };
    let version = r.byte()?;
    if version != VERSION {
        return Err(format!("event blob version {version} is unknown to this build"));
    }
    let flags = r.byte()?;
    let mut t: Vec<String> = Vec::with_capacity(18);
    for _ in 0..18 {
        t.push(r.string()?);
    }
    let n = r.varint()? as usize;
    let mut props = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        props.push((r.string()?, r.string()?));
    }
    let revenue = if flags & REVENUE != 0 { Some(Revenue { amount: r.string()?, currency: r.string()? }) } else { None };
    let scroll_depth = if flags & SCROLL != 0 { Some(r.byte()?) } else { None };
    let engaged_ms = if flags & ENGAGED != 0 { Some(r.varint()? as u32) } else { None };
    let region_name = if flags & REGION_NAME != 0 { r.string()? } else { String::new() };
    let mut t = t.into_iter();
    let mut next = || t.next().unwrap_or_default();
    Ok(EventFacts {
        kind,
        name: next(),
        hostname: next(),
        pathname: next(),
        referrer: next(),
        source: next(),
        utm: Utm { source: next(), medium: next(), campaign: next(), content: next(), term: next() },
        browser: next(),
        browser_version: next(),
        os: next(),
        os_version: next(),
        device: next(),
        country: next(),
        region: next(),
        region_name,
        city: next(),
        props,
        revenue,
        scroll_depth,
        engaged_ms,
        interactive: flags & INTERACTIVE != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn facts() -> impl Strategy<Value = EventFacts> {
        let s = || ".{0,12}";
        (
            prop_oneof![Just(EventKind::Pageview), Just(EventKind::Custom), Just(EventKind::Engagement)],
            proptest::collection::vec(s(), 19),
            proptest::collection::vec((s(), s()), 0..4),
            proptest::option::of((s(), "[A-Z]{3}")),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
        )
            .prop_map(|(kind, t, props, revenue, scroll_depth, engaged_ms, interactive)| EventFacts {
                kind,
                name: t[0].clone(),
                hostname: t[1].clone(),
                pathname: t[2].clone(),
                referrer: t[3].clone(),
                source: t[4].clone(),
                utm: Utm { source: t[5].clone(), medium: t[6].clone(), campaign: t[7].clone(), content: t[8].clone(), term: t[9].clone() },
                browser: t[10].clone(),
                browser_version: t[11].clone(),
                os: t[12].clone(),
                os_version: t[13].clone(),
                device: t[14].clone(),
                country: t[15].clone(),
                region: t[16].clone(),
                region_name: t[18].clone(),
                city: t[17].clone(),
                props,
                revenue: revenue.map(|(amount, currency)| Revenue { amount, currency }),
                scroll_depth,
                engaged_ms,
                interactive,
            })
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(f in facts()) {
            let mut buf = Vec::new();
            encode(&f, &mut buf);
            prop_assert_eq!(decode(f.kind, &buf).unwrap(), f);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(EventKind::Pageview, &bytes);
        }
    }
}
