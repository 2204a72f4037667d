//! Turning a request into event facts: payload parsing and enrichment. Everything here is
//! pure and synchronous; identity and storage happen elsewhere. Live events and imported
//! events both go through `enrich`, so both are described identically.

pub mod client_ip;
pub mod geo;
pub mod payload;
pub mod referrer;
pub mod user_agent;

use crate::domain::{EventFacts, EventKind, Utm};
use payload::EventRequest;
use user_agent::UserAgentInfo;

/// Builds the stored description of an event from a validated request, the parsed user
/// agent and the client's location.
pub fn enrich(req: &EventRequest, ua: &UserAgentInfo, location: geo::Location) -> EventFacts {
    let url = &req.url;
    let hostname = url.host_str().map(payload::strip_www).unwrap_or_else(|| "(none)".to_string());
    let pathname = pathname(url, req.hash_mode);
    let mut utm = Utm::default();
    let mut source_param = String::new();
    let mut ref_param = String::new();
    for (k, v) in url.query_pairs() {
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        let slot = match k.as_ref() {
            "utm_source" => &mut utm.source,
            "utm_medium" => &mut utm.medium,
            "utm_campaign" => &mut utm.campaign,
            "utm_content" => &mut utm.content,
            "utm_term" => &mut utm.term,
            "source" => &mut source_param,
            "ref" => &mut ref_param,
            _ => continue,
        };
        if slot.is_empty() {
            *slot = truncate(v, 2000);
        }
    }
    // `?ref=` and `?source=` are common stand-ins for utm_source (Plausible reads them too).
    let tagged_source = [&utm.source, &source_param, &ref_param]
        .into_iter()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_default();
    let (referrer, source) = referrer::attribute(req.referrer.as_deref(), &hostname, &tagged_source);
    let kind = EventKind::from_name(&req.name);
    EventFacts {
        kind,
        name: req.name.clone(),
        interactive: req.interactive,
        hostname,
        pathname,
        referrer,
        source,
        utm,
        browser: ua.browser.clone(),
        browser_version: ua.browser_version.clone(),
        os: ua.os.clone(),
        os_version: ua.os_version.clone(),
        device: ua.device.clone(),
        country: location.country,
        region: location.region,
        region_name: location.region_name,
        city: location.city,
        props: req.props.clone(),
        revenue: req.revenue.clone(),
        scroll_depth: if kind == EventKind::Engagement { req.scroll_depth } else { None },
        engaged_ms: if kind == EventKind::Engagement { req.engaged_ms } else { None },
    }
}

/// The URL path without the query string, percent-decoded; with hash mode the fragment is
/// appended as `#fragment` (single-page apps that route by hash).
pub fn pathname(url: &url::Url, hash_mode: bool) -> String {
    let raw = url.path();
    let decoded = percent_decode(raw);
    let mut p = if decoded.is_empty() { "/".to_string() } else { decoded };
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    if hash_mode {
        if let Some(f) = url.fragment().filter(|f| !f.is_empty()) {
            p.push('#');
            p.push_str(&percent_decode(f));
        }
    }
    truncate(p.trim_end(), 2000)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn truncate(s: &str, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s.to_string();
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(body: &str) -> EventFacts {
        let req = payload::parse_event_body(body.as_bytes()).unwrap();
        enrich(&req, &UserAgentInfo::default(), geo::Location::default())
    }

    #[test]
    fn pathnames() {
        let cases = [
            ("https://a.com", false, "/"),
            ("https://a.com/x/y?q=1#frag", false, "/x/y"),
            ("https://a.com/x/y?q=1#/route/2", true, "/x/y#/route/2"),
            ("https://a.com/#", true, "/"),
            ("https://a.com/caf%C3%A9", false, "/café"),
            ("https://a.com/a+b", false, "/a+b"),
            ("https://a.com/a&b=c", false, "/a&b=c"),
            ("app://localhost/login", false, "/login"),
        ];
        for (u, hash, want) in cases {
            assert_eq!(pathname(&url::Url::parse(u).unwrap(), hash), want, "{u}");
        }
    }

    #[test]
    fn utm_and_source() {
        let f = facts(r#"{"n":"pageview","u":"https://www.a.com/p?utm_source=news&utm_medium=email&utm_campaign=nov&utm_content=top&utm_term=shoes","r":"https://www.google.com/"}"#);
        assert_eq!(f.hostname, "a.com");
        assert_eq!(f.source, "news");
        assert_eq!(f.referrer, "google.com");
        assert_eq!((f.utm.medium.as_str(), f.utm.campaign.as_str(), f.utm.content.as_str(), f.utm.term.as_str()), ("email", "nov", "top", "shoes"));
        let f = facts(r#"{"n":"pageview","u":"https://a.com/p?ref=producthunt"}"#);
        assert_eq!(f.source, "producthunt");
        assert_eq!(f.utm.source, "");
        let f = facts(r#"{"n":"pageview","u":"https://a.com/p","r":"https://a.com/other"}"#);
        assert_eq!(f.source, referrer::DIRECT);
    }

    #[test]
    fn engagement_fields_only_on_engagement_events() {
        let f = facts(r#"{"n":"pageview","u":"https://a.com/","sd":50,"e":10}"#);
        assert_eq!((f.kind, f.scroll_depth, f.engaged_ms), (EventKind::Pageview, None, None));
        let f = facts(r#"{"n":"engagement","u":"https://a.com/","sd":50,"e":10}"#);
        assert_eq!((f.kind, f.scroll_depth, f.engaged_ms), (EventKind::Engagement, Some(50), Some(10)));
    }
}
