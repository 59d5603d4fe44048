//! The native gateway: one request through the steps of
//! `bastion.gateway.pipeline.STEPS`, or a `Defer` to the Python control plane.
//!
//! | step | native | deferred to Python when |
//! |---|---|---|
//! | trace | `tracing::begin` / `Traced::end` (the sampling decision, bastion's `traceparent`; a sampled answer's span record) | — (a deferred request gets the client's trace headers back) |
//! | forward_auth (`/auth/verify` only) | `forward_auth::verify` (the judged request from the trusted proxy's headers) | the caller is not a trusted proxy, the headers are ambiguous, missing or unreadable, HTTP/2, a body |
//! | framing | `hygiene::takes` | the head is anything but plainly fine |
//! | match | `RouteTable::route`; Python's refusals where the router tells them exactly (`refusal::unmatched`, gateway door: 404 `route_not_found`, 405 `method_not_allowed` + `Allow`, 400 `invalid_path` of a path without `%`); an upgrade to a route without `websocket`: 403 `websocket_not_allowed` | the target is not normal (and not refused as above), a control-plane path, route not native |
//! | ip | `ip_rules::IpRules::admits` (a refused address: Python's 403 `ip_not_allowed`) | a forwarded hop is not a plain address; a preflight from a refused address |
//! | cors | `cors::preflight` (a preflight: 204, or 403 `cors_origin_not_allowed`), `cors::actual` (403 `cors_origin_not_allowed`; the CORS headers of every response) | a preflight refused for its method or headers, or not plain tokens; a preflight to a route without CORS |
//! | body | `hygiene::takes`; a declared length over `max_body` (up to 64 KiB, what the connection drains): 413 `body_too_large`; a body of unknown length (`Transfer-Encoding: chunked`, HTTP/2 without length: `hygiene::takes_streamed`) counted as it streams, `body_limit` (past `max_body`: Python's 413 `body_too_large`, step `proxy`) | CL with TE, other codings; a declared length over `max_body` and 64 KiB |
//! | authenticate | `authn::admit_with_cert` (cached keys; verified tokens: bastion's own and trusted issuers' with their pushed keys, `authn::issuers`, a certificate-bound one only with its certificate; client-certificate identities by thumbprint; introspection answers Python cached, `authn::introspection`); a key Python refuses, a token it found inactive, a certificate it cannot read, a JWT it refuses whatever it holds (`authn::refusal`): its 401; no credential a method reads: its 401 `unauthenticated`; a key in the query: its 400; a miss: a control-plane lookup of the record (`lookup`, concurrent misses of one credential wait for it), then on natively; a failed lookup: Python's 503 | the lookup is lost (no hook, no answer within `MISS_WAIT`), an issuer's `kid` is not pushed or its set is stale, or not usable |
//! | authorize | `authz::check` + `authz::claims_check` (`authn::admission_with_cert`); a refusal: its 403 (`refusal::forbidden`: `insufficient_scope`, `route_not_allowed`, `forbidden`, `missing_role`, `claim_mismatch`) | several required claims fail, a scope that is not printable ASCII |
//! | limit | `limit::step_tightened` (GCRA store shared with Python, or Redis, `rediss://` over TLS: `limit::redis_tls`); a risk-flagged requester's limits divided by its factor (`risk`); Redis unreachable: each limit's `fail` (`limit::outage`: 503 `rate_limiter_unavailable`, or this node's share in the local store) | a tightened limit cannot be built, Redis and the local GCRA disagree |
//! | mutate | `mutate::forward_headers`, `assertion` (signed with the pushed current key) | the route sends an assertion and no signing key is held |
//! | proxy | `Upstream::forward`, within `limit::shedding` (AIMD slot per route upstream); a WebSocket upgrade: `websocket::open` (upstream handshake, 101, frames relayed with the route's size / idle / duration limits) | an upgrade that is not a plain RFC 6455 handshake, or to a route without `websocket` (a failure is rendered: 502/503/504; a shed request: 503 `overloaded`) |
//!
//! `decide` runs the steps from match to limit for both doors: the gateway
//! (then mutate and proxy here) and forward-auth (`forward_auth::verify`:
//! `/auth/verify`, the judged request read from the proxy's headers, without
//! cors, body and mutate, answered 200 with the identity headers).
//!
//! Natively produced answers are only the upstream's own, a 429, the
//! limiter outage's 503, a streamed body's 413, the upstream failures, a
//! shed request's 503, the 403 of a client address the route's IP rules
//! refuse, the 401 of an API key Python refuses (malformed,
//! unknown, revoked, disabled, expired), the 401 `invalid_token` of a token
//! whose cached introspection answer is inactive, of a client certificate
//! Python cannot read or of a JWT refused whatever Python holds
//! (`authn::refusal`), the 401 `unauthenticated` of a request no method reads
//! a credential of, the 400 `api_key_in_query`, the 503 of a failed lookup
//! (`database_unavailable`, `introspection_unavailable`), a CORS preflight's 204 and the 403
//! `cors_origin_not_allowed`, a WebSocket upgrade's 101 (`websocket`), and the
//! refusals of match, body and authorize (`refusal`: 404, 405, 400
//! `invalid_path`, 413, the 403s); every other refusal is Python's, which renders it.
//! Each native decision is audited (`audit::queue`) and metered.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderName, HeaderValue, USER_AGENT};
use http::{Request, Response, Version};
use http_body::Body as _;

use crate::audit::{self, AuditEvent, Door};
use crate::authn::miss::{Lead, Miss, MISS_WAIT};
use crate::authn::{self, Admission, Admitted, Unadmitted};
use crate::client_ip::{client_ip, ip_bucket};
use crate::cors::{self, CorsHeaders};
use crate::http::{Body, ConnInfo, Identity, Outcome};
use crate::hygiene;
use crate::ip_rules;
use crate::limit::{self, effective_key_limits, LimitDefer};
use crate::lookup::{self, Kind, Led};
use crate::mutate::ForwardContext;
use crate::plane::plane;
use crate::problem::Problem;
use crate::respond;
use crate::risk::RiskKind;
use crate::router::{Routed, Why};
use crate::table::{NativeRoute, Table};
use crate::upstream::UpstreamError;

/// The request's host as the router reads it: the `Host` header, or the
/// HTTP/2 authority.
pub(crate) fn host_of(req: &Request<Body>) -> Option<&str> {
    match req.headers().get(http::header::HOST) {
        Some(value) => value.to_str().ok(),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// The parts of a request head the decision steps read (`Sync`, unlike the
/// body, so a decision may hold it across its awaits).
#[derive(Clone, Copy)]
pub(crate) struct Head<'r> {
    pub method: &'r http::Method,
    pub uri: &'r http::Uri,
    pub version: Version,
    pub headers: &'r http::HeaderMap,
    /// The body's end-of-stream flag as known before reading it.
    pub body_empty: bool,
}

impl<'r> Head<'r> {
    pub(crate) fn of(req: &'r Request<Body>) -> Self {
        Head {
            method: req.method(),
            uri: req.uri(),
            version: req.version(),
            headers: req.headers(),
            body_empty: req.body().is_end_stream(),
        }
    }

    /// The host as [`host_of`] reads it.
    fn host(&self) -> Option<&'r str> {
        match self.headers.get(http::header::HOST) {
            Some(value) => value.to_str().ok(),
            None => self.uri.authority().map(|a| a.as_str()),
        }
    }
}

/// Decide one request, traced when tracing is on (`tracing::begin`). Never
/// fails: anything unexpected is a `Defer`.
pub async fn handle(mut req: Request<Body>, conn: &ConnInfo) -> Outcome {
    match crate::tracing::begin(&mut req, conn) {
        None => serve(req, conn).await,
        Some(traced) => traced.end(serve(req, conn).await),
    }
}

/// Serve one request: forward-auth's door, a preflight, or the gateway's.
async fn serve(req: Request<Body>, conn: &ConnInfo) -> Outcome {
    let Some(table) = plane().table.load_full() else {
        return Outcome::Defer(req);
    };
    // An absolute-form target (a proxy request) is Python's to judge.
    if req.version() != Version::HTTP_2 && req.uri().scheme().is_some() {
        return Outcome::Defer(req);
    }
    // The forward-auth door (`/auth/verify`): the same decision, answered without proxying.
    if crate::forward_auth::asks(&req) {
        return crate::forward_auth::verify(req, conn, &table).await;
    }
    // A CORS preflight is matched by the method it asks for (`cors::preflight`).
    if req.method() == http::Method::OPTIONS && table.routes.matching.preflight {
        return cors::preflight(req, conn, &table);
    }
    // A WebSocket upgrade (`websocket.rs`): a plain handshake, decided through its
    // own door (`decide` defers it for a route that takes none); any other upgrade
    // is Python's.
    let upgrade = if crate::websocket::asks_upgrade(&req) {
        match crate::websocket::handshake(&req) {
            Some(handshake) => Some(handshake),
            None => return Outcome::Defer(req),
        }
    } else {
        None
    };
    let door = if upgrade.is_some() {
        Door::WebSocket
    } else {
        Door::Gateway
    };
    let Allowed {
        route,
        native,
        ip,
        cors,
        identity,
        credential_headers,
        signer,
        decision,
        started,
        request_id,
    } = match decide(Head::of(&req), conn, &table, door).await {
        Decided::Allow(allowed) => *allowed,
        Decided::Respond(response) => return Outcome::Respond(response),
        Decided::Defer(lead) => return defer(req, lead),
    };
    let assertion = native.upstream.mutate().assertion();
    let rid = request_id.to_str().unwrap_or("-");
    let https = conn.tls;
    // What a denial's audit event needs once the request has gone upstream.
    let head = DeniedHead::of(&req).through(door);
    let token = match (assertion, signer) {
        (Some(config), Some(key)) => {
            match key.assertion(config, &identity, &route.name, Some(rid), authn::unix_now()) {
                Some(token) => Some(token),
                None => {
                    // Only a failing system random source gets here.
                    let problem = Problem::service_unavailable(None);
                    head.denied(&route.name, &identity, ip, rid, &problem, "mutate", started);
                    let mut response = problem.into_response(rid);
                    respond::decorate(response.headers_mut(), https, &request_id);
                    return Outcome::Respond(response);
                }
            }
        }
        _ => None,
    };
    let path = req.uri().path().to_owned();
    let ctx = ForwardContext {
        conn,
        trusted_peer: !table.trusted.is_empty() && table.trusted.contains(conn.peer.ip()),
        request_id: Some(rid),
        consumed: &credential_headers,
        authority: None,
        assertion: token.as_deref(),
    };
    let who = (identity.subject.is_some()).then_some(&identity);
    if let (Some(handshake), Some(policy)) = (upgrade, native.websocket) {
        // In place of the proxy step (no shedding slot: Python's relay takes none). An
        // allowed upgrade is metered and counted when the connection ends, as Python's
        // runner does (its proxy step is the relay).
        let (name, whom) = (route.name.clone(), identity.clone());
        let ended = move || allowed(&name, &whom, started);
        let opened = crate::websocket::open(
            req,
            handshake,
            &native.upstream,
            &path,
            who,
            &ctx,
            policy,
            ended,
        );
        let mut response = match opened.await {
            Ok(response) => response,
            Err(mut problem) => {
                if let Some(cors) = &cors {
                    cors.add_to(&mut problem.headers);
                }
                head.denied(&route.name, &identity, ip, rid, &problem, "proxy", started);
                problem.into_response(rid)
            }
        };
        respond::decorate(response.headers_mut(), https, &request_id);
        return Outcome::Respond(response);
    }
    // A body of unknown length is counted against `max_body` as it streams
    // (Python's `body` step wraps `receive` alike): past it, Python's 413.
    let (req, over) = if req.body().size_hint().exact().is_none() {
        let (parts, body) = req.into_parts();
        let (counted, over) = crate::body_limit::Counted::new(body, native.max_body);
        let body = crate::http::boxed(counted);
        (Request::from_parts(parts, body), Some(over))
    } else {
        (req, None)
    };
    // Load shedding: the slot spans the upstream exchange, response body included.
    let slot = match &native.shed {
        Some(shed) => match shed.try_acquire() {
            Some(slot) => Some(slot),
            None => {
                let mut problem = crate::limit::shedding::overloaded();
                if let Some(cors) = &cors {
                    cors.add_to(&mut problem.headers); // an OverloadedError is a GatewayError
                }
                head.denied(&route.name, &identity, ip, rid, &problem, "proxy", started);
                let mut response = problem.into_response(rid);
                respond::decorate(response.headers_mut(), https, &request_id);
                return Outcome::Respond(response);
            }
        },
        None => None,
    };
    let mut response = match native.upstream.forward(req, &path, who, &ctx).await {
        Ok(response) => {
            let mut response = match slot {
                Some(slot) => {
                    response.map(|body| crate::limit::shedding::SlotBody::wrap(body, slot))
                }
                None => response,
            };
            let headers = response.headers_mut();
            if let Some(cors) = &cors {
                cors.apply_upstream(headers);
            }
            if !decision.headers.is_empty() {
                headers.remove("ratelimit");
                headers.remove("ratelimit-policy");
                for (name, value) in &decision.headers {
                    headers.append(name.clone(), value.clone());
                }
            }
            allowed(&route.name, &identity, started);
            response
        }
        Err(error) => {
            drop(slot); // a failed exchange cuts the limit
            let too_large = over.as_ref().is_some_and(|over| over.is_set());
            let mut problem = if too_large {
                // The body grew past `max_body` while streaming: Python's 413 (its
                // proxy step meets the `body` step's error), the upstream connection dropped.
                Problem::body_too_large(native.max_body)
            } else {
                if let Some(line) = plane().failures.failed(&route.name, &error, Instant::now()) {
                    crate::log::push(crate::log::WARNING, "bastion.gateway.upstreams", line);
                }
                problem_of(&error)
            };
            if let Some(cors) = &cors {
                cors.add_to(&mut problem.headers);
            }
            head.denied(&route.name, &identity, ip, rid, &problem, "proxy", started);
            match (&over, too_large) {
                (Some(over), true) => over.hold(problem.into_response(rid)),
                _ => problem.into_response(rid),
            }
        }
    };
    respond::decorate(response.headers_mut(), https, &request_id);
    Outcome::Respond(response)
}

/// A request the decision steps allowed: what the proxying part (or the
/// forward-auth answer) needs.
pub(crate) struct Allowed<'t> {
    pub route: &'t crate::routes::Route,
    pub native: &'t NativeRoute,
    pub ip: IpAddr,
    /// The route's CORS headers for the response (the gateway door only).
    pub cors: Option<CorsHeaders>,
    pub identity: Identity,
    pub credential_headers: Vec<HeaderName>,
    /// The assertion's signing key, when the route sends one (the gateway door only).
    pub signer: Option<Arc<crate::assertion::SigningKey>>,
    pub decision: limit::LimitDecision,
    pub started: Instant,
    pub request_id: HeaderValue,
}

/// What the decision steps concluded for one request.
pub(crate) enum Decided<'t> {
    Allow(Box<Allowed<'t>>),
    /// A native refusal, audited and metered.
    Respond(Response<Body>),
    /// Python decides; the key lookup this request leads, if any.
    Defer(Option<LeadGuard>),
}

/// The request deferred to Python, with the key lookup it leads (if any).
pub(crate) fn defer(mut req: Request<Body>, lead: Option<LeadGuard>) -> Outcome {
    if let Some(lead) = lead {
        // Held until Python answered (server.rs): its waiters then read again.
        req.extensions_mut().insert(lead);
    }
    Outcome::Defer(req)
}

/// The decision steps of one request (`match`, `framing`, `ip`, `cors`, `body`,
/// `authenticate`, `authorize`, `limit`, and whether `mutate` can sign), shared
/// by the doors: the gateway (`door: Gateway`, then proxied) and forward-auth
/// (`door: ForwardAuth`: `req` is the judged request, and Python's
/// `decision_steps` skip `cors`, `body` and `mutate`). Refusals rendered here
/// are audited with `door`.
pub(crate) async fn decide<'t>(
    req: Head<'_>,
    conn: &ConnInfo,
    table: &'t Table,
    door: Door,
) -> Decided<'t> {
    // Python's `decision_steps` (forward-auth) skip `cors`, `body` and `mutate`.
    let proxied = door != Door::ForwardAuth;
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let route = match table.routes.route(req.host(), req.method, target) {
        Routed::Native { route, .. } => route,
        Routed::Defer(why) => return unmatched(req, conn, table, door, why, target),
    };
    let Some(Some(native)) = table.native.get(route.index) else {
        return Decided::Defer(None);
    };
    let takes = if door == Door::WebSocket {
        if !hygiene::takes_websocket(req.headers, req.body_empty, table.head) {
            return Decided::Defer(None);
        }
        if native.websocket.is_none() {
            // An upgrade to a route that takes none: Python's 403 `websocket_not_allowed`
            // (its `match` step, before the IP rules and anything consumed).
            return match client_ip(conn.peer.ip(), req.headers, &table.trusted) {
                Some(ip) => {
                    let refusal = crate::refusal::websocket_not_allowed(
                        "This route does not accept WebSocket connections.",
                    );
                    let nobody = Identity::default();
                    let response = refuse_with(
                        req,
                        Some(&route.name),
                        (ip, conn.tls),
                        refusal,
                        "match",
                        None,
                        door,
                        &nobody,
                    );
                    Decided::Respond(response)
                }
                None => Decided::Defer(None),
            };
        }
        true
    } else {
        hygiene::takes(
            req.method,
            req.version,
            req.headers,
            req.body_empty,
            table.head,
            // A declared length over `max_body` is the `body` step's 413, below.
            u64::MAX,
        ) || (door == Door::Gateway
            // A body of unknown length: counted as it streams (`body_limit`).
            && hygiene::takes_streamed(
                req.method,
                req.version,
                req.headers,
                req.body_empty,
                table.head,
            ))
    };
    if !takes {
        return Decided::Defer(None);
    }
    let Some(ip) = client_ip(conn.peer.ip(), req.headers, &table.trusted) else {
        return Decided::Defer(None);
    };
    // Python's order: `ip`, then `cors` (so an address refused carries no CORS headers).
    if let Some(rules) = &native.ip {
        if !rules.admits(ip) {
            let problem = ip_rules::not_allowed();
            let response = refuse(req, &route.name, ip, conn.tls, problem, "ip", None, door);
            return Decided::Respond(response);
        }
    }
    let cors = if proxied {
        match cors::actual(native.cors.as_ref(), req.headers) {
            Ok(cors) => cors,
            Err(_) => {
                let problem = cors::origin_not_allowed();
                let response = refuse(req, &route.name, ip, conn.tls, problem, "cors", None, door);
                return Decided::Respond(response);
            }
        }
    } else {
        None
    };
    // `body`: a declared length over the route's `max_body` is Python's 413, with
    // the route's CORS headers (nothing read, nothing consumed). Only for a body the
    // connection drains after the answer (`h1::DRAIN_MAX`): a longer one would close
    // it under a client still sending, which may then never read the 413; Python's
    // twin (the body streamed to it) keeps it, so that one is deferred.
    if proxied && door == Door::Gateway {
        if let Some(length) = declared_length(req.headers) {
            if length > native.max_body {
                if length > crate::h1::DRAIN_MAX {
                    return Decided::Defer(None);
                }
                let refusal = crate::refusal::Refusal {
                    problem: Problem::body_too_large(native.max_body),
                    members: String::new(),
                };
                let nobody = Identity::default();
                let response = refuse_with(
                    req,
                    Some(&route.name),
                    (ip, conn.tls),
                    refusal,
                    "body",
                    cors.as_ref(),
                    door,
                    &nobody,
                );
                return Decided::Respond(response);
            }
        }
    }
    // The verified client certificate's thumbprint, where a method reads it
    // (`mtls`; `jwt`: a certificate-bound token, RFC 8705).
    let reads_cert = |m: &authn::Method| matches!(m, authn::Method::Mtls | authn::Method::Jwt);
    let cert = if native.auth.methods.iter().any(reads_cert) {
        authn::mtls::leaf_thumbprint(&conn.client_certs)
    } else {
        None
    };
    // The `authenticate` step's refusals: Python's answer, audited (nothing consumed:
    // before authorization, risk flags and limits). `cors`: the route's CORS headers,
    // which a GatewayError carries (a failed lookup's 503 is not one).
    let deny = |problem: Problem, cors: Option<&CorsHeaders>| {
        let response = refuse(
            req,
            &route.name,
            ip,
            conn.tls,
            problem,
            "authenticate",
            cors,
            door,
        );
        Decided::Respond(response)
    };
    let mut waited = false;
    let (now, admitted) = loop {
        let now = authn::unix_now();
        let caches = crate::plane::caches();
        let admission = authn::admission_with_cert(
            caches,
            &native.auth,
            &route.name,
            req.method,
            req.uri,
            req.headers,
            Some(ip),
            cert.as_ref(),
            now,
        );
        match admission {
            Admission::Admitted(admitted) => break (now, admitted),
            Admission::Forbidden { identity, refusal } => {
                // `authorize`: Python's 403, with the route's CORS headers (before any
                // risk flag or limit: nothing consumed).
                let Some(refusal) = crate::refusal::forbidden(&refusal, req.method.as_str()) else {
                    return Decided::Defer(None);
                };
                let response = refuse_with(
                    req,
                    Some(&route.name),
                    (ip, conn.tls),
                    refusal,
                    "authorize",
                    cors.as_ref(),
                    door,
                    &identity,
                );
                return Decided::Respond(response);
            }
            Admission::NotAdmitted => {}
        }
        let query = req.uri.query();
        let unadmitted = authn::unadmitted_with_cert(
            caches,
            &native.auth,
            query,
            req.headers,
            cert.as_ref(),
            now,
        );
        match unadmitted {
            Unadmitted::Defer => return Decided::Defer(None),
            Unadmitted::Refused => {
                // Python's 401 whoever asks: before authorization and the limits, so
                // neither a risk flag nor a budget changes it (nothing consumed).
                return deny(Problem::invalid_api_key(), cors.as_ref());
            }
            Unadmitted::InactiveToken
            | Unadmitted::InvalidToken(_)
            | Unadmitted::Unauthenticated
            | Unadmitted::KeyInQuery => {
                // Python's cached inactive answer, a token it refuses whatever it holds,
                // no credential, a key in the query: its 401 / 400, before anything is
                // consumed (audited with the outward code, as Python's `record_denial`).
                let problem = match unadmitted {
                    Unadmitted::Unauthenticated => Problem::unauthenticated(),
                    Unadmitted::KeyInQuery => Problem::api_key_in_query(),
                    _ => Problem::invalid_token(),
                };
                return deny(problem, cors.as_ref());
            }
            Unadmitted::Miss(_) | Unadmitted::CertMiss(_) | Unadmitted::TokenMiss(_) if waited => {
                return Decided::Defer(None)
            }
            Unadmitted::CertMiss(thumb) if authn::mtls::cert_refused(&thumb) => {
                // A certificate Python could not read: its 401, as for a token.
                return deny(Problem::invalid_token(), cors.as_ref());
            }
            Unadmitted::TokenMiss(_) | Unadmitted::CertMiss(_) | Unadmitted::Miss(_) => {
                // A miss: lead its lookup (`crate::lookup`), or wait for the one in flight.
                let (kind, miss, value) = match unadmitted {
                    Unadmitted::TokenMiss(digest) => (
                        Kind::Introspection,
                        authn::introspection::miss(digest),
                        authn::lookup_credential(
                            &native.auth,
                            req.headers,
                            authn::Method::Introspection,
                        ),
                    ),
                    Unadmitted::CertMiss(thumb) => (
                        Kind::Cert,
                        authn::mtls::cert_miss(thumb),
                        conn.client_certs.first().map(Vec::as_slice),
                    ),
                    Unadmitted::Miss(digest) => (
                        Kind::ApiKey,
                        caches.api_key_miss(digest),
                        authn::lookup_credential(&native.auth, req.headers, authn::Method::ApiKey),
                    ),
                    _ => return Decided::Defer(None),
                };
                let failed = match miss {
                    Miss::Defer => return Decided::Defer(None),
                    Miss::Wait(waiter) => waiter.wait(MISS_WAIT).await,
                    Miss::Lead(lead) => {
                        let refused = || {
                            if let (Kind::Cert, Some(thumb)) = (kind, cert) {
                                authn::mtls::cert_refuse(thumb);
                            }
                        };
                        match lookup::lead(kind, value, lead, refused).await {
                            Led::Read => None,
                            Led::Refused if kind == Kind::Cert => {
                                return deny(Problem::invalid_token(), cors.as_ref());
                            }
                            Led::Refused => None,
                            Led::Unavailable(why) => Some(why),
                            Led::Defer(lead) => {
                                return Decided::Defer(Some(LeadGuard(Arc::new(lead))))
                            }
                        }
                    }
                };
                if let Some(why) = failed {
                    // Python's 503 for the failed lookup (not a GatewayError: no CORS headers).
                    let problem = Problem::lookup_unavailable(&why);
                    return deny(problem, None);
                }
                waited = true;
            }
        }
    };
    let Admitted {
        identity,
        credential_headers,
        key_limits: own_limits,
    } = admitted;
    // A risk-flagged requester's limits are divided (`crate::risk`, Python's order:
    // in the limit step, after authorization).
    let factor = risk_factor(&identity, ip, now);
    // The signed identity assertion needs the current signing key: without one
    // held, Python signs (decided before the limit step consumes anything).
    let signer = if proxied {
        let assertion = native.upstream.mutate().assertion();
        let Ok(signer) = crate::assertion::signer_for(assertion, &identity) else {
            return Decided::Defer(None);
        };
        signer
    } else {
        None
    };
    // The key's limits: an operator override, else its own (a key with its own
    // limits is admitted only once the native limiter applies them).
    let key_limits: Arc<[limit::Limit]> = match identity.key_id.as_deref() {
        Some(key) => {
            let mut own = Vec::with_capacity(own_limits.len());
            for l in own_limits.iter() {
                match limit::Limit::new(l.rate, l.period, Some(l.burst), &l.name) {
                    Ok(parsed) => own.push(parsed),
                    Err(_) => return Decided::Defer(None),
                }
            }
            effective_key_limits(key, &own)
        }
        None => Arc::from(Vec::new()),
    };
    // A Redis outage: each limit's `fail` decides (`limit::outage`): a 503, or this
    // node's share decided locally.
    let stepped = limit::step_tightened(
        &native.limits,
        &identity,
        &key_limits,
        Some(ip),
        &route.name,
        factor,
    )
    .await;
    let started = Instant::now();
    let request_id = plane().request_ids.assign(req.headers);
    let (decision, problem) = match stepped {
        Ok(decision) if decision.allowed => (decision, None),
        Ok(decision) => {
            let problem = Problem::rate_limited(&decision);
            (decision, Some(problem))
        }
        Err(LimitDefer::Unavailable) => (
            limit::LimitDecision::unlimited(),
            Some(Problem::rate_limiter_unavailable()),
        ),
        Err(_) => return Decided::Defer(None),
    };
    if let Some(mut problem) = problem {
        let rid = request_id.to_str().unwrap_or("-");
        if let Some(cors) = &cors {
            cors.add_to(&mut problem.headers);
        }
        DeniedHead::from(req).through(door).denied(
            &route.name,
            &identity,
            ip,
            rid,
            &problem,
            "limit",
            started,
        );
        let mut response = problem.into_response(rid);
        finish_refusal(&mut response, door, conn.tls, &request_id);
        return Decided::Respond(response);
    }
    Decided::Allow(Box::new(Allowed {
        route,
        native,
        ip,
        cors,
        identity,
        credential_headers,
        signer,
        decision,
        started,
        request_id,
    }))
}

/// The lookup a deferred request leads (`authn::miss`), riding in its
/// extensions: the front drops it once Python has answered, which wakes the
/// requests waiting for the same key.
#[derive(Clone)]
pub struct LeadGuard(pub Arc<Lead>);

/// A refusal before any identity is established, audited and metered as the
/// Python `step` does: `401 invalid_api_key` for a key Python refuses
/// (`authenticate`, with the route's CORS headers), `403 ip_not_allowed` (`ip`).
#[allow(clippy::too_many_arguments)]
fn refuse(
    req: Head<'_>,
    route: &str,
    ip: IpAddr,
    https: bool,
    mut problem: Problem,
    step: &'static str,
    cors: Option<&CorsHeaders>,
    door: Door,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = plane().request_ids.assign(req.headers);
    let rid = request_id.to_str().unwrap_or("-");
    if let Some(cors) = cors {
        cors.add_to(&mut problem.headers);
    }
    let nobody = Identity::default();
    DeniedHead::from(req)
        .through(door)
        .denied(route, &nobody, ip, rid, &problem, step, started);
    let mut response = problem.into_response(rid);
    finish_refusal(&mut response, door, https, &request_id);
    response
}

/// A refusal with its own document members (`crate::refusal`), audited and
/// metered as Python's `step` does: `route` is `None` where no route matched,
/// `identity` the one `authenticate` established (or nobody's). `cors`, when
/// given, is added after the refusal's own headers.
#[allow(clippy::too_many_arguments)]
fn refuse_with(
    req: Head<'_>,
    route: Option<&str>,
    (ip, https): (IpAddr, bool),
    mut refusal: crate::refusal::Refusal,
    step: &'static str,
    cors: Option<&CorsHeaders>,
    door: Door,
    identity: &Identity,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = plane().request_ids.assign(req.headers);
    let rid = request_id.to_str().unwrap_or("-");
    if let Some(cors) = cors {
        cors.add_to(&mut refusal.problem.headers);
    }
    DeniedHead::from(req).through(door).denied_as(
        route,
        identity,
        ip,
        rid,
        &refusal.problem,
        step,
        started,
    );
    let mut response = refusal.problem.into_response_with(rid, &refusal.members);
    finish_refusal(&mut response, door, https, &request_id);
    response
}

/// The head a decision step's refusal ends with: the request id and security
/// headers of Python's HTTP middleware; for a WebSocket upgrade, Python's
/// `websocket.http.response` denial instead — the problem's own head (the
/// request id in the document only) and `connection: close`.
fn finish_refusal(
    response: &mut Response<Body>,
    door: Door,
    https: bool,
    request_id: &HeaderValue,
) {
    if door == Door::WebSocket {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    } else {
        respond::decorate(response.headers_mut(), https, request_id);
    }
}

/// Python's `match` refusals for a request the router did not route
/// (`why`), where the native path can tell them exactly — through the gateway
/// door only, for a head `framing` passes (Python's first step): no route,
/// `404 route_not_found`; routes for the path but not the method, `405
/// method_not_allowed` with `Allow`; a path without `%` that the app hands to
/// its gateway and `normalize_path` refuses, `400 invalid_path`. Audited
/// (step `match`, no route) and metered under no route. Anything else defers.
fn unmatched<'t>(
    req: Head<'_>,
    conn: &ConnInfo,
    table: &'t Table,
    door: Door,
    why: Why,
    target: &str,
) -> Decided<'t> {
    if door != Door::Gateway
        || !hygiene::takes(
            req.method,
            req.version,
            req.headers,
            req.body_empty,
            table.head,
            u64::MAX,
        )
    {
        return Decided::Defer(None);
    }
    let refusal = crate::refusal::unmatched(&table.routes, req.host(), req.method, target, why);
    let Some(refusal) = refusal else {
        return Decided::Defer(None);
    };
    let Some(ip) = client_ip(conn.peer.ip(), req.headers, &table.trusted) else {
        return Decided::Defer(None);
    };
    let nobody = Identity::default();
    let response = refuse_with(
        req,
        None,
        (ip, conn.tls),
        refusal,
        "match",
        None,
        door,
        &nobody,
    );
    Decided::Respond(response)
}

/// The request's one `Content-Length` as a number (`hygiene::takes` checked
/// its form), `None` without one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    let value = headers.get(http::header::CONTENT_LENGTH)?;
    std::str::from_utf8(value.as_bytes()).ok()?.parse().ok()
}

/// The divisor of this requester's limits: the largest factor of its flags (1: none).
fn risk_factor(identity: &Identity, ip: IpAddr, now: f64) -> u64 {
    let risk = &plane().risk;
    if !risk.any_set() {
        return 1;
    }
    let bucket = ip_bucket(ip);
    risk.factor(
        now,
        &[
            (RiskKind::Key, identity.key_id.as_deref()),
            (RiskKind::Ip, Some(&bucket)),
            (RiskKind::Subject, identity.subject.as_deref()),
            (RiskKind::Client, identity.client_id.as_deref()),
        ],
    )
}

/// The parts of a request head a denial's audit event records, kept without
/// allocating (an allowed request never needs them).
pub(crate) struct DeniedHead {
    method: http::Method,
    path: http::Uri,
    user_agent: Option<HeaderValue>,
    door: Door,
}

impl DeniedHead {
    pub(crate) fn of(req: &Request<Body>) -> Self {
        Self::from(Head::of(req))
    }

    /// The same, from the parts a decision reads.
    pub(crate) fn from(req: Head<'_>) -> Self {
        DeniedHead {
            method: req.method.clone(),
            path: req.uri.clone(),
            user_agent: req.headers.get(USER_AGENT).cloned(),
            door: Door::Gateway,
        }
    }

    /// The same, for a decision that came through `door`.
    pub(crate) fn through(mut self, door: Door) -> Self {
        self.door = door;
        self
    }

    /// Audit and meter a denial rendered natively (429, an upstream failure).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn denied(
        self,
        route: &str,
        identity: &Identity,
        ip: IpAddr,
        request_id: &str,
        problem: &Problem,
        step: &'static str,
        started: Instant,
    ) {
        self.denied_as(
            Some(route),
            identity,
            ip,
            request_id,
            problem,
            step,
            started,
        );
    }

    /// [`DeniedHead::denied`] where no route may have matched (`None`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn denied_as(
        self,
        route: Option<&str>,
        identity: &Identity,
        ip: IpAddr,
        request_id: &str,
        problem: &Problem,
        step: &'static str,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        crate::metrics::global().record(route, Some(problem.code), elapsed.as_secs_f64());
        audit::queue().push(AuditEvent {
            allowed: false,
            status: problem.status.as_u16(),
            reason: Some(problem.code.to_owned()),
            step: Some(step),
            door: self.door,
            route: route.map(str::to_owned),
            method: self.method.as_str().to_owned(),
            path: self.path.path().to_owned(),
            subject: identity.subject.clone(),
            client_id: identity.client_id.clone(),
            key_id: identity.key_id.clone(),
            ip: Some(ip.to_string()),
            // Python's `value.decode("latin-1")`: every byte kept (a tab, obs-text).
            user_agent: self
                .user_agent
                .map(|v| v.as_bytes().iter().map(|&b| char::from(b)).collect()),
            request_id: Some(request_id.to_owned()),
            latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            timestamp: audit::unix_now(),
        });
    }
}

/// Meter an allow and count it in its minute's aggregate (no event of its own).
pub(crate) fn allowed(route: &str, identity: &Identity, started: Instant) {
    crate::metrics::global().record(Some(route), None, started.elapsed().as_secs_f64());
    audit::queue().allow(
        route,
        identity.subject.as_deref(),
        identity.key_id.as_deref(),
        identity.client_id.as_deref(),
        audit::unix_now(),
    );
}

/// The problem document Python renders for an upstream failure.
pub(crate) fn problem_of(error: &UpstreamError) -> Problem {
    let (_, code, _, detail) = error.problem();
    match error {
        UpstreamError::Tls { .. } => Problem::upstream_tls(detail),
        UpstreamError::Timeout { .. } => Problem::upstream_timeout(detail),
        UpstreamError::NoHealthyTarget { retry_after, .. } => {
            Problem::no_healthy_upstream(*retry_after)
        }
        _ if code == "upstream_unavailable" => Problem::upstream_unavailable(detail),
        _ => Problem::service_unavailable(Some(detail)),
    }
}
