//! The proxy: a route's upstream targets, their keep-alive pools and health,
//! and one request forwarded with streaming both ways.
//!
//! The specification is `bastion.gateway.proxy` and `bastion.gateway.upstreams`:
//!
//! - targets are tried round-robin among the healthy ones ([`health`]); a failed
//!   *connection* counts against the target and — for GET, HEAD, OPTIONS, PUT
//!   and DELETE only, since nothing was sent yet — is retried on each other
//!   target; every target ejected: 503 `upstream_unavailable` without connecting;
//! - a pooled connection the upstream closed before answering is retried once
//!   on a fresh connection when the request was never written, or when it is
//!   idempotent with an empty body (Python: "the body is fully in hand");
//! - timeouts: `connect_timeout` per connection attempt, `read_timeout` per wait
//!   for the response head and for each next body frame, `timeout` for the whole
//!   exchange; before the response: 504 `upstream_timeout`; after: the response
//!   body fails with [`UpstreamAborted`] and the listener aborts the client
//!   connection (a truncated body is never passed off as complete);
//! - the request is sent as HTTP/1.1 with `Host` = the target's, the path
//!   mapped by [`Upstream::upstream_path`], `Content-Length` when the body's
//!   length is known (also `0` for POST, PUT and PATCH) or the body ends with
//!   its first part (read before connecting, as Python does), else chunked;
//! - a connection goes back to the pool when the response body was read to
//!   its end and the request body was sent before the answer came;
//! - response hop-by-hop headers and those named in `Connection` are removed
//!   ([`headers`]); everything else (the upstream's `Server` too) passes.
//!
//! The request headers are [`crate::mutate::forward_headers`]'s.

mod body;
mod error;
mod failure_log;
pub mod headers;
mod health;
mod pool;
mod tls;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body as _;
use hyper::client::conn::http1::SendRequest;
use serde::Deserialize;

pub use self::body::ProxiedBody;
pub use self::error::{Cause, UpstreamAborted, UpstreamError};
pub use self::failure_log::{FailureLog, FAILURE_LOG_INTERVAL};
pub use self::health::HealthPolicy;
pub use self::pool::Target;

use self::error::{ANSWER_TIMEOUT, NO_ANSWER};
use self::health::{seconds, HealthSection};
use self::pool::TargetSpec;
use crate::http::Body;
use crate::mutate::MutateConfig;

/// Methods retried on another target when the connection could not be established.
const RETRY_ON_CONNECT_FAILURE: [Method; 5] = [
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::PUT,
    Method::DELETE,
];
/// Methods whose empty body is still announced with `Content-Length: 0`.
const BODY_METHODS: [Method; 3] = [Method::POST, Method::PUT, Method::PATCH];
const IDEMPOTENT: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::TRACE,
    Method::PUT,
    Method::DELETE,
];

#[derive(Deserialize)]
struct Section {
    targets: Vec<TargetSection>,
    base_path: String,
    strip_prefix: Option<String>,
    timeout: f64,
    connect_timeout: f64,
    read_timeout: f64,
    health: HealthSection,
    pool: PoolSection,
    tls: TlsSection,
    mutate: serde_json::Value,
}

#[derive(Deserialize)]
struct TargetSection {
    scheme: String,
    host: String,
    port: u16,
    host_header: String,
    key: String,
}

#[derive(Deserialize)]
struct PoolSection {
    max_idle: usize,
    idle_timeout: f64,
}

#[derive(Deserialize)]
struct TlsSection {
    ca: Option<String>,
    #[serde(default)]
    client_cert: Option<String>,
    #[serde(default)]
    client_key: Option<String>,
}

/// One route's upstream: its targets, timeouts, health policy and mutate rules.
/// Built once per table load; cheap to share (`Arc`) between requests.
pub struct Upstream {
    targets: Vec<Arc<Target>>,
    next: AtomicUsize,
    base_path: String,
    strip_prefix: Option<String>,
    timeout: Duration,
    connect_timeout: Duration,
    read_timeout: Duration,
    policy: HealthPolicy,
    mutate: MutateConfig,
}

impl Upstream {
    /// Build from the route's `upstream` section (`compile/upstream.py`).
    ///
    /// Errors name the field: a malformed section, a zero timeout, an
    /// unusable `upstream_ca`. Targets are shared by key with every other
    /// route and table (see `pool`).
    pub fn from_section(section: &serde_json::Value) -> Result<Upstream, String> {
        let raw = Section::deserialize(section).map_err(|e| format!("upstream: {e}"))?;
        let positive = |value: f64, what: &str| {
            let d = seconds(value, what)?;
            if d.is_zero() {
                return Err(format!("{what}: must be positive"));
            }
            Ok(d)
        };
        let timeout = positive(raw.timeout, "timeout")?;
        let connect_timeout = positive(raw.connect_timeout, "connect_timeout")?.min(timeout);
        let read_timeout = positive(raw.read_timeout, "read_timeout")?.min(timeout);
        let policy = HealthPolicy::from_section(&raw.health)?;
        let idle_timeout = seconds(raw.pool.idle_timeout, "pool.idle_timeout")?;
        if raw.targets.is_empty() {
            return Err("upstream.targets: a route needs at least one target".into());
        }
        let mut tls = None;
        let mut targets = Vec::with_capacity(raw.targets.len());
        for t in &raw.targets {
            let https = match t.scheme.as_str() {
                "http" => false,
                "https" => true,
                other => return Err(format!("upstream.targets: scheme {other:?} is not http(s)")),
            };
            if https && tls.is_none() {
                let client = match (&raw.tls.client_cert, &raw.tls.client_key) {
                    (Some(cert), Some(key)) => Some(tls::ClientCert {
                        cert: Path::new(cert),
                        key: Path::new(key),
                    }),
                    _ => None,
                };
                tls = Some(tls::client_config(
                    raw.tls.ca.as_deref().map(Path::new),
                    client,
                )?);
            }
            let host_header = HeaderValue::from_str(&t.host_header)
                .map_err(|_| format!("upstream.targets: bad host_header {:?}", t.host_header))?;
            let spec = TargetSpec {
                key: t.key.clone(),
                https,
                host: t.host.clone(),
                port: t.port,
                host_header,
                tls: if https { tls.clone() } else { None },
                max_idle: raw.pool.max_idle,
                idle_timeout,
            };
            targets.push(Target::shared(&spec).map_err(|e| format!("upstream.targets: {e}"))?);
        }
        Ok(Upstream {
            targets,
            next: AtomicUsize::new(0),
            base_path: raw.base_path,
            strip_prefix: raw.strip_prefix.filter(|p| p != "/"),
            timeout,
            connect_timeout,
            read_timeout,
            policy,
            mutate: MutateConfig::from_section(&raw.mutate)?,
        })
    }

    /// The route's mutate rules (for [`crate::mutate::forward_headers`]).
    pub fn mutate(&self) -> &MutateConfig {
        &self.mutate
    }

    /// The route's targets, in configuration order.
    pub fn targets(&self) -> &[Arc<Target>] {
        &self.targets
    }

    /// The path to forward for the normalised request `path` (prefix stripped,
    /// base added): `CompiledRoute.upstream_path`.
    pub fn upstream_path(&self, path: &str) -> String {
        let mut path = path;
        if let Some(rest) = self
            .strip_prefix
            .as_deref()
            .and_then(|p| path.strip_prefix(p))
        {
            path = rest;
        }
        let mut out = String::with_capacity(self.base_path.len() + path.len() + 1);
        out.push_str(&self.base_path);
        if !path.starts_with('/') {
            out.push('/');
        }
        out.push_str(path);
        out
    }

    /// The whole proxy step for an allowed request: the headers of
    /// [`crate::mutate::forward_headers`] with this route's rules, the
    /// normalised `path` (as the match step computed it) with `req`'s raw
    /// query, then [`Upstream::send`].
    pub async fn forward(
        &self,
        req: Request<Body>,
        path: &str,
        identity: Option<&crate::http::Identity>,
        ctx: &crate::mutate::ForwardContext<'_>,
    ) -> Result<Response<Body>, UpstreamError> {
        let (mut parts, body) = req.into_parts();
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        let ctx = crate::mutate::ForwardContext {
            authority: ctx.authority.or(authority.as_deref()),
            ..*ctx
        };
        parts.headers =
            crate::mutate::forward_headers(&parts.headers, identity, &ctx, &self.mutate);
        let mut target = String::with_capacity(path.len() + 32);
        target.push_str(path);
        if let Some(query) = parts.uri.query().filter(|q| !q.is_empty()) {
            target.push('?');
            target.push_str(query);
        }
        parts.uri = Uri::try_from(target).map_err(|e| UpstreamError::InvalidTarget {
            note: e.to_string(),
        })?;
        self.send(Request::from_parts(parts, body)).await
    }

    /// Forward `req` to a healthy target and return the upstream's response,
    /// its body streamed ([`ProxiedBody`]).
    ///
    /// `req`'s URI must be the *normalised* request path plus the raw query
    /// (the match step's path; any scheme/authority is ignored); its headers
    /// [`crate::mutate::forward_headers`]'s. `Host`, the version and the body
    /// framing are set here. Errors are the problem to render (nothing was
    /// sent to the client yet).
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Body>, UpstreamError> {
        let deadline = Instant::now() + self.timeout;
        let (mut parts, body) = req.into_parts();
        let mut target = self.upstream_path(parts.uri.path());
        if let Some(query) = parts.uri.query().filter(|q| !q.is_empty()) {
            target.push('?');
            target.push_str(query);
        }
        parts.uri = Uri::try_from(target).map_err(|e| UpstreamError::InvalidTarget {
            note: e.to_string(),
        })?;
        parts.version = Version::HTTP_11;
        parts.headers.remove(TRANSFER_ENCODING);
        parts.headers.remove(CONTENT_LENGTH);
        // A body of unknown length (chunked, HTTP/2 without Content-Length): its first
        // part is read before connecting, as Python does; a body that is complete
        // with it is sent with Content-Length, not chunked (WSGI upstreams often
        // cannot read chunked requests).
        let (body, known) = match body.size_hint().exact() {
            Some(length) => (body, Some(length)),
            None => match tokio::time::timeout_at(deadline.into(), body::peek(body)).await {
                Ok(peeked) => peeked?,
                Err(_) => return Err(self.answer_timeout(&self.targets[0], deadline)),
            },
        };
        if let Some(length) = known {
            if length > 0 || BODY_METHODS.contains(&parts.method) {
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(length));
            }
        }
        // What a stale pooled connection may be retried with (the body is empty).
        let replay = (known == Some(0) && IDEMPOTENT.contains(&parts.method)).then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            )
        });
        let (index, mut sender, mut reused) = self.connect(&parts.method, deadline).await?;
        let target = &self.targets[index];
        parts.headers.insert(HOST, target.host_header.clone());
        // The read timeout starts once the body is sent (Python waits for the answer
        // with it only then); only the route's timeout bounds a slow upload.
        let (body, mut uploaded) = if known == Some(0) {
            (body, None)
        } else {
            let (body, done) = body::Uploaded::wrap(body);
            (body, Some(done))
        };
        let mut request = Request::from_parts(parts, body);
        let (response, poolable) = loop {
            let exchange = sender.try_send_request(request);
            let (attempt, poolable) = self.answer(exchange, uploaded.take(), deadline).await;
            let Some(attempt) = attempt else {
                return Err(self.answer_timeout(target, deadline));
            };
            let mut failed = match attempt {
                Ok(response) => break (response, poolable),
                Err(failed) => failed,
            };
            let retry = match failed.take_message() {
                // Never written: the pooled connection was closed under us.
                Some(unsent) if reused => Some(unsent),
                _ if reused && closed_before_answer(failed.error()) => replay
                    .as_ref()
                    .map(|(method, uri, headers)| rebuild(method, uri, headers)),
                _ => None,
            };
            match retry {
                Some(again) => {
                    request = again;
                    sender = self.fresh(target, deadline).await?;
                    reused = false;
                }
                None => return Err(send_error(target, failed.error())),
            }
        };
        let (mut head, incoming) = response.into_parts();
        headers::strip_response(&mut head.headers);
        let body = ProxiedBody::new(
            incoming,
            target.describe.clone(),
            poolable.then(|| (target.clone(), sender)),
            self.read_timeout,
            deadline,
            self.timeout,
        );
        Ok(Response::from_parts(head, crate::http::boxed(body)))
    }

    /// The exchange's outcome, or `None` when the upstream did not answer in
    /// time: the route's deadline throughout, the read timeout from the moment
    /// the request body was sent (`uploaded` fires; `None`: already sent).
    /// The flag says whether the upload was complete when the answer came (a
    /// connection still sending its request body is not pooled afterwards).
    async fn answer<F: std::future::Future>(
        &self,
        exchange: F,
        uploaded: Option<tokio::sync::oneshot::Receiver<()>>,
        deadline: Instant,
    ) -> (Option<F::Output>, bool) {
        tokio::pin!(exchange);
        if let Some(uploaded) = uploaded {
            let total = tokio::time::sleep_until(deadline.into());
            tokio::select! {
                biased;
                // Sent, or dropped by a failing exchange (which then answers at once).
                _ = uploaded => {}
                outcome = &mut exchange => return (Some(outcome), false),
                () = total => return (None, false),
            }
        }
        let wait = self
            .read_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        (tokio::time::timeout(wait, exchange).await.ok(), true)
    }

    /// A connection to a healthy target: `(target index, sender, reused)`.
    async fn connect(
        &self,
        method: &Method,
        deadline: Instant,
    ) -> Result<(usize, SendRequest<Body>, bool), UpstreamError> {
        if let [only] = self.targets.as_slice() {
            // One target with a clean record and an idle connection (most requests):
            // nothing to choose and nothing for its health to learn.
            if only.healthy() {
                if let Some(sender) = only.take_idle().await {
                    return Ok((0, sender, true));
                }
            }
        }
        let mut tried: Vec<usize> = Vec::new();
        let mut failure: Option<UpstreamError> = None;
        loop {
            let now = Instant::now();
            let Some(index) = self.choose(now, &tried) else {
                return Err(failure.unwrap_or_else(|| self.no_healthy_target(now)));
            };
            let target = &self.targets[index];
            let claim = Claim::new(target);
            let opened = match target.take_idle().await {
                Some(sender) => Ok((sender, true)),
                None => target
                    .connect(self.connect_limit(deadline))
                    .await
                    .map(|s| (s, false)),
            };
            match opened {
                Ok((sender, reused)) => {
                    claim.settle(|h| h.succeeded());
                    return Ok((index, sender, reused));
                }
                Err(error) => {
                    if error.counts_against_health() {
                        claim.settle(|h| h.failed(Instant::now(), &self.policy));
                    }
                    tried.push(index);
                    if RETRY_ON_CONNECT_FAILURE.contains(method) && tried.len() < self.targets.len()
                    {
                        failure = Some(error);
                        continue;
                    }
                    return Err(error);
                }
            }
        }
    }

    /// A new connection to `target` (a stale pooled one was retried).
    async fn fresh(
        &self,
        target: &Target,
        deadline: Instant,
    ) -> Result<SendRequest<Body>, UpstreamError> {
        target.connect(self.connect_limit(deadline)).await
    }

    fn connect_limit(&self, deadline: Instant) -> Duration {
        self.connect_timeout
            .min(deadline.saturating_duration_since(Instant::now()))
    }

    /// Claim the next healthy target not in `tried`, round-robin.
    fn choose(&self, now: Instant, tried: &[usize]) -> Option<usize> {
        let count = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        (0..count)
            .map(|offset| (start + offset) % count)
            .filter(|index| !tried.contains(index))
            .find(|&index| {
                self.targets[index]
                    .health
                    .lock()
                    .map(|mut h| h.claim(now))
                    .unwrap_or(false)
            })
    }

    fn no_healthy_target(&self, now: Instant) -> UpstreamError {
        let soonest = self
            .targets
            .iter()
            .filter_map(|t| t.health.lock().ok().and_then(|h| h.ejected_until()))
            .min();
        let wait = soonest.map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        UpstreamError::NoHealthyTarget {
            retry_after: retry_after.max(1),
            target: self
                .targets
                .iter()
                .map(|t| t.describe.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    fn answer_timeout(&self, target: &Target, deadline: Instant) -> UpstreamError {
        let note = if Instant::now() >= deadline {
            format!(
                "the route's timeout ({} s) passed",
                self.timeout.as_secs_f64()
            )
        } else {
            format!(
                "no bytes for read_timeout ({} s)",
                self.read_timeout.as_secs_f64()
            )
        };
        UpstreamError::Timeout {
            detail: ANSWER_TIMEOUT,
            target: target.describe.clone(),
            note,
        }
    }
}

/// A claimed target whose verdict is still open; dropped unsettled (the
/// request was cancelled mid-connect) it frees a half-open probe.
struct Claim<'a> {
    target: &'a Target,
    settled: bool,
}

impl<'a> Claim<'a> {
    fn new(target: &'a Target) -> Self {
        Self {
            target,
            settled: false,
        }
    }

    fn settle(mut self, verdict: impl FnOnce(&mut health::TargetHealth)) {
        self.target.with_health(verdict);
        self.settled = true;
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.target.with_health(|h| h.release());
        }
    }
}

fn rebuild(method: &Method, uri: &Uri, headers: &HeaderMap) -> Request<Body> {
    let mut request = Request::new(crate::http::full(bytes::Bytes::new()));
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.clone();
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers.clone();
    request
}

/// The upstream closed the connection before any response byte.
fn closed_before_answer(error: &hyper::Error) -> bool {
    error.is_incomplete_message() || error.is_canceled() || error.is_closed()
}

/// What a failed exchange on an open connection is (before the response).
fn send_error(target: &Target, error: &hyper::Error) -> UpstreamError {
    if error.is_user() {
        return UpstreamError::ClientGone {
            note: error.to_string(),
        };
    }
    let cause = cause_of(error);
    UpstreamError::Unavailable {
        cause,
        detail: NO_ANSWER,
        target: target.describe.clone(),
        note: error.to_string(),
    }
}

/// Why a connection in use failed (`proxy._lost_cause`).
pub(crate) fn cause_of(error: &hyper::Error) -> Cause {
    if error.is_parse() || error.is_parse_too_large() || error.is_parse_status() {
        return Cause::InvalidResponse;
    }
    match io_kind(error) {
        Some(
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe,
        ) => Cause::Reset,
        Some(std::io::ErrorKind::UnexpectedEof) | None => Cause::Closed,
        Some(_) => Cause::Unreachable,
    }
}

fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source = error.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = inner.source();
    }
    None
}

#[cfg(test)]
mod tests;
