//! The `mutate` step and the proxy's request-header rules: the exact header
//! set bastion's Python pipeline sends upstream.
//!
//! The specification is `bastion.gateway.mutate.IdentityHeaders.rewrite`
//! followed by `bastion.gateway.proxy.prepare_request` (and the `framing`
//! step's removal of method-override headers); [`forward_headers`] runs the
//! same passes in the same order:
//!
//! 1. method-override headers go (`X-HTTP-Method-Override`, …; exact name);
//! 2. mutate: every header whose name, lower-cased with `_` read as `-`, starts
//!    with `x-bastion-` or is in the strip list goes, and `Connection` with
//!    every header it names (folded the same way) except those the proxy owns;
//!    then bastion's identity headers and the request id are added;
//! 3. proxy: hop-by-hop headers, `proxy-*`, the headers the proxy sets itself
//!    (`Host`, `Content-Length`, `Expect`, `Forwarded`, `X-Real-IP`,
//!    `X-Forwarded-For/-Proto/-Host`), path-override and identity-claim headers
//!    (always) and client-address claims (unless the peer is a trusted proxy)
//!    go, as do the headers that carried the consumed credential; then
//!    `X-Forwarded-For`, `-Proto` and `-Host` are set by bastion.
//!
//! `Host` and the body framing (`Content-Length` / `Transfer-Encoding`) are
//! set by the upstream client (`crate::upstream`).

use std::borrow::Cow;
use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::http::{ConnInfo, Identity};

/// RFC 9110 §7.6.1 hop-by-hop headers (`proxy-*` is matched by prefix).
pub const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers bastion sets itself (or drops) instead of forwarding.
#[cfg(test)]
const PROXY_OWNED: [&str; 8] = [
    "host",
    "content-length",
    "expect",
    "forwarded",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// Never forwarded, whoever sends them: path overrides and auth proxies' identity claims.
#[cfg(test)]
const ALWAYS_STRIPPED: [&str; 12] = [
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-override-url",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
];

/// Forwarded only from a trusted proxy: client-address and proxy-identity claims.
#[cfg(test)]
const UNTRUSTED_STRIPPED: [&str; 13] = [
    "true-client-ip",
    "x-client-ip",
    "client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "x-host",
    "x-http-host-override",
];

/// Removed by the `framing` step (compared lower-cased, not folded).
#[cfg(test)]
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

const OWNED: u8 = 1;
const HOP: u8 = 2;
const ALWAYS: u8 = 4;
const UNTRUSTED: u8 = 8;
const OVERRIDE: u8 = 16;

/// Which of the lists above a lower-case name is in (one `match`: the hot path
/// asks this for every header, and a match compiles to a length switch).
fn class(name: &str) -> u8 {
    match name {
        "host" | "content-length" | "expect" | "forwarded" | "x-real-ip" | "x-forwarded-for"
        | "x-forwarded-proto" | "x-forwarded-host" => OWNED,
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade" => HOP,
        "x-original-url"
        | "x-original-uri"
        | "x-rewrite-url"
        | "x-override-url"
        | "x-forwarded-email"
        | "x-forwarded-groups"
        | "x-forwarded-preferred-username"
        | "x-forwarded-access-token"
        | "x-auth-request-email"
        | "x-auth-request-groups"
        | "x-auth-request-preferred-username"
        | "x-auth-request-access-token" => ALWAYS,
        "true-client-ip"
        | "x-client-ip"
        | "client-ip"
        | "cf-connecting-ip"
        | "cf-connecting-ipv6"
        | "fastly-client-ip"
        | "x-cluster-client-ip"
        | "x-originating-ip"
        | "x-remote-ip"
        | "x-remote-addr"
        | "x-proxyuser-ip"
        | "x-host"
        | "x-http-host-override" => UNTRUSTED,
        "x-http-method-override" | "x-http-method" | "x-method-override" => OVERRIDE,
        _ => 0,
    }
}

const IDENTITY_PREFIX: &str = "x-bastion-";
const FORWARDED_PREFIX: &str = "x-forwarded-";

// Built at compile time (as `respond::REQUEST_ID`): `HeaderName::from_static` at
// run time parses and validates its argument on every call, and these go out
// with every request.
use crate::client_ip::X_FORWARDED_FOR;
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The route's `mutate` configuration (the `upstream.mutate` section).
#[derive(Debug, Clone)]
pub struct MutateConfig {
    subject: HeaderName,
    client: HeaderName,
    scopes: HeaderName,
    key_id: HeaderName,
    request_id: HeaderName,
    /// A browser session's user (`Identity::person`): email, roles (space-separated).
    email: HeaderName,
    roles: HeaderName,
    /// Folded names (lower-case, `_` as `-`) stripped besides every `x-bastion-*`.
    strip: Vec<String>,
    /// The signed identity assertion, when `identity_headers.assertion` is on.
    assertion: Option<crate::assertion::AssertionConfig>,
}

#[derive(Deserialize)]
struct MutateSection {
    headers: NamesSection,
    strip: Vec<String>,
    #[serde(default)]
    assertion: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct NamesSection {
    subject: String,
    client: String,
    scopes: String,
    key_id: String,
    request_id: String,
    #[serde(default = "default_email")]
    email: String,
    #[serde(default = "default_roles")]
    roles: String,
}

fn default_email() -> String {
    "x-bastion-email".to_owned()
}

fn default_roles() -> String {
    "x-bastion-roles".to_owned()
}

impl MutateConfig {
    /// Build from the `upstream.mutate` section; an error names the bad field.
    pub fn from_section(section: &serde_json::Value) -> Result<Self, String> {
        let raw = MutateSection::deserialize(section).map_err(|e| format!("mutate: {e}"))?;
        let name = |what: &str, value: &str| {
            HeaderName::from_bytes(value.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("mutate.headers.{what}: {value:?} is not a header name"))
        };
        Ok(Self {
            subject: name("subject", &raw.headers.subject)?,
            client: name("client", &raw.headers.client)?,
            scopes: name("scopes", &raw.headers.scopes)?,
            key_id: name("key_id", &raw.headers.key_id)?,
            request_id: name("request_id", &raw.headers.request_id)?,
            email: name("email", &raw.headers.email)?,
            roles: name("roles", &raw.headers.roles)?,
            strip: {
                let mut strip: Vec<String> =
                    raw.strip.iter().map(|n| fold(n).into_owned()).collect();
                strip.sort_unstable();
                strip.dedup();
                strip
            },
            assertion: match &raw.assertion {
                Some(section) if !section.is_null() => Some(
                    crate::assertion::AssertionConfig::from_section(section)
                        .map_err(|e| format!("mutate.{e}"))?,
                ),
                _ => None,
            },
        })
    }

    /// The route's assertion settings, when it sends one.
    pub fn assertion(&self) -> Option<&crate::assertion::AssertionConfig> {
        self.assertion.as_ref()
    }

    /// bastion's identity headers for `identity` (`None`: anonymous, none), then
    /// the request id: `IdentityHeaders.rewrite((), identity, request_id)`, the
    /// forward-auth answer's headers.
    pub fn identity_headers(
        &self,
        identity: Option<&Identity>,
        request_id: &str,
        out: &mut HeaderMap,
    ) {
        if let Some(identity) = identity {
            if let Some(subject) = identity.subject.as_deref().filter(|s| !s.is_empty()) {
                out.append(self.subject.clone(), encode(subject));
            }
            if let Some(client) = identity.client_id.as_deref().filter(|s| !s.is_empty()) {
                out.append(self.client.clone(), encode(client));
            }
            if !identity.scopes.is_empty() {
                let mut scopes: Vec<&str> = identity.scopes.iter().map(String::as_str).collect();
                scopes.sort_unstable();
                out.append(self.scopes.clone(), encode(&scopes.join(" ")));
            }
            if let Some(key_id) = identity.key_id.as_deref().filter(|s| !s.is_empty()) {
                out.append(self.key_id.clone(), encode(key_id));
            }
            if let Some(person) = identity.person.as_deref() {
                if let Some(email) = person.email.as_deref().filter(|s| !s.is_empty()) {
                    out.append(self.email.clone(), encode(email));
                }
                if !person.roles.is_empty() {
                    out.append(self.roles.clone(), encode(&person.roles.join(" ")));
                }
            }
        }
        if !request_id.is_empty() {
            out.append(self.request_id.clone(), encode(request_id));
        }
    }

    fn strips(&self, folded: &str) -> bool {
        folded.starts_with(IDENTITY_PREFIX)
            || self
                .strip
                .binary_search_by(|s| s.as_str().cmp(folded))
                .is_ok()
    }
}

/// What the forwarding rules need to know about the request besides its headers.
#[derive(Debug, Clone, Copy)]
pub struct ForwardContext<'a> {
    /// The connection the request arrived on (its peer, whether TLS).
    pub conn: &'a ConnInfo,
    /// Whether the direct peer is one of `trusted_proxies` (then its
    /// `X-Forwarded-*` values are kept and the peer appended to `X-Forwarded-For`).
    pub trusted_peer: bool,
    /// The request id (`X-Request-Id` as accepted or minted), sent as bastion's header.
    pub request_id: Option<&'a str>,
    /// Lower-case names of the headers that carried the consumed credential.
    pub consumed: &'a [HeaderName],
    /// The request's authority when it has no `Host` header (HTTP/2 `:authority`).
    pub authority: Option<&'a str>,
    /// The signed identity assertion to send (`crate::assertion`), after the request id.
    pub assertion: Option<&'a str>,
}

/// The headers to send upstream for a request with `incoming` headers, acting
/// for `identity` (`None` or an anonymous identity adds no identity header).
///
/// Never fails: a header value bastion adds is percent-encoded (UTF-8) when it
/// is not printable ASCII or contains `%`, exactly as Python's `_encode`.
pub fn forward_headers(
    incoming: &HeaderMap,
    identity: Option<&Identity>,
    ctx: &ForwardContext<'_>,
    config: &MutateConfig,
) -> HeaderMap {
    let trusted = ctx.trusted_peer;
    let mut out = HeaderMap::with_capacity(incoming.len() + 8);
    let mut named: Vec<String> = Vec::new();
    let mut xff: Vec<&HeaderValue> = Vec::new();
    let mut xfp: Option<&HeaderValue> = None;
    let mut xfh: Option<&HeaderValue> = None;
    let mut host: Option<&HeaderValue> = None;
    // Pass 1 (framing + mutate): method overrides, identity headers, Connection.
    for (name, value) in incoming {
        let lower = name.as_str();
        let lower_class = class(lower);
        if lower_class & OVERRIDE != 0 {
            continue;
        }
        let folded = fold(lower);
        if folded == "connection" {
            for token in value.as_bytes().split(|b| *b == b',') {
                let token = String::from_utf8_lossy(token.trim_ascii());
                if !token.is_empty() {
                    let token = fold(&token).into_owned();
                    if class(&token) & (OWNED | HOP) == 0 {
                        named.push(token);
                    }
                }
            }
            continue;
        }
        if config.strips(&folded) {
            continue;
        }
        // Pass 2 (prepare_request) on what mutate kept.
        if proxy_strips_classed(lower, lower_class, &folded, trusted) {
            continue;
        }
        match lower {
            "host" => host = Some(value),
            "x-forwarded-for" => xff.push(value),
            "x-forwarded-proto" => xfp = Some(value),
            "x-forwarded-host" => xfh = Some(value),
            _ => {}
        }
        if lower_class & (OWNED | HOP) != 0 {
            continue;
        }
        if lower.starts_with("proxy-") || ctx.consumed.iter().any(|c| c == name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if !named.is_empty() {
        let names: Vec<HeaderName> = out
            .keys()
            .filter(|n| named.iter().any(|t| *t == fold(n.as_str())))
            .cloned()
            .collect();
        for name in names {
            out.remove(&name);
        }
    }
    // bastion's identity headers (mutate), then the request id.
    let mut add = |name: &HeaderName, value: &str| {
        // bastion's headers go through the proxy's filters too (as in Python, where
        // mutate runs first): a name like X-Client-IP is not forwarded for an untrusted peer.
        let lower = name.as_str();
        if !proxy_strips(lower, &fold(lower), trusted) && !ctx.consumed.contains(name) {
            out.append(name.clone(), encode(value));
        }
    };
    if let Some(identity) = identity {
        if let Some(subject) = identity.subject.as_deref().filter(|s| !s.is_empty()) {
            add(&config.subject, subject);
        }
        if let Some(client) = identity.client_id.as_deref().filter(|s| !s.is_empty()) {
            add(&config.client, client);
        }
        if !identity.scopes.is_empty() {
            let mut scopes: Vec<&str> = identity.scopes.iter().map(String::as_str).collect();
            scopes.sort_unstable();
            add(&config.scopes, &scopes.join(" "));
        }
        if let Some(key_id) = identity.key_id.as_deref().filter(|s| !s.is_empty()) {
            add(&config.key_id, key_id);
        }
        if let Some(person) = identity.person.as_deref() {
            if let Some(email) = person.email.as_deref().filter(|s| !s.is_empty()) {
                add(&config.email, email);
            }
            if !person.roles.is_empty() {
                add(&config.roles, &person.roles.join(" "));
            }
        }
    }
    if let Some(request_id) = ctx.request_id.filter(|s| !s.is_empty()) {
        add(&config.request_id, request_id);
    }
    if let (Some(assertion), Some(token)) = (&config.assertion, ctx.assertion) {
        add(&assertion.header, token);
    }
    // X-Forwarded-* (prepare_request).
    let mut peer = PeerText::new();
    peer.write(ctx.conn.peer.ip());
    let xff_value = if trusted && !xff.is_empty() {
        let mut joined: Vec<u8> = Vec::new();
        for value in &xff {
            joined.extend_from_slice(value.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(peer.as_bytes());
        HeaderValue::from_bytes(&joined).ok()
    } else {
        HeaderValue::from_bytes(peer.as_bytes()).ok()
    };
    if let Some(value) = xff_value {
        out.append(&X_FORWARDED_FOR, value);
    }
    let proto = match xfp {
        Some(value) if trusted && !value.is_empty() => value.clone(),
        _ => HeaderValue::from_static(if ctx.conn.tls { "https" } else { "http" }),
    };
    out.append(&X_FORWARDED_PROTO, proto);
    let forwarded_host = match xfh {
        Some(value) if trusted && !value.is_empty() => Some(value.clone()),
        _ => host
            .cloned()
            .or_else(|| ctx.authority.and_then(|a| HeaderValue::from_str(a).ok())),
    };
    if let Some(value) = forwarded_host.filter(|v| !v.is_empty()) {
        out.append(&X_FORWARDED_HOST, value);
    }
    out
}

/// Whether `prepare_request` drops a header by its name alone (before the
/// proxy-owned, hop-by-hop, `proxy-*` and consumed-credential checks).
fn proxy_strips(lower: &str, folded: &str, trusted: bool) -> bool {
    proxy_strips_classed(lower, class(lower), folded, trusted)
}

/// [`proxy_strips`] for a name whose `class(lower)` the caller already has
/// (the per-header loop needs it first: not matched twice).
fn proxy_strips_classed(lower: &str, lower_class: u8, folded: &str, trusted: bool) -> bool {
    if lower.contains('_') {
        let c = class(folded);
        return c & (OWNED | HOP) != 0
            || folded.starts_with("proxy-")
            || spoofable(folded, c, trusted);
    }
    let c = lower_class;
    c & ALWAYS != 0
        || (!trusted
            && (c & UNTRUSTED != 0 || (lower.starts_with(FORWARDED_PREFIX) && c & OWNED == 0)))
}

/// Whether the folded `name` (of class `c`) is never forwarded (`proxy._spoofable`).
fn spoofable(name: &str, c: u8, trusted: bool) -> bool {
    if c & ALWAYS != 0 {
        return true;
    }
    if trusted {
        return false;
    }
    (name.starts_with(FORWARDED_PREFIX) && c & OWNED == 0) || c & UNTRUSTED != 0
}

/// A header name lower-cased with `_` read as `-`.
fn fold(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b == b'_' || b.is_ascii_uppercase()) {
        Cow::Owned(
            name.chars()
                .map(|c| {
                    if c == '_' {
                        '-'
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect(),
        )
    } else {
        Cow::Borrowed(name) // header names arrive lower-case: no allocation
    }
}

/// The peer address as ASGI servers spell it (no brackets; IPv4-mapped as IPv4),
/// written into a buffer on the stack: an IPv4 address (the common peer) is
/// spelled by hand, without `Display`'s formatting machinery or a `String`.
struct PeerText {
    buf: [u8; PEER_TEXT_MAX],
    len: usize,
}

/// The longest IPv6 text (`ffff:…` with an embedded IPv4 address) is 45 bytes.
const PEER_TEXT_MAX: usize = 48;

impl PeerText {
    fn new() -> Self {
        Self {
            buf: [0; PEER_TEXT_MAX],
            len: 0,
        }
    }

    fn write(&mut self, ip: IpAddr) {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        self.push(b'.');
                    }
                    if octet >= 100 {
                        self.push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        self.push(b'0' + octet / 10 % 10);
                    }
                    self.push(b'0' + octet % 10);
                }
            }
            v6 => {
                use std::io::Write as _;
                let mut cursor = std::io::Cursor::new(&mut self.buf[..]);
                // Cannot fail: the buffer holds the longest IPv6 text.
                let _ = write!(cursor, "{v6}");
                self.len = usize::try_from(cursor.position()).unwrap_or(0);
            }
        }
    }

    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// `value` as a header value: as is when printable ASCII without `%`, else
/// percent-encoded UTF-8 (upper-case hex), as Python's `quote(value, safe=…)`.
pub fn encode(value: &str) -> HeaderValue {
    let plain = value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'%');
    if plain {
        if let Ok(v) = HeaderValue::from_str(value) {
            return v;
        }
    }
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // Every byte is now printable ASCII: a valid header value.
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests;
