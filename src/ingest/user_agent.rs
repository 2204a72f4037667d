//! User agent → browser, OS, device, and whether it is a bot. Parsing uses the `woothee`
//! crate, whose data ships inside it; results are cached because real traffic repeats a
//! few thousand user agents millions of times.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserAgentInfo {
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: String,
    pub is_bot: bool,
}

/// Substrings (lower case) that mark automated clients woothee does not know as crawlers.
const BOT_MARKERS: &[&str] = &[
    "bot", "crawl", "spider", "slurp", "headless", "lighthouse", "pagespeed", "phantomjs",
    "puppeteer", "playwright", "selenium", "webdriver", "curl/", "wget/", "httpie", "python-requests",
    "python-urllib", "aiohttp", "go-http-client", "java/", "okhttp", "axios/", "node-fetch",
    "undici", "libwww", "httpclient", "scrapy", "facebookexternalhit", "embedly", "preview",
    "monitor", "uptime", "pingdom", "feedfetcher", "rss", "validator", "scanner", "check_http",
    "ahrefs", "semrush", "mj12", "dataprovider", "petalsearch", "bytespider", "gptbot",
    "chatgpt-user", "claude", "perplexity", "ccbot", "cloudflare", "vercel", "statuscake",
];

pub fn parse(ua: &str) -> UserAgentInfo {
    let trimmed = ua.trim();
    if trimmed.is_empty() {
        return UserAgentInfo { is_bot: true, ..Default::default() };
    }
    let lower = trimmed.to_ascii_lowercase();
    let marker_bot = BOT_MARKERS.iter().any(|m| lower.contains(m));
    let parsed = woothee::parser::Parser::new().parse(trimmed);
    let Some(r) = parsed else {
        return UserAgentInfo { is_bot: marker_bot, ..Default::default() };
    };
    if marker_bot || r.category == "crawler" {
        // Bots are dropped, so describing them further would be wasted work.
        return UserAgentInfo { is_bot: true, ..Default::default() };
    }

    let browser = match (r.name, lower.contains(" edg/") || lower.contains("edga/") || lower.contains("edgios/")) {
        (_, true) => "Microsoft Edge",
        ("Edge", _) => "Microsoft Edge",
        ("Internet Explorer", _) => "Internet Explorer",
        ("Opera", _) => "Opera",
        ("Chrome" | "SamsungBrowser", _) if lower.contains("samsungbrowser/") => "Samsung Internet",
        ("Chrome", _) if lower.contains("yabrowser/") => "Yandex Browser",
        ("Chrome", _) => "Chrome",
        ("Firefox", _) => "Firefox",
        ("Safari", _) if lower.contains("crios/") => "Chrome",
        ("Safari", _) if lower.contains("fxios/") => "Firefox",
        ("Safari", _) => "Safari",
        ("UNKNOWN", _) => "",
        (other, _) => other,
    }
    .to_string();
    let browser_version = if browser == "Microsoft Edge" && r.name != "Edge" {
        version_after(&lower, &["edg/", "edga/", "edgios/"])
    } else if browser == "Chrome" && r.name == "Safari" {
        version_after(&lower, &["crios/"])
    } else if browser == "Firefox" && r.name == "Safari" {
        version_after(&lower, &["fxios/"])
    } else if browser == "Samsung Internet" {
        version_after(&lower, &["samsungbrowser/"])
    } else {
        major_minor(r.version)
    };

    let (os, os_version) = match r.os {
        "iPhone" | "iPod" => ("iOS", ios_version(&lower)),
        "iPad" => ("iPadOS", ios_version(&lower)),
        "Mac OSX" => ("macOS", major_minor(&r.os_version.replace('_', "."))),
        "Android" => ("Android", major_minor(&r.os_version)),
        "ChromeOS" => ("Chrome OS", String::new()),
        "Linux" => ("GNU/Linux", String::new()),
        os if os.starts_with("Windows") => {
            let v = os.trim_start_matches("Windows").trim();
            let v = match v {
                "" | "UNKNOWN Ver" => windows_version(&r.os_version),
                v => v.to_string(),
            };
            ("Windows", v)
        }
        "UNKNOWN" => ("", String::new()),
        other => (other, String::new()),
    };

    let device = if r.os == "iPad" || (r.os == "Android" && !lower.contains("mobile")) || lower.contains("tablet") {
        "Tablet"
    } else {
        match r.category {
            "smartphone" | "mobilephone" => "Mobile",
            "pc" => "Desktop",
            "appliance" => "Desktop",
            _ => "",
        }
    };

    UserAgentInfo {
        browser,
        browser_version,
        os: os.to_string(),
        os_version: if os_version == "UNKNOWN" { String::new() } else { os_version },
        device: device.to_string(),
        is_bot: false,
    }
}

fn major_minor(v: &str) -> String {
    if v == "UNKNOWN" || v.is_empty() {
        return String::new();
    }
    let mut parts = v.split(['.', '_']).filter(|p| !p.is_empty());
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => format!("{a}.{b}"),
        (Some(a), None) => a.to_string(),
        _ => String::new(),
    }
}

fn version_after(lower: &str, markers: &[&str]) -> String {
    for m in markers {
        if let Some(i) = lower.find(m) {
            let rest = &lower[i + m.len()..];
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            return major_minor(&rest[..end]);
        }
    }
    String::new()
}

fn ios_version(lower: &str) -> String {
    // "cpu iphone os 17_4 like mac os x" / "cpu os 17_4 like mac os x"
    for m in ["iphone os ", "cpu os "] {
        if let Some(i) = lower.find(m) {
            let rest = &lower[i + m.len()..];
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '_')).unwrap_or(rest.len());
            return major_minor(&rest[..end]);
        }
    }
    String::new()
}

fn windows_version(nt: &str) -> String {
    match nt.trim_start_matches("NT ") {
        "10.0" => "10",
        "6.3" => "8.1",
        "6.2" => "8",
        "6.1" => "7",
        _ => "",
    }
    .to_string()
}

/// A bounded, sharded cache of parsed user agents. When a shard fills up it is cleared:
/// simpler than LRU and, with a few thousand distinct agents in real traffic, rarely hit.
pub struct UserAgentCache {
    shards: Vec<Mutex<HashMap<Box<str>, Arc<UserAgentInfo>>>>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl UserAgentCache {
    pub fn new(capacity: usize) -> UserAgentCache {
        let n = 16;
        UserAgentCache {
            shards: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: (capacity / n).max(1),
            hasher: Default::default(),
        }
    }

    pub fn get(&self, ua: &str) -> Arc<UserAgentInfo> {
        
        
        let shard = &self.shards[(self.hasher.hash_one(ua) as usize) % self.shards.len()];
        if let Some(hit) = shard.lock().expect("ua cache poisoned").get(ua) {
            return hit.clone();
        }
        let info = Arc::new(parse(ua));
        let mut map = shard.lock().expect("ua cache poisoned");
        if map.len() >= self.per_shard {
            map.clear();
        }
        map.insert(ua.into(), info.clone());
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(ua: &str) -> String {
        let i = parse(ua);
        format!("{}|{}|{}|{}|{}|bot={}", i.browser, i.browser_version, i.os, i.os_version, i.device, i.is_bot)
    }

    #[test]
    fn real_user_agents() {
        let cases = [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
             "Chrome|131.0|Windows|10|Desktop|bot=false"),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86",
             "Microsoft Edge|131.0|Windows|10|Desktop|bot=false"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
             "Safari|17.4|macOS|10.15|Desktop|bot=false"),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
             "Firefox|133.0|GNU/Linux||Desktop|bot=false"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
             "Safari|17.4|iOS|17.4|Mobile|bot=false"),
            ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
             "Safari|16.6|iPadOS|16.6|Tablet|bot=false"),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
             "Chrome|131.0|Android|14|Mobile|bot=false"),
            ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
             "Chrome|120.0|Android|13|Tablet|bot=false"),
            ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
             "Samsung Internet|23.0|Android|14|Mobile|bot=false"),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
             "Chrome|131.0|iOS|17.4|Mobile|bot=false"),
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "|||||bot=true"),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
             "|||||bot=true"),
            ("curl/8.5.0", "|||||bot=true"),
            ("python-requests/2.31", "|||||bot=true"),
            ("", "|||||bot=true"),
        ];
        for (ua, want) in cases {
            assert_eq!(show(ua), want, "{ua}");
        }
    }

    #[test]
    fn cache_returns_the_same_answer() {
        let cache = UserAgentCache::new(32);
        for i in 0..200 {
            let ua = format!("Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Gecko/20100101 Firefox/{i}.0");
            assert_eq!(*cache.get(&ua), parse(&ua));
            assert_eq!(*cache.get(&ua), parse(&ua));
        }
    }
}
