//! Route matching: host + clean path prefix + method, with the semantics of
//! `bastion.gateway.matcher.RouteMatcher` (its docstring is the contract):
//!
//! - a prefix matches on segment boundaries; the longest matching prefix wins;
//! - at the same prefix, the routes for the request's host come before the
//!   routes for any host (in settings order);
//! - hosts compare case-insensitively, without port and trailing dot;
//! - routes for the path but none for the method: 405 (a shorter prefix is
//!   not tried).
//!
//! Before matching, the request-target is read as the Python app reads it
//! ([`RouteTable::target`]): `BastionApp._dispatch` keeps the control plane's
//! paths (judged as sent and once normalised), then the gateway's `match`
//! step normalises the path (`normalize_path`, [`crate::paths::normalize`])
//! and matches the normal form; the upstream gets that path (prefix stripped,
//! base prepended) and the raw query.
//!
//! The native router answers `Native` only when Python would pick the same
//! route and forward the same target; everything else is a `Defer` (the
//! gateway renders the 400/404/405 Python's `match` would, or Python serves
//! the request itself). Like Python's matcher it judges neither the method
//! (`framing` refused what is not a token before) nor the Host (read as
//! `normalize_host` reads it; none is the host of no route).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::paths::{app_normalise, is_clean_path, is_clean_query, normalize};
use crate::routes::{MatchRule, Route, RouteTable};

/// Longest host key (after normalisation) read without allocating.
const MAX_HOST: usize = 255;

/// What the router decided for one request.
#[derive(Debug)]
pub enum Routed<'t> {
    /// Serve natively: the route. The target it sends upstream is the
    /// proxy's to build (`Upstream::forward`); [`RouteTable::route_upstream`]
    /// tells it for the equivalence tests.
    Native { route: &'t Route },
    /// Not routed: why (the refusal the gateway renders, or a control-plane path).
    Defer(Why),
}

/// Why a request was deferred to Python.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A target no request the front reads can carry (a fragment, a space or a
    /// control character in the query: the HTTP parser and `http::Uri` refuse
    /// them first).
    NotClean,
    /// A path `normalize_path` refuses that the app hands to its gateway
    /// (no `%`): the `match` step's 400 `invalid_path` (`refusal::unmatched`).
    InvalidPath,
    /// A path with `%` that `normalize_path` refuses: the app's 400
    /// `invalid_path`, before its gateway (`gateway::handle` renders it).
    AppInvalidPath,
    /// A path of the control plane (`RESERVED_PREFIXES`).
    Reserved,
    /// A method Python's `framing` refuses (400 `invalid_method`, rendered by
    /// the gateway door before it routes: `hygiene::refused`). The router
    /// itself matches any method, as Python's matcher does.
    Method,
    /// No route for the path (Python answers 404).
    NoRoute,
    /// Routes for the path, none for the method (Python answers 405).
    MethodNotAllowed,
}

impl Why {
    /// A stable snake_case label (metrics, logs, `RouteTable.defer_reason`).
    pub fn label(self) -> &'static str {
        match self {
            Self::NotClean => "not_clean",
            Self::InvalidPath => "invalid_path",
            Self::AppInvalidPath => "app_invalid_path",
            Self::Reserved => "reserved",
            Self::Method => "method",
            Self::NoRoute => "no_route",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }
}

/// A request-target as the Python app and its gateway read it
/// ([`RouteTable::target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// For the gateway: the normal form of the path (borrowed when the
    /// target was already normal) and the raw query (`None`: absent or empty).
    Gateway {
        path: Cow<'a, str>,
        query: Option<&'a str>,
    },
    /// Python answers 400 `invalid_path` with this detail: by the app,
    /// before its gateway ([`Why::AppInvalidPath`], a path with `%`), or by
    /// the gateway's `match` step ([`Why::InvalidPath`]).
    Refused { detail: &'static str, why: Why },
    /// Python's: a control-plane path, or a target the router does not read.
    Python(Why),
}

/// The routes indexed by prefix: one map probe per path segment, at most as
/// many as the deepest prefix has segments.
#[derive(Debug, Default)]
pub(crate) struct Router {
    prefixes: HashMap<Box<str>, Vec<Entry>, BuildHasherDefault<FxHasher>>,
    /// Segments of the deepest prefix (`/` has 0, `/a/b` has 2).
    depth: usize,
    /// Some route is for one host only.
    has_hosts: bool,
}

/// A route at a prefix: its host (`None`: any host) and its index.
#[derive(Debug)]
struct Entry {
    host: Option<Box<str>>,
    index: usize,
}

enum Lookup {
    Found(usize),
    MethodNotAllowed,
    NotFound,
}

impl Router {
    pub(crate) fn new(routes: &[Route]) -> Self {
        let mut router = Self::default();
        for route in routes {
            let Some(rule) = &route.matcher else { continue };
            let depth = segments(&rule.prefix);
            router.depth = router.depth.max(depth);
            router.has_hosts |= rule.host.is_some();
            router
                .prefixes
                .entry(rule.prefix.as_str().into())
                .or_default()
                .push(Entry {
                    host: rule.host.as_deref().map(Into::into),
                    index: route.index,
                });
        }
        router
    }

    /// The routes at the longest prefix of `path` that has routes for `host`
    /// or for any host: those for `host` first, then those for any host, each
    /// in settings order. `None` when no prefix has any. Never allocates (the
    /// per-request path).
    #[inline]
    fn candidates<'a>(
        &'a self,
        host: &'a str,
        path: &str,
    ) -> Option<impl Iterator<Item = &'a Entry> + 'a> {
        let trimmed = path.trim_end_matches('/');
        // No prefix is deeper than `self.depth` segments: start there.
        let trimmed = match trimmed.match_indices('/').nth(self.depth) {
            Some((cut, _)) => &trimmed[..cut],
            None => trimmed,
        };
        let mut prefix = if trimmed.is_empty() { "/" } else { trimmed };
        loop {
            if let Some(entries) = self.prefixes.get(prefix) {
                let own = entries
                    .iter()
                    .filter(move |e| !host.is_empty() && e.host.as_deref() == Some(host));
                let any = entries.iter().filter(|e| e.host.is_none());
                let mut candidates = own.chain(any).peekable();
                if candidates.peek().is_some() {
                    return Some(candidates);
                }
            }
            if prefix == "/" {
                return None;
            }
            prefix = match prefix.rfind('/') {
                Some(cut) if cut > 0 => &prefix[..cut],
                _ => "/",
            };
        }
    }

    /// `RouteMatcher.match`: at each prefix, longest first, the routes for
    /// `host` then those for any host (settings order); a prefix with routes
    /// for other hosts only is passed over.
    fn lookup(&self, routes: &[Route], host: &str, path: &str, method: &str) -> Lookup {
        let allows = |index: usize| {
            routes
                .get(index)
                .and_then(|route| route.matcher.as_ref())
                .is_some_and(|rule| rule.allows(method))
        };
        let Some(candidates) = self.candidates(host, path) else {
            return Lookup::NotFound;
        };
        for entry in candidates {
            if allows(entry.index) {
                return Lookup::Found(entry.index);
            }
        }
        Lookup::MethodNotAllowed
    }
}

impl Router {
    /// The methods of Python's `MethodNotAllowedError` for a path whose
    /// routes take other methods (`RouteMatcher.match`): at the first prefix
    /// with routes for `host` or any host, every method they list, `HEAD`
    /// with `GET`. `None` when a route there takes every method.
    fn allow<'r>(&self, routes: &'r [Route], host: &str, path: &str) -> Option<Vec<&'r str>> {
        let mut allow = Vec::new();
        for entry in self.candidates(host, path)? {
            let rule = routes.get(entry.index)?.matcher.as_ref()?;
            for method in rule.methods.as_ref()? {
                allow.push(method.as_str());
                if method == "GET" {
                    allow.push("HEAD");
                }
            }
        }
        Some(allow)
    }
}

fn segments(prefix: &str) -> usize {
    if prefix == "/" {
        0
    } else {
        prefix.matches('/').count()
    }
}

/// The Fx hash (rustc's): the keys are the table's own prefixes, so there
/// is no flooding to defend against, and a lookup costs a few nanoseconds.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl RouteTable {
    /// Route one request: `host` is the Host header value's bytes (HTTP/2: the
    /// `:authority`), `None` when absent; `target` the raw request-target
    /// (path + optional query). Never panics; anything not certain is a
    /// `Defer`. Allocates only to normalise a path that is not in normal form.
    pub fn route(&self, host: Option<&[u8]>, method: &http::Method, target: &str) -> Routed<'_> {
        let path = match self.target(target) {
            Target::Gateway { path, .. } => path,
            Target::Refused { why, .. } | Target::Python(why) => return Routed::Defer(why),
        };
        self.route_normal(host, method, &path)
    }

    /// [`RouteTable::route`], and the target Python forwarded upstream for it
    /// (prefix stripped, upstream base path prepended, the query as sent); for
    /// the equivalence tests (`bastion._native.RouteTable.route`): the
    /// gateway's proxy builds its own from the normal form (`Upstream::forward`).
    pub fn route_upstream(
        &self,
        host: Option<&[u8]>,
        method: &http::Method,
        target: &str,
    ) -> Result<(&Route, String), Why> {
        let (path, query) = match self.target(target) {
            Target::Gateway { path, query } => (path, query),
            Target::Refused { why, .. } | Target::Python(why) => return Err(why),
        };
        match self.route_normal(host, method, &path) {
            Routed::Native { route } => match &route.matcher {
                Some(rule) => Ok((route, upstream_target(rule, &path, query))),
                None => Err(Why::NoRoute), // a loaded table has none: refused at load
            },
            Routed::Defer(why) => Err(why),
        }
    }

    /// [`RouteTable::route`] for a path in normal form the app hands to its gateway.
    fn route_normal(&self, host: Option<&[u8]>, method: &http::Method, path: &str) -> Routed<'_> {
        let method = method.as_str();
        // Without host-specific routes the host cannot change the match (the
        // matcher reads every unknown host as "any host"): skip its key.
        let mut buffer = [0u8; MAX_HOST];
        let host = match host {
            Some(host) if self.router.has_hosts => host_key(host, &mut buffer),
            _ => Cow::Borrowed(""),
        };
        let index = match self.router.lookup(&self.routes, &host, path, method) {
            Lookup::Found(index) => index,
            Lookup::MethodNotAllowed => return Routed::Defer(Why::MethodNotAllowed),
            Lookup::NotFound => return Routed::Defer(Why::NoRoute),
        };
        match self.routes.get(index) {
            Some(route) => Routed::Native { route },
            None => Routed::Defer(Why::NoRoute),
        }
    }

    /// [`RouteTable::route`] for the target a forward-auth decision judges, in
    /// normal form already: matched as Python's `RouteMatcher` matches it, under
    /// a reserved prefix too (the app's dispatch never reads a judged URI).
    pub fn route_judged(
        &self,
        host: Option<&[u8]>,
        method: &http::Method,
        target: &str,
    ) -> Routed<'_> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if !is_clean_path(path.as_bytes()) || !is_clean_query(query.as_bytes()) {
            return Routed::Defer(Why::NotClean);
        }
        self.route_normal(host, method, path)
    }

    /// [`RouteTable::allowed_methods`] for a judged target ([`RouteTable::route_judged`]).
    pub fn allowed_methods_judged(&self, host: Option<&[u8]>, target: &str) -> Option<Vec<&str>> {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        self.allowed_in(host, path)
    }

    /// For a request [`RouteTable::route`] deferred with [`Why::MethodNotAllowed`]:
    /// the methods Python's 405 lists (`Allow`), or `None` when not certain.
    pub fn allowed_methods(&self, host: Option<&[u8]>, target: &str) -> Option<Vec<&str>> {
        let Target::Gateway { path, .. } = self.target(target) else {
            return None;
        };
        self.allowed_in(host, &path)
    }

    fn allowed_in(&self, host: Option<&[u8]>, path: &str) -> Option<Vec<&str>> {
        let mut buffer = [0u8; MAX_HOST];
        let host = match host {
            Some(host) if self.router.has_hosts => host_key(host, &mut buffer),
            _ => Cow::Borrowed(""),
        };
        self.router.allow(&self.routes, &host, path)
    }

    /// How the Python app reads a raw request-target (origin-form: path and
    /// optional query). `BastionApp._dispatch` first: a path with `%` is
    /// normalised (`normalize_path`; a refusal is the app's 400) and the
    /// control plane keeps it when the normal form is under a reserved
    /// prefix; a path without `%` is the control plane's when it is under
    /// one as sent or once `//` and dot segments are resolved (`_normalise`).
    /// Anything else goes to the gateway, whose `match` step normalises the
    /// path (a refusal is its 400) and matches the normal form.
    ///
    /// Every path is read: one outside ASCII as the bytes Python's server would
    /// hand over (`normalize_path` percent-encodes them), one without a leading
    /// `/` (`*`, an authority) as the gateway's 400 (its `match` step refuses
    /// it; the app's dispatch has no reserved prefix for it). The query is
    /// Python's `query_string`, forwarded as sent (bytes outside ASCII too).
    pub fn target<'a>(&self, target: &'a str) -> Target<'a> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if !is_readable_query(query.as_bytes()) {
            return Target::Python(Why::NotClean);
        }
        let query = (!query.is_empty()).then_some(query);
        if is_clean_path(path.as_bytes()) {
            // Its own normal form, under a reserved prefix or not, whichever way the app asks.
            if self.is_reserved(path) {
                return Target::Python(Why::Reserved);
            }
            let path = Cow::Borrowed(path);
            return Target::Gateway { path, query };
        }
        if path.contains('%') {
            return match normalize(path.as_bytes()) {
                Ok(normal) if self.is_reserved(&normal) => Target::Python(Why::Reserved),
                Ok(normal) => Target::Gateway {
                    path: Cow::Owned(normal.into_owned()),
                    query,
                },
                // The app refuses it whatever it names; one that looks like the control
                // plane's (as sent, or resolved) is left to Python, which owns those paths.
                Err(_) if self.is_reserved(path) || self.is_reserved(&app_normalise(path)) => {
                    Target::Python(Why::Reserved)
                }
                Err(detail) => Target::Refused {
                    detail,
                    why: Why::AppInvalidPath,
                },
            };
        }
        if self.is_reserved(path)
            || ((path.contains("//") || path.contains("/."))
                && self.is_reserved(&app_normalise(path)))
        {
            return Target::Python(Why::Reserved);
        }
        match normalize(path.as_bytes()) {
            Ok(normal) => Target::Gateway {
                path: Cow::Owned(normal.into_owned()),
                query,
            },
            Err(detail) => Target::Refused {
                detail,
                why: Why::InvalidPath,
            },
        }
    }

    /// Whether the Python app hands this request-target to its gateway (whose
    /// first step is `framing`): the app's reading ([`RouteTable::target`]) is
    /// the gateway's, or a path only the gateway's `match` step refuses. A path
    /// with `%` that normalisation refuses is the app's own 400 first.
    pub fn gateway_target(&self, target: &str) -> bool {
        matches!(
            self.target(target),
            Target::Gateway { .. }
                | Target::Refused {
                    why: Why::InvalidPath,
                    ..
                }
        )
    }

    /// `bastion.http.app._reserved_exact`: a reserved prefix, itself or below
    /// it on a segment boundary.
    fn is_reserved(&self, path: &str) -> bool {
        self.matching.reserved.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// `bastion.gateway.hygiene.check_method`: an upper-case HTTP token of at
/// most 32 characters (RFC 9110 §9.1; `delete` is not `DELETE`).
pub fn is_method_token(method: &str) -> bool {
    let tchar =
        |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b);
    !method.is_empty() && method.len() <= 32 && method.bytes().all(tchar)
}

/// The key of a host no route names (`_HOST` in the settings allows no
/// space, no byte outside ASCII): Python's matcher serves it the routes for
/// any host.
const NO_ROUTE_HOST: &str = " ";

/// Python's `str.isspace()` for a byte decoded as latin-1 (what
/// `str.strip()` removes: `\x85` and `\xa0` too).
fn py_space(byte: u8) -> bool {
    matches!(byte, b'\t'..=b'\r' | 0x1c..=0x20 | 0x85 | 0xa0)
}

/// Python's `bytes.decode("latin-1").strip()`, on the bytes.
pub(crate) fn py_strip(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !py_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| !py_space(b))
        .map_or(start, |last| last + 1);
    &bytes[start..end]
}

/// `bastion.gateway.matcher.normalize_host` of the Host value's bytes (Python
/// decodes them as latin-1), into `buffer`: stripped, lower-case, without
/// port and trailing dot; `[v6]` without its port (in `buffer`, or allocated
/// when longer). A key no route can have (bytes outside visible ASCII inside)
/// is [`NO_ROUTE_HOST`]; an empty one is `""`: both mean the routes for any
/// host, as in Python.
fn host_key<'b>(host: &[u8], buffer: &'b mut [u8; MAX_HOST]) -> Cow<'b, str> {
    let host = py_strip(host);
    // `:`, `]` and `.` are ASCII: found alike before or after lower-casing.
    let key = if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(close) => &host[..=close],
            None => host,
        }
    } else {
        let without_port = match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        };
        let end = without_port
            .iter()
            .rposition(|&b| b != b'.')
            .map_or(0, |last| last + 1);
        &without_port[..end]
    };
    // Latin-1 letters lower-case to latin-1 letters: a key outside ASCII stays so.
    if !key.iter().all(u8::is_ascii_graphic) {
        return Cow::Borrowed(NO_ROUTE_HOST);
    }
    let Some(lower) = buffer.get_mut(..key.len()) else {
        // Longer than a DNS name, yet `_HOST` has no bound: as rare as it is, read it.
        let mut owned = String::from_utf8_lossy(key).into_owned();
        owned.make_ascii_lowercase();
        return Cow::Owned(owned);
    };
    lower.copy_from_slice(key);
    lower.make_ascii_lowercase();
    Cow::Borrowed(std::str::from_utf8(lower).unwrap_or(NO_ROUTE_HOST))
}

/// Whether a query is one a request can carry: no fragment, no space or
/// control character (bytes outside ASCII are forwarded as sent, as
/// Python's proxy forwards its `query_string`).
fn is_readable_query(query: &[u8]) -> bool {
    query
        .iter()
        .all(|&byte| ((0x21..=0x7E).contains(&byte) && byte != b'#') || byte >= 0x80)
}

/// `CompiledRoute.upstream_path(path)` + `?query`, in one exact allocation.
fn upstream_target(rule: &MatchRule, path: &str, query: Option<&str>) -> String {
    let mut rest = path;
    let mut lead = "";
    if rule.strip_prefix && rule.prefix != "/" {
        // The path is under the prefix (the router matched it); Python's slice
        // past the end would be "" all the same.
        rest = path.get(rule.prefix.len()..).unwrap_or("");
        if rest.is_empty() {
            rest = "/";
        } else if !rest.starts_with('/') {
            lead = "/";
        }
    }
    let base = rule.upstream_base.as_str();
    let query_len = query.map_or(0, |q| q.len() + 1);
    let mut out = String::with_capacity(base.len() + lead.len() + rest.len() + query_len);
    out.push_str(base);
    out.push_str(lead);
    out.push_str(rest);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use proptest::prelude::*;

    fn rule(
        name: &str,
        prefix: &str,
        methods: Option<&[&str]>,
        host: Option<&str>,
    ) -> serde_json::Value {
        serde_json::json!({"name": name, "match": {
            "host": host, "prefix": prefix, "methods": methods,
            "strip_prefix": false, "upstream_base": ""}})
    }

    fn table(routes: Vec<serde_json::Value>, preflight: bool) -> RouteTable {
        let routes: Vec<_> = routes
            .into_iter()
            .enumerate()
            .map(|(index, mut route)| {
                route["index"] = index.into();
                route
            })
            .collect();
        let json = serde_json::json!({"version": 1, "routes": routes, "match": {
            "reserved": ["/healthz", "/.well-known", "/oauth2", "/admin", "/auth/verify"],
            "preflight": preflight}});
        RouteTable::from_json(&json.to_string()).expect("table loads")
    }

    /// `tests/gateway/test_matcher.py`'s fixture.
    fn matcher() -> RouteTable {
        table(
            vec![
                rule("api", "/api", None, None),
                rule("orders", "/api/orders", Some(&["GET", "POST"]), None),
                rule(
                    "orders-admin",
                    "/api/orders",
                    Some(&["DELETE"]),
                    Some("admin.example"),
                ),
                rule("v2", "/api/v2/items", None, None),
                rule("admin-any", "/adm", None, Some("admin.example")),
            ],
            false,
        )
    }

    fn name(table: &RouteTable, host: &str, method: &str, target: &str) -> Result<String, Why> {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        match table.route(Some(host.as_bytes()), &method, target) {
            Routed::Native { route, .. } => Ok(route.name.clone()),
            Routed::Defer(why) => Err(why),
        }
    }

    fn get(table: &RouteTable, target: &str) -> Result<String, Why> {
        name(table, "gw.test", "GET", target)
    }

    #[test]
    fn allow_lists_the_methods_of_the_routes_at_the_prefix() {
        let t = table(
            vec![
                rule("orders", "/api/orders", Some(&["GET", "POST"]), None),
                rule(
                    "orders-admin",
                    "/api/orders",
                    Some(&["DELETE"]),
                    Some("admin.example"),
                ),
                rule("writes", "/w", Some(&["PUT"]), None),
                rule("any", "/any", None, None),
            ],
            false,
        );
        let allow = |host: &str, target: &str| t.allowed_methods(Some(host.as_bytes()), target);
        assert_eq!(get(&t, "/w/x"), Err(Why::MethodNotAllowed));
        assert_eq!(allow("gw.test", "/w/x?q"), Some(vec!["PUT"]));
        assert_eq!(
            allow("gw.test", "/api/orders/1"),
            Some(vec!["GET", "HEAD", "POST"])
        );
        assert_eq!(
            allow("ADMIN.example:1", "/api/orders"),
            Some(vec!["DELETE", "GET", "HEAD", "POST"])
        );
        assert_eq!(allow("gw.test", "/any/x"), None);
        assert_eq!(allow("gw.test", "/nothing"), None);
        assert_eq!(allow("gw.test", "/w//x/."), Some(vec!["PUT"]));
        assert_eq!(allow("gw.test", "/w%2F"), None);
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let t = matcher();
        for (path, expected) in [
            ("/api", "api"),
            ("/api/", "api"),
            ("/api/x", "api"),
            ("/api/orders", "orders"),
            ("/api/orders/", "orders"),
            ("/api/orders/42", "orders"),
            ("/api/ordersx", "api"),
            ("/api/v2", "api"),
            ("/api/v2/items/1", "v2"),
        ] {
            assert_eq!(get(&t, path), Ok(expected.to_owned()), "{path}");
        }
        for path in ["/apix", "/", "/ap", "/API/x", "/Api"] {
            assert_eq!(get(&t, path), Err(Why::NoRoute), "{path}");
        }
    }

    #[test]
    fn a_judged_target_is_matched_under_reserved_prefixes_too() {
        let t = table(
            vec![
                rule("root", "/", None, None),
                rule("orders", "/api/orders", Some(&["GET"]), None),
            ],
            false,
        );
        let judged = |method: &str, target: &str| {
            let method = http::Method::from_bytes(method.as_bytes()).unwrap();
            match t.route_judged(Some(b"gw.test".as_slice()), &method, target) {
                Routed::Native { route, .. } => Ok(route.name.clone()),
                Routed::Defer(why) => Err(why),
            }
        };
        for target in ["/admin", "/oauth2/token?x=1", "/auth/verify"] {
            assert_eq!(judged("GET", target), Ok("root".to_owned()), "{target}");
            assert_eq!(get(&t, target), Err(Why::Reserved), "{target}");
        }
        assert_eq!(judged("GET", "/api/orders"), Ok("orders".to_owned()));
        assert_eq!(judged("POST", "/api/orders"), Err(Why::MethodNotAllowed));
        let allow = t.allowed_methods_judged(Some(b"gw.test".as_slice()), "/api/orders?x=1");
        assert_eq!(allow, Some(vec!["GET", "HEAD"]));
        // Only a target in normal form is judged.
        assert_eq!(judged("GET", "/api/./orders"), Err(Why::NotClean));
    }

    #[test]
    fn root_route_matches_everything_but_reserved_paths() {
        let t = table(
            vec![
                rule("root", "/", None, None),
                rule("api", "/api", None, None),
            ],
            false,
        );
        assert_eq!(get(&t, "/"), Ok("root".to_owned()));
        assert_eq!(get(&t, "/anything/deep"), Ok("root".to_owned()));
        assert_eq!(get(&t, "/apix"), Ok("root".to_owned()));
        assert_eq!(get(&t, "/api/x"), Ok("api".to_owned()));
        for path in [
            "/healthz",
            "/oauth2/token",
            "/admin",
            "/admin/",
            "/.well-known/jwks.json",
            "/auth/verify",
        ] {
            assert_eq!(get(&t, path), Err(Why::Reserved), "{path}");
        }
        for path in [
            "/healthzx",
            "/administrator",
            "/auth",
            "/auth/verifyx",
            "/oauth",
        ] {
            assert_eq!(get(&t, path), Ok("root".to_owned()), "{path}");
        }
    }

    #[test]
    fn hosts_case_insensitive_without_port() {
        let t = matcher();
        for host in [
            "admin.example",
            "ADMIN.example:8443",
            "admin.example.",
            "Admin.Example:443",
        ] {
            assert_eq!(
                name(&t, host, "GET", "/adm/x"),
                Ok("admin-any".to_owned()),
                "{host}"
            );
        }
        assert_eq!(
            name(&t, "other.example", "GET", "/adm/x"),
            Err(Why::NoRoute)
        );
        // No Host (HTTP/1.0; HTTP/1.1's is `framing`'s 400 first), or an empty one:
        // the host of no route, as Python's matcher reads `""`.
        assert_eq!(name(&t, "", "GET", "/adm/x"), Err(Why::NoRoute));
        let method = Method::GET;
        assert!(matches!(
            t.route(None, &method, "/adm/x"),
            Routed::Defer(Why::NoRoute)
        ));
        assert!(matches!(
            t.route(None, &method, "/api"),
            Routed::Native { route, .. } if route.name == "api"
        ));
        assert_eq!(name(&t, ".", "GET", "/api"), Ok("api".to_owned()));
        // Bytes outside ASCII: no route's host (Python decodes them as latin-1).
        assert_eq!(
            name(&t, "admin.example\u{e9}", "GET", "/adm/x"),
            Err(Why::NoRoute)
        );
        // Whitespace at the ends is stripped as `str.strip()` strips it, NEL and NBSP too.
        for host in [
            &b" admin.example\xa0"[..],
            b"\x85ADMIN.example:8443\t",
            b"\xa0 admin.example.:1 \x85",
            b"admin.example:80\xe9",
        ] {
            let routed = t.route(Some(host), &method, "/adm/x");
            assert!(
                matches!(routed, Routed::Native { route, .. } if route.name == "admin-any"),
                "{host:?}"
            );
        }
        for host in [
            &b"\xe9admin.example"[..],
            b"admin.\xe9xample",
            b"admin.example\x80",
        ] {
            let routed = t.route(Some(host), &method, "/adm/x");
            assert!(matches!(routed, Routed::Defer(Why::NoRoute)), "{host:?}");
        }
        // Not a host name: no route's host, as Python's matcher reads it (its 404 here).
        assert_eq!(
            name(&t, "admin example", "GET", "/adm/x"),
            Err(Why::NoRoute)
        );
    }

    #[test]
    fn host_specific_route_shares_a_prefix() {
        let t = matcher();
        assert_eq!(
            name(&t, "admin.example", "DELETE", "/api/orders"),
            Ok("orders-admin".into())
        );
        assert_eq!(
            name(&t, "admin.example", "GET", "/api/orders"),
            Ok("orders".into())
        );
        assert_eq!(
            name(&t, "public.example", "DELETE", "/api/orders"),
            Err(Why::MethodNotAllowed)
        );
        assert_eq!(
            name(&t, "gw.test", "HEAD", "/api/orders"),
            Ok("orders".into())
        );
        assert_eq!(
            name(&t, "gw.test", "PUT", "/api/orders/1"),
            Err(Why::MethodNotAllowed)
        );
    }

    #[test]
    fn a_prefix_with_routes_for_other_hosts_only_is_passed_over() {
        let t = table(
            vec![
                rule("api", "/api", None, None),
                rule("admin-orders", "/api/orders", None, Some("admin.example")),
            ],
            false,
        );
        assert_eq!(
            name(&t, "admin.example", "GET", "/api/orders/1"),
            Ok("admin-orders".into())
        );
        assert_eq!(
            name(&t, "other.example", "GET", "/api/orders/1"),
            Ok("api".into())
        );
        assert_eq!(
            name(&t, "other.example", "GET", "/api/orders"),
            Ok("api".into())
        );
    }

    #[test]
    fn without_host_routes_the_host_is_not_read() {
        let t = table(vec![rule("api", "/api", None, None)], false);
        assert_eq!(
            name(&t, "caf\u{e9}.example", "GET", "/api"),
            Ok("api".into())
        );
        assert_eq!(name(&t, "", "GET", "/api"), Ok("api".into()));
        assert!(matches!(
            t.route(None, &Method::GET, "/api"),
            Routed::Native { route, .. } if route.name == "api"
        ));
    }

    #[test]
    fn only_a_root_route() {
        let t = table(vec![rule("root", "/", Some(&["GET"]), None)], false);
        assert_eq!(get(&t, "/"), Ok("root".into()));
        assert_eq!(get(&t, "/a/b/c/"), Ok("root".into()));
        assert_eq!(name(&t, "h", "POST", "/a/b"), Err(Why::MethodNotAllowed));
        let none = table(vec![], false);
        assert_eq!(get(&none, "/a/b"), Err(Why::NoRoute));
        assert_eq!(get(&none, "/"), Err(Why::NoRoute));
    }

    #[test]
    fn any_method_is_matched_as_pythons_matcher_matches_it() {
        // `framing` refuses a method that is not an upper-case token before the
        // router (`hygiene::refused`); the matcher itself reads any method.
        let t = matcher();
        assert_eq!(name(&t, "gw.test", "get", "/api"), Ok("api".into()));
        assert_eq!(name(&t, "gw.test", "PROPFIND", "/api"), Ok("api".into()));
        assert_eq!(
            name(&t, "gw.test", &"X".repeat(33), "/api"),
            Ok("api".into())
        );
        assert_eq!(
            name(&t, "gw.test", "get", "/api/orders"),
            Err(Why::MethodNotAllowed)
        );
        assert_eq!(name(&t, "gw.test", "OPTIONS", "/api"), Ok("api".into()));
        // Routed by its own method on a table with preflights too: whether it is
        // one is `preflight::route`'s to tell, from its head.
        let cors = table(vec![rule("api", "/api", Some(&["GET"]), None)], true);
        assert_eq!(
            name(&cors, "gw.test", "OPTIONS", "/api"),
            Err(Why::MethodNotAllowed)
        );
    }

    #[test]
    fn targets_python_rewrites_are_routed_by_their_normal_form() {
        let t = matcher();
        for (target, expected) in [
            ("/api//x", "api"),
            ("//api/orders/1", "orders"),
            ("/api/./orders/../orders/1", "orders"),
            ("/%61pi/%6Frders", "orders"),
            ("/api/x%7e/..", "api"),
            ("/api/orders;v=1/x", "api"),
            ("/x/../api/v2/items", "v2"),
        ] {
            assert_eq!(get(&t, target), Ok(expected.to_owned()), "{target}");
        }
        // Python's 404 for the normal form: a path the gateway matches, not the control plane's.
        assert_eq!(get(&t, "/API//x"), Err(Why::NoRoute));
        assert_eq!(get(&t, "/api;x/orders"), Err(Why::NoRoute)); // `api;x` is not `api`
        assert_eq!(get(&t, "/x/.."), Err(Why::NoRoute));
        assert_eq!(
            name(&t, "gw.test", "PUT", "/api//orders"),
            Err(Why::MethodNotAllowed)
        );
    }

    #[test]
    fn the_apps_dispatch_decides_the_control_planes_paths() {
        let t = table(vec![rule("root", "/", None, None)], false);
        let target = |raw: &'static str| t.target(raw);
        // As sent, once `//` and dot segments are resolved, or once normalised (with `%`).
        for raw in [
            "/admin",
            "//admin/x",
            "/x/../oauth2/token",
            "/../../healthz",
            "/%61dmin",
            "/x/%2e%2e/admin",
            "/oauth2/%2F",
            "/x/../admin/%zz",
        ] {
            assert_eq!(target(raw), Target::Python(Why::Reserved), "{raw}");
        }
        // The gateway's: its normal form, whatever it names (Python's gateway matches it).
        assert_eq!(
            target("/x/%2e%2e/%2e/api?q=%2e"),
            Target::Gateway {
                path: Cow::Borrowed("/api"),
                query: Some("q=%2e")
            }
        );
        assert_eq!(
            target("/a/b/../c?"),
            Target::Gateway {
                path: Cow::Borrowed("/a/c"),
                query: None
            }
        );
        // Refused by the gateway's `match` (no `%`) or the app (a `%`).
        assert_eq!(
            target("/a/../.."),
            Target::Refused {
                detail: crate::paths::refused::ABOVE_ROOT,
                why: Why::InvalidPath
            }
        );
        assert_eq!(
            target("/api/%2Fadmin"),
            Target::Refused {
                detail: crate::paths::refused::ENCODED_SLASH,
                why: Why::AppInvalidPath
            }
        );
        assert_eq!(get(&t, "/api/%2Fadmin"), Err(Why::AppInvalidPath));
        assert_eq!(get(&t, "/a\\b"), Err(Why::InvalidPath));
        // A path without a leading `/`: the gateway's 400 (no reserved prefix reads it).
        for raw in ["*", "http://a/api", "api", ""] {
            assert_eq!(
                target(raw),
                Target::Refused {
                    detail: crate::paths::refused::NO_SLASH,
                    why: Why::InvalidPath
                },
                "{raw}"
            );
        }
        // Bytes outside ASCII: percent-encoded in the path, as sent in the query.
        assert_eq!(
            target("/caf\u{e9}/x?q=\u{e9}"),
            Target::Gateway {
                path: Cow::Borrowed("/caf%C3%A9/x"),
                query: Some("q=\u{e9}")
            }
        );
        assert_eq!(target("/admin/\u{e9}"), Target::Python(Why::Reserved));
        assert_eq!(get(&t, "/x/caf\u{e9}"), Ok("root".into()));
        // What no request the front reads carries.
        for raw in ["/api?a b", "/api?a#b", "/api?\u{1}"] {
            assert_eq!(target(raw), Target::Python(Why::NotClean), "{raw}");
        }
    }

    #[test]
    fn upstream_target_strips_and_rebases() {
        let mut strip = rule("s", "/api/orders", None, None);
        strip["match"]["strip_prefix"] = true.into();
        strip["match"]["upstream_base"] = "/v1".into();
        let mut root = rule("r", "/", None, None);
        root["match"]["strip_prefix"] = true.into();
        let mut keep = rule("k", "/keep", None, None);
        keep["match"]["upstream_base"] = "/base".into();
        let t = table(vec![strip, root, keep], false);
        let upstream = |target: &str| match t.route_upstream(Some(b"h"), &Method::GET, target) {
            Ok((_, upstream_path_and_query)) => upstream_path_and_query,
            Err(why) => panic!("{target}: {why:?}"),
        };
        assert_eq!(upstream("/api/orders/7"), "/v1/7");
        assert_eq!(upstream("/api/orders"), "/v1/");
        assert_eq!(upstream("/api/orders/"), "/v1/");
        assert_eq!(upstream("/api/orders/7?x=1"), "/v1/7?x=1");
        assert_eq!(upstream("/api/orders?"), "/v1/");
        assert_eq!(upstream("/other/x?q"), "/other/x?q");
        assert_eq!(upstream("/keep/x"), "/base/keep/x");
        // The normal form goes upstream, the query as sent.
        assert_eq!(upstream("/api//orders/./7/?x=%2e"), "/v1/7/?x=%2e");
        assert_eq!(upstream("/%61pi/orders"), "/v1/");
        assert_eq!(upstream("/other/%7e/x%3a"), "/other/~/x%3A");
        let native = upstream("/api/orders/7?x=1");
        assert_eq!(native.capacity(), native.len(), "one exact allocation");
    }

    #[test]
    fn host_key_mirrors_normalize_host() {
        let mut buffer = [0u8; MAX_HOST];
        for (host, expected) in [
            ("Example.COM", "example.com"),
            ("example.com:8443", "example.com"),
            ("example.com.", "example.com"),
            ("example.com.:80", "example.com"),
            ("[::1]:8443", "[::1]"),
            ("[::1", "[::1"),
            ("a:b:c", "a:b"),
            ("...", ""),
            ("", ""),
            // Python strips `str.isspace()` at the ends, latin-1's NEL and NBSP too.
            (" a", "a"),
            ("a\t", "a"),
            ("\u{85}A.example.:1\u{a0}", "a.example"),
        ] {
            let bytes: Vec<u8> = host.chars().map(|c| c as u8).collect();
            assert_eq!(host_key(&bytes, &mut buffer), expected, "{host:?}");
        }
        // Not a host name (spaces inside, bytes outside ASCII, too long), yet Python
        // matches it: as no route's host (the routes for any).
        for odd in [
            "a b",
            "api.example.com :443",
            "x\ty:80",
            "[::1 x",
            "caf\u{e9}",
        ] {
            assert_eq!(
                host_key(odd.as_bytes(), &mut buffer),
                NO_ROUTE_HOST,
                "{odd:?}"
            );
        }
        // Longer than the buffer (`_HOST` allows it): read all the same.
        let long = "A.".repeat(MAX_HOST) + "b";
        assert_eq!(host_key(long.as_bytes(), &mut buffer), long.to_lowercase());
        assert_eq!(host_key(b"[::1] x", &mut buffer), "[::1]");
        // A long value whose key is short: read (Python cuts the port first).
        let port = format!("a.example:{}", "9".repeat(300));
        assert_eq!(host_key(port.as_bytes(), &mut buffer), "a.example");
        let t = table(
            vec![
                rule("admin", "/api", None, Some("admin.example")),
                rule("any", "/api", None, None),
            ],
            false,
        );
        assert_eq!(name(&t, "admin.example", "GET", "/api"), Ok("admin".into()));
        assert_eq!(name(&t, "admin.example x", "GET", "/api"), Ok("any".into()));
    }

    proptest! {
        #[test]
        fn never_panics(
            host in prop::option::of(".{0,40}"),
            method in "[A-Za-z!#]{1,10}",
            target in prop_oneof![".{0,60}", "(/[a-z.%;?]{0,4}){0,6}"],
        ) {
            let t = matcher();
            let method = Method::from_bytes(method.as_bytes()).expect("token");
            let _ = t.route(host.as_deref().map(str::as_bytes), &method, &target);
        }

        #[test]
        fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let t = matcher();
            let target = String::from_utf8_lossy(&bytes);
            let _ = t.route(Some(&bytes), &Method::GET, &target);
        }
    }

    /// `cargo test --release --lib -- --ignored --nocapture bench_route`
    /// (best of 10 runs of 200k, in CPU time: the build machines are shared).
    #[test]
    #[ignore = "timing loop, run by hand"]
    fn bench_route() {
        let services = || {
            (0..50).map(|i| {
                let prefix = format!("/svc{i}/v1");
                rule(&format!("r{i}"), &prefix, Some(&["GET", "POST"]), None)
            })
        };
        let plain = table(services().collect(), false);
        let mut with_host: Vec<_> = services().collect();
        with_host.push(rule("api", "/api/orders", None, Some("api.example.com")));
        let with_host = table(with_host, false);
        // CPU time of this thread (ns), not wall time: the machine is shared.
        let on_cpu = || {
            std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u128>().ok())
                .unwrap_or_default()
        };
        let best_ns = |t: &RouteTable, target: &str| {
            let rounds = 200_000u32;
            (0..10)
                .map(|_| {
                    let start = on_cpu();
                    for _ in 0..rounds {
                        let target = std::hint::black_box(target);
                        let routed = t.route(Some(b"API.example.com:8443"), &Method::GET, target);
                        std::hint::black_box(routed);
                    }
                    (on_cpu() - start) / u128::from(rounds)
                })
                .min()
                .unwrap_or_default()
        };
        for (label, t) in [
            ("50 routes", &plain),
            ("50 routes + a host route", &with_host),
        ] {
            for target in [
                "/api/orders/123/items?limit=10",
                "/svc42/v1/users/7",
                "/nothing/here",
            ] {
                let native = matches!(
                    t.route(Some(b"API.example.com:8443"), &Method::GET, target),
                    Routed::Native { .. }
                );
                let ns = best_ns(t, target);
                println!("{label}: {target}: {ns} ns/route (native: {native})");
            }
        }
    }
}
