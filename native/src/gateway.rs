//! The native gateway: one request through the steps of the Python pipeline
//! that was (its `STEPS`, deleted; its answers are the specification). A
//! `Defer` hands the request to the Python app, which serves its own paths
//! (the control plane's) and answers a gateway path `503 gateway_unavailable`:
//! the last column, now only a control-plane path and a request before the
//! first route table; every gateway request is decided here.
//!
//! Before the first table the front cannot tell a gateway path from the app's
//! (the reserved prefixes, `bastion.http.app.RESERVED_PREFIXES`, and the app's
//! reading of a target come with the table: `RouteTable::target`), so it hands
//! everything over; the app answers a gateway path its safety-net 503. Under
//! `bastion serve` that never happens: `Runtime.open` loads the table before
//! the server starts, and the listening socket is handed to the front only
//! after the app's start-up (`bastion.http.server`). Only an embedder serving
//! an app built without a table (`routes_unload`, the HTTP server's tests)
//! sees it.
//!
//! | step | native | handed to the Python app when |
//! |---|---|---|
//! | trace | `tracing::begin` / `Traced::end` (the sampling decision, bastion's `traceparent`; a sampled answer's span record) | — (a deferred request gets the client's trace headers back) |
//! | forward_auth (`/auth/verify` only) | `forward_auth::verify` (the judged request from the trusted proxy's headers; its own refusals: 403 `forward_auth_untrusted`, 400 `forward_auth_ambiguous` / `forward_auth_bad_request`; a decision's span names the judged request, `tracing::DecisionSpan`; then `framing` and `match` of the judged request, its URI in normal form: 400 `invalid_host`, 431, 400 `invalid_path`, 404, 405), over HTTP/1.x or HTTP/2, a body unread; a method-override header is not believed (the judged method is the original one, as `mutate` drops them at the gateway door) | — |
//! | framing | a head `hygiene::refused` passes is taken whole (any upper-case method token but `CONNECT`; its fields and body framing as the steps and the proxy read them: nothing more is asked of it); Python's refusals, `hygiene::refused` + `refusal::framing` (gateway door, a path the app hands its gateway): 400 `invalid_method`, 431 `headers_too_large`, 400 `invalid_host`, 400 `bad_request_framing` (an HTTP/2 head judged as the hop to Python would hand it over) — a body the HTTP/1 loop would not read (`hygiene::Unreadable`) is answered so whatever the path; header fields it cannot read (`hygiene::Malformed`): the front's 400 `bad_request`, not audited; bastion's own 400 `invalid_forwarded_for` (a trusted proxy's hop that is not an IP address, `decide::forwarded_for_refused`); a `CONNECT`: bastion's 400 `invalid_method`; method-override headers are not believed (`mutate` drops them); the WebSocket door's head alike (its refusals in the denial head of an upgrade) | — |
//! | target (before the doors) | `target::prepare`: the app's reading of the target (`RouteTable::target`): a gateway target rewritten to Python's normal form (absolute form to origin form), restored if deferred; a `%` path normalisation refuses: the app's 400 `invalid_path` (not audited, not metered); a path outside ASCII percent-encoded, a query outside ASCII forwarded as sent, authority form read as `/` | a control-plane path |
//! | match | `RouteTable::route` on the normal form; Python's refusals where the router tells them exactly (`refusal::unmatched`, gateway and forward-auth doors: 404 `route_not_found`, 405 `method_not_allowed` + `Allow`, 400 `invalid_path` of a path without `%`); an upgrade to a route without `websocket`: 403 `websocket_not_allowed`; a handshake no route takes: 404 / 405 in the denial head (every route is native) | a control-plane path |
//! | ip | `ip_rules::IpRules::admits` (a refused address: Python's 403 `ip_not_allowed`, a preflight's too); a forwarded hop that is not a plain address: `framing`'s 400 `invalid_forwarded_for`, whatever the door | — |
//! | cors | `preflight::preflight` (a preflight: 204, or 403 `cors_origin_not_allowed` / `cors_method_not_allowed` / `cors_header_not_allowed`, quoted as Python's `repr`; any other `OPTIONS` is an ordinary request, matched by `preflight::route` as Python's `match`; a preflight's body, chunked or over `max_body`, is never read: Python's `cors` step answered before its `body` step), `cors::actual` (403 `cors_origin_not_allowed`; the CORS headers of every response) | — |
//! | body | a declared length over `max_body`: 413 `body_too_large` (past 64 KiB, what the connection drains, with `connection: close`: the body is not read; HTTP/2: the stream reset after it); a body of unknown length (`Transfer-Encoding: chunked`, HTTP/2 without length) counted as it streams, `body_limit` (past `max_body`: Python's 413 `body_too_large`, step `proxy`) | — |
//! | authenticate | `authn::admit_with_cert` (cached keys; verified tokens: bastion's own and trusted issuers' with their pushed keys, `authn::issuers`, a certificate-bound one only with its certificate; client-certificate identities by thumbprint; introspection answers Python cached, `authn::introspection`); a key Python refuses, a token it found inactive, a certificate it cannot read, a JWT it refuses whatever it holds (`authn::refusal`): its 401; no credential a method reads: its 401 `unauthenticated`; a key in the query: its 400; a miss: a control-plane lookup of the record (`lookup`, concurrent misses of one credential wait for it), then on natively; a failed lookup: Python's 503; a lost one, one there is no room to wait for (`Miss::Busy`), or one answered with still nothing to judge with: the kind's 503; a key whose stored IP allow-list does not parse (scope ids read as Python reads them): it admits no address, Python's 403 `api_key_ip_not_allowed`; a token while Python does not follow every invalidation channel (start-up, a lost subscription: `Unadmitted::TokensUnfollowed`): 503 `service_unavailable`; a browser session (`authn::session`, the `__Host-bastion_session` cookie, a `session` lookup on a miss): none usable on a route listing `session` (`Unadmitted::NoSession`): a gateway-door navigation 303 to `/login?return_to=<its target>`, anything else 401 `session_required` | — |
//! | authorize | `authz::check` + `authz::claims_check` (`authn::admission_with_cert`); a refusal: its 403 (`refusal::forbidden`: `insufficient_scope`, `route_not_allowed`, `forbidden`, `missing_role`, `claim_mismatch`) | — (the claims in the settings' order; a scope that is not a scope-token refuses the table) |
//! | limit | `limit::step_tightened` (GCRA store shared with Python, or Redis, `rediss://` over TLS: `limit::redis_tls`); a risk-flagged requester's limits divided by its factor (`risk`); Redis unreachable or not configured: each limit's `fail` (`limit::outage`: 503 `rate_limiter_unavailable`, or this node's share in the local store); a limit divided past a bucket's bound: as far as the bound allows (`Limit::divided`, as Python's) | — |
//! | mutate | `mutate::forward_headers` (a session's email and roles headers besides), `authn::session::strip_own_cookies` (bastion's `__Host-bastion_*` cookies never go upstream, on any route), `assertion` (signed with the pushed current key); no key to sign with (an RSA key over 4096 bits an older version stored: bastion generates none): 503 `assertion_unavailable` (`decide`, before the limit step) | — |
//! | proxy | `Upstream::forward`, within `limit::shedding` (AIMD slot per route upstream); an upstream's `Set-Cookie` of a `__Host-bastion_*` cookie dropped (`authn::session::drop_own_set_cookies`); a WebSocket upgrade: `websocket::open` (upstream handshake, 101, frames relayed with the route's size / idle / duration limits) | — (a handshake `websockets` refuses, one over HTTP/1.0, which RFC 6455 §4.1 does not take, one with a field that is not visible ASCII, or `Upgrade: websocket` beside other, empty `Upgrade` fields: `websocket::refused`, 400 / 405 / 426 `invalid_websocket_handshake`, so every handshake it passes is one `websocket::handshake` takes; another `Upgrade`: a plain request; a failure is rendered: 502/503/504; a shed request: 503 `overloaded`) |
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
//! `cors_origin_not_allowed` / `cors_method_not_allowed` / `cors_header_not_allowed`,
//! forward-auth's own 403 / 400s, a WebSocket upgrade's 101 (`websocket`), and the
//! refusals of framing, match, body and authorize (`refusal`: 400
//! `invalid_method`, `invalid_host`, `bad_request_framing`, 431, 404, 405, 400
//! `invalid_path`, 413, the 403s), and the app's own 400 `invalid_path`
//! (`target`); every other refusal is Python's, which renders it.
//! Each native decision is audited (`audit::queue`) and metered.

use std::time::Instant;

use http::{Request, Version};
use http_body::Body as _;

use crate::audit::Door;
use crate::authn::{self};
use crate::decide::{decide, Allowed, Decided};
use crate::http::{Body, ConnInfo, Outcome};
use crate::mutate::ForwardContext;
use crate::plane::plane;
use crate::preflight;
use crate::problem::Problem;
use crate::respond;
use crate::target::Prepared;
use crate::verdict::{allowed, problem_of, DeniedHead, Head};

/// Decide one request, traced when tracing is on (`tracing::begin`). Never
/// fails; only a control-plane path (or anything before the first route
/// table: the module docs) is a `Defer`.
/// The target is first read as the app reads it (`target::prepare`: the
/// normal form, or the app's own 400).
pub async fn handle(mut req: Request<Body>, conn: &ConnInfo) -> Outcome {
    let sent = match crate::target::prepare(&mut req, conn) {
        Prepared::AsSent => None,
        Prepared::Rewritten(sent) => Some(sent),
        Prepared::Answered(response) => return Outcome::Respond(response),
    };
    let outcome = match crate::tracing::begin(&mut req, conn) {
        None => serve(req, conn).await,
        Some(traced) => traced.end(serve(req, conn).await),
    };
    crate::target::restore(outcome, sent)
}

/// Serve one request: forward-auth's door, a preflight, or the gateway's.
async fn serve(req: Request<Body>, conn: &ConnInfo) -> Outcome {
    // A head whose fields the HTTP/1 loop could not read: nothing to judge or forward.
    if req
        .extensions()
        .get::<crate::hygiene::Malformed>()
        .is_some()
    {
        return Outcome::Respond(crate::decide::malformed(Head::of(&req), conn));
    }
    let table = plane().table.load_full();
    // A body whose framing the HTTP/1 loop refused to read: answered here, whatever
    // the path (Python's `framing` refusal; audited where its gateway would judge it).
    if let Some(&crate::hygiene::Unreadable(unframed)) = req.extensions().get() {
        let response = crate::decide::unreadable(Head::of(&req), conn, table.as_deref(), unframed);
        return Outcome::Respond(response);
    }
    let Some(table) = table else {
        return Outcome::Defer(req);
    };
    // An absolute-form target `target::prepare` left as sent is the control plane's
    // (a reserved path), or one the app refuses in a head the gateway door defers.
    if req.version() != Version::HTTP_2 && req.uri().scheme().is_some() {
        return Outcome::Defer(req);
    }
    // The forward-auth door (`/auth/verify`): the same decision, answered without proxying.
    if crate::forward_auth::asks(&req) {
        return crate::forward_auth::verify(req, conn, &table).await;
    }
    // A WebSocket upgrade (`websocket.rs`) as Python's server reads it: a plain
    // handshake, decided through its own door; one `websockets` refuses before the
    // app, refused alike; any other `Upgrade` is hop-by-hop on a plain request.
    let upgrade = if crate::hygiene::python_upgrades(req.headers()) {
        let empty = req.body().is_end_stream();
        // Every handshake `refused` passes is a plain one `handshake` takes, but
        // on a connection that cannot switch (a safeguard): refused alike.
        let taken = match crate::websocket::refused(&req, empty) {
            Some(problem) => Err(problem),
            None => crate::websocket::handshake(&req).ok_or_else(crate::websocket::unswitchable),
        };
        match taken {
            Ok(handshake) => Some(handshake),
            Err(problem) => {
                let refused =
                    crate::decide::handshake_refused(Head::of(&req), conn, &table, problem);
                return match refused {
                    Some(response) => Outcome::Respond(response),
                    None => Outcome::Defer(req),
                };
            }
        }
    } else {
        None
    };
    // A CORS preflight is matched by the method it asks for (`preflight::preflight`);
    // any other `OPTIONS` is an ordinary request.
    let req = if req.method() == http::Method::OPTIONS && table.routes.matching.preflight {
        match preflight::preflight(req, conn, &table) {
            preflight::Preflight::Answered(outcome) => return outcome,
            preflight::Preflight::Ordinary(req) => req,
        }
    } else {
        req
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
        identity_headers,
        credential_headers,
        signer,
        decision,
        started,
        request_id,
    } = match decide(Head::of(&req), conn, &table, door).await {
        Decided::Allow(allowed) => *allowed,
        Decided::Respond(response) if req.version() == Version::HTTP_2 => {
            // The body unread: kept until the answer is out (`body_limit::hold_body`).
            let body = req.into_body();
            return Outcome::Respond(crate::body_limit::hold_body(response, body));
        }
        Decided::Respond(response) => return Outcome::Respond(response),
        Decided::Defer => return Outcome::Defer(req),
    };
    // bastion's own cookies (the session, CSRF) never reach an upstream, whatever the route.
    let mut req = req;
    authn::session::strip_own_cookies(req.headers_mut());
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
        identity_headers: identity_headers.as_deref(),
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
            Ok(mut response) => {
                authn::session::drop_own_set_cookies(response.headers_mut());
                response
            }
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
            // An upstream never sets bastion's own cookies (session fixation).
            authn::session::drop_own_set_cookies(headers);
            if let Some(cors) = &cors {
                cors.apply_upstream(headers);
            }
            if !decision.headers.is_empty() {
                headers.remove(&crate::limit::RATELIMIT);
                headers.remove(&crate::limit::RATELIMIT_POLICY);
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
