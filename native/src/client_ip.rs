//! The client's address as the gateway believes it — the native twin of
//! `bastion.gateway.authn.client_ip` (trusted proxies, `X-Forwarded-For` read
//! from the right). One difference on purpose: where a hop is not a plain IP
//! address the native path answers `None`, and the gateway refuses the
//! request (400 `invalid_forwarded_for`, `decide::forwarded_for_refused`)
//! where Python took the hop's text for the client's address.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};

/// `X-Forwarded-For` as a ready name: looking a field up by a `&str` parses the
/// name on every call (and this one is read for every request from a trusted peer).
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The direct peers whose `X-Forwarded-For` is believed (`trusted_proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// From entries like Python's `ipaddress.ip_network(entry, strict=False)`:
    /// an address or `address/prefix`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut networks = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.as_ref().trim();
            let (addr, prefix) = match entry.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (entry, None),
            };
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| format!("trusted proxy {entry:?} is not an IP address or network"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix =
                match prefix {
                    Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                        format!("trusted proxy {entry:?} has a bad prefix length")
                    })?,
                    None => max,
                };
            networks.push((addr, prefix));
        }
        Ok(Self { networks })
    }

    /// No trusted proxies configured.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// `ip` is in one of the networks (an IPv4-mapped IPv6 address is not an
    /// IPv4 address here, as in Python's `ipaddress`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.networks
            .iter()
            .any(|(net, prefix)| in_network(ip, *net, *prefix))
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The client address of a request from `peer`; `None` where a trusted
/// proxy's hop is not an IP address (no address can be believed).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> Option<IpAddr> {
    if trusted.is_empty() || !trusted.contains(peer) {
        return Some(peer);
    }
    // Python's walk from the right (every field, each split on `,`, stripped, the
    // empty skipped); a hop is parsed only once the walk reaches it, so a hop left
    // of the client's (the client's own claim) is never read.
    let mut leftmost = None;
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        for part in value.as_bytes().rsplit(|b| *b == b',') {
            let part = crate::router::py_strip(part);
            if part.is_empty() {
                continue;
            }
            // `[v6]` is read as its address, as Python's IP rules read it (`strip("[]")`).
            let text = std::str::from_utf8(part).ok()?;
            let hop: IpAddr = text.trim_matches(['[', ']']).parse().ok()?;
            if !trusted.contains(hop) {
                return Some(hop);
            }
            leftmost = Some(hop);
        }
    }
    Some(leftmost.unwrap_or(peer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_claims() {
        let t = TrustedProxies::parse(&["10.0.0.0/8"]).unwrap();
        assert_eq!(
            client_ip(ip("192.0.2.1"), &xff(&["1.1.1.1"]), &t),
            Some(ip("192.0.2.1"))
        );
        let none = TrustedProxies::default();
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff(&["1.1.1.1"]), &none),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn reads_forwarded_for_from_the_right_skipping_trusted_hops() {
        let t = TrustedProxies::parse(&["10.0.0.0/8", "127.0.0.1"]).unwrap();
        let h = xff(&["6.6.6.6, 203.0.113.9", "10.1.1.1"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &t), Some(ip("203.0.113.9")));
        // Every hop trusted: the leftmost.
        let h = xff(&["10.2.2.2, 10.1.1.1"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &t), Some(ip("10.2.2.2")));
        // No header: the peer.
        assert_eq!(
            client_ip(ip("127.0.0.1"), &HeaderMap::new(), &t),
            Some(ip("127.0.0.1"))
        );
        // Empty parts are skipped.
        let h = xff(&[" , 198.51.100.7 ,"]);
        assert_eq!(client_ip(ip("127.0.0.1"), &h, &t), Some(ip("198.51.100.7")));
    }

    #[test]
    fn a_hop_that_is_not_an_address_is_none() {
        let t = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        let peer = ip("127.0.0.1");
        for hop in [
            "unknown",
            "1.2.3.4:80",
            "10.1.2.3.4",
            "[10.1.2.3]x",
            "_hidden",
            "fe80::1%eth0",
        ] {
            assert_eq!(client_ip(peer, &xff(&[hop]), &t), None, "{hop}");
        }
        // Only the hops read from the right up to the client's count.
        assert_eq!(client_ip(peer, &xff(&["1.2.3.4, unknown"]), &t), None);
        assert_eq!(
            client_ip(peer, &xff(&["unknown, 1.2.3.4"]), &t),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            client_ip(peer, &xff(&["unknown", "1.2.3.4 ,127.0.0.1"]), &t),
            Some(ip("1.2.3.4"))
        );
        assert_eq!(
            client_ip(peer, &xff(&["[2001:db8::1]"]), &t),
            Some(ip("2001:db8::1"))
        );
    }

    #[test]
    fn networks_and_families() {
        let t = TrustedProxies::parse(&["192.168.0.0/16", "::1", "2001:db8::/32"]).unwrap();
        assert!(t.contains(ip("192.168.3.4")));
        assert!(!t.contains(ip("192.169.0.1")));
        assert!(t.contains(ip("::1")));
        assert!(t.contains(ip("2001:db8:1::5")));
        assert!(!t.contains(ip("::ffff:192.168.3.4")));
        assert!(TrustedProxies::parse(&["nope"]).is_err());
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        let all = TrustedProxies::parse(&["0.0.0.0/0"]).unwrap();
        assert!(all.contains(ip("8.8.8.8")));
    }
}

/// The rate-limit bucket of a client address — `bastion.ratelimit.addresses.ip_bucket`:
/// IPv4 (and IPv4-mapped IPv6) as the address, other IPv6 by its /64
/// (`2001:db8::/64`).
pub fn ip_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let masked = std::net::Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
                format!("{masked}/64")
            }
        },
    }
}

#[cfg(test)]
mod bucket_tests {
    use super::*;

    #[test]
    fn buckets_match_python() {
        let b = |s: &str| ip_bucket(s.parse().unwrap());
        assert_eq!(b("192.0.2.1"), "192.0.2.1");
        assert_eq!(b("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(b("2001:DB8::1"), "2001:db8::/64");
        assert_eq!(b("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(b("::1"), "::/64");
        assert_eq!(b("fe80::1"), "fe80::/64");
    }
}
