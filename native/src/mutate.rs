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
use std::sync::{Arc, OnceLock};

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
    /// Which of bastion's own header names ([`Own`] bits) the proxy's filters
    /// let through, for an untrusted (`[0]`) and a trusted (`[1]`) peer:
    /// decided once here, where [`forward_headers`] asked `proxy_strips` (a
    /// fold and a name match each) for every name on every request. Same
    /// answer: the names and `strip` are fixed for the route's life.
    forwarded: [u8; 2],
}

/// Bits of [`MutateConfig::forwarded`]: bastion's own header names, in the
/// order [`forward_headers`] adds them.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
enum Own {
    Subject = 1,
    Client = 2,
    Scopes = 4,
    KeyId = 8,
    RequestId = 16,
    Assertion = 32,
    /// A browser session's user (`Identity::person`).
    Email = 64,
    Roles = 128,
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
        let mut config = Self {
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
            forwarded: [0, 0],
        };
        config.forwarded = [config.forwarded_names(false), config.forwarded_names(true)];
        Ok(config)
    }

    /// The [`Own`] bits of the names `prepare_request` forwards for a peer
    /// (`trusted` or not): bastion's headers go through the proxy's filters too
    /// (as in Python, where mutate runs first): a name like X-Client-IP is not
    /// forwarded for an untrusted peer.
    fn forwarded_names(&self, trusted: bool) -> u8 {
        let passes = |name: &HeaderName| {
            let lower = name.as_str();
            !proxy_strips(lower, &fold(lower), trusted)
        };
        let mut bits = 0;
        for (own, name) in [
            (Own::Subject, Some(&self.subject)),
            (Own::Client, Some(&self.client)),
            (Own::Scopes, Some(&self.scopes)),
            (Own::KeyId, Some(&self.key_id)),
            (Own::RequestId, Some(&self.request_id)),
            (Own::Assertion, self.assertion.as_ref().map(|a| &a.header)),
            (Own::Email, Some(&self.email)),
            (Own::Roles, Some(&self.roles)),
        ] {
            if name.is_some_and(passes) {
                bits |= own as u8;
            }
        }
        bits
    }

    fn own_name(&self, own: Own) -> &HeaderName {
        match own {
            Own::Subject => &self.subject,
            Own::Client => &self.client,
            Own::Scopes => &self.scopes,
            Own::KeyId => &self.key_id,
            Own::RequestId => &self.request_id,
            Own::Email => &self.email,
            Own::Roles => &self.roles,
            // Only asked with an assertion configured ([`forward_headers`]).
            Own::Assertion => self
                .assertion
                .as_ref()
                .map_or(&self.request_id, |a| &a.header),
        }
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
            for (own, value) in IdentityHeaders::of(identity).values() {
                out.append(self.own_name(own).clone(), value.clone());
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

/// bastion's identity header values for one identity, encoded once
/// ([`encode`]): the subject, the client, the sorted scopes joined by spaces,
/// the API key's id — each only when not empty, in the order they are sent.
///
/// Why: encoding them per request (a scan, a `join`, a `HeaderValue`
/// allocation each) was about 4,600 instructions of an API-key request
/// (callgrind, `bench/gateway/profile.py`). A cache entry of an identity (an
/// API key, a verified token) keeps its values ([`IdentityHeadersMemo`]) and
/// each request clones them (a reference count each). Any authentication
/// method builds them with [`IdentityHeaders::of`] from its [`Identity`]: a
/// new identity header (a new method's email or roles) is added here, once,
/// and both doors (the proxy's [`forward_headers`], forward-auth's
/// [`MutateConfig::identity_headers`]) send it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    subject: Option<HeaderValue>,
    client: Option<HeaderValue>,
    scopes: Option<HeaderValue>,
    key_id: Option<HeaderValue>,
}

impl IdentityHeaders {
    /// The encoded identity headers of `identity` (`IdentityHeaders.rewrite`'s values).
    pub fn of(identity: &Identity) -> Self {
        let value = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(encode);
        Self {
            subject: value(identity.subject.as_deref()),
            client: value(identity.client_id.as_deref()),
            scopes: (!identity.scopes.is_empty()).then(|| {
                let mut scopes: Vec<&str> = identity.scopes.iter().map(String::as_str).collect();
                scopes.sort_unstable();
                encode(&scopes.join(" "))
            }),
            key_id: value(identity.key_id.as_deref()),
        }
    }

    /// The values present, each with its name's slot, in sending order.
    fn values(&self) -> impl Iterator<Item = (Own, &HeaderValue)> {
        [
            (Own::Subject, &self.subject),
            (Own::Client, &self.client),
            (Own::Scopes, &self.scopes),
            (Own::KeyId, &self.key_id),
        ]
        .into_iter()
        .filter_map(|(own, value)| value.as_ref().map(|v| (own, v)))
    }
}

/// A cache entry's [`IdentityHeaders`], encoded at its first use and then
/// shared by every request the entry serves.
///
/// Correct as long as the entry's identity does not change after that first
/// use: the caches hold their entries behind an `Arc` (immutable), and a
/// clone starts empty (a clone may be changed before it is cached again).
#[derive(Debug, Default)]
pub struct IdentityHeadersMemo(OnceLock<Arc<IdentityHeaders>>);

impl IdentityHeadersMemo {
    /// The values of `identity`, the entry's own.
    pub fn get(&self, identity: &Identity) -> Arc<IdentityHeaders> {
        Arc::clone(
            self.0
                .get_or_init(|| Arc::new(IdentityHeaders::of(identity))),
        )
    }
}

impl Clone for IdentityHeadersMemo {
    fn clone(&self) -> Self {
        Self::default()
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
    /// The identity's headers encoded once with its cache entry
    /// ([`IdentityHeadersMemo`]); `None`: encoded here, per request.
    pub identity_headers: Option<&'a IdentityHeaders>,
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
        let folded = fold_lower(lower);
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
    // bastion's identity headers (mutate), then the request id. Each goes through the
    // proxy's filters too (`MutateConfig::forwarded`, decided once per route) and is
    // dropped when it names a header that carried the consumed credential.
    let forwarded = config.forwarded[usize::from(trusted)];
    let mut add = |own: Own, value: HeaderValue| {
        let name = config.own_name(own);
        if forwarded & own as u8 != 0 && !ctx.consumed.contains(name) {
            out.append(name.clone(), value);
        }
    };
    if let Some(identity) = identity {
        let encoded;
        let values = match ctx.identity_headers {
            Some(values) => values,
            None => {
                encoded = IdentityHeaders::of(identity);
                &encoded
            }
        };
        for (own, value) in values.values() {
            add(own, value.clone());
        }
        if let Some(person) = identity.person.as_deref() {
            if let Some(email) = person.email.as_deref().filter(|s| !s.is_empty()) {
                add(Own::Email, encode(email));
            }
            if !person.roles.is_empty() {
                add(Own::Roles, encode(&person.roles.join(" ")));
            }
        }
    }
    if let Some(request_id) = ctx.request_id.filter(|s| !s.is_empty()) {
        add(Own::RequestId, encode(request_id));
    }
    if let (Some(_), Some(token)) = (&config.assertion, ctx.assertion) {
        add(Own::Assertion, encode(token));
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

/// [`fold`] of a name already lower-case (a `HeaderName`'s): only `_` to look
/// for, which `str::contains` finds with `memchr` instead of a test per byte
/// for two conditions (~110 instructions per header in the profile).
fn fold_lower(name: &str) -> Cow<'_, str> {
    if name.contains('_') {
        Cow::Owned(name.replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
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
