//! Parsing of Plausible-compatible `POST /api/event` bodies into a typed request.
//! Every rejection names the offending field, because the people reading these errors
//! are integrators debugging their calls.

use crate::domain::Revenue;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use url::Url;

pub const MAX_NAME_CHARS: usize = 120;
pub const MAX_URL_BYTES: usize = 2000;
pub const MAX_REFERRER_BYTES: usize = 2000;
pub const MAX_PROPS: usize = 30;
pub const MAX_PROP_KEY_BYTES: usize = 300;
pub const MAX_PROP_VALUE_BYTES: usize = 2000;

#[derive(Debug, Clone, PartialEq)]
pub struct EventRequest {
    pub name: String,
    pub url: Url,
    /// Domains named by the request (`d`), or the URL's host when none was given.
    pub domains: Vec<String>,
    pub referrer: Option<String>,
    pub props: Vec<(String, String)>,
    pub revenue: Option<Revenue>,
    pub interactive: bool,
    pub hash_mode: bool,
    pub scroll_depth: Option<u8>,
    pub engaged_ms: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadError(pub String);

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, PayloadError> {
    Err(PayloadError(msg.into()))
}

/// The body's fields, each left as raw JSON until it is read. Parsing only what is used,
/// without building a tree of values, keeps ingestion cheap.
#[derive(Deserialize, Default)]
struct RawFields<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    n: Option<&'a RawValue>,
    #[serde(borrow)]
    url: Option<&'a RawValue>,
    #[serde(borrow)]
    u: Option<&'a RawValue>,
    #[serde(borrow)]
    domain: Option<&'a RawValue>,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
    #[serde(borrow)]
    referrer: Option<&'a RawValue>,
    #[serde(borrow)]
    r: Option<&'a RawValue>,
    #[serde(borrow)]
    props: Option<&'a RawValue>,
    #[serde(borrow)]
    p: Option<&'a RawValue>,
    #[serde(borrow)]
    meta: Option<&'a RawValue>,
    #[serde(borrow)]
    m: Option<&'a RawValue>,
    #[serde(borrow)]
    revenue: Option<&'a RawValue>,
    #[serde(borrow, rename = "$")]
    dollar: Option<&'a RawValue>,
    #[serde(borrow)]
    interactive: Option<&'a RawValue>,
    #[serde(borrow)]
    i: Option<&'a RawValue>,
    #[serde(borrow, rename = "hashMode")]
    hash_mode: Option<&'a RawValue>,
    #[serde(borrow)]
    h: Option<&'a RawValue>,
    #[serde(borrow)]
    sd: Option<&'a RawValue>,
    #[serde(borrow)]
    e: Option<&'a RawValue>,
}

/// The first present, non-null value among a field's names, parsed as a JSON value.
/// Strings stay borrowed unless they contain escapes.
fn pick(names: &[Option<&RawValue>]) -> Result<Option<Value>, PayloadError> {
    for raw in names.iter().flatten() {
        let text = raw.get();
        if text == "null" {
            continue;
        }
        return serde_json::from_str(text).map(Some).map_err(|e| PayloadError(format!("body: {e}")));
    }
    Ok(None)
}

/// Parses a request body. JSON and `text/plain` bodies carry the same JSON text (the
/// tracker sends text/plain to avoid a CORS preflight), so the content type is not needed.
pub fn parse_event_body(body: &[u8]) -> Result<EventRequest, PayloadError> {
    let text = std::str::from_utf8(body).map_err(|_| PayloadError("body: not valid JSON (invalid UTF-8)".into()))?;
    if !text.trim_start().starts_with('{') {
        // Tell "not JSON" apart from "JSON, but not an object".
        return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => err("body: must be a JSON object"),
            Err(e) => err(format!("body: not valid JSON ({e})")),
        };
    }
    let raw: RawFields = serde_json::from_str(text).map_err(|e| PayloadError(format!("body: not valid JSON ({e})")))?;
    let fields = Fields {
        name: pick(&[raw.name, raw.n])?,
        url: pick(&[raw.url, raw.u])?,
        domain: pick(&[raw.domain, raw.d])?,
        referrer: pick(&[raw.referrer, raw.r])?,
        props: pick(&[raw.props, raw.p, raw.meta, raw.m])?,
        revenue: pick(&[raw.revenue, raw.dollar])?,
        interactive: pick(&[raw.interactive, raw.i])?,
        hash_mode: pick(&[raw.hash_mode, raw.h])?,
        sd: pick(&[raw.sd])?,
        e: pick(&[raw.e])?,
    };
    parse_fields(fields)
}

/// The event fields after choosing between long and short names.
struct Fields {
    name: Option<Value>,
    url: Option<Value>,
    domain: Option<Value>,
    referrer: Option<Value>,
    props: Option<Value>,
    revenue: Option<Value>,
    interactive: Option<Value>,
    hash_mode: Option<Value>,
    sd: Option<Value>,
    e: Option<Value>,
}

/// The first present (non-null) value among a field's long and short names.
fn field(map: &Map<String, Value>, names: &[&str]) -> Option<Value> {
    names.iter().find_map(|n| map.get(*n).filter(|v| !v.is_null()).cloned())
}

/// Parses an already-decoded JSON object (the import path reads lines this way).
pub fn parse_event_object(map: &Map<String, Value>) -> Result<EventRequest, PayloadError> {
    parse_fields(Fields {
        name: field(map, &["name", "n"]),
        url: field(map, &["url", "u"]),
        domain: field(map, &["domain", "d"]),
        referrer: field(map, &["referrer", "r"]),
        props: field(map, &["props", "p", "meta", "m"]),
        revenue: field(map, &["revenue", "$"]),
        interactive: field(map, &["interactive", "i"]),
        hash_mode: field(map, &["hashMode", "h"]),
        sd: field(map, &["sd"]),
        e: field(map, &["e"]),
    })
}

fn parse_fields(f: Fields) -> Result<EventRequest, PayloadError> {
    let name = match f.name {
        None => return err("name: is required"),
        Some(Value::String(s)) if s.trim().is_empty() => return err("name: must not be empty"),
        Some(Value::String(s)) if s.chars().count() > MAX_NAME_CHARS => {
            return err(format!("name: longer than {MAX_NAME_CHARS} characters"))
        }
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => return err("name: must be a string"),
    };

    let url = match f.url {
        None => return err("url: is required"),
        Some(Value::String(s)) if s.len() > MAX_URL_BYTES => {
            return err(format!("url: longer than {MAX_URL_BYTES} bytes"))
        }
        Some(Value::String(s)) => match Url::parse(s.trim()) {
            Ok(u) if u.scheme() == "data" => return err("url: the data: scheme is not allowed"),
            Ok(u) => u,
            Err(e) => return err(format!("url: not an absolute URL ({e})")),
        },
        Some(_) => return err("url: must be a string"),
    };

    let domains = match f.domain {
        None => match url.host_str() {
            Some(h) if !h.is_empty() => vec![strip_www(h)],
            _ => return err("domain: is required when the url has no host"),
        },
        Some(Value::String(s)) => {
            let list: Vec<String> =
                s.split(',').map(strip_www).filter(|d| !d.is_empty()).collect();
            if list.is_empty() {
                return err("domain: must not be empty");
            }
            list
        }
        Some(_) => return err("domain: must be a string"),
    };

    let referrer = match f.referrer {
        None => None,
        Some(Value::String(s)) if s.len() > MAX_REFERRER_BYTES => {
            return err(format!("referrer: longer than {MAX_REFERRER_BYTES} bytes"))
        }
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(_) => return err("referrer: must be a string"),
    };

    let props = match f.props {
        None => Vec::new(),
        Some(Value::Object(o)) => parse_props(&o)?,
        Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(o)) => parse_props(&o)?,
            _ => return err("props: must be an object or a JSON string of an object"),
        },
        Some(_) => return err("props: must be an object or a JSON string of an object"),
    };

    let revenue = match f.revenue {
        None => None,
        Some(Value::Object(o)) => Some(parse_revenue(&o)?),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(o)) => Some(parse_revenue(&o)?),
            _ => return err("revenue: must be an object with amount and currency"),
        },
        Some(_) => return err("revenue: must be an object with amount and currency"),
    };

    let interactive = match f.interactive {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(_) => return err("interactive: must be true or false"),
    };

    let hash_mode = match f.hash_mode {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(_) => return err("hashMode: must be a boolean or 0/1"),
    };

    let scroll_depth = match f.sd {
        None => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (0..=100).contains(&v) => Some(v as u8),
            Some(v) if v > 100 => Some(100),
            _ => return err("sd: must be an integer from 0 to 100"),
        },
        Some(_) => return err("sd: must be an integer from 0 to 100"),
    };

    let engaged_ms = match f.e {
        None => None,
        Some(Value::Number(n)) => match n.as_u64() {
            // Engaged time beyond a day is a client bug; cap rather than trust it.
            Some(v) => Some(v.min(86_400_000) as u32),
            None => return err("e: must be a non-negative integer (milliseconds)"),
        },
        Some(_) => return err("e: must be a non-negative integer (milliseconds)"),
    };

    Ok(EventRequest {
        name,
        url,
        domains,
        referrer,
        props,
        revenue,
        interactive,
        hash_mode,
        scroll_depth,
        engaged_ms,
    })
}

pub fn strip_www(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    match h.strip_prefix("www.") {
        Some(rest) => rest.to_string(),
        None => h,
    }
}

/// Props follow Plausible: empty, null, list and object values are dropped; numbers and
/// booleans become their text. Limits reject rather than truncate so nothing is stored
/// different from what was sent.
fn parse_props(o: &Map<String, Value>) -> Result<Vec<(String, String)>, PayloadError> {
    let mut out = Vec::with_capacity(o.len().min(MAX_PROPS));
    for (k, v) in o {
        let value = match v {
            Value::String(s) if s.is_empty() => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => continue,
        };
        if k.is_empty() {
            return err("props: keys must not be empty");
        }
        if k.len() > MAX_PROP_KEY_BYTES {
            return err(format!("props: key longer than {MAX_PROP_KEY_BYTES} bytes"));
        }
        if value.len() > MAX_PROP_VALUE_BYTES {
            return err(format!("props.{k}: value longer than {MAX_PROP_VALUE_BYTES} bytes"));
        }
        out.push((k.clone(), value));
        if out.len() > MAX_PROPS {
            return err(format!("props: more than {MAX_PROPS} properties"));
        }
    }
    out.sort();
    Ok(out)
}

fn parse_revenue(o: &Map<String, Value>) -> Result<Revenue, PayloadError> {
    let amount = match o.get("amount") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_string(),
        _ => return err("revenue.amount: must be a number or a decimal string"),
    };
    let amount = normalise_decimal(&amount)
        .ok_or_else(|| PayloadError("revenue.amount: must be a finite decimal number".into()))?;
    let currency = match o.get("currency") {
        Some(Value::String(s))
            if s.len() == 3 && s.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            s.to_ascii_uppercase()
        }
        _ => return err("revenue.currency: must be a three-letter ISO 4217 code"),
    };
    Ok(Revenue { amount, currency })
}

/// Accepts `12`, `-3.50`, `1e3` and returns plain decimal text without an exponent.
fn normalise_decimal(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 40 {
        return None;
    }
    let plain = s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    if plain && s.matches('.').count() <= 1 && s.rfind('-').is_none_or(|i| i == 0) {
        let digits = s.trim_start_matches('-');
        if digits.is_empty() || digits == "." {
            return None;
        }
        return Some(s.to_string());
    }
    let f: f64 = s.parse().ok()?;
    if !f.is_finite() || f.abs() > 1e15 {
        return None;
    }
    Some(format!("{f}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn check(body: &str, expect: Expect) {
        let actual = match parse_event_body(body.as_bytes()) {
            Ok(r) => format!(
                "ok name={} url={} domains={:?} referrer={:?} props={:?} revenue={:?} interactive={} hash={} sd={:?} e={:?}",
                r.name, r.url, r.domains, r.referrer, r.props, r.revenue, r.interactive, r.hash_mode, r.scroll_depth, r.engaged_ms
            ),
            Err(e) => format!("error {e}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn accepts_long_and_short_names() {
        check(
            r#"{"name":"pageview","url":"https://example.com/a","domain":"example.com"}"#,
            expect![[r#"ok name=pageview url=https://example.com/a domains=["example.com"] referrer=None props=[] revenue=None interactive=true hash=false sd=None e=None"#]],
        );
        check(
            r#"{"n":"Signup","u":"https://www.Example.com/x?y=1","d":"www.example.com, other.org","r":"https://t.co/","p":"{\"plan\":\"pro\",\"n\":3,\"b\":true,\"empty\":\"\",\"nil\":null,\"list\":[1]}","$":{"amount":"12.50","currency":"eur"},"i":false,"h":1}"#,
            expect![[r#"ok name=Signup url=https://www.example.com/x?y=1 domains=["example.com", "other.org"] referrer=Some("https://t.co/") props=[("b", "true"), ("n", "3"), ("plan", "pro")] revenue=Some(Revenue { amount: "12.50", currency: "EUR" }) interactive=false hash=true sd=None e=None"#]],
        );
        check(
            r#"{"n":"engagement","u":"https://example.com/","d":"example.com","sd":140,"e":5300}"#,
            expect![[r#"ok name=engagement url=https://example.com/ domains=["example.com"] referrer=None props=[] revenue=None interactive=true hash=false sd=Some(100) e=Some(5300)"#]],
        );
        check(
            r#"{"n":"pageview","u":"app://localhost/login"}"#,
            expect![[r#"ok name=pageview url=app://localhost/login domains=["localhost"] referrer=None props=[] revenue=None interactive=true hash=false sd=None e=None"#]],
        );
    }

    #[test]
    fn rejects_bad_input_naming_the_field() {
        let cases = [
            (r#"{"url":"https://a.com/"}"#, "error name: is required"),
            (r#"{"name":1,"url":"https://a.com/"}"#, "error name: must be a string"),
            (r#"{"name":"pageview"}"#, "error url: is required"),
            (r#"{"name":"pageview","url":"/relative"}"#, "error url: not an absolute URL (relative URL without a base)"),
            (r#"{"name":"pageview","url":"data:text/html,hi"}"#, "error url: the data: scheme is not allowed"),
            (r#"{"name":"pageview","url":7}"#, "error url: must be a string"),
            (r#"{"name":"pageview","url":"https://a.com","domain":""}"#, "error domain: must not be empty"),
            (r#"{"name":"pageview","url":"https://a.com","domain":["a"]}"#, "error domain: must be a string"),
            (r#"{"name":"pageview","url":"https://a.com","props":[1]}"#, "error props: must be an object or a JSON string of an object"),
            (r#"{"name":"pageview","url":"https://a.com","interactive":"yes"}"#, "error interactive: must be true or false"),
            (r#"{"name":"pageview","url":"https://a.com","revenue":{"amount":"x","currency":"USD"}}"#, "error revenue.amount: must be a finite decimal number"),
            (r#"{"name":"pageview","url":"https://a.com","revenue":{"amount":1,"currency":"dollars"}}"#, "error revenue.currency: must be a three-letter ISO 4217 code"),
            (r#"{"name":"pageview","url":"https://a.com","sd":-1}"#, "error sd: must be an integer from 0 to 100"),
            (r#"{"name":"pageview","url":"https://a.com","e":"long"}"#, "error e: must be a non-negative integer (milliseconds)"),
            (r#"[1,2]"#, "error body: must be a JSON object"),
        ];
        for (body, want) in cases {
            let got = match parse_event_body(body.as_bytes()) {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("error {e}"),
            };
            assert_eq!(got, want, "body {body}");
        }
        assert!(parse_event_body(b"{not json").unwrap_err().0.starts_with("body: not valid JSON"));
        assert!(parse_event_body(b"\xff\xfe").unwrap_err().0.starts_with("body: not valid JSON"));
    }

    #[test]
    fn props_limits() {
        let many: String = (0..31).map(|i| format!("\"k{i}\":\"v\"")).collect::<Vec<_>>().join(",");
        let body = format!(r#"{{"n":"x","u":"https://a.com","p":{{{many}}}}}"#);
        assert_eq!(parse_event_body(body.as_bytes()).unwrap_err().0, "props: more than 30 properties");
        let long_key = "k".repeat(301);
        let body = format!(r#"{{"n":"x","u":"https://a.com","p":{{"{long_key}":"v"}}}}"#);
        assert_eq!(parse_event_body(body.as_bytes()).unwrap_err().0, "props: key longer than 300 bytes");
        let long_val = "v".repeat(2001);
        let body = format!(r#"{{"n":"x","u":"https://a.com","p":{{"k":"{long_val}"}}}}"#);
        assert_eq!(parse_event_body(body.as_bytes()).unwrap_err().0, "props.k: value longer than 2000 bytes");
    }

    #[test]
    fn decimals_are_normalised() {
        assert_eq!(normalise_decimal("12.50").as_deref(), Some("12.50"));
        assert_eq!(normalise_decimal("-3").as_deref(), Some("-3"));
        assert_eq!(normalise_decimal("1e3").as_deref(), Some("1000"));
        assert_eq!(normalise_decimal("NaN"), None);
        assert_eq!(normalise_decimal("1-2"), None);
        assert_eq!(normalise_decimal("-"), None);
    }
}
