//! RFC 9457 problem+json for the errors the native path answers itself,
//! byte-identical to Python's `bastion.http.problem.problem_response`.
//!
//! The body is `{"type","title","status","detail","reason","request_id"}`
//! (orjson's compact form, members in that order); the head is
//! `content-type`, `cache-control: no-store`, `content-length`, then
//! `www-authenticate` and `retry-after` when the error has them, then the error's own headers
//! (`ratelimit-policy`, `ratelimit` on a 429). Anything the front adds to
//! every response (request id, security headers) comes after, as in Python's
//! middleware. Vectors rendered by Python: `tests/vectors/problems.json`.
//! https://www.rfc-editor.org/rfc/rfc9457

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::StatusCode;

use crate::http::{full, Body};
use crate::limit::LimitDecision;

/// The content type of every problem document.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The code of the problem a response renders, in its extensions when
/// tracing is on: the span's `bastion.outcome` (`crate::tracing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemCode(pub &'static str);

/// One error the native path renders (a Python `BastionError` twin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub status: StatusCode,
    /// The stable machine code (`reason`, and the `type` URN).
    pub code: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// The RFC 6750 challenge (`WWW-Authenticate`).
    pub www_authenticate: Option<&'static str>,
    /// `Retry-After` in whole seconds.
    pub retry_after: Option<u64>,
    /// Further headers of the error, after `Retry-After`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    fn new(
        status: u16,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Problem::plain(status, code, title, detail.into())
    }

    /// A problem with no challenge, no `Retry-After` and no further headers.
    pub fn plain(
        status: StatusCode,
        code: &'static str,
        title: &'static str,
        detail: String,
    ) -> Self {
        Problem {
            status,
            code,
            title,
            detail,
            www_authenticate: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// 429 `rate_limited` (`gateway.limit.RateLimitedError`) from a refused decision.
    pub fn rate_limited(decision: &LimitDecision) -> Self {
        let mut problem = Problem::new(
            429,
            "rate_limited",
            "Too many requests",
            "Rate limit exceeded; retry later.",
        );
        problem.retry_after = Some(decision.retry_after.unwrap_or(1));
        problem.headers = decision.headers.clone();
        problem
    }

    /// 401 `invalid_api_key` (`bastion.apikeys.errors.InvalidApiKeyError`): one
    /// answer for every refused key, whatever the reason (that is audit-only).
    pub fn invalid_api_key() -> Self {
        let mut problem = Problem::new(
            401,
            "invalid_api_key",
            "Invalid API key",
            "the API key is not valid",
        );
        problem.www_authenticate = Some("Bearer realm=\"bastion\", error=\"invalid_token\"");
        problem
    }

    /// 403 `api_key_ip_not_allowed` (`apikeys.errors.ApiKeyIPNotAllowedError`): a
    /// usable key whose IP allow-list does not hold the client's address.
    pub fn api_key_ip_not_allowed() -> Self {
        Problem::new(
            403,
            "api_key_ip_not_allowed",
            "API key not allowed from this address",
            "the API key may not be used from this address",
        )
    }

    /// 401 `invalid_token` (`gateway.authn.jwt.InvalidBearerTokenError`): one
    /// answer for every refused bearer token (the reason is audit-only).
    pub fn invalid_token() -> Self {
        let mut problem = Problem::new(
            401,
            "invalid_token",
            "Invalid token",
            "The access token is invalid, expired or revoked.",
        );
        problem.www_authenticate = Some("Bearer realm=\"bastion\", error=\"invalid_token\"");
        problem
    }

    /// 401 `unauthenticated` (`gateway.errors.UnauthenticatedError`): no method
    /// of the route vouched for the request (no credential it reads).
    pub fn unauthenticated() -> Self {
        let mut problem = Problem::new(
            401,
            "unauthenticated",
            "Unauthenticated",
            "This route requires authentication.",
        );
        problem.www_authenticate = Some("Bearer realm=\"bastion\"");
        problem
    }

    /// 400 `api_key_in_query` (`bastion.apikeys.errors.ApiKeyInQueryError`):
    /// something shaped like a key in the query string of an `api_key` route.
    pub fn api_key_in_query() -> Self {
        let mut problem = Problem::new(
            400,
            "api_key_in_query",
            "API key in the query string",
            "API keys are accepted only in request headers (Authorization: Bearer, or the \
             route's API key header), never in the query string: URLs end up in logs, \
             browser history and Referer headers. Revoke or rotate a key that was sent there.",
        );
        problem.www_authenticate = Some("Bearer realm=\"bastion\", error=\"invalid_request\"");
        problem
    }

    /// 503 `rate_limiter_unavailable` (the shared limiter is down, a limit fails closed).
    pub fn rate_limiter_unavailable() -> Self {
        let mut problem = Problem::new(
            503,
            "rate_limiter_unavailable",
            "Service unavailable",
            "The rate limiter is unavailable; try again shortly.",
        );
        problem.retry_after = Some(1);
        problem
    }

    /// 502 `upstream_unavailable`: refused, reset, closed, invalid response.
    /// Python's details: "The upstream could not be reached." (connect) or
    /// "The upstream closed the connection without answering.".
    pub fn upstream_unavailable(detail: impl Into<String>) -> Self {
        Problem::new(502, "upstream_unavailable", "Upstream unavailable", detail)
    }

    /// 502 `upstream_tls_error` ("The TLS handshake with the upstream failed.").
    pub fn upstream_tls(detail: impl Into<String>) -> Self {
        Problem::new(502, "upstream_tls_error", "Upstream TLS error", detail)
    }

    /// 504 `upstream_timeout`: "Connecting to the upstream timed out." or
    /// "The upstream did not answer in time.".
    pub fn upstream_timeout(detail: impl Into<String>) -> Self {
        Problem::new(504, "upstream_timeout", "Upstream timeout", detail)
    }

    /// 503 `upstream_unavailable`: every target is ejected by the health checks.
    pub fn no_healthy_upstream(retry_after: u64) -> Self {
        let mut problem = Problem::new(
            503,
            "upstream_unavailable",
            "Upstream unavailable",
            "Every upstream target of this route is failing; retry later.",
        );
        problem.retry_after = Some(retry_after);
        problem
    }

    /// 413 `request_too_large` for a body over `max_body` bytes.
    pub fn request_too_large(max_body: u64) -> Self {
        Problem::new(
            413,
            "request_too_large",
            "Request body too large",
            format!("The request body is larger than {max_body} bytes."),
        )
    }

    /// 413 `body_too_large`: the route's `max_body` (the `body` hygiene step),
    /// declared by `Content-Length` or counted while streaming.
    pub fn body_too_large(max_body: u64) -> Self {
        Problem::new(
            413,
            "body_too_large",
            "Request body too large",
            format!("The request body is larger than {max_body} bytes."),
        )
    }

    /// A 400 the proxy step meets on the client's side, as the upstream error
    /// names it: `bad_request` (the client's body ended before its declared
    /// end), `invalid_path` (a path that cannot be forwarded).
    pub fn client_side(
        status: u16,
        code: &'static str,
        title: &'static str,
        detail: &'static str,
    ) -> Self {
        Problem::new(status, code, title, detail)
    }

    /// 503 `service_unavailable` (a dependency is down; Retry-After 1).
    pub fn service_unavailable(detail: Option<&str>) -> Self {
        let mut problem = Problem::new(
            503,
            "service_unavailable",
            "Service unavailable",
            detail.unwrap_or("Service unavailable"),
        );
        problem.retry_after = Some(1);
        problem
    }

    /// 503 `assertion_unavailable`: the route sends the signed identity
    /// assertion and the native core holds no signing key it can sign with
    /// (none pushed, or one `ring` refuses: rotate it). No `Retry-After`: it
    /// lasts until the operator rotates the key.
    pub fn assertion_unavailable() -> Self {
        Problem::new(
            503,
            "assertion_unavailable",
            "Identity assertion unavailable",
            "The gateway cannot sign the identity assertion this route sends upstream.",
        )
    }

    /// 503 of a failed control-plane lookup (`crate::lookup`): Python's
    /// `ServiceUnavailableError` subclass (`database_unavailable`,
    /// `introspection_unavailable`, …), `Retry-After: 1`.
    pub fn lookup_unavailable(why: &crate::authn::miss::Unavailable) -> Self {
        let mut problem = Problem::new(503, why.code, why.title, why.detail.as_str());
        problem.retry_after = Some(1);
        problem
    }

    /// The problem document for the request `request_id`, as orjson writes it.
    pub fn body(&self, request_id: &str) -> Bytes {
        self.body_with(request_id, "")
    }

    /// [`Problem::body`] with the error's own members (`extra`, Python's
    /// `BastionError.extra`), already rendered as `,"name":value…`: they come
    /// after `reason` and before `request_id`, as in `problem_document`.
    pub fn body_with(&self, request_id: &str, members: &str) -> Bytes {
        let mut out =
            String::with_capacity(160 + self.detail.len() + request_id.len() + members.len());
        out.push_str("{\"type\":\"urn:bastion:problem:");
        push_escaped(&mut out, self.code);
        out.push_str("\",\"title\":");
        push_json_str(&mut out, self.title);
        out.push_str(",\"status\":");
        out.push_str(itoa(self.status.as_u16()).as_str());
        out.push_str(",\"detail\":");
        push_json_str(&mut out, &self.detail);
        out.push_str(",\"reason\":");
        push_json_str(&mut out, self.code);
        out.push_str(members);
        out.push_str(",\"request_id\":");
        push_json_str(&mut out, request_id);
        out.push('}');
        Bytes::from(out)
    }

    /// The response head (in Python's order) for a body of `length` bytes.
    pub fn headers(&self, length: usize) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = Vec::with_capacity(4 + self.headers.len());
        headers.push((CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE)));
        headers.push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
        headers.push((CONTENT_LENGTH, HeaderValue::from(length)));
        if let Some(challenge) = self.www_authenticate {
            headers.push((WWW_AUTHENTICATE, HeaderValue::from_static(challenge)));
        }
        if let Some(seconds) = self.retry_after {
            headers.push((RETRY_AFTER, HeaderValue::from(seconds)));
        }
        headers.extend(self.headers.iter().cloned());
        headers
    }

    /// The whole response.
    pub fn into_response(self, request_id: &str) -> http::Response<Body> {
        self.into_response_with(request_id, "")
    }

    /// The whole response, with the error's own members ([`Problem::body_with`]).
    pub fn into_response_with(self, request_id: &str, members: &str) -> http::Response<Body> {
        let body = self.body_with(request_id, members);
        let mut response = http::Response::new(full(body.clone()));
        *response.status_mut() = self.status;
        let map = response.headers_mut();
        for (name, value) in self.headers(body.len()) {
            map.append(name, value);
        }
        // For a traced request's span (`tracing::Traced::end`).
        response.extensions_mut().insert(ProblemCode(self.code));
        response
    }
}

fn itoa(n: u16) -> String {
    n.to_string()
}

/// `value` as a JSON string, as orjson writes it.
pub(crate) fn push_json_str(out: &mut String, value: &str) {
    out.push('"');
    push_escaped(out, value);
    out.push('"');
}

/// JSON string escaping as orjson does it: `"`, `\`, and control characters
/// (`\b \t \n \f \r` short, others `\u00XX` lower-case); everything else as UTF-8.
fn push_escaped(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 0xf] as char);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn problem_of(vector: &Value) -> Option<Problem> {
        let args = &vector["args"];
        let text = |name: &str| args[name].as_str().unwrap_or_default().to_owned();
        Some(match vector["kind"].as_str()? {
            "rate_limited" => {
                let headers = args["headers"]
                    .as_array()?
                    .iter()
                    .filter_map(|pair| {
                        let name = HeaderName::from_bytes(pair[0].as_str()?.as_bytes()).ok()?;
                        let value = HeaderValue::from_str(pair[1].as_str()?).ok()?;
                        Some((name, value))
                    })
                    .collect();
                Problem::rate_limited(&LimitDecision {
                    allowed: false,
                    headers,
                    retry_after: args["retry_after"].as_u64(),
                })
            }
            "rate_limiter_unavailable" => Problem::rate_limiter_unavailable(),
            "invalid_api_key" => Problem::invalid_api_key(),
            "invalid_token" => Problem::invalid_token(),
            "unauthenticated" => Problem::unauthenticated(),
            "api_key_in_query" => Problem::api_key_in_query(),
            "upstream_unavailable" => Problem::upstream_unavailable(text("detail")),
            "upstream_tls" => Problem::upstream_tls(text("detail")),
            "upstream_timeout" => Problem::upstream_timeout(text("detail")),
            "no_healthy_upstream" => Problem::no_healthy_upstream(args["retry_after"].as_u64()?),
            "request_too_large" => Problem::request_too_large(args["max_body"].as_u64()?),
            "body_too_large" => Problem::body_too_large(args["max_body"].as_u64()?),
            "service_unavailable" => Problem::service_unavailable(args["detail"].as_str()),
            _ => return None,
        })
    }

    #[test]
    fn python_vectors_render_byte_identical() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/vectors/problems.json"
        );
        let text = std::fs::read_to_string(path).expect("tests/vectors/problems.json");
        let vectors: Vec<Value> = serde_json::from_str(&text).expect("valid JSON");
        assert!(vectors.len() >= 8);
        for vector in &vectors {
            let problem = problem_of(vector).expect("known kind");
            let request_id = vector["request_id"].as_str().unwrap_or_default();
            let body = problem.body(request_id);
            assert_eq!(
                std::str::from_utf8(&body).ok(),
                vector["body"].as_str(),
                "{}",
                vector["kind"]
            );
            assert_eq!(
                u64::from(problem.status.as_u16()),
                vector["status"].as_u64().unwrap_or(0)
            );
            let head: Vec<(String, String)> = problem
                .headers(body.len())
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            let expected: Vec<(String, String)> = vector["headers"]
                .as_array()
                .map(|pairs| {
                    pairs
                        .iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap_or("").to_owned(),
                                p[1].as_str().unwrap_or("").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(head, expected, "{}", vector["kind"]);
        }
    }

    proptest::proptest! {
        /// Any detail and request id render as JSON that reads back as the same strings.
        #[test]
        fn bodies_are_valid_json(detail in "\\PC*|[\\x00-\\x1f\"\\\\]{0,8}", rid in ".{0,40}") {
            let body = Problem::upstream_unavailable(detail.clone()).body(&rid);
            let parsed: Value = serde_json::from_slice(&body).expect("valid JSON");
            proptest::prop_assert_eq!(parsed["detail"].as_str(), Some(detail.as_str()));
            proptest::prop_assert_eq!(parsed["request_id"].as_str(), Some(rid.as_str()));
        }
    }

    #[test]
    fn response_carries_status_head_and_body() {
        let response = Problem::request_too_large(10).into_response("r-1");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(response.headers()["content-length"], "195");
    }
}
