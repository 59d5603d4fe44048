//! The decision steps of one request, from `match` to `limit` (the table in
//! `gateway.rs`), shared by the doors: the gateway and WebSocket doors
//! (`gateway::serve`, which then mutates and proxies) and forward-auth
//! (`forward_auth::verify`). A decision allows ([`Allowed`]) or refuses with
//! Python's answer, audited and metered; only a control-plane path is left to
//! Python's app ([`Decided::Defer`]): no gateway request is handed over.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response};

use crate::audit::Door;
use crate::authn::miss::{Miss, LOOKUP_WAIT};
use crate::authn::{self, Admission, Admitted, Unadmitted};
use crate::client_ip::{client_ip, ip_bucket};
use crate::cors::{self, CorsHeaders};
use crate::http::{Body, ConnInfo, Identity};
use crate::hygiene;
use crate::ip_rules;
use crate::limit::{self, effective_key_limits};
use crate::lookup::{self, Kind, Led};
use crate::plane::plane;
use crate::preflight;
use crate::problem::Problem;
use crate::respond;
use crate::risk::RiskKind;
use crate::router::{Routed, Why};
use crate::table::{NativeRoute, Table};
use crate::verdict::{DeniedHead, Head};

/// Lookups of one kind a request may lead or wait for: the second serves a request whose
/// first answer was dropped before it was read (see `waited` in [`decide`]).
const MAX_LOOKUPS_OF_A_KIND: usize = 2;

/// A request the decision steps allowed: what the proxying part (or the
/// forward-auth answer) needs.
pub(crate) struct Allowed<'t> {
    pub route: &'t crate::routes::Route,
    pub native: &'t NativeRoute,
    pub ip: IpAddr,
    /// The route's CORS headers for the response (the gateway door only).
    pub cors: Option<CorsHeaders>,
    pub identity: Identity,
    /// `identity`'s headers encoded with its cache entry (`None`: per request).
    pub identity_headers: Option<Arc<crate::mutate::IdentityHeaders>>,
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
    /// A path of the control plane (or one `target::prepare` left to the app):
    /// Python's app serves it; no gateway decision.
    Defer,
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
    // Every door gets the normal form: `gateway::handle` rewrote the target, and
    // `forward_auth::verify` normalised the judged URI (and ran `framing` on it).
    // `framing`, Python's first step: its refusals of the head, before any route
    // (method-override headers are not believed: `mutate` drops them); then
    // bastion's own of an `X-Forwarded-For` that names no address. A head it
    // passes is taken whole: its method, Host, fields and body framing are what
    // the steps below and the proxy read (a plain handshake's, for the WebSocket
    // door: `websocket::refused` refused a body or another version before).
    // The client's address, read once: `framing` refuses a hop that is not one,
    // and the steps below act on it (forward-auth reads it after `match`).
    let mut read_ip: Option<Option<IpAddr>> = None;
    if door != Door::ForwardAuth {
        let ip = client_ip(conn.peer.ip(), req.headers, &table.trusted);
        read_ip = Some(ip);
        let authority = req.uri.authority().map(http::uri::Authority::as_str);
        let refused = hygiene::refused(
            req.method,
            req.version,
            req.headers,
            authority,
            req.body_empty,
            table.head,
        );
        let refused = refused.or_else(|| forwarded_for_refused(ip));
        if let Some(refused) = refused {
            return match framing_refusal(req, conn, table, refused, door) {
                Some(response) => Decided::Respond(response),
                None => Decided::Defer,
            };
        }
    }
    // A preflight of a CORS route by the method it asks for (forward-auth: the
    // route Python's `match` picks too, a reserved prefix included; the gateway
    // door answered it already).
    let judged = door == Door::ForwardAuth;
    let route = match preflight::route(table, req.host(), req.method, target, req.headers, judged).0
    {
        Routed::Native { route, .. } => route,
        Routed::Defer(why) => return unmatched(req, conn, table, door, why, target),
    };
    let Some(native) = table.native.get(route.index) else {
        // One per route (`Table::from_json`): as no route, should that ever break.
        return unmatched(req, conn, table, door, Why::NoRoute, target);
    };
    // The client's address (a hop that is not one was `framing`'s 400 above;
    // forward-auth reads the judged request's from the proxy's headers).
    let ip = read_ip.unwrap_or_else(|| client_ip(conn.peer.ip(), req.headers, &table.trusted));
    let Some(ip) = ip else {
        return Decided::Respond(forwarded_for_denied(req, conn, table, door));
    };
    if door == Door::WebSocket && native.websocket.is_none() {
        // An upgrade to a route that takes none: Python's 403 `websocket_not_allowed`
        // (its `match` step, before the IP rules and anything consumed).
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
        return Decided::Respond(response);
    }
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
    // the route's CORS headers (nothing read, nothing consumed). A body the
    // connection drains after the answer (`h1::DRAIN_MAX`) keeps it open; a longer
    // one is not read: the answer says `connection: close` (HTTP/1.x; an HTTP/2
    // stream is reset after it), and the HTTP/1 loop closes lingering, so that a
    // client still sending reads the 413 (where Python's twin reads the body first).
    if proxied && door == Door::Gateway {
        if let Some(length) = declared_length(req.headers) {
            if length > native.max_body {
                let refusal = crate::refusal::Refusal {
                    problem: Problem::body_too_large(native.max_body),
                    members: String::new(),
                };
                let nobody = Identity::default();
                let mut response = refuse_with(
                    req,
                    Some(&route.name),
                    (ip, conn.tls),
                    refusal,
                    "body",
                    cors.as_ref(),
                    door,
                    &nobody,
                );
                if length > crate::h1::DRAIN_MAX && req.version != http::Version::HTTP_2 {
                    // Last, where the HTTP/1 loop writes it when it closes (Python's twin's
                    // head: its body left unread too); hyper (`Expect`) closes on it.
                    response
                        .headers_mut()
                        .append(http::header::CONNECTION, HeaderValue::from_static("close"));
                }
                return Decided::Respond(response);
            }
        }
    }
    // The verified client certificate's thumbprint, where a method reads it
    // (`mtls`; `jwt` and `introspection`: a certificate-bound token, RFC 8705).
    let reads_cert = |m: &authn::Method| {
        matches!(
            m,
            authn::Method::Mtls | authn::Method::Jwt | authn::Method::Introspection
        )
    };
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
    // The lookup kinds this request already waited for: one request may need two
    // (a signing key, then its client's status), and the same one twice when the
    // record its first lookup pushed was dropped before the request read it (a change
    // delivered meanwhile: a key created by another process is pushed by the lookup,
    // then dropped by the change feed's delivery of its creation), never three times.
    let mut waited: Vec<Kind> = Vec::new();
    let mut again = false;
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
                let refusal = crate::refusal::forbidden(&refusal, req.method.as_str());
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
        let unadmitted = authn::unadmitted_from(
            caches,
            &native.auth,
            query,
            req.headers,
            Some(ip),
            cert.as_ref(),
            now,
        );
        match unadmitted {
            // The cache changed under this decision: once more. Changing again, it is
            // busy being rewritten: a lost lookup's 503 (the client retries after it).
            Unadmitted::Again if again => {
                return deny(unsure(Kind::ApiKey), None);
            }
            Unadmitted::Again => again = true,
            Unadmitted::TokensUnfollowed => {
                // No token may be trusted natively until Python follows every
                // invalidation channel again: a 503 the client retries (no CORS
                // headers, as a failed lookup's), never an allow.
                return deny(Problem::service_unavailable(None), None);
            }
            Unadmitted::Refused => {
                // Python's 401 whoever asks: before authorization and the limits, so
                // neither a risk flag nor a budget changes it (nothing consumed).
                return deny(Problem::invalid_api_key(), cors.as_ref());
            }
            Unadmitted::KeyIpNotAllowed => {
                // The key's own IP allow-list: Python's 403, as its other refusals.
                return deny(Problem::api_key_ip_not_allowed(), cors.as_ref());
            }
            Unadmitted::NoSession(_) => {
                // No usable session: a navigation through the gateway door goes to the
                // login and back to this very target (`authn::session::refusal`: the
                // address is built from the target alone); anything else is a 401.
                let navigation = door == Door::Gateway
                    && authn::session::wants_redirect(req.method, req.headers);
                return deny(authn::session::refusal(navigation, target), cors.as_ref());
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
            Unadmitted::Miss(_)
            | Unadmitted::CertMiss(_)
            | Unadmitted::TokenMiss(_)
            | Unadmitted::IssuerMiss { .. }
            | Unadmitted::ClientMiss(_)
            | Unadmitted::SigningKeyMiss(_)
            | Unadmitted::SessionMiss(_)
            | Unadmitted::ExchangedMiss => {
                let kind = lookup_kind(&unadmitted);
                let times = waited.iter().filter(|k| **k == kind).count();
                if kind == Kind::SigningKey && times > 0 {
                    // Pushed, and Python's own keys lack this `kid` too: its `unknown_kid`.
                    return deny(Problem::invalid_token(), cors.as_ref());
                }
                if times >= MAX_LOOKUPS_OF_A_KIND {
                    // Answered twice, yet still nothing to judge with (an answer Python
                    // pushed nothing for): as a lost lookup.
                    return deny(unsure(kind), None);
                }
                if let Unadmitted::CertMiss(thumb) = &unadmitted {
                    if authn::mtls::cert_refused(thumb) {
                        // A certificate Python could not read: its 401, as for a token.
                        return deny(Problem::invalid_token(), cors.as_ref());
                    }
                }
                // A miss: lead its lookup (`crate::lookup`), or wait for the one in flight.
                let issuer_kid: Vec<u8>;
                let audience_token: Vec<u8>;
                let session_digest: String;
                let (miss, value) = match &unadmitted {
                    Unadmitted::IssuerMiss { issuer, kid } => {
                        // `issuer`, and `\n{kid}` for a string `kid` (Python refetches
                        // for a `kid` its set lacks; without one, for a stale set only).
                        issuer_kid = match kid {
                            Some(kid) => format!("{issuer}\n{kid}").into_bytes(),
                            None => issuer.as_bytes().to_vec(),
                        };
                        (authn::issuers::miss(issuer), Some(issuer_kid.as_slice()))
                    }
                    Unadmitted::ExchangedMiss => {
                        let token =
                            authn::lookup_credential(&native.auth, req.headers, authn::Method::Jwt);
                        let audience = native.auth.audience.as_deref().unwrap_or_default();
                        audience_token = match token {
                            Some(token) => [audience.as_bytes(), b"\n", token].concat(),
                            None => Vec::new(),
                        };
                        (
                            authn::cache::exchanged_miss(token.unwrap_or_default()),
                            token.map(|_| audience_token.as_slice()),
                        )
                    }
                    Unadmitted::SigningKeyMiss(kid) => {
                        (authn::cache::signing_key_miss(kid), Some(kid.as_bytes()))
                    }
                    Unadmitted::ClientMiss(client) => {
                        (authn::cache::client_miss(client), Some(client.as_bytes()))
                    }
                    Unadmitted::SessionMiss(digest) => {
                        // The digest only: the session id itself never leaves the request.
                        session_digest = authn::session::hex(digest);
                        (
                            authn::session::miss(*digest),
                            Some(session_digest.as_bytes()),
                        )
                    }
                    Unadmitted::TokenMiss(digest) => (
                        authn::introspection::miss(*digest),
                        authn::lookup_credential(
                            &native.auth,
                            req.headers,
                            authn::Method::Introspection,
                        ),
                    ),
                    Unadmitted::CertMiss(thumb) => (
                        authn::mtls::cert_miss(*thumb),
                        conn.client_certs.first().map(Vec::as_slice),
                    ),
                    // `Unadmitted::Miss`, the one left (`lookup_kind` named each).
                    Unadmitted::Miss(digest) => (
                        caches.api_key_miss(*digest),
                        authn::lookup_credential(&native.auth, req.headers, authn::Method::ApiKey),
                    ),
                    _ => return deny(unsure(kind), None),
                };
                let failed = match miss {
                    // Too many waiters on this key, or too many lookups in flight: no
                    // room to wait, and Python is no faster then (a lost lookup's 503).
                    Miss::Busy => return deny(unsure(kind), None),
                    Miss::Wait(waiter) => waiter.wait(LOOKUP_WAIT).await,
                    Miss::Lead(lead) => {
                        let refused = || {
                            if let (Kind::Cert, Some(thumb)) = (kind, cert) {
                                authn::mtls::cert_refuse(thumb);
                            }
                        };
                        match lookup::lead(kind, value, lead, refused).await {
                            Led::Read => None,
                            Led::Refused
                                if matches!(
                                    kind,
                                    Kind::Cert | Kind::Exchanged | Kind::SigningKey
                                ) =>
                            {
                                return deny(Problem::invalid_token(), cors.as_ref());
                            }
                            Led::Refused => None,
                            Led::Unavailable(why) => Some(why),
                            Led::Lost(lead) => {
                                // Python will not serve it either: the kind's 503, for
                                // this request and those waiting for the same lookup.
                                let why = lookup::lost(kind);
                                lead.unavailable(why.clone());
                                drop(lead);
                                Some(why)
                            }
                        }
                    }
                };
                if let Some(why) = failed {
                    // Python's 503 for the failed lookup (not a GatewayError: no CORS headers).
                    let problem = Problem::lookup_unavailable(&why);
                    return deny(problem, None);
                }
                waited.push(kind);
            }
        }
    };
    let Admitted {
        identity,
        credential_headers,
        key_limits: own_limits,
        identity_headers,
    } = admitted;
    // A risk-flagged requester's limits are divided (`crate::risk`, Python's order:
    // in the limit step, after authorization).
    let factor = risk_factor(&identity, ip, now);
    // The signed identity assertion needs the current signing key (decided before
    // the limit step consumes anything).
    let signer = if proxied {
        let assertion = native.upstream.mutate().assertion();
        match crate::assertion::signer_for(assertion, &identity) {
            Ok(signer) => signer,
            Err(()) => {
                // No key the native core can sign with (none pushed yet, or one `ring`
                // refuses: an RSA key over 4096 bits an older version made). Nothing is
                // forwarded unsigned: a 503 until the operator rotates the key (the
                // startup log and `bastion doctor` say so), before anything is consumed.
                let refusal = crate::refusal::Refusal {
                    problem: Problem::assertion_unavailable(),
                    members: String::new(),
                };
                let response = refuse_with(
                    req,
                    Some(&route.name),
                    (ip, conn.tls),
                    refusal,
                    "mutate",
                    cors.as_ref(),
                    door,
                    &identity,
                );
                return Decided::Respond(response);
            }
        }
    } else {
        None
    };
    // The key's limits: an operator override, else its own (a key with its own
    // limits is admitted only once the native limiter applies them).
    // `None` without a key: no limits, and no allocation for an empty list.
    let key_limits: Option<Arc<[limit::Limit]>> = identity.key_id.as_deref().map(|key| {
        // Python's `_key_limits`: limits that do not build apply none of them
        // (validated when stored; the route's limits still apply).
        let own: Vec<limit::Limit> = own_limits
            .iter()
            .map(|l| limit::Limit::new(l.rate, l.period, Some(l.burst), &l.name))
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        effective_key_limits(key, &own)
    });
    // A Redis outage: each limit's `fail` decides (`limit::outage`): a 503, or this
    // node's share decided locally.
    let stepped = limit::step_tightened(
        &native.limits,
        &identity,
        key_limits.as_deref().unwrap_or_default(),
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
        Err(limit::LimiterUnavailable) => (
            limit::LimitDecision::unlimited(),
            Some(Problem::rate_limiter_unavailable()),
        ),
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
        identity_headers,
        credential_headers,
        signer,
        decision,
        started,
        request_id,
    }))
}

/// The 503 of a lookup of `kind` that cannot be made or judged (as a lost one):
/// `service_unavailable` (or the kind's own code), `Retry-After: 1`.
fn unsure(kind: Kind) -> Problem {
    Problem::lookup_unavailable(&lookup::lost(kind))
}

/// The lookup kind of a miss: the one mapping from what `authn` could not
/// judge to the control plane's lookup (anything else is no lookup's: the
/// API key's, never asked for).
fn lookup_kind(unadmitted: &Unadmitted) -> Kind {
    match unadmitted {
        Unadmitted::CertMiss(_) => Kind::Cert,
        Unadmitted::TokenMiss(_) => Kind::Introspection,
        Unadmitted::IssuerMiss { .. } => Kind::Jwks,
        Unadmitted::ClientMiss(_) => Kind::Client,
        Unadmitted::ExchangedMiss => Kind::Exchanged,
        Unadmitted::SigningKeyMiss(_) => Kind::SigningKey,
        Unadmitted::SessionMiss(_) => Kind::Session,
        _ => Kind::ApiKey,
    }
}

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
/// door, for a head `framing` passes (Python's first step), the WebSocket
/// door, for a plain handshake (with the denial head of an upgrade), and the
/// forward-auth door (the judged request, whose `framing` ran first): no route,
/// `404 route_not_found`; routes for the path but not the method, `405
/// method_not_allowed` with `Allow`; a path without `%` that the app hands to
/// its gateway and `normalize_path` refuses, `400 invalid_path`. Audited
/// (step `match`, no route) and metered under no route. Anything else (a
/// control-plane path) is the app's.
fn unmatched<'t>(
    req: Head<'_>,
    conn: &ConnInfo,
    table: &'t Table,
    door: Door,
    why: Why,
    target: &str,
) -> Decided<'t> {
    // Every door ran `framing` on the head first (`decide`; forward-auth on the
    // judged head): a handshake no route takes is refused alike, with the denial
    // head of an upgrade.
    let refusal = if door == Door::ForwardAuth {
        match why {
            Why::NoRoute => Some(crate::refusal::route_not_found()),
            Why::MethodNotAllowed => table
                .routes
                .allowed_methods_judged(req.host(), target)
                .and_then(|allow| crate::refusal::method_not_allowed(req.method.as_str(), &allow)),
            _ => None,
        }
    } else {
        crate::refusal::unmatched(&table.routes, req.host(), req.method, target, why)
    };
    let Some(refusal) = refusal else {
        return Decided::Defer;
    };
    let Some(ip) = client_ip(conn.peer.ip(), req.headers, &table.trusted) else {
        return Decided::Respond(forwarded_for_denied(req, conn, table, door));
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

/// The refusal `websockets` gives a handshake uvicorn hands it that is not a
/// plain one (`websocket::refused`), before any of bastion's code: rendered as
/// the WebSocket door's refusals are (the problem's own head, `connection:
/// close`), audited at step `framing` with no route and metered under no
/// route. `None` (the request defers) for a path the app keeps for itself.
pub(crate) fn handshake_refused(
    req: Head<'_>,
    conn: &ConnInfo,
    table: &Table,
    problem: Problem,
) -> Option<Response<Body>> {
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if !table.routes.gateway_target(target) {
        return None;
    }
    let Some(ip) = client_ip(conn.peer.ip(), req.headers, &table.trusted) else {
        return Some(forwarded_for_denied(req, conn, table, Door::WebSocket));
    };
    let refusal = crate::refusal::Refusal {
        problem,
        members: String::new(),
    };
    let nobody = Identity::default();
    let response = refuse_with(
        req,
        None,
        (ip, conn.tls),
        refusal,
        "framing",
        None,
        Door::WebSocket,
        &nobody,
    );
    Some(response)
}

/// Python's `framing` refusal of a head (`refused`, `hygiene::refused`), or
/// bastion's `invalid_forwarded_for`, where the app hands the target to its
/// gateway (`RouteTable::gateway_target`): audited at step `framing` and
/// metered under no route, as Python's runner records it — under the peer's
/// address when the forwarded one cannot be read. Elsewhere (a control-plane
/// path) Python's app does not judge the head: `None`, the request defers.
pub(crate) fn framing_refusal(
    req: Head<'_>,
    conn: &ConnInfo,
    table: &Table,
    refused: hygiene::Refused,
    door: Door,
) -> Option<Response<Body>> {
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if !table.routes.gateway_target(target) {
        return None;
    }
    let ip = client_ip(conn.peer.ip(), req.headers, &table.trusted);
    let ip = ip.unwrap_or_else(|| conn.peer.ip());
    Some(framing_denied(req, conn, ip, table.head, refused, door))
}

/// bastion's 400 `invalid_forwarded_for` through `door`, audited under the
/// peer's address: a trusted proxy's hop the client's address is read from is
/// not an IP address.
fn forwarded_for_denied(
    req: Head<'_>,
    conn: &ConnInfo,
    table: &Table,
    door: Door,
) -> Response<Body> {
    let refused = hygiene::Refused::ForwardedFor;
    framing_denied(req, conn, conn.peer.ip(), table.head, refused, door)
}

/// bastion's refusal of a head whose client address cannot be read: a trusted
/// proxy's `X-Forwarded-For` naming a hop that is not an IP address
/// (`hygiene::Refused::ForwardedFor`).
pub(crate) fn forwarded_for_refused(ip: Option<IpAddr>) -> Option<hygiene::Refused> {
    ip.is_none().then_some(hygiene::Refused::ForwardedFor)
}

/// Whether Python's gateway judges this request's head, were it deferred: the
/// app hands its path to the gateway (`RouteTable::gateway_target`), whose
/// `framing` step answers a head over `request_limits` (its 431). `false`
/// before the first route table.
pub(crate) fn gateway_judges(req: &Request<Body>) -> bool {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    plane()
        .table
        .load()
        .as_ref()
        .is_some_and(|table| table.routes.gateway_target(target))
}

/// The answer to a request whose body the HTTP/1 loop would not read
/// (`hygiene::Unreadable`), which nothing may forward: Python's `framing`
/// refusal as [`framing_refusal`] renders it where its gateway would judge the
/// head; elsewhere (a control-plane path, or before the first route table)
/// the same document, neither audited nor metered (not a gateway decision).
pub(crate) fn unreadable(
    req: Head<'_>,
    conn: &ConnInfo,
    table: Option<&Table>,
    unframed: hygiene::Unframed,
) -> Response<Body> {
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    if let Some(table) = table.filter(|table| table.routes.gateway_target(target)) {
        // Python's order: the method, the header limits and Host come first.
        let refused = hygiene::refused(
            req.method,
            req.version,
            req.headers,
            None,
            req.body_empty,
            table.head,
        )
        .unwrap_or(hygiene::Refused::Framing(unframed));
        let ip = client_ip(conn.peer.ip(), req.headers, &table.trusted);
        let ip = ip.unwrap_or_else(|| conn.peer.ip());
        return framing_denied(req, conn, ip, table.head, refused, Door::Gateway);
    }
    let unlimited = hygiene::HeadLimits {
        max_headers: usize::MAX,
        max_header_bytes: usize::MAX,
    };
    let refusal = crate::refusal::framing(hygiene::Refused::Framing(unframed), unlimited);
    unaudited(req, conn, refusal)
}

/// The answer to a head whose fields the HTTP/1 loop could not read
/// (`hygiene::Malformed`): `400 bad_request`, with the request id and security
/// headers; not a gateway decision (no head to judge): neither audited nor metered.
pub(crate) fn malformed(req: Head<'_>, conn: &ConnInfo) -> Response<Body> {
    unaudited(req, conn, crate::refusal::malformed_head())
}

/// A refusal the front renders that is no gateway decision: the request id and
/// security headers of Python's middleware, no audit event, no count.
fn unaudited(req: Head<'_>, conn: &ConnInfo, refusal: crate::refusal::Refusal) -> Response<Body> {
    let request_id = plane().request_ids.assign(req.headers);
    let rid = request_id.to_str().unwrap_or("-");
    let mut response = refusal.problem.into_response_with(rid, &refusal.members);
    respond::decorate(response.headers_mut(), conn.tls, &request_id);
    response
}

/// Python's `framing` refusal `refused` (or bastion's own), audited at step
/// `framing` under `ip`, metered under no route.
fn framing_denied(
    req: Head<'_>,
    conn: &ConnInfo,
    ip: IpAddr,
    limits: hygiene::HeadLimits,
    refused: hygiene::Refused,
    door: Door,
) -> Response<Body> {
    let refusal = crate::refusal::framing(refused, limits);
    let nobody = Identity::default();
    refuse_with(
        req,
        None,
        (ip, conn.tls),
        refusal,
        "framing",
        None,
        door,
        &nobody,
    )
}

/// The request's one `Content-Length` as a number (`hygiene::refused` checked
/// its form: 1 to 18 digits, within optional whitespace), `None` without one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    let value = headers.get(http::header::CONTENT_LENGTH)?;
    std::str::from_utf8(value.as_bytes().trim_ascii())
        .ok()?
        .parse()
        .ok()
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
