//! OpenTelemetry tracing of the requests the native path answers: the native
//! twin of `bastion.observability.tracing.GatewayTracer` (its docstring is the rule).
//!
//! - The sampling decision and the W3C Trace Context
//!   (https://www.w3.org/TR/trace-context/) are made here, as the Python SDK
//!   makes them: `ParentBased(TraceIdRatioBased(sample_ratio))` — a parent's
//!   sampled flag decides, else the trace id's 64 low bits below
//!   `round(ratio * 2^64)`; the span's flags carry `random-trace-id` (0x02)
//!   for a new trace and the parent's for a joined one (SDK 1.45).
//! - An incoming `traceparent` / `tracestate` is honoured only when the direct
//!   peer is a trusted proxy, parsed as `TraceContextTextMapPropagator` and
//!   `TraceState.from_header` parse them (anything they reject starts a new
//!   trace, or drops the tracestate).
//! - The upstream always receives bastion's span's `traceparent` (and the
//!   honoured `tracestate`); the client's are removed — and put back when the
//!   request is deferred, so Python traces it from the original headers.
//! - A sampled request's span is a compact [`SpanRecord`], queued when its
//!   response body ends (or is dropped), drained by Python
//!   (`bastion.audit.native_drain`), which creates and ends the span with
//!   these ids and times through the OpenTelemetry SDK. An unsampled request
//!   costs the decision, two random numbers and its `traceparent` header.
//!
//! Trace and span ids come from a per-thread wyrand generator seeded from the
//! system CSPRNG: ids must be unique and uniformly random (the ratio sampler
//! reads their bits), they are not secrets.

use std::cell::Cell;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Request;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::http::{Body, BoxError, ConnInfo, Outcome};
use crate::plane::plane;
use crate::problem::ProblemCode;
use crate::router::Routed;
use crate::sampling::Sampler;
#[cfg(test)]
use crate::sampling::TracingSection;

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Spans held between two drains (the SDK's own queue holds 2048 more).
pub const CAPACITY: usize = 8192;

const TRACEPARENT_MAX: usize = 512;
const TRACESTATE_MAX: usize = 8192;
const TRACESTATE_KEYS: usize = 32;
const SAMPLED: u8 = 0x01;
const RANDOM_TRACE_ID: u8 = 0x02;

/// A `traceparent` the propagator accepts: (trace id, span id, flags).
pub fn parse_traceparent(value: &[u8]) -> Option<(u128, u64, u8)> {
    if value.len() > TRACEPARENT_MAX {
        return None;
    }
    let mut rest = value;
    while let [b' ' | b'\t', tail @ ..] = rest {
        rest = tail;
    }
    if rest.len() < 55 || rest[2] != b'-' || rest[35] != b'-' || rest[52] != b'-' {
        return None;
    }
    let version = hex(&rest[..2])? as u8;
    let trace_id = hex(&rest[3..35])?;
    let span_id = hex(&rest[36..52])? as u64;
    let flags = hex(&rest[53..55])? as u8;
    let tail = &rest[55..];
    // `(?:(-.*)|[ \t]*)$`: a "-" tail (future versions only), or blanks.
    let dashed = tail.first() == Some(&b'-');
    if !dashed && !tail.iter().all(|b| matches!(b, b' ' | b'\t')) {
        return None;
    }
    if trace_id == 0 || span_id == 0 || (version == 0 && dashed) || version == 0xff {
        return None;
    }
    Some((trace_id, span_id, flags))
}

/// Lower-case hex digits only (as the propagator's `[0-9a-f]`), up to 32.
fn hex(digits: &[u8]) -> Option<u128> {
    let mut n: u128 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(d);
    }
    Some(n)
}

/// The `tracestate` bastion's span carries on: `TraceState.from_header`
/// then `to_header` (members trimmed, joined by ","); `None` when empty —
/// over 8192 characters, a malformed member, a duplicate key, over 32 keys.
pub fn parse_tracestate(headers: &HeaderMap) -> Option<String> {
    let values = headers.get_all(&TRACESTATE);
    let mut count = 0usize;
    let mut total = 0usize;
    for value in values.iter() {
        count += 1;
        total += value.len();
    }
    if count == 0 || total + count - 1 > TRACESTATE_MAX {
        return None;
    }
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut out = String::new();
    for value in values.iter() {
        for member in value.as_bytes().split(|&b| b == b',') {
            let member = trim_blank(member);
            if member.is_empty() {
                continue;
            }
            let eq = member.iter().position(|&b| b == b'=')?;
            let (key, value) = (&member[..eq], &member[eq + 1..]);
            if !valid_key(key) || !valid_value(value) || keys.contains(&key) {
                return None;
            }
            keys.push(key);
            if !out.is_empty() {
                out.push(',');
            }
            // Checked ASCII above.
            out.push_str(std::str::from_utf8(member).ok()?);
        }
    }
    if keys.is_empty() || keys.len() > TRACESTATE_KEYS {
        return None;
    }
    Some(out)
}

fn trim_blank(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

fn key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

/// `[a-z][_0-9a-z\-\*\/]{0,255}` or
/// `[a-z0-9][_0-9a-z\-\*\/]{0,240}@[a-z][_0-9a-z\-\*\/]{0,13}`.
fn valid_key(key: &[u8]) -> bool {
    match key.iter().position(|&b| b == b'@') {
        None => {
            matches!(key.first(), Some(b'a'..=b'z'))
                && key.len() <= 256
                && key.iter().all(|&b| key_char(b))
        }
        Some(at) => {
            let (tenant, system) = (&key[..at], &key[at + 1..]);
            matches!(tenant.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
                && tenant.len() <= 241
                && tenant.iter().all(|&b| key_char(b))
                && matches!(system.first(), Some(b'a'..=b'z'))
                && system.len() <= 14
                && system.iter().all(|&b| key_char(b))
        }
    }
}

/// `[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]`.
fn valid_value(value: &[u8]) -> bool {
    let chr = |b: u8| matches!(b, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    matches!(value.last(), Some(&last) if last != b' ' && chr(last))
        && value.len() <= 256
        && value.iter().all(|&b| chr(b))
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        // No system random source: std's per-process random hash keys.
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(unix_nanos().into());
        return hasher.finish();
    }
    u64::from_le_bytes(bytes)
}

/// wyrand: one multiply per 64 bits.
fn next_u64() -> u64 {
    RNG.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

fn new_trace_id() -> u128 {
    loop {
        let id = (u128::from(next_u64()) << 64) | u128::from(next_u64());
        if id != 0 {
            return id;
        }
    }
}

fn new_span_id() -> u64 {
    loop {
        let id = next_u64();
        if id != 0 {
            return id;
        }
    }
}

/// bastion's span for one request: its ids, the honoured parent, the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: u128,
    pub span_id: u64,
    /// The honoured parent: its span id and flags.
    pub parent: Option<(u64, u8)>,
    /// The span's own flags (sampled, random trace id).
    pub flags: u8,
    /// The honoured `tracestate`, re-serialised.
    pub state: Option<String>,
}

impl SpanContext {
    /// Start bastion's span: join the parent in `headers` when `trusted`
    /// (the direct peer is a trusted proxy), else a new trace.
    pub fn start(sampler: Sampler, headers: &HeaderMap, trusted: bool) -> SpanContext {
        let parent = if trusted {
            headers
                .get(&TRACEPARENT)
                .and_then(|v| parse_traceparent(v.as_bytes()))
        } else {
            None
        };
        match parent {
            Some((trace_id, parent_span, parent_flags)) => SpanContext {
                trace_id,
                span_id: new_span_id(),
                parent: Some((parent_span, parent_flags)),
                flags: (parent_flags & SAMPLED) | (parent_flags & RANDOM_TRACE_ID),
                state: parse_tracestate(headers),
            },
            None => {
                let trace_id = new_trace_id();
                let sampled = if sampler.samples(trace_id) {
                    SAMPLED
                } else {
                    0
                };
                SpanContext {
                    trace_id,
                    span_id: new_span_id(),
                    parent: None,
                    flags: sampled | RANDOM_TRACE_ID,
                    state: None,
                }
            }
        }
    }

    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// `00-<trace id>-<span id>-<flags>`.
    pub fn traceparent(&self) -> HeaderValue {
        let text = format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        );
        HeaderValue::from_maybe_shared(Bytes::from(text)).unwrap_or(HeaderValue::from_static(""))
    }
}

/// One sampled request's span, for Python to export.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: u128,
    pub span_id: u64,
    /// The honoured parent's span id and flags.
    pub parent: Option<(u64, u8)>,
    pub state: Option<String>,
    /// Unix nanoseconds.
    pub start: u64,
    pub end: u64,
    pub route: Option<String>,
    pub method: String,
    /// The normalised path (never the query).
    pub path: String,
    /// `allowed`, or the native refusal's code.
    pub outcome: &'static str,
    /// The response's; 0 where Python's span knows none (an allowed
    /// forward-auth decision).
    pub status: u16,
    /// `None` for the gateway door; `forward_auth` for a decision made for
    /// another proxy (Python's `bastion.door`).
    pub door: Option<&'static str>,
}

/// What a forward-auth answer tells its span (a response extension, read by
/// [`Traced::end`]): Python's span of a decision names the judged request —
/// its method, and once matched its route and normalised path — with
/// `bastion.door = forward_auth`. Refused before any route (its own step):
/// no route, no path, the decision request's method.
#[derive(Debug, Clone, Default)]
pub struct DecisionSpan {
    pub route: Option<String>,
    /// The judged method; `None`: the decision request's.
    pub method: Option<String>,
    /// The judged (normalised) path; empty before `match`.
    pub path: String,
}

/// The bounded queue of span records.
pub struct Spans {
    held: Mutex<Vec<SpanRecord>>,
    dropped: AtomicU64,
}

impl Spans {
    const fn new() -> Self {
        Spans {
            held: Mutex::new(Vec::new()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queue `record`; a full queue drops it (counted).
    pub fn push(&self, record: SpanRecord) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() >= CAPACITY {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        held.push(record);
    }

    /// Take up to `max` records, oldest first.
    pub fn drain(&self, max: usize) -> Vec<SpanRecord> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.len().min(max);
        held.drain(..n).collect()
    }

    /// Records dropped so far (a full queue).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The process-wide span queue.
pub fn spans() -> &'static Spans {
    static SPANS: Spans = Spans::new();
    &SPANS
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A request being traced: the client's trace headers set aside (put back
/// if the request is deferred) and, when sampled, its span's record so far.
pub struct Traced {
    client: Vec<(HeaderName, HeaderValue)>,
    record: Option<SpanRecord>,
}

/// Whether the table in force traces requests.
pub fn enabled() -> bool {
    plane()
        .table
        .load()
        .as_ref()
        .is_some_and(|table| table.tracing.is_some())
}

/// With tracing on, give `req` bastion's trace context before the gateway
/// decides it; `None` (nothing touched) with tracing off.
pub fn begin(req: &mut Request<Body>, conn: &ConnInfo) -> Option<Traced> {
    let guard = plane().table.load();
    let table = guard.as_ref()?;
    let sampler = table.tracing?;
    let trusted = !table.trusted.is_empty() && table.trusted.contains(conn.peer.ip());
    let span = SpanContext::start(sampler, req.headers(), trusted);
    let record = span.sampled().then(|| SpanRecord {
        trace_id: span.trace_id,
        span_id: span.span_id,
        parent: span.parent,
        state: span.state.clone(),
        start: unix_nanos(),
        end: 0,
        route: route_name(table, req),
        method: req.method().as_str().to_owned(),
        path: req.uri().path().to_owned(),
        outcome: "allowed",
        status: 0,
        door: None,
    });
    let headers = req.headers_mut();
    let mut client = Vec::new();
    for name in [&TRACEPARENT, &TRACESTATE] {
        if let http::header::Entry::Occupied(entry) = headers.entry(name) {
            let (name, values) = entry.remove_entry_mult();
            client.extend(values.map(|v| (name.clone(), v)));
        }
    }
    headers.append(TRACEPARENT.clone(), span.traceparent());
    if let Some(state) = span.state.as_deref() {
        if let Ok(value) = HeaderValue::from_str(state) {
            headers.append(TRACESTATE.clone(), value);
        }
    }
    Some(Traced { client, record })
}

/// The route a sampled request matches (a preflight by the method it asks for).
fn route_name(table: &crate::table::Table, req: &Request<Body>) -> Option<String> {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let host = crate::verdict::host_of(req);
    match crate::preflight::route(table, host, req.method(), target, req.headers(), false).0 {
        Routed::Native { route, .. } => Some(route.name.clone()),
        _ => None,
    }
}

impl Traced {
    /// Finish with the gateway's outcome: a deferred request gets the
    /// client's trace headers back (Python traces it); a sampled answer's
    /// span is queued when its body ends.
    pub fn end(self, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Defer(mut req) => {
                let headers = req.headers_mut();
                headers.remove(&TRACEPARENT);
                headers.remove(&TRACESTATE);
                for (name, value) in self.client {
                    headers.append(name, value);
                }
                Outcome::Defer(req)
            }
            Outcome::Respond(response) => {
                let Some(mut record) = self.record else {
                    return Outcome::Respond(response);
                };
                record.status = response.status().as_u16();
                if let Some(ProblemCode(code)) = response.extensions().get::<ProblemCode>() {
                    record.outcome = code;
                }
                if let Some(decision) = response.extensions().get::<DecisionSpan>() {
                    if record.outcome == "allowed" {
                        // Python's span of an allowed decision ends before the endpoint
                        // sends its 200: no status (0).
                        record.status = 0;
                    }
                    record.door = Some("forward_auth");
                    record.route.clone_from(&decision.route);
                    if let Some(method) = &decision.method {
                        record.method.clone_from(method);
                    }
                    record.path.clone_from(&decision.path);
                }
                Outcome::Respond(response.map(|body| SpanBody::wrap(body, record)))
            }
        }
    }
}

/// A response body that queues its span when it ends, fails or is dropped
/// (Python's span ends once the response was sent).
struct SpanBody {
    inner: Body,
    record: Option<SpanRecord>,
}

impl SpanBody {
    fn wrap(inner: Body, record: SpanRecord) -> Body {
        use http_body_util::BodyExt as _;
        SpanBody {
            inner,
            record: Some(record),
        }
        .boxed_unsync()
    }

    fn finish(&mut self) {
        if let Some(mut record) = self.record.take() {
            record.end = unix_nanos().max(record.start);
            spans().push(record);
        }
    }
}

impl HttpBody for SpanBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for SpanBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn sampler(ratio: f64) -> Sampler {
        Sampler::from_section(TracingSection {
            sample_ratio: ratio,
        })
        .unwrap()
    }

    fn record(method: &str, path: &str) -> SpanRecord {
        SpanRecord {
            trace_id: 1,
            span_id: 2,
            parent: None,
            state: None,
            start: 10,
            end: 0,
            route: None,
            method: method.to_owned(),
            path: path.to_owned(),
            outcome: "allowed",
            status: 0,
            door: None,
        }
    }

    /// End a traced answer and return the span record it queued.
    fn ended(response: http::Response<Body>, method: &str, path: &str) -> SpanRecord {
        let traced = Traced {
            client: Vec::new(),
            record: Some(record(method, path)),
        };
        let Outcome::Respond(response) = traced.end(Outcome::Respond(response)) else {
            panic!("answered");
        };
        drop(response);
        let mut queued = spans().drain(usize::MAX);
        assert_eq!(queued.len(), 1);
        queued.remove(0)
    }

    #[test]
    fn tracing_a_forward_auth_answer_names_the_judged_request() {
        let mut allowed = http::Response::new(crate::http::full(Bytes::new()));
        allowed.extensions_mut().insert(DecisionSpan {
            route: Some("orders".into()),
            method: Some("GET".into()),
            path: "/api/orders".into(),
        });
        let span = ended(allowed, "GET", "/auth/verify");
        // Python's span of an allowed decision ends before its 200 is sent: no status.
        assert_eq!((span.outcome, span.status), ("allowed", 0));
        assert_eq!(span.route.as_deref(), Some("orders"));
        let mut refused = http::Response::new(crate::http::full(Bytes::new()));
        *refused.status_mut() = http::StatusCode::FORBIDDEN;
        refused
            .extensions_mut()
            .insert(ProblemCode("insufficient_scope"));
        refused.extensions_mut().insert(DecisionSpan {
            route: Some("orders".into()),
            method: Some("DELETE".into()),
            path: "/api/orders/1".into(),
        });
        let span = ended(refused, "GET", "/auth/verify");
        assert_eq!(span.door, Some("forward_auth"));
        assert_eq!(span.route.as_deref(), Some("orders"));
        assert_eq!(
            (span.method.as_str(), span.path.as_str()),
            ("DELETE", "/api/orders/1")
        );
        assert_eq!((span.outcome, span.status), ("insufficient_scope", 403));
        // Refused by the door's own step: no route, no path, the decision request's method.
        let mut untrusted = http::Response::new(crate::http::full(Bytes::new()));
        *untrusted.status_mut() = http::StatusCode::FORBIDDEN;
        untrusted
            .extensions_mut()
            .insert(ProblemCode("forward_auth_untrusted"));
        untrusted.extensions_mut().insert(DecisionSpan::default());
        let span = ended(untrusted, "HEAD", "/auth/verify");
        assert_eq!((span.door, span.route), (Some("forward_auth"), None));
        assert_eq!((span.method.as_str(), span.path.as_str()), ("HEAD", ""));
        // The gateway door's answer: no door.
        let plain = http::Response::new(crate::http::full(Bytes::new()));
        let span = ended(plain, "GET", "/pub");
        assert_eq!(
            (span.door, span.path.as_str(), span.status),
            (None, "/pub", 200)
        );
    }

    #[test]
    fn tracing_traceparent_parses_as_the_propagator() {
        let ok = parse_traceparent(PARENT.as_bytes()).unwrap();
        assert_eq!(ok.0, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(ok.1, 0xb7ad6b7169203331);
        assert_eq!(ok.2, 1);
        assert!(parse_traceparent(format!(" \t{PARENT}\t ").as_bytes()).is_some());
        // A future version may carry more fields; version 00 may not.
        let future = PARENT.replacen("00", "01", 1) + "-extra";
        assert!(parse_traceparent(future.as_bytes()).is_some());
        assert!(parse_traceparent((PARENT.to_owned() + "-extra").as_bytes()).is_none());
        assert!(parse_traceparent((PARENT.to_owned() + "x").as_bytes()).is_none());
        assert!(parse_traceparent(PARENT.replacen("00", "ff", 1).as_bytes()).is_none());
        assert!(parse_traceparent(PARENT.to_uppercase().as_bytes()).is_none());
        let zero_trace = format!("00-{}-b7ad6b7169203331-01", "0".repeat(32));
        assert!(parse_traceparent(zero_trace.as_bytes()).is_none());
        let zero_span = format!("00-0af7651916cd43dd8448eb211c80319c-{}-01", "0".repeat(16));
        assert!(parse_traceparent(zero_span.as_bytes()).is_none());
        assert!(parse_traceparent(&PARENT.as_bytes()[..54]).is_none());
        let long = format!("01{}-{}", &PARENT[2..], "x".repeat(460));
        assert!(parse_traceparent(long.as_bytes()).is_none());
    }

    #[test]
    fn tracing_tracestate_parses_as_the_sdk() {
        let mut headers = HeaderMap::new();
        headers.append(&TRACESTATE, HeaderValue::from_static(" a=1 ,, b@c=x y"));
        headers.append(
            &TRACESTATE,
            HeaderValue::from_static("rojo=00f067aa0ba902b7"),
        );
        assert_eq!(
            parse_tracestate(&headers).as_deref(),
            Some("a=1,b@c=x y,rojo=00f067aa0ba902b7")
        );
        for bad in [
            "A=1",
            "a=1,a=2",
            "a=",
            "a=1=2",
            "1a=1",
            "a@B=1",
            "a=x\u{e9}",
        ] {
            let mut headers = HeaderMap::new();
            headers.append(
                &TRACESTATE,
                HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
            );
            assert_eq!(parse_tracestate(&headers), None, "{bad}");
        }
        let many: Vec<String> = (0..33).map(|n| format!("k{n}=v")).collect();
        let mut headers = HeaderMap::new();
        headers.append(&TRACESTATE, HeaderValue::from_str(&many.join(",")).unwrap());
        assert_eq!(parse_tracestate(&headers), None);
        assert_eq!(parse_tracestate(&HeaderMap::new()), None);
    }

    #[test]
    fn tracing_parent_decides_only_from_a_trusted_peer() {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static(PARENT));
        headers.insert(&TRACESTATE, HeaderValue::from_static("a=1"));
        let joined = SpanContext::start(sampler(0.0), &headers, true);
        assert_eq!(joined.trace_id, 0x0af7651916cd43dd8448eb211c80319c);
        assert_eq!(joined.parent, Some((0xb7ad6b7169203331, 1)));
        assert!(joined.sampled());
        assert_eq!(joined.flags, 0x01);
        assert_eq!(joined.state.as_deref(), Some("a=1"));
        let fresh = SpanContext::start(sampler(0.0), &headers, false);
        assert_ne!(fresh.trace_id, joined.trace_id);
        assert_eq!(fresh.parent, None);
        assert_eq!(fresh.state, None);
        assert_eq!(fresh.flags, RANDOM_TRACE_ID);
        let unsampled = PARENT.replace("-01", "-02");
        headers.insert(&TRACEPARENT, HeaderValue::from_str(&unsampled).unwrap());
        let child = SpanContext::start(sampler(1.0), &headers, true);
        assert!(!child.sampled());
        assert_eq!(child.flags, RANDOM_TRACE_ID);
        let tp = child.traceparent();
        assert_eq!(tp.len(), 55);
        assert!(tp
            .to_str()
            .unwrap()
            .starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert!(tp.to_str().unwrap().ends_with("-02"));
    }

    #[test]
    fn tracing_ratio_bounds_as_trace_id_ratio_based() {
        assert!(!sampler(0.0).samples(0));
        assert!(sampler(1.0).samples(u128::MAX));
        let half = sampler(0.5);
        assert!(half.samples(0x7fff_ffff_ffff_ffff));
        assert!(!half.samples(0x8000_0000_0000_0000));
        assert!(half.samples(u128::MAX << 64)); // only the 64 low bits count
        assert!(Sampler::from_section(TracingSection { sample_ratio: 1.5 }).is_err());
        let sampled = (0..10_000)
            .filter(|_| SpanContext::start(sampler(0.25), &HeaderMap::new(), false).sampled())
            .count();
        assert!((2_000..3_000).contains(&sampled), "{sampled}");
    }
}
