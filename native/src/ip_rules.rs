//! The `ip` step: a route's client-address allow and deny networks — the
//! native twin of `bastion.gateway.ip_rules`.
//!
//! The client address is the one [`crate::client_ip::client_ip`] derives
//! (`X-Forwarded-For` believed only from `trusted_proxies`; a hop that is not
//! a plain address defers the request to Python, which refuses it: fail
//! closed). `deny` wins over `allow`; an empty `allow` admits every address
//! not denied. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a
//! dual-stack socket reports) is judged as the IPv4 address it carries, so
//! it never matches an IPv6 network, as in Python.
//!
//! The networks are compiled once per table into masks; a check is a few
//! integer comparisons, without allocation. A refusal is rendered natively
//! ([`not_allowed`], Python's `IpNotAllowedError` byte for byte): a blocked
//! network then costs the control plane nothing.

use std::net::IpAddr;

use http::StatusCode;
use serde::Deserialize;

use crate::problem::Problem;

/// One network, pre-masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl Net {
    /// `address` or `address/prefix`, host bits ignored (Python's
    /// `ip_network(entry, strict=False)`, which the compiler already applied).
    fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        let (addr, prefix) = match entry.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (entry, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{entry:?} is not an IP address or network"))?;
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{entry:?} has a bad prefix length"))?,
            None => max,
        };
        Ok(match addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                Net::V4 {
                    net: u32::from(v4) & mask,
                    mask,
                }
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                Net::V6 {
                    net: u128::from(v6) & mask,
                    mask,
                }
            }
        })
    }

    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Net::V4 { net, mask }, IpAddr::V4(a)) => u32::from(a) & mask == net,
            (Net::V6 { net, mask }, IpAddr::V6(a)) => u128::from(a) & mask == net,
            _ => false,
        }
    }
}

/// The route table's `edge.ip` section: networks as Python prints them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpSection {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// The compiled allow / deny networks of one route.
#[derive(Debug, Clone, Default)]
pub struct IpRules {
    allow: Box<[Net]>,
    deny: Box<[Net]>,
}

impl IpRules {
    /// Compile a route's section; the error names the bad entry.
    pub fn from_section(section: &IpSection) -> Result<Self, String> {
        let parse = |entries: &[String]| -> Result<Box<[Net]>, String> {
            entries.iter().map(|e| Net::parse(e)).collect()
        };
        Ok(IpRules {
            allow: parse(&section.allow)?,
            deny: parse(&section.deny)?,
        })
    }

    /// Whether `ip` may call the route: not denied, and allowed when an
    /// allow-list exists. A mapped IPv6 address is judged as its IPv4 address.
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.deny.iter().any(|n| n.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(ip))
    }
}

/// 403 `ip_not_allowed` (`bastion.gateway.ip_rules.IpNotAllowedError`) for a
/// known address the rules refuse.
pub fn not_allowed() -> Problem {
    Problem {
        status: StatusCode::FORBIDDEN,
        code: "ip_not_allowed",
        title: "Forbidden",
        detail: "Requests from this address are not allowed on this route.".to_owned(),
        www_authenticate: None,
        retry_after: None,
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn rules(allow: &[&str], deny: &[&str]) -> IpRules {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        IpRules::from_section(&IpSection {
            allow: owned(allow),
            deny: owned(deny),
        })
        .expect("valid networks")
    }

    #[test]
    fn ip_rules_deny_wins_over_allow() {
        let r = rules(&["10.0.0.0/8"], &["10.6.6.0/24"]);
        assert!(r.admits(ip("10.1.2.3")));
        assert!(!r.admits(ip("10.6.6.6")));
        assert!(!r.admits(ip("192.0.2.1")));
    }

    #[test]
    fn ip_rules_empty_allow_admits_all_not_denied() {
        let r = rules(&[], &["203.0.113.0/24", "2001:db8::/32"]);
        assert!(r.admits(ip("198.51.100.1")));
        assert!(!r.admits(ip("203.0.113.77")));
        assert!(!r.admits(ip("2001:db8:1::1")));
        assert!(r.admits(ip("2001:db9::1")));
    }

    #[test]
    fn ip_rules_mapped_ipv6_is_judged_as_ipv4() {
        let r = rules(&["10.0.0.0/8"], &[]);
        assert!(r.admits(ip("::ffff:10.0.0.1")));
        assert!(!r.admits(ip("::ffff:11.0.0.1")));
        let denied = rules(&[], &["127.0.0.1/32"]);
        assert!(!denied.admits(ip("::ffff:127.0.0.1")));
        // An IPv6 network never matches a mapped address (it is IPv4 now), as in Python.
        let v6 = rules(&["::ffff:0:0/96"], &[]);
        assert!(!v6.admits(ip("::ffff:10.0.0.1")));
        let v6_deny = rules(&[], &["::ffff:0:0/96"]);
        assert!(v6_deny.admits(ip("::ffff:10.0.0.1")));
    }

    #[test]
    fn ip_rules_families_never_cross() {
        let r = rules(&["0.0.0.0/0"], &[]);
        assert!(r.admits(ip("8.8.8.8")));
        assert!(!r.admits(ip("::1")));
        let r = rules(&["::/0"], &[]);
        assert!(r.admits(ip("::1")));
        assert!(!r.admits(ip("127.0.0.1")));
    }

    #[test]
    fn ip_rules_host_entries_and_host_bits() {
        let r = rules(&["192.0.2.7", "10.1.2.3/8", "2001:db8::1"], &[]);
        assert!(r.admits(ip("192.0.2.7")));
        assert!(!r.admits(ip("192.0.2.8")));
        assert!(r.admits(ip("10.200.0.1")));
        assert!(r.admits(ip("2001:db8::1")));
        assert!(!r.admits(ip("2001:db8::2")));
    }

    #[test]
    fn ip_rules_refuse_bad_entries() {
        for bad in ["nope", "10.0.0.0/33", "::/129", "10.0.0.0/x", ""] {
            let section = IpSection {
                allow: vec![bad.to_owned()],
                deny: vec![],
            };
            assert!(IpRules::from_section(&section).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ip_rules_problem_is_pythons() {
        let body = not_allowed().body("RID");
        assert_eq!(
            &body[..],
            br#"{"type":"urn:bastion:problem:ip_not_allowed","title":"Forbidden","status":403,"detail":"Requests from this address are not allowed on this route.","reason":"ip_not_allowed","request_id":"RID"}"#
        );
    }
}
