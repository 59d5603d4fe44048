//! The CORS door of a request: Python's `match` on a table where some route
//! has CORS (a preflight is matched by the method it asks for: [`route`]),
//! and a preflight of a CORS route answered or refused before authentication
//! ([`preflight`]), never proxied. The policy it applies is `cors`'s.
//!
//! A preflight to a route without CORS, or for a method no route takes, is
//! an ordinary `OPTIONS`: decided through every step as any request (proxied,
//! or Python's 404 / 405 with `Allow`, rendered natively); a preflight asking
//! for `OPTIONS` itself is matched by it and, on a CORS route, refused for its
//! method (`compile_cors` never allows `OPTIONS`). A preflight whose head
//! `framing` passes is answered here whatever body it carries (chunked, over
//! the route's `max_body`, HTTP/2 without a length): Python's `cors` step
//! answered before its `body` step, the body unread.

use std::net::IpAddr;
use std::time::Instant;

use http::header::HeaderMap;
use http::{Method, Request, Response, StatusCode, Version};

use crate::client_ip::client_ip;
use crate::cors;
use crate::http::{full, Body, ConnInfo, Identity, Outcome};
use crate::hygiene;
use crate::plane::plane;
use crate::problem::Problem;
use crate::respond;
use crate::router::{Routed, Why};
use crate::routes::RouteTable;
use crate::table::Table;
use crate::verdict::{host_of, DeniedHead};

/// Python's `match` for one request: on a table where some route has CORS, a
/// preflight is matched by the method it asks for, and is one only on a
/// route with CORS (then `Some(asked)`); otherwise — no preflight, no route
/// for the asked method or one without CORS — the request is matched by its
/// own method (an ordinary `OPTIONS`, through every step). A preflight whose
/// host or target the router does not read is that `Defer`.
pub(crate) fn route<'t>(
    table: &'t Table,
    host: Option<&[u8]>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    judged: bool,
) -> (Routed<'t>, Option<cors::Asked>) {
    let answers = |index: usize| {
        table
            .native
            .get(index)
            .is_some_and(|native| native.cors.is_some())
    };
    matched(
        &table.routes,
        answers,
        host,
        method,
        target,
        headers,
        judged,
    )
}

/// [`route`] on `routes`; `answers(index)`: whether the route has CORS.
fn matched<'t>(
    routes: &'t RouteTable,
    answers: impl Fn(usize) -> bool,
    host: Option<&[u8]>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    judged: bool,
) -> (Routed<'t>, Option<cors::Asked>) {
    // A judged request (forward-auth) is matched as Python's `RouteMatcher`
    // matches it, under a reserved prefix too (`RouteTable::route_judged`).
    let route = |method: &Method| match judged {
        true => routes.route_judged(host, method, target),
        false => routes.route(host, method, target),
    };
    if *method == Method::OPTIONS && routes.matching.preflight {
        if let Some(asked) = cors::requested(headers) {
            let routed = route(&asked.method);
            let preflight = match &routed {
                Routed::Native { route } => answers(route.index),
                // Python's `match` catches the matcher's refusal and tries `OPTIONS`.
                Routed::Defer(Why::NoRoute | Why::MethodNotAllowed) => false,
                // A host or target the router does not read: as for any method.
                Routed::Defer(why) => return (Routed::Defer(*why), None),
            };
            if preflight {
                return (routed, Some(asked));
            }
        }
    }
    (route(method), None)
}

/// What [`preflight`] did with an `OPTIONS` request.
pub enum Preflight {
    /// A preflight of a CORS route: answered or refused.
    Answered(Outcome),
    /// Not a preflight for a route with CORS: an ordinary request, decided
    /// as any other (`decide`: framing, match, … proxy).
    Ordinary(Request<Body>),
}

/// An `OPTIONS` request while some route has CORS (`match` then `cors` of
/// Python's pipeline): a preflight for a native CORS route is answered or
/// refused here; anything else is an ordinary request.
pub fn preflight(req: Request<Body>, conn: &ConnInfo, table: &Table) -> Preflight {
    // Python's `framing` judges the head first: its refusal is the ordinary path's.
    if hygiene::refused(
        req.method(),
        req.version(),
        req.headers(),
        req.uri().authority().map(http::uri::Authority::as_str),
        http_body::Body::is_end_stream(req.body()),
        table.head,
    )
    .is_some()
    {
        return Preflight::Ordinary(req);
    }
    // A trusted proxy's hop that is not an address: the ordinary path's 400
    // `invalid_forwarded_for` (`decide`), as for any request.
    let Some(ip) = client_ip(conn.peer.ip(), req.headers(), &table.trusted) else {
        return Preflight::Ordinary(req);
    };
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let (routed, asked) = route(
        table,
        host_of(&req),
        req.method(),
        target,
        req.headers(),
        false,
    );
    let (Routed::Native { route, .. }, Some(asked)) = (routed, asked) else {
        return Preflight::Ordinary(req);
    };
    let Some((native, Some(policy))) = table.native.get(route.index).map(|n| (n, n.cors.as_ref()))
    else {
        return Preflight::Ordinary(req);
    };
    let response = answer(&req, (ip, conn.tls), route, native, policy, &asked);
    // A body is never read (Python's `cors` step answers before its `body` step,
    // whatever the body's framing or length): the HTTP/1 loop drains or closes;
    // an HTTP/2 body is kept until the answer is out (`body_limit::hold_body`).
    let response = match req.version() {
        Version::HTTP_2 => crate::body_limit::hold_body(response, req.into_body()),
        _ => response,
    };
    Preflight::Answered(Outcome::Respond(response))
}

/// Python's `cors` step for a preflight of a CORS route (its `ip` step first),
/// whose head `framing` passed.
fn answer(
    req: &Request<Body>,
    peer: (IpAddr, bool),
    route: &crate::routes::Route,
    native: &crate::table::NativeRoute,
    policy: &cors::CorsPolicy,
    asked: &cors::Asked,
) -> Response<Body> {
    let (ip, https) = peer;
    // Python's `ip` step runs first (no CORS headers yet).
    if native.ip.as_ref().is_some_and(|rules| !rules.admits(ip)) {
        return refuse(req, &route.name, peer, crate::ip_rules::not_allowed(), "ip");
    }
    let origin = match cors::preflight_allowed(policy, asked, req.headers()) {
        Ok(origin) => origin,
        Err(problem) => return refuse(req, &route.name, peer, problem, "cors"),
    };
    let started = Instant::now();
    let request_id = plane().request_ids.assign(req.headers());
    let mut response = http::Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    cors::preflight_head(policy, origin, headers);
    respond::decorate(headers, https, &request_id);
    // Metered like Python's (the route, no error); an answered preflight is no audit event.
    crate::metrics::global().record(Some(&route.name), None, started.elapsed().as_secs_f64());
    response
}

/// A preflight's refusal (`problem`), audited and metered as Python's `step`
/// (`cors`, or `ip`) does: no identity yet, no CORS headers.
fn refuse(
    req: &Request<Body>,
    route: &str,
    (ip, https): (IpAddr, bool),
    problem: Problem,
    step: &'static str,
) -> Response<Body> {
    let started = Instant::now();
    let request_id = plane().request_ids.assign(req.headers());
    let rid = request_id.to_str().unwrap_or("-");
    let nobody = Identity::default();
    DeniedHead::of(req).denied(route, &nobody, ip, rid, &problem, step, started);
    let mut response = problem.into_response(rid);
    respond::decorate(response.headers_mut(), https, &request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cors::tests::head;

    #[test]
    fn cors_preflights_route_as_pythons_match() {
        let rule = |index: usize, name: &str, prefix: &str, methods: Option<&[&str]>| {
            serde_json::json!({"index": index, "name": name,
                "match": {"host": null, "prefix": prefix, "methods": methods,
                          "strip_prefix": false, "upstream_base": ""}})
        };
        let json = serde_json::json!({"version": 1,
        "match": {"reserved": ["/oauth2"], "preflight": true},
        "routes": [
            rule(0, "browser", "/b", Some(&["GET", "POST"])),
            rule(1, "plain", "/p", None),
            rule(2, "opts", "/o", Some(&["GET", "OPTIONS"])),
            rule(3, "python", "/py", None),
            rule(4, "any", "/a", None),
        ]});
        let routes = RouteTable::from_json(&json.to_string()).expect("table");
        // browser, opts and any have CORS.
        let answers = |index: usize| matches!(index, 0 | 2 | 4);
        let o = ("origin", "https://app.example.com");
        let acrm = "access-control-request-method";
        let at = |target: &str, pairs: &[(&str, &str)]| {
            let (routed, asked) = matched(
                &routes,
                answers,
                Some(b"gw.test".as_slice()),
                &Method::OPTIONS,
                target,
                &head(pairs),
                false,
            );
            let routed = match routed {
                Routed::Native { route, .. } => Ok(route.name.clone()),
                Routed::Defer(why) => Err(why),
            };
            (routed, asked.map(|a| a.text))
        };
        // A preflight of a CORS route, matched by the method it asks for.
        assert_eq!(
            at("/b/x", &[o, (acrm, "POST")]),
            (Ok("browser".into()), Some("POST".into()))
        );
        // Asking for `OPTIONS` itself: matched by it (refused for its method later).
        assert_eq!(
            at("/a", &[o, (acrm, "OPTIONS")]),
            (Ok("any".into()), Some("OPTIONS".into()))
        );
        // No route takes the asked method: an ordinary OPTIONS (the route's 405).
        assert_eq!(
            at("/b", &[o, (acrm, "DELETE")]),
            (Err(Why::MethodNotAllowed), None)
        );
        assert_eq!(at("/o", &[o, (acrm, "PUT")]), (Ok("opts".into()), None));
        assert_eq!(
            at("/nothing", &[o, (acrm, "GET")]),
            (Err(Why::NoRoute), None)
        );
        // A route without CORS: an ordinary OPTIONS, proxied.
        assert_eq!(at("/p", &[o, (acrm, "GET")]), (Ok("plain".into()), None));
        // No preflight at all (no Origin, no or two request methods).
        assert_eq!(
            at("/b", &[(acrm, "GET")]),
            (Err(Why::MethodNotAllowed), None)
        );
        assert_eq!(at("/a", &[o]), (Ok("any".into()), None));
        assert_eq!(
            at("/a", &[o, (acrm, "GET"), (acrm, "GET")]),
            (Ok("any".into()), None)
        );
        // The asked method's route has no CORS: an ordinary OPTIONS.
        assert_eq!(at("/py", &[o, (acrm, "GET")]), (Ok("python".into()), None));
        // Not OPTIONS: matched by its own method, whatever it carries.
        let (get, asked) = matched(
            &routes,
            answers,
            Some(b"gw.test".as_slice()),
            &Method::GET,
            "/b",
            &head(&[o, (acrm, "DELETE")]),
            false,
        );
        assert!(matches!(get, Routed::Native { route, .. } if route.name == "browser"));
        assert!(asked.is_none());
    }
}
