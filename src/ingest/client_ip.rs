//! Which address is the visitor's. Forwarding headers are only believed when the socket
//! peer is a trusted proxy, otherwise anyone could pick their own identity and country.

use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address for a request that arrived from `peer` with the given
    /// `X-Forwarded-For` and `Forwarded` header values. The chain is read right to left,
    /// skipping trusted proxies, so a client cannot prepend a fake address of its own.
    pub fn client_ip(&self, peer: IpAddr, x_forwarded_for: Option<&str>, forwarded: Option<&str>) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let chain: Vec<IpAddr> = match (x_forwarded_for, forwarded) {
            (Some(xff), _) => xff.split(',').filter_map(parse_addr).collect(),
            (None, Some(fwd)) => fwd
                .split(',')
                .filter_map(|elem| {
                    elem.split(';').find_map(|pair| {
                        let (k, v) = pair.split_once('=')?;
                        k.trim().eq_ignore_ascii_case("for").then(|| parse_addr(v)).flatten()
                    })
                })
                .collect(),
            (None, None) => Vec::new(),
        };
        chain
            .iter()
            .rev()
            .copied()
            .map(canonical)
            .find(|ip| !self.contains(*ip))
            .or_else(|| chain.first().copied().map(canonical))
            .unwrap_or(peer)
    }
}

/// IPv4 addresses mapped into IPv6 (`::ffff:1.2.3.4`) are the same visitor as `1.2.3.4`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Parses one hop: `1.2.3.4`, `1.2.3.4:567`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_addr(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, _port) = s.rsplit_once(':')?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Parses `--trusted-proxy` values: a CIDR such as `10.0.0.0/8` or a single address.
pub fn parse_trusted_proxy(raw: &str) -> Result<IpNet, String> {
    let s = raw.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("trusted proxy {raw:?} is neither a CIDR range nor an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_headers_follow_trust() {
        let trusted = TrustedProxies::new(vec![
            parse_trusted_proxy("127.0.0.1").unwrap(),
            parse_trusted_proxy("10.0.0.0/8").unwrap(),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: &[(&str, Option<&str>, Option<&str>, &str)] = &[
            // An untrusted peer's headers are ignored.
            ("203.0.113.9", Some("8.8.8.8"), None, "203.0.113.9"),
            ("203.0.113.9", None, Some("for=8.8.8.8"), "203.0.113.9"),
            // A trusted peer: the right-most untrusted hop is the client.
            ("127.0.0.1", Some("8.8.8.8"), None, "8.8.8.8"),
            ("127.0.0.1", Some("6.6.6.6, 8.8.8.8, 10.1.2.3"), None, "8.8.8.8"),
            ("127.0.0.1", Some("8.8.8.8:5123"), None, "8.8.8.8"),
            ("127.0.0.1", Some("garbage"), None, "127.0.0.1"),
            ("127.0.0.1", None, Some(r#"for="[2001:db8::7]:443";proto=https"#), "2001:db8::7"),
            ("127.0.0.1", None, Some("for=192.0.2.60;proto=http, for=10.0.0.4"), "192.0.2.60"),
            ("127.0.0.1", None, None, "127.0.0.1"),
            // Every hop trusted: the first one is the best guess.
            ("127.0.0.1", Some("10.0.0.1, 10.0.0.2"), None, "10.0.0.1"),
            ("::ffff:127.0.0.1", Some("8.8.4.4"), None, "8.8.4.4"),
        ];
        for (peer, xff, fwd, want) in cases {
            assert_eq!(trusted.client_ip(ip(peer), *xff, *fwd), ip(want), "peer {peer} xff {xff:?} fwd {fwd:?}");
        }
    }

    #[test]
    fn trusted_proxy_values_are_checked() {
        assert!(parse_trusted_proxy("10.0.0.0/8").is_ok());
        assert!(parse_trusted_proxy("::1").is_ok());
        assert!(parse_trusted_proxy("10.0.0.0/33").unwrap_err().contains("10.0.0.0/33"));
    }
}
