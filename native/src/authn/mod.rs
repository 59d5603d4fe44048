//! The native `authenticate` step: API keys, JWT access tokens (bastion's
//! own and trusted external issuers'), verified client certificates
//! (`mtls`) and introspected opaque tokens (`introspection`), served only from
//! the caches Python fills ("native only allows").
//!
//! [`authenticate`] returns [`Verdict::Allow`] only when the credential is in
//! a native cache and passes every check Python would make
//! (`bastion.gateway.authn.api_key`, `.jwt`, `bastion.apikeys.service.verify`);
//! any other case — no credential, two credentials, a miss, a refused or
//! expired credential, a token bound to anything but the connection's client
//! certificate (RFC 8705; `mtls::Thumbprint`) — is [`Verdict::Defer`], and
//! Python answers the whole request (and, when it accepts the credential,
//! pushes it into the caches so the next request is native).
//!
//! The refusals rendered natively are an API key Python refuses
//! ([`unadmitted`]: two different keys, one that is not well formed — overlong,
//! non-ASCII — or fails its checksum, a digest Python found no key for, or a
//! cached key revoked, disabled, expired or past its grace): Python's `401
//! invalid_api_key`; a usable key from outside its IP allow-list: its `403
//! api_key_ip_not_allowed`; a token whose cached introspection answer is
//! inactive, two opaque tokens or an overlong or non-ASCII one, a JWT Python
//! refuses whatever it holds (`refusal`), a binding `check_binding` refuses
//! (`binding`): Python's `401 invalid_token`; a request none of the
//! route's methods reads a credential of: Python's `401 unauthenticated`; a
//! key-shaped query on an `api_key` route: Python's `400 api_key_in_query`. An identity
//! `authorize` refuses is told apart ([`admission_with_cert`]): the gateway
//! renders Python's 403 (`crate::refusal::forbidden`).
//!
//! Modules: `api_key` (records, digest, query screen), `jwt` (strict JWS
//! verification with ring), `issuers` (trusted external issuers' tokens, with
//! the key sets Python pushes), `json` (duplicate-free JSON), `cache` (the
//! process-wide caches), `miss` (refused digests, coalesced misses), `mtls`
//! (client-certificate identities by thumbprint), `introspection` (RFC 7662
//! answers by token digest), `refusal` (the JWTs refused whatever Python holds),
//! `binding` (sender-constrained tokens, RFC 8705). Misses are lookups
//! (`crate::lookup`): an API key, a certificate, an introspection answer, a
//! trusted issuer's keys Python would refetch ([`Unadmitted::IssuerMiss`]), an
//! OAuth client's status ([`Unadmitted::ClientMiss`]).

pub mod api_key;
pub mod binding;
pub mod bounded;
pub mod cache;
pub mod introspection;
pub mod issuers;
pub mod json;
pub mod jwt;
pub mod miss;
pub mod mtls;
pub mod refusal;
pub mod session;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, AUTHORIZATION};
use serde::Deserialize;
use serde_json::Value;

pub use api_key::{key_in_query, KeyLimit};
pub use cache::Caches;

use crate::http::Identity;
use crate::mutate::IdentityHeaders;

/// An authentication method the native path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    ApiKey,
    Jwt,
    /// A verified client certificate (`mtls`).
    Mtls,
    /// An opaque token an RFC 7662 endpoint vouched for (`introspection`).
    Introspection,
    /// A browser session of bastion's own login (`session`, the cookie).
    Session,
}

/// The required scopes of a route by request method (`RequiredScopes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Scopes {
    /// Upper-case method → the scopes it needs.
    #[serde(default)]
    pub by_method: BTreeMap<String, Vec<String>>,
    /// The scopes of methods not listed (`"*"`, or the one list); `None`:
    /// unlisted methods are denied.
    #[serde(default)]
    pub default: Option<Vec<String>>,
}

impl Scopes {
    /// The scopes `method` needs (HEAD falls back to GET), or `None` when the
    /// route says nothing for it (denied).
    pub fn for_method(&self, method: &str) -> Option<&[String]> {
        let found = self.by_method.get(method).or_else(|| {
            if method == "HEAD" {
                self.by_method.get("GET")
            } else {
                None
            }
        });
        found.or(self.default.as_ref()).map(Vec::as_slice)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtSection {
    audience: String,
    /// Whether bastion's own tokens are accepted (`self` in `jwt.issuers`).
    #[serde(default = "yes", rename = "self")]
    own: bool,
    /// The trusted external issuers accepted, with their policies.
    #[serde(default)]
    issuers: Vec<issuers::IssuerSection>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    public: bool,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    api_key_header: Option<String>,
    #[serde(default)]
    scopes: Scopes,
    /// `[name, value]` pairs, in the settings' order (Python names the first failing).
    #[serde(default, deserialize_with = "crate::authz::ordered_claims")]
    claims: Vec<(String, Value)>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default = "default_roles_claim")]
    roles_claim: String,
    #[serde(default)]
    jwt: Option<JwtSection>,
}

fn default_roles_claim() -> String {
    "roles".to_owned()
}

/// A route's compiled `auth` section: how it authenticates and authorizes.
#[derive(Debug, Clone)]
pub struct RouteAuth {
    pub public: bool,
    /// The accepted methods, in the order they are tried.
    pub methods: Vec<Method>,
    /// The route's extra API key header (`api_key_header`), lower-cased.
    pub api_key_header: Option<HeaderName>,
    pub scopes: Scopes,
    /// Claims the identity must carry (`RequiredClaims.claims`), in order.
    pub claims: Vec<(String, Value)>,
    pub roles: Vec<String>,
    /// `roles_claim` split on dots.
    pub roles_path: Vec<String>,
    /// The `aud` bastion's tokens must carry here (`jwt.audience`, or the
    /// issuer URL: bastion's default API audience).
    pub audience: Option<String>,
    /// Whether bastion's own tokens are accepted (`jwt.issuers` names `self`).
    pub accepts_own: bool,
    /// The trusted external issuers accepted (`jwt.issuers`), see [`issuers`].
    pub issuers: Vec<issuers::IssuerPolicy>,
}

impl RouteAuth {
    /// Build from the JSON `auth` section `compile/auth.py` wrote.
    pub fn from_section(value: &Value) -> Result<RouteAuth, String> {
        let section: Section =
            serde_json::from_value(value.clone()).map_err(|e| format!("auth section: {e}"))?;
        let mut methods = Vec::new();
        for name in &section.methods {
            let method = match name.as_str() {
                "api_key" => Method::ApiKey,
                "jwt" => Method::Jwt,
                "mtls" => Method::Mtls,
                "introspection" => Method::Introspection,
                "session" => Method::Session,
                other => return Err(format!("auth section: method {other:?} is not native")),
            };
            if methods.contains(&method) {
                return Err(format!("auth section: method {name:?} listed twice"));
            }
            methods.push(method);
        }
        if section.public != methods.is_empty() {
            return Err("auth section: a route is public or lists methods, never both".into());
        }
        let api_key_header = match section.api_key_header {
            None => None,
            Some(name) => Some(
                HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("auth section: bad api_key_header {name:?}"))?,
            ),
        };
        let (audience, accepts_own, issuers) = match section.jwt {
            None => (None, false, Vec::new()),
            Some(jwt) => {
                let issuers = jwt
                    .issuers
                    .into_iter()
                    .map(issuers::IssuerPolicy::from_section)
                    .collect::<Result<Vec<_>, _>>()?;
                (Some(jwt.audience), jwt.own, issuers)
            }
        };
        if methods.contains(&Method::Jwt) && audience.is_none() {
            return Err("auth section: the jwt method needs jwt.audience".into());
        }
        for method in section.scopes.by_method.keys() {
            if method.is_empty() || *method != method.to_ascii_uppercase() {
                return Err(format!(
                    "auth section: scope method {method:?} must be upper-case"
                ));
            }
        }
        Ok(RouteAuth {
            public: section.public,
            methods,
            api_key_header,
            scopes: section.scopes,
            claims: section.claims,
            roles: section.roles,
            roles_path: section.roles_claim.split('.').map(str::to_owned).collect(),
            audience,
            accepts_own,
            issuers,
        })
    }
}

/// What the native `authenticate` step decided.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// The credential is known and usable: this identity acts.
    Allow(Identity),
    /// Not decidable natively: Python handles the whole request.
    Defer,
}

/// What a request presents, split by method (`ApiKeyAuthenticator` /
/// `JwtAuthenticator` extraction, byte for byte).
struct Presented<'h> {
    keys: Vec<&'h [u8]>,
    tokens: Vec<&'h [u8]>,
    /// Every bearer token but an API key (`introspection`'s, dotted or not);
    /// only gathered on a route listing that method.
    opaque: Vec<&'h [u8]>,
}

fn push_unique<'h>(list: &mut Vec<&'h [u8]>, value: &'h [u8]) {
    if !list.contains(&value) {
        list.push(value);
    }
}

fn presented<'h>(route: &RouteAuth, headers: &'h HeaderMap) -> Presented<'h> {
    let mut found = Presented {
        keys: Vec::new(),
        tokens: Vec::new(),
        opaque: Vec::new(),
    };
    let introspects = route.methods.contains(&Method::Introspection);
    for value in headers.get_all(AUTHORIZATION) {
        let value = value.as_bytes();
        if value.len() >= 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
            let token = value[7..].trim_ascii();
            if token.starts_with(api_key::KEY_PREFIX) {
                push_unique(&mut found.keys, token);
            } else if !token.is_empty() {
                if token.contains(&b'.') {
                    push_unique(&mut found.tokens, token);
                }
                if introspects {
                    push_unique(&mut found.opaque, token);
                }
            }
        }
    }
    if let Some(name) = &route.api_key_header {
        if route.methods.contains(&Method::ApiKey) && *name != AUTHORIZATION {
            for value in headers.get_all(name) {
                let token = value.as_bytes().trim_ascii();
                if !token.is_empty() {
                    push_unique(&mut found.keys, token);
                }
            }
        }
    }
    found
}

/// Authenticate a request with its query string: a key-shaped query on a
/// route accepting API keys is refused by Python (400), so it is deferred.
/// This is the entry point the gateway calls.
///
/// `client` is the client address through trusted proxies
/// (`crate::client_ip::client_ip`); `None` serves no key with an IP allow-list.
pub fn authenticate_request(
    caches: &Caches,
    route: &RouteAuth,
    query: Option<&str>,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    now: f64,
) -> Verdict {
    verdict(find_request(
        caches, route, query, headers, client, None, now,
    ))
}

fn verdict(found: Option<Found>) -> Verdict {
    match found {
        Some(found) if found.claims.is_ok() => Verdict::Allow(found.identity),
        _ => Verdict::Defer,
    }
}

/// What vouched for a request: the identity, an API key's own limits, and
/// whether its claims meet the route's `claims` / `roles` (checked here,
/// where the claims are at hand; Python checks them after the scopes).
struct Found {
    identity: Identity,
    key_limits: Arc<[KeyLimit]>,
    claims: Result<(), crate::authz::Refusal>,
    /// The identity's headers as its cache entry keeps them encoded
    /// (`None`: the proxy encodes them per request).
    headers: Option<Arc<IdentityHeaders>>,
}

#[allow(clippy::too_many_arguments)]
fn find_request(
    caches: &Caches,
    route: &RouteAuth,
    query: Option<&str>,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    cert: Option<&mtls::Thumbprint>,
    now: f64,
) -> Option<Found> {
    if !route.public
        && route.methods.contains(&Method::ApiKey)
        && query.is_some_and(|q| key_in_query(q.as_bytes()))
    {
        return None;
    }
    find(caches, route, headers, client, cert, now)
}

/// Authenticate from the headers alone (the query screen is
/// [`authenticate_request`]'s; no client address: keys with an IP allow-list
/// defer). `now` is Unix seconds.
pub fn authenticate(caches: &Caches, route: &RouteAuth, headers: &HeaderMap, now: f64) -> Verdict {
    verdict(find(caches, route, headers, None, None, now))
}

fn find(
    caches: &Caches,
    route: &RouteAuth,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    cert: Option<&mtls::Thumbprint>,
    now: f64,
) -> Option<Found> {
    if route.public {
        return Some(Found {
            identity: Identity {
                method: "public",
                ..Identity::default()
            },
            key_limits: Arc::from([]),
            claims: Ok(()),
            headers: None,
        });
    }
    let found = presented(route, headers);
    for method in &route.methods {
        match method {
            Method::ApiKey if !found.keys.is_empty() => {
                return api_key_verdict(caches, route, &found.keys, client, now)
            }
            Method::Jwt if !found.tokens.is_empty() => {
                return jwt_verdict(caches, route, &found.tokens, cert, now)
            }
            Method::Mtls => {
                if let Some(cert) = cert {
                    return mtls_verdict(route, cert);
                }
            }
            Method::Introspection if !found.opaque.is_empty() => {
                return introspection_verdict(route, &found.opaque, cert, now)
            }
            Method::Session => match session::presented(headers) {
                session::Presented::Absent => {}
                session::Presented::Id(id) => return session_verdict(route, id, now),
                session::Presented::Unusable(_) => return None,
            },
            _ => {}
        }
    }
    // No method is responsible: Python's 401.
    None
}

/// The live session whose id the cookie holds (a miss, a refused or ended
/// one: not admitted); a use moves its idle end. Its user's claims meet the
/// route's `claims` / `roles`.
fn session_verdict(route: &RouteAuth, id: &[u8], now: f64) -> Option<Found> {
    let record = session::sessions().use_at(&session::digest(id), now)?;
    Some(Found {
        identity: record.identity.clone(),
        key_limits: Arc::from([]),
        claims: crate::authz::claims_check(route, &record.claims),
        headers: None,
    })
}

/// The identity Python derived for this certificate (a miss defers: Python
/// derives it and pushes it). Its claims meet the route's `claims` / `roles`.
fn mtls_verdict(route: &RouteAuth, cert: &mtls::Thumbprint) -> Option<Found> {
    let entry = mtls::certs().get(cert)?;
    Some(Found {
        identity: entry.identity.clone(),
        key_limits: Arc::from([]),
        claims: crate::authz::claims_check(route, &entry.claims),
        headers: None,
    })
}

/// The answer Python's introspection cache holds for this token (a miss,
/// an inactive answer: not admitted). Its claims meet the route's `claims` /
/// `roles`; a sender-constrained one (`cnf`) only as Python's `check_binding`
/// allows it (`binding`: bound to the connection's certificate `cert`).
fn introspection_verdict(
    route: &RouteAuth,
    tokens: &[&[u8]],
    cert: Option<&mtls::Thumbprint>,
    now: f64,
) -> Option<Found> {
    let token = introspection::lookup_token(tokens)?;
    let answer = introspection::cache().get(&cache::token_digest(token), now)?;
    let introspection::Answer::Active { identity, claims } = &*answer else {
        return None;
    };
    binding::check(claims.get("cnf"), cert).ok()?;
    Some(Found {
        identity: identity.clone(),
        key_limits: Arc::from([]),
        claims: crate::authz::claims_check(route, claims),
        headers: None,
    })
}

fn api_key_verdict(
    caches: &Caches,
    route: &RouteAuth,
    keys: &[&[u8]],
    client: Option<IpAddr>,
    now: f64,
) -> Option<Found> {
    // Two different keys: Python's 401 malformed.
    let [key] = keys else {
        return None;
    };
    if key.len() > api_key::MAX_API_KEY_LENGTH || !key.is_ascii() {
        return None;
    }
    let entry = caches.api_key_get(&caches.api_key_digest(key))?;
    if !entry.usable(now, client) {
        return None;
    }
    entry.touch(now);
    // The key identity's claims: its `key_id` and `key_prefix` (`identity_of_key`).
    let claims = crate::authz::claims_check(route, &entry.claims);
    Some(Found {
        identity: entry.identity.clone(),
        key_limits: entry.limits.clone(),
        claims,
        headers: Some(entry.headers.get(&entry.identity)),
    })
}

fn jwt_verdict(
    caches: &Caches,
    route: &RouteAuth,
    tokens: &[&[u8]],
    cert: Option<&mtls::Thumbprint>,
    now: f64,
) -> Option<Found> {
    let [token] = tokens else {
        return None;
    };
    let audience = route.audience.as_deref()?;
    if !token.is_ascii() {
        return None;
    }
    let entry = match caches.token_get(&cache::token_digest(token), now) {
        Some(entry) => entry,
        None => {
            // Not cached: verified natively only where Python allowed it.
            let Ok(text) = std::str::from_utf8(token) else {
                return None;
            };
            if route.issuers.is_empty() {
                caches.token_verify_miss(text, now)?
            } else {
                match issuers::verify_miss(caches, &route.issuers, text, now) {
                    issuers::Miss::External(entry) => entry?,
                    issuers::Miss::NotExternal => caches.token_verify_miss(text, now)?,
                }
            }
        }
    };
    // The issuer must be one the route accepts (else Python's `wrong_issuer`),
    // and `aud` the route's audience for that issuer.
    let audience_ok = match entry.issuer.as_deref() {
        None => route.accepts_own && jwt::audience_matches(entry.claims.get("aud"), audience),
        Some(iss) => issuers::policy_for(&route.issuers, iss)
            .is_some_and(|policy| policy.audience_ok(entry.claims.get("aud"))),
    };
    if !audience_ok {
        return None;
    }
    // RFC 8705 §3: a certificate-bound token only with its certificate (else
    // Python's 401 cnf_mismatch). The thumbprint is public: no secret compared.
    if entry.bound.is_some() && entry.bound.as_ref() != cert {
        return None;
    }
    Some(Found {
        identity: entry.identity.clone(),
        key_limits: entry.key_limits.clone(),
        claims: crate::authz::claims_check(route, &entry.claims),
        headers: Some(entry.headers.get(&entry.identity)),
    })
}

/// The request headers that carried the credential `identity` was
/// established from: the gateway strips them before proxying (Python's
/// `Exchange.credential_headers`), so an upstream never sees the client's key
/// or token.
pub fn credential_headers(
    route: &RouteAuth,
    identity: &Identity,
    headers: &HeaderMap,
) -> Vec<HeaderName> {
    let found = presented(route, headers);
    let mut carriers = Vec::new();
    match identity.method {
        "api_key" => {
            let bearer_key = headers.get_all(AUTHORIZATION).iter().any(|v| {
                let v = v.as_bytes();
                v.len() >= 7
                    && v[..7].eq_ignore_ascii_case(b"bearer ")
                    && v[7..].trim_ascii().starts_with(api_key::KEY_PREFIX)
            });
            if bearer_key {
                carriers.push(AUTHORIZATION);
            }
            if let Some(name) = &route.api_key_header {
                let used = headers
                    .get_all(name)
                    .iter()
                    .any(|v| !v.as_bytes().trim_ascii().is_empty());
                if used && *name != AUTHORIZATION {
                    carriers.push(name.clone());
                }
            }
        }
        "jwt" if !found.tokens.is_empty() => carriers.push(AUTHORIZATION),
        "introspection" if !found.opaque.is_empty() => carriers.push(AUTHORIZATION),
        _ => {}
    }
    carriers
}

/// Unix time now, in seconds (what [`admit`] and the caches compare against).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A request the native path may serve: who it acts for, and the headers that
/// carried the credential (stripped before proxying).
#[derive(Debug, Clone)]
pub struct Admitted {
    pub identity: Identity,
    pub credential_headers: Vec<HeaderName>,
    /// An API key's own limits (empty otherwise), which the native `limit`
    /// step applies with the route's, in the buckets Python's limiter uses.
    pub key_limits: Arc<[KeyLimit]>,
    /// The identity's headers encoded once with its cache entry (`None`:
    /// encoded per request), for `mutate` (`ForwardContext::identity_headers`).
    pub identity_headers: Option<Arc<IdentityHeaders>>,
}

/// The native `authenticate` + `authorize` steps for one request on a native
/// route: `Some` when the native path serves it, `None` to defer to Python
/// (which then renders any 400/401/403 itself).
#[allow(clippy::too_many_arguments)]
pub fn admit(
    caches: &Caches,
    route: &RouteAuth,
    route_name: &str,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    now: f64,
) -> Option<Admitted> {
    admit_with_cert(
        caches, route, route_name, method, uri, headers, client, None, now,
    )
}

/// [`admit`] for a connection that presented the verified client certificate
/// `cert` (its SHA-256 thumbprint, [`mtls::leaf_thumbprint`]): the `mtls`
/// method is responsible where the route lists it before any method whose
/// credential the request carries.
#[allow(clippy::too_many_arguments)]
pub fn admit_with_cert(
    caches: &Caches,
    route: &RouteAuth,
    route_name: &str,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    cert: Option<&mtls::Thumbprint>,
    now: f64,
) -> Option<Admitted> {
    match admission_with_cert(
        caches, route, route_name, method, uri, headers, client, cert, now,
    ) {
        Admission::Admitted(admitted) => Some(admitted),
        Admission::Forbidden { .. } | Admission::NotAdmitted => None,
    }
}

/// What [`admission_with_cert`] decided.
#[derive(Debug, Clone)]
pub enum Admission {
    /// Authenticated and authorized: the native path serves it.
    Admitted(Admitted),
    /// Authenticated (`identity`), and `authorize` refuses: Python's 403.
    Forbidden {
        identity: Identity,
        refusal: crate::authz::Refusal,
    },
    /// Not authenticated natively ([`unadmitted_with_cert`] says why).
    NotAdmitted,
}

/// [`admit_with_cert`], telling an `authorize` refusal apart: Python's order,
/// the route list and the method's scopes (`check_access`), then the claims
/// and roles (`RequiredClaims.check`).
#[allow(clippy::too_many_arguments)]
pub fn admission_with_cert(
    caches: &Caches,
    route: &RouteAuth,
    route_name: &str,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    cert: Option<&mtls::Thumbprint>,
    now: f64,
) -> Admission {
    let Some(Found {
        identity,
        key_limits,
        claims,
        headers: identity_headers,
    }) = find_request(caches, route, uri.query(), headers, client, cert, now)
    else {
        return Admission::NotAdmitted;
    };
    if let Err(refusal) = crate::authz::check(route, &identity, method, route_name).and(claims) {
        return Admission::Forbidden { identity, refusal };
    }
    let credential_headers = credential_headers(route, &identity, headers);
    Admission::Admitted(Admitted {
        identity,
        credential_headers,
        key_limits,
        identity_headers,
    })
}

/// Why [`admit`] did not admit a request, where the native path can still act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unadmitted {
    /// The responsible method is `api_key` and Python refuses that key whatever
    /// the request: its `401 invalid_api_key` is rendered natively.
    Refused,
    /// The responsible method is `api_key`, its key is usable, and its IP
    /// allow-list does not hold the client's address: Python's `403
    /// api_key_ip_not_allowed`, rendered natively.
    KeyIpNotAllowed,
    /// The responsible method is `api_key` and its key (this digest) is not
    /// cached: Python looks it up (concurrent misses coalesce).
    Miss([u8; 32]),
    /// The responsible method is `mtls` and the certificate (this thumbprint)
    /// has no cached identity: Python derives it (concurrent misses coalesce).
    CertMiss(mtls::Thumbprint),
    /// The responsible method is `introspection` and Python's cache holds an
    /// inactive answer for the token: its `401 invalid_token` is rendered natively.
    InactiveToken,
    /// The responsible method is `introspection` and the token (this digest)
    /// has no cached answer: Python asks the endpoint (concurrent misses coalesce).
    TokenMiss([u8; 32]),
    /// The responsible method is `jwt`, the token names a trusted issuer of
    /// the route, and Python would fetch that issuer's keys before judging it
    /// (none pushed; stale, or lacking the token's string `kid`, while Python
    /// may fetch again): a lookup asks Python to refresh them
    /// ([`issuers::refetch`]; concurrent ones share it).
    IssuerMiss {
        issuer: Arc<str>,
        kid: Option<String>,
    },
    /// The responsible method is `jwt`, and the token — one of bastion's own,
    /// valid natively — is of an OAuth client whose status the native core
    /// does not hold: a lookup asks Python (`client_is_active`, a database
    /// read), which pushes it ([`refusal::client_unknown`]).
    ClientMiss(String),
    /// The responsible method is `jwt`, and the token — one of bastion's own,
    /// not cached — names a `kid` the pushed signing keys lack (a key made or
    /// activated since): a lookup asks Python, which pushes its keys if they
    /// hold it ([`refusal::own_kid_unknown`]); else its 401 `unknown_kid`.
    SigningKeyMiss(String),
    /// The responsible method is `jwt`, and the token — one of bastion's own,
    /// valid natively — was exchanged from an API key (RFC 8693), not cached:
    /// Python judges it as that key ([`refusal::exchanged`]; a lookup of the
    /// token for the route's audience), and pushes it if it accepts it.
    ExchangedMiss,
    /// The responsible method is `jwt` and Python refuses the token whatever
    /// it holds ([`refusal::jwt_refusal`]; the reason Python records on its
    /// error): its `401 invalid_token` is rendered natively.
    InvalidToken(&'static str),
    /// No method of the route reads a credential of the request: Python's
    /// `401 unauthenticated`, rendered natively.
    Unauthenticated,
    /// The route lists `session`, and the request has no usable session: no
    /// credential any method reads, a session cookie that is unusable
    /// (duplicate, overlong, malformed: the reason), or one Python refused or
    /// that ended. A navigation goes to the login, a script gets `401
    /// session_required` (`session::refusal`).
    NoSession(&'static str),
    /// The responsible method is `session` and the id (this digest) has no
    /// cached answer: Python looks the session up (concurrent misses coalesce).
    SessionMiss([u8; 32]),
    /// A key-shaped query string on a route accepting API keys: Python's
    /// screen refuses it (`400 api_key_in_query`) before any method runs.
    KeyInQuery,
    /// The cache changed between admission and this classification (an
    /// answer pushed or evicted meanwhile): decide again.
    Again,
    /// The responsible method is `jwt`, and no token may be trusted natively
    /// now: Python does not follow every invalidation channel (start-up before
    /// its subscriptions, a lost one: a revocation may be missing here), or has
    /// not turned native verification of uncached tokens on. Never an allow:
    /// the native `503 service_unavailable` (`Retry-After: 1`), as a lost lookup.
    TokensUnfollowed,
}

/// Classify a request [`admit`] returned `None` for (see [`Unadmitted`]). The
/// same screen and method order as [`admit`]: a key-shaped query is Python's
/// 400, and the first method with a credential is the one responsible.
pub fn unadmitted(
    caches: &Caches,
    route: &RouteAuth,
    query: Option<&str>,
    headers: &HeaderMap,
    now: f64,
) -> Unadmitted {
    unadmitted_with_cert(caches, route, query, headers, None, now)
}

/// [`unadmitted`] for a connection with the client certificate `cert`: where
/// `mtls` comes first, a certificate without a cached identity is a
/// [`Unadmitted::CertMiss`] (Python derives it), never a native refusal of a
/// key the certificate makes moot.
pub fn unadmitted_with_cert(
    caches: &Caches,
    route: &RouteAuth,
    query: Option<&str>,
    headers: &HeaderMap,
    cert: Option<&mtls::Thumbprint>,
    now: f64,
) -> Unadmitted {
    unadmitted_from(caches, route, query, headers, None, cert, now)
}

/// [`unadmitted_with_cert`] for a request from the client address `client`
/// (through trusted proxies; `None`: unknown), which a key's IP allow-list judges.
pub fn unadmitted_from(
    caches: &Caches,
    route: &RouteAuth,
    query: Option<&str>,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    cert: Option<&mtls::Thumbprint>,
    now: f64,
) -> Unadmitted {
    if route.public {
        // `admit` admits anyone on a public route: only a table swapped meanwhile.
        return Unadmitted::Again;
    }
    if route.methods.contains(&Method::ApiKey) && query.is_some_and(|q| key_in_query(q.as_bytes()))
    {
        return Unadmitted::KeyInQuery;
    }
    let found = presented(route, headers);
    for method in &route.methods {
        match method {
            Method::ApiKey if !found.keys.is_empty() => {
                return key_state(caches, &found.keys, client, now)
            }
            Method::Jwt if !found.tokens.is_empty() => {
                if let Some((issuer, kid)) =
                    issuers::refetch(caches, &route.issuers, &found.tokens, now)
                {
                    return Unadmitted::IssuerMiss { issuer, kid };
                }
                if let Some(kid) = refusal::own_kid_unknown(caches, route, &found.tokens, now) {
                    return Unadmitted::SigningKeyMiss(kid);
                }
                if let Some(reason) = refusal::jwt_refusal(caches, route, &found.tokens, cert, now)
                {
                    return Unadmitted::InvalidToken(reason);
                }
                if let Some(client) =
                    refusal::client_unknown(caches, route, &found.tokens, cert, now)
                {
                    return Unadmitted::ClientMiss(client);
                }
                if refusal::exchanged(caches, route, &found.tokens, now) {
                    return Unadmitted::ExchangedMiss;
                }
                // Neither admitted, refused nor a lookup: a cached token (or one the
                // native verifier may judge) changed under this decision: decide
                // again; otherwise no token may be trusted natively now.
                let cached = match found.tokens.as_slice() {
                    [token] => caches.token_get(&cache::token_digest(token), now).is_some(),
                    _ => false,
                };
                return match cached || caches.misses_verifiable() {
                    true => Unadmitted::Again,
                    false => Unadmitted::TokensUnfollowed,
                };
            }
            Method::Mtls => {
                if let Some(cert) = cert {
                    // Cached, yet not admitted: only when pushed or evicted meanwhile
                    // (claims and scopes are `authorize`'s 403, `Admission::Forbidden`).
                    return match mtls::certs().get(cert) {
                        Some(_) => Unadmitted::Again,
                        None => Unadmitted::CertMiss(*cert),
                    };
                }
            }
            Method::Introspection if !found.opaque.is_empty() => {
                return token_state(&found.opaque, cert, now)
            }
            Method::Session => match session::presented(headers) {
                session::Presented::Absent => {}
                session::Presented::Id(id) => return session_state(id, now),
                session::Presented::Unusable(reason) => return Unadmitted::NoSession(reason),
            },
            _ => {}
        }
    }
    if route.methods.contains(&Method::Session) {
        // A browser route: the login (or `401 session_required`), not a bearer challenge.
        return Unadmitted::NoSession("absent");
    }
    // No method is responsible (each reads exactly what Python's reads).
    Unadmitted::Unauthenticated
}

fn session_state(id: &[u8], now: f64) -> Unadmitted {
    let digest = session::digest(id);
    let sessions = session::sessions();
    if sessions.get(&digest, now).is_some() {
        // Live, yet not admitted: pushed meanwhile (claims are `authorize`'s 403).
        return Unadmitted::Again;
    }
    if sessions.refused(&digest, now) {
        return Unadmitted::NoSession("unknown");
    }
    Unadmitted::SessionMiss(digest)
}

/// The credential a native miss of `method` looks up (`crate::lookup`): the
/// one API key or opaque token the request presents, as [`unadmitted`] read
/// it; `None` for any other method.
pub fn lookup_credential<'h>(
    route: &RouteAuth,
    headers: &'h HeaderMap,
    method: Method,
) -> Option<&'h [u8]> {
    let found = presented(route, headers);
    match method {
        Method::ApiKey => match found.keys.as_slice() {
            [key] => Some(*key),
            _ => None,
        },
        Method::Introspection => introspection::lookup_token(&found.opaque),
        Method::Jwt => match found.tokens.as_slice() {
            [token] => Some(*token),
            _ => None,
        },
        _ => None,
    }
}

fn token_state(tokens: &[&[u8]], cert: Option<&mtls::Thumbprint>, now: f64) -> Unadmitted {
    // Two tokens (which one would act?), an overlong or non-ASCII one: Python's
    // `IntrospectionAuthenticator` refuses them before any lookup.
    let Some(token) = introspection::lookup_token(tokens) else {
        return Unadmitted::InvalidToken(introspection::unread_reason(tokens));
    };
    let digest = cache::token_digest(token);
    match introspection::cache().get(&digest, now).as_deref() {
        Some(introspection::Answer::Inactive) => Unadmitted::InactiveToken,
        // Cached and active, yet not admitted: a binding `check_binding` refuses
        // (its 401); claims and scopes are `authorize`'s 403 (`Admission::Forbidden`).
        Some(introspection::Answer::Active { claims, .. }) => {
            match binding::check(claims.get("cnf"), cert) {
                Err(reason) => Unadmitted::InvalidToken(reason),
                // Pushed or evicted meanwhile: read again.
                Ok(()) => Unadmitted::Again,
            }
        }
        None => Unadmitted::TokenMiss(digest),
    }
}

fn key_state(caches: &Caches, keys: &[&[u8]], client: Option<IpAddr>, now: f64) -> Unadmitted {
    // Two different keys: Python's `malformed` before reading either (which one
    // would act?).
    let [key] = keys else {
        return Unadmitted::Refused;
    };
    // Python's `parse_api_key` before any lookup: a key that is not well formed —
    // overlong, non-ASCII (no stored key's digest can match it), another shape, a
    // bad checksum — is refused whatever the request (made-up keys never reach Python).
    if !api_key::well_formed(key) {
        return Unadmitted::Refused;
    }
    let digest = caches.api_key_digest(key);
    // Python's order: its fresh record first, then its "no such key".
    match caches.api_key_get(&digest) {
        Some(entry) if now < entry.fresh_until => match entry.refusal(now) {
            Some(_) => Unadmitted::Refused,
            // Usable, but not from this address (no address, or an allow-list that
            // does not parse, admits none): Python's 403, after the key's state.
            None if !entry.admits(client) => Unadmitted::KeyIpNotAllowed,
            // Usable: admitted, unless the entry was replaced meanwhile.
            None => Unadmitted::Again,
        },
        _ if caches.api_key_refused(&digest, now) => Unadmitted::Refused,
        _ => Unadmitted::Miss(digest),
    }
}

#[cfg(test)]
mod tests;
