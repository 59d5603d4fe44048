//! The refusals of `framing`, `match`, `body` and `authorize` the native path renders,
//! byte for byte as Python's errors render themselves
//! (`bastion.http.problem.problem_response`): the `framing` step's `400
//! invalid_method`, `431 headers_too_large`, `400 invalid_host` and `400
//! bad_request_framing` (`bastion.gateway.hygiene`), `404 route_not_found`,
//! `405 method_not_allowed` with `Allow`, `400 invalid_path`, `403
//! websocket_not_allowed` (`bastion.gateway.errors`, `.websocket`) and the
//! 403s of `bastion.gateway.authz` (`forbidden`, `route_not_allowed`,
//! `insufficient_scope` with its RFC 6750 challenge, `missing_role`,
//! `claim_mismatch`).
//!
//! Some of these carry members of their own in the problem document
//! (`BastionError.extra`: `allow`, `scope`, `role`, `claim`), written after
//! `reason` ([`crate::problem::Problem::body_with`]).

use http::header::{HeaderValue, ALLOW, WWW_AUTHENTICATE};
use http::StatusCode;

use crate::authz;
use crate::hygiene::{HeadLimits, Refused, Unframed};
use crate::problem::{push_json_str, Problem};
use crate::router::Why;
use crate::routes::RouteTable;

/// A problem document and its own members (`,"name":value…`, possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub problem: Problem,
    pub members: String,
}

fn problem(status: StatusCode, code: &'static str, title: &'static str, detail: String) -> Problem {
    Problem::plain(status, code, title, detail)
}

fn plain(problem: Problem) -> Refusal {
    Refusal {
        problem,
        members: String::new(),
    }
}

/// `,"name":"value"`.
fn member(name: &str, value: &str) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push(',');
    push_json_str(&mut out, name);
    out.push(':');
    push_json_str(&mut out, value);
    out
}

/// `RouteNotFoundError("No route matches this request.")`.
pub fn route_not_found() -> Refusal {
    plain(problem(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "Not found",
        "No route matches this request.".to_owned(),
    ))
}

/// `MethodNotAllowedError(f"{method} is not allowed on this path.", allow=…)`:
/// `allow` sorted and unique, joined by ", " in the `Allow` header, a list in
/// the document.
pub fn method_not_allowed(method: &str, allow: &[&str]) -> Option<Refusal> {
    let mut allowed: Vec<&str> = allow.to_vec();
    allowed.sort_unstable();
    allowed.dedup();
    let mut p = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        format!("{method} is not allowed on this path."),
    );
    let header = allowed.join(", ");
    // An empty `Allow` is not sent (`if allow:`).
    if !header.is_empty() {
        p.headers
            .push((ALLOW, HeaderValue::from_str(&header).ok()?));
    }
    let mut members = String::from(",\"allow\":[");
    for (i, method) in allowed.iter().enumerate() {
        if i > 0 {
            members.push(',');
        }
        push_json_str(&mut members, method);
    }
    members.push(']');
    Some(Refusal {
        problem: p,
        members,
    })
}

/// `BadRequestPathError(detail)`.
pub fn invalid_path(detail: &str) -> Refusal {
    plain(problem(
        StatusCode::BAD_REQUEST,
        "invalid_path",
        "Invalid request path",
        detail.to_owned(),
    ))
}

/// `WebSocketNotAllowedError(detail)`.
pub fn websocket_not_allowed(detail: &str) -> Refusal {
    plain(problem(
        StatusCode::FORBIDDEN,
        "websocket_not_allowed",
        "WebSocket not allowed",
        detail.to_owned(),
    ))
}

/// Python's `framing` refusal (`bastion.gateway.hygiene`), its document as
/// its errors render: `limits` are the ones the head was judged against.
pub fn framing(refused: Refused, limits: HeadLimits) -> Refusal {
    let bad_request = |code, title, detail: &str| {
        plain(problem(
            StatusCode::BAD_REQUEST,
            code,
            title,
            detail.to_owned(),
        ))
    };
    let too_large = |detail: String| {
        plain(problem(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "Request header fields too large",
            detail,
        ))
    };
    let framing = |detail| bad_request("bad_request_framing", "Bad request framing", detail);
    match refused {
        Refused::Method => bad_request(
            "invalid_method",
            "Invalid request method",
            "The request method must be an upper-case HTTP method (e.g. DELETE, not delete).",
        ),
        Refused::Fields => too_large(format!(
            "The request has more than {} header fields.",
            limits.max_headers
        )),
        Refused::Bytes => too_large(format!(
            "The request headers are larger than {} bytes.",
            limits.max_header_bytes
        )),
        Refused::Hosts => bad_request(
            "invalid_host",
            "Invalid Host header",
            "The request has more than one Host header; send one.",
        ),
        Refused::NoHost => bad_request(
            "invalid_host",
            "Invalid Host header",
            "An HTTP/1.1 request must carry a Host header.",
        ),
        Refused::Framing(Unframed::Both) => {
            framing("The request has both Content-Length and Transfer-Encoding; send only one.")
        }
        Refused::Framing(Unframed::Coding) => {
            framing("Transfer-Encoding must be exactly 'chunked'.")
        }
        Refused::Framing(Unframed::Length) => {
            framing("The request's Content-Length header is malformed.")
        }
        // Not Python's (its servers refuse it before the app): bastion's wording.
        Refused::Framing(Unframed::Http10) => {
            framing("An HTTP/1.0 request cannot carry Transfer-Encoding.")
        }
        Refused::Connect => bad_request(
            "invalid_method",
            "Invalid request method",
            "CONNECT is not served: bastion opens no tunnels.",
        ),
        // bastion's own (Python proxied such a request under the hop's text).
        Refused::ForwardedFor => bad_request(
            "invalid_forwarded_for",
            "Invalid X-Forwarded-For header",
            "The X-Forwarded-For header from a trusted proxy names a hop that is not an IP \
             address, so the client's address cannot be determined.",
        ),
    }
}

/// The front's answer to a head whose fields cannot be read (`hygiene::Malformed`):
/// the problem Python's app renders for a bad request (`bastion.http.app`'s
/// `bad_request`), since none of Python's servers hands such a head to it.
pub fn malformed_head() -> Refusal {
    plain(problem(
        StatusCode::BAD_REQUEST,
        "bad_request",
        "Bad request",
        "The request's header fields cannot be read: a name that is not a token, or a control \
         character or line folding in a value."
            .to_owned(),
    ))
}

/// The 403 of an `authorize` refusal for a request with `method`. The
/// scopes in an `insufficient_scope` challenge are scope-tokens (the table
/// refuses others: `authz::scope_tokens`), which Python writes as is.
pub fn forbidden(refusal: &authz::Refusal, method: &str) -> Refusal {
    match refusal {
        authz::Refusal::RouteNotAllowed => plain(problem(
            StatusCode::FORBIDDEN,
            "route_not_allowed",
            "Route not allowed",
            "This credential may not call this route.".to_owned(),
        )),
        authz::Refusal::NoRule => plain(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Forbidden",
            format!("The route's scopes name no rule for {method}; the request is denied."),
        )),
        authz::Refusal::InsufficientScope(needed) => {
            let scope = needed.join(" ");
            let mut p = problem(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "Insufficient scope",
                format!("This request needs the scopes: {scope}."),
            );
            let challenge = format!(
                "Bearer realm=\"bastion\", error=\"insufficient_scope\", scope=\"{scope}\""
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                // Always: a scope-token is visible ASCII without `"` or `\`.
                p.headers.push((WWW_AUTHENTICATE, value));
            }
            Refusal {
                problem: p,
                members: member("scope", &scope),
            }
        }
        authz::Refusal::MissingRole(role) => Refusal {
            problem: problem(
                StatusCode::FORBIDDEN,
                "missing_role",
                "Missing role",
                format!("This route requires the role {role}."),
            ),
            members: member("role", role),
        },
        authz::Refusal::ClaimMismatch(claim) => Refusal {
            problem: problem(
                StatusCode::FORBIDDEN,
                "claim_mismatch",
                "Claim mismatch",
                format!("The credential's claim {claim} does not allow this route."),
            ),
            members: member("claim", claim),
        },
    }
}

/// Python's `match` refusal for a request [`RouteTable::route`] deferred
/// (`why`), where the table tells it exactly (the head's `framing` aside):
/// no route, `404`; routes for the path but not the method, `405` with
/// `Allow`; a path without `%` the app hands to its gateway and
/// `normalize_path` refuses, `400 invalid_path`. `None`: Python decides (a
/// path with `%` normalisation refuses is the app's 400, rendered before
/// the gateway by `gateway::handle`).
pub fn unmatched(
    table: &RouteTable,
    host: Option<&[u8]>,
    method: &http::Method,
    target: &str,
    why: Why,
) -> Option<Refusal> {
    match why {
        Why::NoRoute => Some(route_not_found()),
        Why::MethodNotAllowed => table
            .allowed_methods(host, target)
            .and_then(|allow| method_not_allowed(method.as_str(), &allow)),
        Why::InvalidPath => match table.target(target) {
            crate::router::Target::Refused {
                detail,
                why: Why::InvalidPath,
            } => Some(invalid_path(detail)),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(refusal: &Refusal) -> String {
        String::from_utf8(refusal.problem.body_with("rid", &refusal.members).to_vec())
            .expect("utf-8")
    }

    #[test]
    fn documents_are_pythons() {
        // Rendered by `problem_response` for the same errors (orjson).
        assert_eq!(
            body(&route_not_found()),
            "{\"type\":\"urn:bastion:problem:route_not_found\",\"title\":\"Not found\",\
             \"status\":404,\"detail\":\"No route matches this request.\",\
             \"reason\":\"route_not_found\",\"request_id\":\"rid\"}"
        );
        let not_allowed = method_not_allowed("DELETE", &["POST", "GET", "HEAD", "GET"]).unwrap();
        assert_eq!(
            body(&not_allowed),
            "{\"type\":\"urn:bastion:problem:method_not_allowed\",\"title\":\"Method not allowed\",\
             \"status\":405,\"detail\":\"DELETE is not allowed on this path.\",\
             \"reason\":\"method_not_allowed\",\"allow\":[\"GET\",\"HEAD\",\"POST\"],\
             \"request_id\":\"rid\"}"
        );
        assert_eq!(not_allowed.problem.headers[0].1, "GET, HEAD, POST");
        let scope = forbidden(
            &authz::Refusal::InsufficientScope(vec!["a:b".into(), "c".into()]),
            "GET",
        );
        assert_eq!(
            body(&scope),
            "{\"type\":\"urn:bastion:problem:insufficient_scope\",\"title\":\"Insufficient scope\",\
             \"status\":403,\"detail\":\"This request needs the scopes: a:b c.\",\
             \"reason\":\"insufficient_scope\",\"scope\":\"a:b c\",\"request_id\":\"rid\"}"
        );
        assert_eq!(
            scope.problem.headers[0].1,
            "Bearer realm=\"bastion\", error=\"insufficient_scope\", scope=\"a:b c\""
        );
        let role = forbidden(&authz::Refusal::MissingRole("ad\"min".into()), "GET");
        assert!(body(&role).contains(",\"role\":\"ad\\\"min\",\"request_id\""));
        let claim = forbidden(&authz::Refusal::ClaimMismatch("tier".into()), "GET");
        assert_eq!(
            body(&claim),
            "{\"type\":\"urn:bastion:problem:claim_mismatch\",\"title\":\"Claim mismatch\",\
             \"status\":403,\"detail\":\"The credential's claim tier does not allow this route.\",\
             \"reason\":\"claim_mismatch\",\"claim\":\"tier\",\"request_id\":\"rid\"}"
        );
    }

    #[test]
    fn framing_documents_are_pythons() {
        let limits = HeadLimits {
            max_headers: 20,
            max_header_bytes: 2048,
        };
        let document = |refused| {
            let refusal = framing(refused, limits);
            (refusal.problem.status.as_u16(), body(&refusal))
        };
        // Rendered by `problem_response` for `bastion.gateway.hygiene`'s errors.
        assert_eq!(
            document(Refused::Method),
            (
                400,
                "{\"type\":\"urn:bastion:problem:invalid_method\",\"title\":\"Invalid request method\",\
                 \"status\":400,\"detail\":\"The request method must be an upper-case HTTP method \
                 (e.g. DELETE, not delete).\",\"reason\":\"invalid_method\",\"request_id\":\"rid\"}"
                    .to_owned()
            )
        );
        assert_eq!(
            document(Refused::Fields),
            (
                431,
                "{\"type\":\"urn:bastion:problem:headers_too_large\",\"title\":\"Request header fields \
                 too large\",\"status\":431,\"detail\":\"The request has more than 20 header fields.\",\
                 \"reason\":\"headers_too_large\",\"request_id\":\"rid\"}"
                    .to_owned()
            )
        );
        let bytes = document(Refused::Bytes).1;
        assert!(bytes.contains("\"detail\":\"The request headers are larger than 2048 bytes.\""));
        let host = document(Refused::NoHost).1;
        assert!(host.contains("\"title\":\"Invalid Host header\",\"status\":400,"));
        assert!(host.contains("\"An HTTP/1.1 request must carry a Host header.\""));
        let both = document(Refused::Framing(Unframed::Both)).1;
        assert!(both.starts_with(
            "{\"type\":\"urn:bastion:problem:bad_request_framing\",\"title\":\"Bad request framing\""
        ));
        let coding = document(Refused::Framing(Unframed::Coding)).1;
        assert!(coding.contains("\"detail\":\"Transfer-Encoding must be exactly 'chunked'.\""));
        assert_eq!(malformed_head().problem.code, "bad_request");
    }
}
