//! What one native decision records and renders, below the doors that make it
//! (`gateway`, `decide`, `forward_auth`, `cors`, `websocket`, `tracing`): the
//! request head the steps read ([`Head`], [`host_of`]), the parts a denial's
//! audit event keeps ([`DeniedHead`]), the metering of an allowed request
//! ([`allowed`]) and the problem of an upstream failure ([`problem_of`]).

use std::net::IpAddr;
use std::time::Instant;

use http::header::{HeaderValue, USER_AGENT};
use http::{Request, Version};
use http_body::Body as _;

use crate::audit::{self, AuditEvent, Door};
use crate::http::{Body, Identity};
use crate::problem::Problem;
use crate::upstream::UpstreamError;

/// The request's host as the router reads it: the `Host` header's bytes
/// (Python decodes them as latin-1), or the HTTP/2 authority.
pub(crate) fn host_of(req: &Request<Body>) -> Option<&[u8]> {
    match req.headers().get(http::header::HOST) {
        Some(value) => Some(value.as_bytes()),
        None => req.uri().authority().map(|a| a.as_str().as_bytes()),
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
    pub(crate) fn host(&self) -> Option<&'r [u8]> {
        match self.headers.get(http::header::HOST) {
            Some(value) => Some(value.as_bytes()),
            None => self.uri.authority().map(|a| a.as_str().as_bytes()),
        }
    }
}

/// The parts of a request head a denial's audit event records, kept without
/// allocating (an allowed request never needs them).
pub(crate) struct DeniedHead {
    method: http::Method,
    path: http::Uri,
    /// The row's path when it is not the URI's (Python's percent-decoded scope
    /// `path` of a judged request refused before `match` had its normal form).
    path_as: Option<String>,
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
            path_as: None,
            user_agent: req.headers.get(USER_AGENT).cloned(),
            door: Door::Gateway,
        }
    }

    /// The same, for a decision that came through `door`.
    pub(crate) fn through(mut self, door: Door) -> Self {
        self.door = door;
        self
    }

    /// The same, its audit row's path `path`.
    pub(crate) fn with_path(mut self, path: String) -> Self {
        self.path_as = Some(path);
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
            path: self.path_as.unwrap_or_else(|| self.path.path().to_owned()),
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
    let (status, code, title, detail) = error.problem();
    match error {
        // The client's fault, not a dependency's: Python's 400s (was: a 503).
        UpstreamError::ClientGone { .. } | UpstreamError::InvalidTarget { .. } => {
            Problem::client_side(status, code, title, detail)
        }
        UpstreamError::Tls { .. } => Problem::upstream_tls(detail),
        UpstreamError::Timeout { .. } => Problem::upstream_timeout(detail),
        UpstreamError::NoHealthyTarget { retry_after, .. } => {
            Problem::no_healthy_upstream(*retry_after)
        }
        _ if code == "upstream_unavailable" => Problem::upstream_unavailable(detail),
        _ => Problem::service_unavailable(Some(detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_s_own_failures_are_400s_not_503s() {
        let gone = problem_of(&UpstreamError::ClientGone { note: "eof".into() });
        assert_eq!((gone.status.as_u16(), gone.code), (400, "bad_request"));
        assert_eq!(
            gone.detail,
            "The client went away before its request body was read."
        );
        assert_eq!(gone.retry_after, None);
        let target = problem_of(&UpstreamError::InvalidTarget { note: "x".into() });
        assert_eq!((target.status.as_u16(), target.code), (400, "invalid_path"));
    }
}
