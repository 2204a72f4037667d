//! Referrer cleaning and traffic source attribution (SPEC §3 "Source").

use url::Url;

pub const DIRECT: &str = "Direct / None";

/// Well-known referrer hosts and the names shown for them. A host matches an entry when it
/// equals the entry or ends with `.` + entry; `google.` entries match any country TLD.
const KNOWN_SOURCES: &[(&str, &str)] = &[
    ("google.", "Google"),
    ("googleusercontent.com", "Google"),
    ("bing.com", "Bing"),
    ("duckduckgo.com", "DuckDuckGo"),
    ("search.yahoo.com", "Yahoo!"),
    ("yahoo.com", "Yahoo!"),
    ("yandex.", "Yandex"),
    ("baidu.com", "Baidu"),
    ("ecosia.org", "Ecosia"),
    ("search.brave.com", "Brave"),
    ("startpage.com", "Startpage"),
    ("qwant.com", "Qwant"),
    ("naver.com", "Naver"),
    ("kagi.com", "Kagi"),
    ("facebook.com", "Facebook"),
    ("fb.me", "Facebook"),
    ("messenger.com", "Facebook"),
    ("instagram.com", "Instagram"),
    ("t.co", "Twitter"),
    ("twitter.com", "Twitter"),
    ("x.com", "Twitter"),
    ("reddit.com", "Reddit"),
    ("github.com", "GitHub"),
    ("gitlab.com", "GitLab"),
    ("linkedin.com", "LinkedIn"),
    ("lnkd.in", "LinkedIn"),
    ("news.ycombinator.com", "Hacker News"),
    ("youtube.com", "YouTube"),
    ("youtu.be", "YouTube"),
    ("pinterest.com", "Pinterest"),
    ("tiktok.com", "TikTok"),
    ("wikipedia.org", "Wikipedia"),
    ("t.me", "Telegram"),
    ("web.telegram.org", "Telegram"),
    ("whatsapp.com", "WhatsApp"),
    ("vk.com", "VKontakte"),
    ("stackoverflow.com", "Stack Overflow"),
    ("medium.com", "Medium"),
    ("producthunt.com", "Product Hunt"),
    ("chatgpt.com", "ChatGPT"),
    ("chat.openai.com", "ChatGPT"),
    ("perplexity.ai", "Perplexity"),
    ("bsky.app", "Bluesky"),
    ("mastodon.social", "Mastodon"),
    ("news.google.com", "Google News"),
];

fn known_source(host: &str) -> Option<&'static str> {
    // Longest entry first so `news.google.com` wins over `google.`.
    let mut best: Option<(&str, &str)> = None;
    for (pattern, name) in KNOWN_SOURCES {
        let hit = if let Some(stem) = pattern.strip_suffix('.') {
            host.split('.').any(|label| label == stem)
        } else {
            host == *pattern
                || (host.len() > pattern.len()
                    && host.ends_with(pattern)
                    && host.as_bytes()[host.len() - pattern.len() - 1] == b'.')
        };
        if hit && best.is_none_or(|(p, _)| pattern.len() > p.len()) {
            best = Some((pattern, name));
        }
    }
    best.map(|(_, name)| name)
}

/// The attributed referrer of an event: `(referrer, source)`. The referrer is kept as
/// host and path, without scheme, query or fragment (which may carry personal data), and
/// empty when it points at the page's own host.
pub fn attribute(referrer: Option<&str>, page_host: &str, utm_source: &str) -> (String, String) {
    let parsed = referrer.and_then(|r| Url::parse(r).ok()).filter(|u| matches!(u.scheme(), "http" | "https"));
    let (clean, ref_host) = match &parsed {
        Some(u) => match u.host_str() {
            Some(h) => {
                let host = h.trim_end_matches('.').to_ascii_lowercase();
                let host = host.strip_prefix("www.").unwrap_or(&host).to_string();
                let own = page_host.strip_prefix("www.").unwrap_or(page_host);
                if host == own {
                    (String::new(), None)
                } else {
                    let path = u.path().trim_end_matches('/');
                    (format!("{host}{path}"), Some(host))
                }
            }
            None => (String::new(), None),
        },
        None => (String::new(), None),
    };
    let source = if !utm_source.is_empty() {
        utm_source.to_string()
    } else {
        match ref_host {
            None => DIRECT.to_string(),
            Some(h) => known_source(&h).map(str::to_string).unwrap_or(h),
        }
    };
    (clean, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)] // a table of cases reads best inline
    fn sources() {
        let cases: &[(Option<&str>, &str, &str, (&str, &str))] = &[
            (None, "example.com", "", ("", DIRECT)),
            (Some("https://example.com/other"), "example.com", "", ("", DIRECT)),
            (Some("https://www.example.com/"), "example.com", "", ("", DIRECT)),
            (Some("https://www.google.com/"), "example.com", "", ("google.com", "Google")),
            (Some("https://www.google.co.uk/search?q=secret"), "example.com", "", ("google.co.uk/search", "Google")),
            (Some("https://news.google.com/x"), "example.com", "", ("news.google.com/x", "Google News")),
            (Some("https://t.co/abc"), "example.com", "", ("t.co/abc", "Twitter")),
            (Some("https://old.reddit.com/r/rust/"), "example.com", "", ("old.reddit.com/r/rust", "Reddit")),
            (Some("https://l.facebook.com/l.php?u=x"), "example.com", "", ("l.facebook.com/l.php", "Facebook")),
            (Some("https://github.com/org/repo"), "example.com", "", ("github.com/org/repo", "GitHub")),
            (Some("https://www.blog.example.org/post#x"), "example.com", "", ("blog.example.org/post", "blog.example.org")),
            (Some("https://notgoogle.com/"), "example.com", "", ("notgoogle.com", "notgoogle.com")),
            (Some("https://www.google.com/"), "example.com", "newsletter", ("google.com", "newsletter")),
            (None, "example.com", "newsletter", ("", "newsletter")),
            (Some("android-app://com.slack"), "example.com", "", ("", DIRECT)),
            (Some("not a url"), "example.com", "", ("", DIRECT)),
        ];
        for (referrer, host, utm, (want_ref, want_src)) in cases {
            let (r, s) = attribute(*referrer, host, utm);
            assert_eq!((r.as_str(), s.as_str()), (*want_ref, *want_src), "referrer {referrer:?}");
        }
    }
}
