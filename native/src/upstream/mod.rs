//! The proxy: a route's upstream targets, their keep-alive pools and health,
//! and one request forwarded with streaming both ways.
//!
//! The specification is `bastion.gateway.proxy` and `bastion.gateway.upstreams`:
//!
//! - targets are tried round-robin among the healthy ones ([`health`]); a failed
//!   *connection* counts against the target and — for GET, HEAD, OPTIONS, PUT
//!   and DELETE only, since nothing was sent yet — is retried on each other
//!   target; every target ejected: 503 `upstream_unavailable` without connecting;
//! - a pooled connection the upstream closed (or reset) before answering is
//!   retried once on a fresh connection when not one byte of the request was
//!   written, or when it is idempotent with an empty body (Python: "the body
//!   is fully in hand");
//! - timeouts: `connect_timeout` per connection attempt, `read_timeout` per wait
//!   for the response head and for each next body frame, `timeout` for the whole
//!   exchange; before the response: 504 `upstream_timeout`; after: the response
//!   body fails with [`UpstreamAborted`] and the listener aborts the client
//!   connection (a truncated body is never passed off as complete);
//! - the request is sent as HTTP/1.1 with `Host` = the target's, the path
//!   mapped by [`Upstream::upstream_path`], `Content-Length` when the body's
//!   length is known (also `0` for POST, PUT and PATCH) or the body ends with
//!   its first part (read before connecting, as Python does), else chunked;
//! - the exchange itself is [`crate::client`]'s (in the request's own task):
//!   a connection goes back to the pool when the response body was read to its
//!   exact end, the request body was sent completely, and both sides allowed
//!   keep-alive; a response whose framing is ambiguous is a 502
//!   `invalid_response` and its connection is never reused;
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
pub(crate) mod tls;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body::Body as _;
use serde::Deserialize;

pub use self::body::ProxiedBody;
pub use self::error::{Cause, UpstreamAborted, UpstreamError};
pub use self::failure_log::{FailureLog, FAILURE_LOG_INTERVAL};
pub use self::health::HealthPolicy;
pub use self::pool::{Stream, Target};

use self::error::{ANSWER_TIMEOUT, NO_ANSWER};
use self::health::{seconds, HealthSection};
use self::pool::TargetSpec;
use crate::client::{self, BodyFraming, Conn};
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
        let mut out = String::new();
        self.push_upstream_path(&mut out, path);
        out
    }

    fn push_upstream_path(&self, out: &mut String, path: &str) {
        let mut path = path;
        if let Some(rest) = self
            .strip_prefix
            .as_deref()
            .and_then(|p| path.strip_prefix(p))
        {
            path = rest;
        }
        out.reserve(self.base_path.len() + path.len() + 1);
        out.push_str(&self.base_path);
        if !path.starts_with('/') {
            out.push('/');
        }
        out.push_str(path);
    }

    /// The request target sent upstream: the mapped `path` and the raw query.
    fn request_target(&self, path: &str, query: Option<&str>) -> Result<String, UpstreamError> {
        let mut target = String::with_capacity(path.len() + query.map_or(0, str::len) + 32);
        self.push_upstream_path(&mut target, path);
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            target.push('?');
            target.push_str(query);
        }
        // The request line must stay one line without spaces or controls (the path
        // and query come from a parsed URI and the base path from the settings); a
        // query's bytes outside ASCII go as sent, as Python's proxy sends its
        // `query_string` (the path is percent-encoded by then).
        if !target.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80) {
            return Err(UpstreamError::InvalidTarget {
                note: format!("{target:?} is not a valid request target"),
            });
        }
        Ok(target)
    }

    /// The whole proxy step for an allowed request: the headers of
    /// [`crate::mutate::forward_headers`] with this route's rules, the
    /// normalised `path` (as the match step computed it, mapped once here) with
    /// `req`'s raw query, then the exchange.
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
        let target = self.request_target(path, parts.uri.query())?;
        self.exchange(parts, &target, body).await
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
        let (parts, body) = req.into_parts();
        let target = self.request_target(parts.uri.path(), parts.uri.query())?;
        self.exchange(parts, &target, body).await
    }

    /// The upstream handshake of the WebSocket door
    /// (`bastion.gateway.websocket._open_upstream`): a fresh connection to the
    /// first target (no pool, no health bookkeeping, as Python's websockets
    /// client), `GET` the mapped `path` and raw `query` with `headers` (the
    /// handshake fields included), connecting and answering within the
    /// connect timeout. Errors: connecting's, `Timeout` (`WS_TIMEOUT`), and
    /// `Unavailable` (`WS_INVALID`) for a broken answer.
    pub(crate) async fn switch(
        &self,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Result<client::Answer<Stream>, UpstreamError> {
        let target = &self.targets[0];
        let path = self.request_target(path, query)?;
        let head = Bytes::from(client::head::encode(
            &Method::GET,
            &path,
            Some(&target.host_header),
            headers,
            BodyFraming::None,
            client::head::FramingFields::Ours,
            false,
        ));
        let timed_out = || UpstreamError::Timeout {
            detail: error::WS_TIMEOUT,
            target: target.describe.clone(),
            note: "no WebSocket handshake in time".into(),
        };
        let open = async {
            let conn = target.connect(self.connect_timeout).await?;
            let upload =
                client::Upload::new(head, crate::http::full(Bytes::new()), BodyFraming::None);
            let expect = client::Expect {
                method: Method::GET,
                upgrade: true,
                keep_alive: false,
                field_limit: client::head::UPSTREAM_FIELD_BYTES,
            };
            client::Exchange::new(conn, upload, expect, None)
                .await
                .map_err(|failed| UpstreamError::Unavailable {
                    cause: Cause::InvalidResponse,
                    detail: error::WS_INVALID,
                    target: target.describe.clone(),
                    note: failed.error.to_string(),
                })
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(Err(UpstreamError::Timeout { .. })) | Err(_) => Err(timed_out()),
            Ok(answer) => answer,
        }
    }

    async fn exchange(
        &self,
        parts: http::request::Parts,
        target_path: &str,
        body: Body,
    ) -> Result<Response<Body>, UpstreamError> {
        let deadline = Instant::now() + self.timeout;
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
        let framing = match known {
            Some(length) if length > 0 || BODY_METHODS.contains(&parts.method) => {
                BodyFraming::Length(length)
            }
            Some(_) => BodyFraming::None,
            None => BodyFraming::Chunked,
        };
        // A stale pooled connection may be retried with the same head (the body is empty).
        let replayable = known == Some(0) && IDEMPOTENT.contains(&parts.method);
        let (index, mut conn, mut reused) = self.connect(&parts.method, deadline).await?;
        let target = &self.targets[index];
        let head = Bytes::from(client::head::encode(
            &parts.method,
            target_path,
            Some(&target.host_header),
            &parts.headers,
            framing,
            client::head::FramingFields::Ours,
            false,
        ));
        let expect = client::Expect {
            method: parts.method,
            upgrade: false,
            keep_alive: true,
            field_limit: client::head::UPSTREAM_FIELD_BYTES,
        };
        let mut upload = client::Upload::new(head.clone(), body, framing);
        let (head, incoming) = loop {
            let exchange =
                client::Exchange::new(conn, upload, expect.clone(), Some(target.pool.clone()));
            let Some(attempt) = self.answer(exchange, deadline).await else {
                return Err(self.answer_timeout(target, deadline));
            };
            let failed = match attempt {
                Ok(client::Answer::Response(head, body)) => break (head, body),
                Ok(client::Answer::Switched(..)) => {
                    // Not asked for (`upgrade: false`): the client refuses it first.
                    return Err(send_error(target, &client::Error::Invalid("101")));
                }
                Err(failed) => failed,
            };
            let retry = match failed.unsent {
                // Not one byte written: the pooled connection was closed under us.
                Some(unsent) if reused => Some(unsent),
                _ if reused && replayable && !failed.answered && failed.error.is_closed() => Some(
                    client::Upload::new(head.clone(), crate::http::full(Bytes::new()), framing),
                ),
                _ => None,
            };
            match retry {
                Some(again) => {
                    upload = again;
                    conn = self.fresh(target, deadline).await?;
                    reused = false;
                }
                None => return Err(send_error(target, &failed.error)),
            }
        };
        let mut parts = client::parts(head);
        headers::strip_response(&mut parts.headers);
        let body = ProxiedBody::new(
            incoming,
            target.describe.clone(),
            self.read_timeout,
            deadline,
            self.timeout,
        );
        Ok(Response::from_parts(parts, crate::http::boxed(body)))
    }

    /// The exchange's outcome, or `None` when the upstream did not answer in
    /// time: the route's deadline throughout, the read timeout from the moment
    /// the request body was sent.
    async fn answer(
        &self,
        exchange: client::Exchange<Stream>,
        deadline: Instant,
    ) -> Option<<client::Exchange<Stream> as std::future::Future>::Output> {
        use std::future::Future as _;
        use std::task::Poll;
        let mut exchange = std::pin::pin!(exchange);
        // One timer: the route's deadline while uploading, then reset once to the
        // read timeout (a timer is only registered when first polled).
        let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
        let mut reading = false;
        std::future::poll_fn(|cx| {
            if let Poll::Ready(outcome) = exchange.as_mut().poll(cx) {
                return Poll::Ready(Some(outcome));
            }
            if !reading && exchange.upload_done() {
                reading = true;
                let until = (Instant::now() + self.read_timeout).min(deadline);
                timer.as_mut().reset(until.into());
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// A connection to a healthy target: `(target index, connection, reused)`.
    async fn connect(
        &self,
        method: &Method,
        deadline: Instant,
    ) -> Result<(usize, Conn<Stream>, bool), UpstreamError> {
        if let [only] = self.targets.as_slice() {
            // One target with a clean record and an idle connection (most requests):
            // nothing to choose and nothing for its health to learn.
            if only.healthy() {
                if let Some(conn) = only.take_idle().await {
                    return Ok((0, conn, true));
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
                Some(conn) => Ok((conn, true)),
                None => target
                    .connect(self.connect_limit(deadline))
                    .await
                    .map(|s| (s, false)),
            };
            match opened {
                Ok((conn, reused)) => {
                    claim.settle(|h| h.succeeded());
                    return Ok((index, conn, reused));
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
    ) -> Result<Conn<Stream>, UpstreamError> {
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

/// What a failed exchange on an open connection is (before the response).
fn send_error(target: &Target, error: &client::Error) -> UpstreamError {
    if let client::Error::Body(_) = error {
        return UpstreamError::ClientGone {
            note: error.to_string(),
        };
    }
    UpstreamError::Unavailable {
        cause: cause_of(error),
        detail: NO_ANSWER,
        target: target.describe.clone(),
        note: error.to_string(),
    }
}

/// Why a connection in use failed (`proxy._lost_cause`).
pub(crate) fn cause_of(error: &client::Error) -> Cause {
    match error {
        client::Error::Invalid(_) => Cause::InvalidResponse,
        client::Error::Closed | client::Error::Body(_) => Cause::Closed,
        client::Error::Io(e) => match e.kind() {
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe => Cause::Reset,
            std::io::ErrorKind::UnexpectedEof => Cause::Closed,
            _ => Cause::Unreachable,
        },
    }
}

#[cfg(test)]
mod tests;
