use footfall::domain::{EventKind, SiteId};
use footfall::ingest::{self, geo::GeoIp, payload, user_agent::UserAgentCache};
use footfall::identity::{visitor_id, DailySalt};
use footfall::visits::LiveVisits;
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let geo = GeoIp::embedded();
    let uas = UserAgentCache::new(1024);
    let visits = LiveVisits::default();
    let salt = DailySalt::random();
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    let bodies: Vec<String> = (0..1000).map(|i| format!(r#"{{"n":"pageview","u":"https://bench.example/p/{i}?utm_source=x","d":"bench.example","r":"https://www.google.com/"}}"#)).collect();
    let n = 300_000u32;
    let t = Instant::now();
    let mut acc = 0u64;
    for i in 0..n {
        let req = payload::parse_event_body(bodies[(i % 1000) as usize].as_bytes()).unwrap();
        let info = uas.get(ua);
        let ip = std::net::IpAddr::from([(i % 200 + 1) as u8, (i >> 8) as u8, i as u8, 7]);
        let facts = ingest::enrich(&req, &info, geo.lookup(ip));
        let v = visitor_id(&salt, SiteId(1), ip, ua);
        let visit = visits.touch(SiteId(1), v, EventKind::Pageview, i as i64);
        acc = acc.wrapping_add(visit.unwrap().0 ^ facts.pathname.len() as u64);
    }
    let per = t.elapsed().as_secs_f64() / n as f64 * 1e6;
    println!("{per:.2} us per event (parse, ua, geo, enrich, identity, visit) [{acc}]");
    let t = Instant::now();
    for i in 0..n { let _ = payload::parse_event_body(bodies[(i % 1000) as usize].as_bytes()).unwrap(); }
    println!("  parse: {:.2} us", t.elapsed().as_secs_f64() / n as f64 * 1e6);
    let req = payload::parse_event_body(bodies[0].as_bytes()).unwrap();
    let info = uas.get(ua);
    let t = Instant::now();
    for i in 0..n { let ip = std::net::IpAddr::from([(i % 200 + 1) as u8, (i >> 8) as u8, i as u8, 7]); let _ = geo.lookup(ip); }
    println!("  geo: {:.2} us", t.elapsed().as_secs_f64() / n as f64 * 1e6);
    let t = Instant::now();
    for _ in 0..n { let _ = ingest::enrich(&req, &info, Default::default()); }
    println!("  enrich: {:.2} us", t.elapsed().as_secs_f64() / n as f64 * 1e6);
}
