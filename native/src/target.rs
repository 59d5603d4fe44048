//! The request-target as the Python app reads it, before any door decides
//! (`BastionApp._dispatch`, then the gateway's `match` step; the rules are
//! [`crate::routes::RouteTable::target`]'s):
//!
//! - a target the app hands to its gateway whose path is not in normal form
//!   (`//`, dot segments, `%41`, `%2e`, bytes outside `pchar`), or in absolute
//!   form (`GET http://host/path?q HTTP/1.1`, RFC 9112 §3.2.2: uvicorn hands
//!   Python the path and query only, and Python routes by the `Host` header,
//!   whatever authority the target names), is rewritten in place to the
//!   normal path and the raw query, so every step after it — the router, the
//!   audit row, the span, the upstream target — reads what Python's would; a
//!   request that is then deferred gets its target back as it was sent;
//! - a path with `%` that `normalize_path` refuses (`%2F`, `%5C`, `%00`, a bad
//!   escape, …) is refused by the app before its gateway runs: its 400
//!   `invalid_path` is rendered here, not audited and not metered as a
//!   gateway decision (nor traced), as Python's.

use std::borrow::Cow;

use http::uri::{PathAndQuery, Uri};
use http::{Request, Version};

use crate::http::{Body, ConnInfo, Outcome};
use crate::plane::plane;
use crate::respond;
use crate::router::{Target, Why};
use crate::table::Table;

/// What [`prepare`] did to a request.
pub(crate) enum Prepared {
    /// Nothing: its target is read as sent (or not by the native path).
    AsSent,
    /// Its target was rewritten; this is the one it was sent with.
    Rewritten(Uri),
    /// The app's 400 `invalid_path`.
    Answered(http::Response<Body>),
}

/// Read `req`'s target as the app does (see the module docs).
pub(crate) fn prepare(req: &mut Request<Body>, conn: &ConnInfo) -> Prepared {
    let guard = plane().table.load();
    match guard.as_ref() {
        Some(table) => prepare_with(req, conn, table),
        None => Prepared::AsSent,
    }
}

/// [`prepare`] with the table in force.
fn prepare_with(req: &mut Request<Body>, conn: &ConnInfo, table: &Table) -> Prepared {
    // Absolute form, or authority form (`GET host:port`, which the hop to Python
    // sends as `/`): read as the origin-form path and query, as Python reads it.
    let absolute = req.version() != Version::HTTP_2
        && (req.uri().scheme().is_some() || req.uri().authority().is_some());
    let sent = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    let normal = match table.routes.target(sent) {
        Target::Gateway { path, query } => {
            if !absolute && matches!(path, Cow::Borrowed(_)) {
                // Already normal (the path is the one sent; an empty `?` is dropped
                // downstream, as Python drops it).
                return Prepared::AsSent;
            }
            match query {
                Some(query) => format!("{path}?{query}"),
                None => path.into_owned(),
            }
        }
        // The gateway's own 400 (`refusal::unmatched`) reads the path as sent.
        Target::Refused {
            why: Why::InvalidPath,
            ..
        } if absolute => sent.to_owned(),
        Target::Refused {
            detail,
            why: Why::AppInvalidPath,
        } => {
            return match app_refusal(req, conn, table, detail) {
                Some(response) => Prepared::Answered(response),
                None => Prepared::AsSent,
            }
        }
        _ => return Prepared::AsSent,
    };
    let Ok(path_and_query) = PathAndQuery::try_from(normal) else {
        return Prepared::AsSent;
    };
    let mut parts = req.uri().clone().into_parts();
    if absolute {
        // Origin-form, as uvicorn hands it to Python (the Host header names the host).
        parts.scheme = None;
        parts.authority = None;
    }
    parts.path_and_query = Some(path_and_query);
    match Uri::from_parts(parts) {
        Ok(uri) => Prepared::Rewritten(std::mem::replace(req.uri_mut(), uri)),
        Err(_) => Prepared::AsSent,
    }
}

/// A deferred request goes to Python with the target it was sent with.
pub(crate) fn restore(outcome: Outcome, sent: Option<Uri>) -> Outcome {
    match (outcome, sent) {
        (Outcome::Defer(mut req), Some(uri)) => {
            *req.uri_mut() = uri;
            Outcome::Defer(req)
        }
        (outcome, _) => outcome,
    }
}

/// The app's 400 for a path with `%` that normalisation refuses
/// (`ErrorMiddleware` renders `BadRequestPathError`; the request id and
/// security headers of its HTTP middleware), for a head the gateway door
/// takes (its `framing`, as for the gateway's own refusals: a plain method,
/// one Host, no upgrade, a plain body). `None`:
/// Python answers.
fn app_refusal(
    req: &Request<Body>,
    conn: &ConnInfo,
    table: &Table,
    detail: &'static str,
) -> Option<http::Response<Body>> {
    use http_body::Body as _;
    if !crate::hygiene::takes(
        req.method(),
        req.version(),
        req.headers(),
        req.body().is_end_stream(),
        table.head,
        u64::MAX,
    ) {
        return None;
    }
    let request_id = plane().request_ids.assign(req.headers());
    let rid = request_id.to_str().unwrap_or("-");
    let mut response = crate::refusal::invalid_path(detail)
        .problem
        .into_response(rid);
    respond::decorate(response.headers_mut(), conn.tls, &request_id);
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    /// A table whose routes' steps are not built: the reading of the target
    /// looks at the router and the head limits only.
    fn table() -> Table {
        let route = |index: usize, name: &str, prefix: &str| {
            serde_json::json!({"index": index, "name": name,
                "match": {"host": null, "prefix": prefix, "methods": null,
                          "strip_prefix": false, "upstream_base": ""}})
        };
        let json = serde_json::json!({"version": 1,
            "match": {"reserved": ["/healthz", "/oauth2", "/admin"], "preflight": false},
            "routes": [route(0, "api", "/api")]});
        Table {
            routes: crate::routes::RouteTable::from_json(&json.to_string()).expect("routes load"),
            native: Vec::new(),
            head: crate::hygiene::HeadLimits {
                max_headers: 100,
                max_header_bytes: 65536,
            },
            trusted: crate::client_ip::TrustedProxies::parse::<&str>(&[]).expect("no proxies"),
            forward_auth: crate::forward_family::ForwardAuth::default(),
            tracing: None,
        }
    }

    fn conn() -> ConnInfo {
        ConnInfo {
            peer: "127.0.0.1:40000".parse().expect("peer"),
            tls: true,
            client_certs: Vec::new(),
        }
    }

    fn request(version: Version, target: &str, headers: &[(&str, &str)]) -> Request<Body> {
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(target)
            .version(version);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder
            .body(crate::http::full(bytes::Bytes::new()))
            .expect("request")
    }

    fn read(version: Version, target: &str, headers: &[(&str, &str)]) -> (Prepared, Request<Body>) {
        let mut req = request(version, target, headers);
        let prepared = prepare_with(&mut req, &conn(), &table());
        (prepared, req)
    }

    const HOST: &[(&str, &str)] = &[("host", "gw.test")];

    #[test]
    fn a_target_python_rewrites_is_read_in_its_normal_form_and_given_back_if_deferred() {
        let (prepared, req) = read(Version::HTTP_11, "/api//x/%7e/./y/..?q=%2e", HOST);
        assert_eq!(req.uri(), "/api/x/~/?q=%2e");
        let Prepared::Rewritten(sent) = prepared else {
            panic!("rewritten");
        };
        assert_eq!(sent, "/api//x/%7e/./y/..?q=%2e");
        let Outcome::Defer(back) = restore(Outcome::Defer(req), Some(sent)) else {
            panic!("deferred");
        };
        assert_eq!(back.uri(), "/api//x/%7e/./y/..?q=%2e");
    }

    #[test]
    fn a_normal_target_and_the_control_planes_are_left_as_sent() {
        for target in [
            "/api/x?q",
            "/api?",
            "/nothing",
            "//admin/x",
            "/x/%2e%2e/oauth2/token",
            "*",
        ] {
            let (prepared, req) = read(Version::HTTP_11, target, HOST);
            assert!(matches!(prepared, Prepared::AsSent), "{target}");
            assert_eq!(req.uri(), target);
        }
    }

    #[test]
    fn absolute_form_is_read_as_origin_form_whatever_its_authority() {
        let (prepared, req) = read(Version::HTTP_11, "http://other.example/api/x?q=1", HOST);
        assert!(
            matches!(prepared, Prepared::Rewritten(ref sent) if sent == "http://other.example/api/x?q=1")
        );
        assert_eq!(req.uri(), "/api/x?q=1");
        assert_eq!(req.uri().authority(), None);
        // The gateway's own 400 reads it as origin-form too; the control plane's stays as sent.
        let (_, req) = read(Version::HTTP_11, "http://gw.test/a/../..", HOST);
        assert_eq!(req.uri(), "/a/../..");
        let (prepared, req) = read(Version::HTTP_11, "http://gw.test/admin", HOST);
        assert!(matches!(prepared, Prepared::AsSent));
        assert_eq!(req.uri(), "http://gw.test/admin");
        // Authority form: `/`, as the hop to Python sends it.
        let (prepared, req) = read(Version::HTTP_11, "gw.test:80", HOST);
        assert!(matches!(prepared, Prepared::Rewritten(ref sent) if sent == "gw.test:80"));
        assert_eq!(req.uri(), "/");
        // Bytes outside ASCII: the path percent-encoded, the query as sent.
        let (prepared, req) = read(Version::HTTP_11, "http://gw.test/api/\u{e9}?q=\u{e9}", HOST);
        assert!(matches!(prepared, Prepared::Rewritten(_)));
        assert_eq!(req.uri().path(), "/api/%C3%A9");
        assert_eq!(req.uri().query(), Some("q=\u{e9}"));
    }

    #[test]
    fn http2_keeps_its_authority() {
        let (prepared, req) = read(Version::HTTP_2, "https://gw.test/api//x", &[]);
        assert!(matches!(prepared, Prepared::Rewritten(_)));
        assert_eq!(req.uri(), "https://gw.test/api/x");
    }

    #[test]
    fn a_percent_path_normalisation_refuses_is_the_apps_400() {
        let (prepared, _) = read(Version::HTTP_11, "/api/%2Fadmin?x", HOST);
        let Prepared::Answered(response) = prepared else {
            panic!("answered");
        };
        assert_eq!(response.status(), http::StatusCode::BAD_REQUEST);
        assert!(response.headers().contains_key(&respond::REQUEST_ID));
        assert_eq!(
            response.headers()["strict-transport-security"],
            "max-age=63072000; includeSubDomains"
        );
        // A head the gateway door does not take (no Host), or one that looks like the
        // control plane's: Python answers.
        for (target, headers) in [("/admin/%2F", HOST), ("/api/%2Fadmin", &[][..])] {
            let (prepared, req) = read(Version::HTTP_11, target, headers);
            assert!(matches!(prepared, Prepared::AsSent), "{target}");
            assert_eq!(req.uri(), target);
        }
    }
}
