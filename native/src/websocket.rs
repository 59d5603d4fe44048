//! The WebSocket door (RFC 6455): an upgrade request to a route with
//! `websocket.enabled`, relayed natively.
//!
//! The specification is `bastion.gateway.websocket`. The upgrade request runs
//! the same native steps as any request ([`crate::gateway::handle`]); a refusal
//! is the same problem+json before any handshake, audited with the door
//! `websocket`. Then, in place of the proxy step ([`open`]):
//!
//! - the upstream handshake: a fresh connection to the route's first target
//!   (TCP, or TLS verified as for HTTP), `GET` with the headers of
//!   [`crate::mutate::forward_headers`] (identity headers added, credentials
//!   stripped) and the handshake's own fields: the client's
//!   `Sec-WebSocket-Key` (so the upstream's `Sec-WebSocket-Accept`, checked
//!   here, is the one the client expects), version 13, the client's
//!   subprotocols, and **no** `Sec-WebSocket-Extensions` (no compression: a
//!   compressed frame could expand past the size limit). Failures are
//!   Python's: 502 `upstream_unavailable` ("The upstream refused the WebSocket
//!   upgrade (status N)." / "…handshake response was invalid." / "…could not
//!   be reached."), 502 `upstream_tls_error`, 504 `upstream_timeout`;
//! - the client gets `101` with the subprotocol the upstream chose;
//! - [`relay`] copies frames both ways unchanged, reading frame headers only:
//!   a data frame that takes its message past `max_message_size` is never
//!   forwarded — its sender gets close 1009 ("message too big" to the client),
//!   the other side 1001 (from the client) or 1009 (from the upstream); no
//!   data frame either way for `idle_timeout`, or a connection older than
//!   `max_duration`: close 1001 ("idle timeout" / "maximum duration reached")
//!   to the client and 1000 to the upstream; a close frame goes to the other
//!   side with its code (the upstream's reason to the client; codes that
//!   cannot go on the wire become 1000), and is answered to its sender as an
//!   echo; an upstream that vanishes without a close: 1011 to the client; a
//!   client that does: 1000 to the upstream.
//!
//! An upgrade Python's server would not read as a WebSocket handshake
//! ([`crate::hygiene::python_upgrades`]: `Upgrade: h2c`, no `Connection: upgrade`) is a
//! plain request, decided and proxied as any (its `Upgrade` dropped); one it
//! reads as a handshake that is not a plain RFC 6455 one is refused as
//! `websockets` refuses it ([`refused`]), audited; one to a path no route
//! takes gets Python's 404 / 405 with the denial head.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, UPGRADE};
use http::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::client::{self, head::has_token};
use crate::http::{Body, Identity};
use crate::mutate::ForwardContext;
use crate::problem::Problem;
use crate::upstream::Upstream;

/// RFC 6455 §1.3: appended to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Python's `close_timeout`: how long the closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes queued for one side before reading from the other pauses.
const HIGH_WATER: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

static SEC_KEY: HeaderName = HeaderName::from_static("sec-websocket-key");
static SEC_VERSION: HeaderName = HeaderName::from_static("sec-websocket-version");
static SEC_EXTENSIONS: HeaderName = HeaderName::from_static("sec-websocket-extensions");
static SEC_ACCEPT: HeaderName = HeaderName::from_static("sec-websocket-accept");
static SEC_PROTOCOL: HeaderName = HeaderName::from_static("sec-websocket-protocol");

/// The route's `edge.websocket` section (`RouteWebSocket`).
#[derive(Debug, Deserialize)]
pub struct WebSocketSection {
    max_message_size: u64,
    idle_timeout: f64,
    max_duration: f64,
}

/// A route's WebSocket limits.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub max_message_size: u64,
    pub idle_timeout: Duration,
    pub max_duration: Duration,
}

impl Policy {
    /// Errors name the field.
    pub fn from_section(section: &WebSocketSection) -> Result<Policy, String> {
        let seconds = |value: f64, what: &str| {
            Duration::try_from_secs_f64(value)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("websocket.{what}: {value} is not a positive duration"))
        };
        Ok(Policy {
            max_message_size: section.max_message_size,
            idle_timeout: seconds(section.idle_timeout, "idle_timeout")?,
            max_duration: seconds(section.max_duration, "max_duration")?,
        })
    }
}

/// A client's opening handshake the native door takes.
pub struct Handshake {
    key: HeaderValue,
    /// The requested subprotocols, as Python reads them (every field split on `,`).
    offered: Vec<String>,
}

/// The answer `websockets` (`ServerProtocol.accept`, in its order) gives a
/// handshake uvicorn hands it that is not a plain RFC 6455 one, before any
/// of bastion's code runs: `405` with `Allow: GET` for another method, `426`
/// with `Upgrade: websocket` for another `Upgrade` list, `400` for a missing,
/// repeated or malformed `Sec-WebSocket-Key` or `Sec-WebSocket-Version`. A
/// handshake with a body (`websockets` closes the connection without an
/// answer) gets a `400` too, and so does one over another version than
/// HTTP/1.1 (RFC 6455 §4.1: "the method of the request MUST be GET, and the
/// HTTP version MUST be at least 1.1"; §4.2.1: a server answers what it
/// cannot take `400 Bad Request`). A field `websockets` could not read (not
/// visible ASCII) is refused as a malformed one (quoted escaped), and so is
/// `Upgrade: websocket` beside other, empty `Upgrade` fields (`400`): RFC 6455
/// §4.2.1's one field is the only shape the native door takes, so nothing
/// between this function and [`handshake`] reaches the app. As a problem
/// document: its status, headers and message (`invalid_websocket_handshake`).
/// `None` only for a plain handshake, which [`handshake`] takes on any
/// connection that can switch.
pub fn refused<B>(req: &Request<B>, body_empty: bool) -> Option<Problem> {
    let headers = req.headers();
    if req.version() != Version::HTTP_11 {
        // `websockets`' words for a request line it refuses (`Request.parse`).
        let detail = format!(
            "unsupported protocol; expected HTTP/1.1: {:?}.",
            req.version()
        );
        return Some(bad_handshake(StatusCode::BAD_REQUEST, detail));
    }
    if !body_empty
        || headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get_all(http::header::CONTENT_LENGTH)
            .iter()
            .any(|length| length.as_bytes() != b"0")
    {
        return Some(bad_handshake(
            StatusCode::BAD_REQUEST,
            "A WebSocket handshake cannot carry a body.".into(),
        ));
    }
    if req.method() != Method::GET {
        let detail = format!("unsupported HTTP method: {}.", req.method());
        let mut problem = bad_handshake(StatusCode::METHOD_NOT_ALLOWED, detail);
        problem
            .headers
            .push((http::header::ALLOW, HeaderValue::from_static("GET")));
        return Some(problem);
    }
    let mut protocols = Vec::new();
    let mut fields = 0;
    for value in headers.get_all(UPGRADE) {
        fields += 1;
        // A field that is not visible ASCII names no protocol `websockets` reads:
        // its "another Upgrade list", quoted escaped.
        let value = value
            .to_str()
            .map_or_else(|_| Cow::Owned(escaped(value)), Cow::Borrowed);
        protocols.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
    }
    let invalid = |detail: String| Some(bad_handshake(StatusCode::BAD_REQUEST, detail));
    if !(protocols.len() == 1 && protocols[0].eq_ignore_ascii_case("websocket")) {
        let detail = format!("invalid Upgrade header: {}.", protocols.join(", "));
        let mut problem = bad_handshake(StatusCode::UPGRADE_REQUIRED, detail);
        problem
            .headers
            .push((UPGRADE, HeaderValue::from_static("websocket")));
        return Some(problem);
    }
    if fields > 1 {
        // `Upgrade: websocket` beside empty `Upgrade` fields: `websockets` would join
        // them, the native door takes RFC 6455's one field only (§4.2.1) and refuses
        // the rest rather than hand a gateway path to the app.
        return invalid(format!(
            "invalid Upgrade header: {fields} fields; send one Upgrade: websocket."
        ));
    }
    let key = match header(headers, &SEC_KEY) {
        Field::Missing => return invalid("missing Sec-WebSocket-Key header.".into()),
        Field::Several => {
            return invalid("invalid Sec-WebSocket-Key header: multiple values.".into())
        }
        Field::Unreadable(key) => {
            return invalid(format!("invalid Sec-WebSocket-Key header: {key}."))
        }
        Field::One(key) => key,
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.as_bytes());
    if !decoded.is_ok_and(|raw| raw.len() == 16) {
        return invalid(if key.is_empty() {
            "empty Sec-WebSocket-Key header.".into()
        } else {
            format!("invalid Sec-WebSocket-Key header: {key}.")
        });
    }
    match header(headers, &SEC_VERSION) {
        Field::Missing => invalid("missing Sec-WebSocket-Version header.".into()),
        Field::Several => invalid("invalid Sec-WebSocket-Version header: multiple values.".into()),
        Field::One("") => invalid("empty Sec-WebSocket-Version header.".into()),
        Field::Unreadable(version) => {
            invalid(format!("invalid Sec-WebSocket-Version header: {version}."))
        }
        Field::One(version) if version != "13" => {
            invalid(format!("invalid Sec-WebSocket-Version header: {version}."))
        }
        // A plain handshake: the WebSocket door's (or one the front cannot switch).
        Field::One(_) => None,
    }
}

/// One header field as `websockets` reads it.
enum Field<'a> {
    Missing,
    Several,
    /// Visible ASCII: read as sent.
    One(&'a str),
    /// Not visible ASCII: no key or version `websockets` takes (escaped, to quote).
    Unreadable(String),
}

fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Field<'a> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Field::Missing,
        (Some(_), Some(_)) => Field::Several,
        (Some(value), None) => value
            .to_str()
            .map_or_else(|_| Field::Unreadable(escaped(value)), Field::One),
    }
}

/// A field value that is not visible ASCII, quoted in a detail: bytes escaped.
fn escaped(value: &HeaderValue) -> String {
    value.as_bytes().escape_ascii().to_string()
}

/// The refusal of a plain handshake [`handshake`] cannot take: the connection
/// cannot be handed over (hyper gives every HTTP/1.1 request it serves the
/// means to: a safeguard, so no handshake reaches the app).
pub fn unswitchable() -> Problem {
    bad_handshake(
        StatusCode::BAD_REQUEST,
        "this connection cannot switch to the WebSocket protocol.".into(),
    )
}

/// `websockets`' refusal of a handshake, as a problem document (`detail`: its message).
fn bad_handshake(status: StatusCode, detail: String) -> Problem {
    Problem {
        status,
        code: "invalid_websocket_handshake",
        title: "Invalid WebSocket handshake",
        detail,
        www_authenticate: None,
        retry_after: None,
        headers: Vec::new(),
    }
}

/// The handshake of `req` when it is a plain RFC 6455 one (§4.2.1: GET over
/// HTTP/1.1, `Upgrade: websocket`, `Connection: upgrade`, version 13, a key of
/// 16 bytes) that the connection can switch for; `None` otherwise.
pub fn handshake<B>(req: &Request<B>) -> Option<Handshake> {
    let headers = req.headers();
    if req.method() != Method::GET
        || req.version() != Version::HTTP_11
        || req
            .extensions()
            .get::<hyper::upgrade::OnUpgrade>()
            .is_none()
    {
        return None;
    }
    let upgrade = single(headers, &UPGRADE)?;
    if !upgrade.as_bytes().eq_ignore_ascii_case(b"websocket")
        || !has_token(headers, b"upgrade")
        || single(headers, &SEC_VERSION)?.as_bytes() != b"13"
    {
        return None;
    }
    let key = single(headers, &SEC_KEY)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .ok()?;
    if decoded.len() != 16 {
        return None;
    }
    let mut offered = Vec::new();
    for value in headers.get_all(&SEC_PROTOCOL) {
        let value = value.to_str().ok()?;
        offered.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
        );
    }
    Some(Handshake {
        key: key.clone(),
        offered,
    })
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2: base64 of SHA-1 of key + GUID).
pub fn accept_key(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(ctx.finish())
}

/// The proxy step of an allowed upgrade: the upstream handshake, then the
/// client's 101 (the relay runs in its own task once hyper hands over the
/// connection; `ended` runs when it is over). The error is the problem to
/// render (nothing was accepted; `ended` is dropped).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn open(
    mut req: Request<Body>,
    handshake: Handshake,
    upstream: &Upstream,
    path: &str,
    identity: Option<&Identity>,
    ctx: &ForwardContext<'_>,
    policy: Policy,
    ended: impl FnOnce() + Send + 'static,
) -> Result<Response<Body>, Problem> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let ctx = ForwardContext {
        authority: ctx.authority.or(authority.as_deref()),
        ..*ctx
    };
    let forwarded =
        crate::mutate::forward_headers(req.headers(), identity, &ctx, upstream.mutate());
    let mut headers = HeaderMap::with_capacity(forwarded.len() + 5);
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(SEC_KEY.clone(), handshake.key.clone());
    headers.insert(SEC_VERSION.clone(), HeaderValue::from_static("13"));
    if !handshake.offered.is_empty() {
        let joined = handshake.offered.join(", ");
        let value =
            HeaderValue::from_str(&joined).map_err(|_| Problem::upstream_unavailable(INVALID))?;
        headers.insert(SEC_PROTOCOL.clone(), value);
    }
    for (name, value) in &forwarded {
        let own = name == SEC_KEY
            || name == SEC_VERSION
            || name == SEC_EXTENSIONS
            || name == SEC_ACCEPT
            || name == SEC_PROTOCOL;
        if !own {
            headers.append(name.clone(), value.clone());
        }
    }
    let answer = upstream
        .switch(path, req.uri().query(), &headers)
        .await
        .map_err(|e| crate::verdict::problem_of(&e))?;
    let (head, upstream_io) = match answer {
        client::Answer::Switched(head, io) => (head, io),
        client::Answer::Response(head, _) => {
            return Err(Problem::upstream_unavailable(format!(
                "The upstream refused the WebSocket upgrade (status {}).",
                head.status.as_u16()
            )));
        }
    };
    let accept = accept_key(handshake.key.as_bytes());
    let protocol = chosen(&head.headers, &accept, &handshake.offered)
        .ok_or_else(|| Problem::upstream_unavailable(INVALID))?;
    let mut response = Response::new(crate::http::full(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        out.insert(SEC_ACCEPT.clone(), value);
    }
    if let Some(protocol) = protocol {
        out.insert(SEC_PROTOCOL.clone(), protocol);
    }
    tokio::spawn(async move {
        if let Ok(client) = on_upgrade.await {
            relay(TokioIo::new(client), upstream_io, policy).await;
        }
        ended();
    });
    Ok(response)
}

const INVALID: &str = "The upstream's WebSocket handshake response was invalid.";

/// The upstream's 101 as the websockets client checks it: `Upgrade:
/// websocket`, `Connection: upgrade`, the expected accept value, no
/// extension, at most one subprotocol and one that was offered. `Some(chosen)`
/// when valid.
fn chosen(headers: &HeaderMap, accept: &str, offered: &[String]) -> Option<Option<HeaderValue>> {
    let upgrade = single(headers, &UPGRADE)?;
    if !upgrade.as_bytes().eq_ignore_ascii_case(b"websocket")
        || !has_token(headers, b"upgrade")
        || single(headers, &SEC_ACCEPT)?.as_bytes() != accept.as_bytes()
        || headers.contains_key(&SEC_EXTENSIONS)
    {
        return None;
    }
    match headers.get_all(&SEC_PROTOCOL).iter().count() {
        0 => Some(None),
        1 => {
            let value = headers.get(&SEC_PROTOCOL)?;
            let name = value.to_str().ok()?.trim();
            offered
                .iter()
                .any(|p| p == name)
                .then(|| Some(value.clone()))
        }
        _ => None,
    }
}

/// What one side's bytes held, as far as the relay cares.
#[derive(Debug, PartialEq, Eq)]
enum Feed {
    /// Everything complete was moved to the output; more input is needed.
    More,
    /// A close frame (its payload, unmasked); nothing after it was read.
    Close(Bytes),
    /// A data frame takes its message past the size limit (not forwarded).
    TooBig,
    /// Not a valid frame sequence for a connection without extensions.
    Protocol,
}

/// One direction's frame reader: frames are copied unchanged, their headers
/// read to follow messages, control frames and the payload boundaries.
struct Frames {
    /// Frames from the client are masked, frames from the upstream are not.
    masked: bool,
    limit: u64,
    /// Payload bytes of the current data frame still to copy.
    remaining: u64,
    /// Payload bytes of the current message so far.
    message: u64,
    /// Inside a fragmented message (a data frame without FIN was seen).
    fragmented: bool,
    /// A data frame started since the flag was last cleared.
    active: bool,
}

impl Frames {
    fn new(masked: bool, limit: u64) -> Self {
        Frames {
            masked,
            limit,
            remaining: 0,
            message: 0,
            fragmented: false,
            active: false,
        }
    }

    /// Whether the output ends on a frame boundary (a close frame may follow).
    fn between_frames(&self) -> bool {
        self.remaining == 0
    }

    /// Move whole frame headers, control frames and payload bytes from `input`
    /// to `out`; stop at a close frame or a refusal.
    fn feed(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Feed {
        loop {
            if self.remaining > 0 {
                if input.is_empty() {
                    return Feed::More;
                }
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                out.extend_from_slice(&input[..n]);
                input.advance(n);
                self.remaining -= n as u64;
                continue;
            }
            if input.len() < 2 {
                return Feed::More;
            }
            let (b0, b1) = (input[0], input[1]);
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0f;
            if b0 & 0x70 != 0 || (b1 & 0x80 != 0) != self.masked {
                return Feed::Protocol; // RSV bits without an extension; masking backwards
            }
            let (len, mut header) = match b1 & 0x7f {
                126 => {
                    if input.len() < 4 {
                        return Feed::More;
                    }
                    (u64::from(u16::from_be_bytes([input[2], input[3]])), 4)
                }
                127 => {
                    if input.len() < 10 {
                        return Feed::More;
                    }
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(&input[2..10]);
                    let len = u64::from_be_bytes(raw);
                    if len >> 63 != 0 {
                        return Feed::Protocol;
                    }
                    (len, 10)
                }
                n => (u64::from(n), 2),
            };
            if self.masked {
                header += 4;
            }
            if opcode >= 8 {
                // Control frames: whole, short, never fragmented (§5.5).
                if !fin || len > 125 || opcode > 10 {
                    return Feed::Protocol;
                }
                let total = header + len as usize;
                if input.len() < total {
                    return Feed::More;
                }
                if opcode == 8 {
                    let mut payload = input[header..total].to_vec();
                    if self.masked {
                        let key = [
                            input[header - 4],
                            input[header - 3],
                            input[header - 2],
                            input[header - 1],
                        ];
                        for (i, b) in payload.iter_mut().enumerate() {
                            *b ^= key[i & 3];
                        }
                    }
                    input.advance(total);
                    if payload.len() == 1 {
                        return Feed::Protocol;
                    }
                    return Feed::Close(Bytes::from(payload));
                }
                // Ping and pong pass: the endpoints answer each other.
                out.extend_from_slice(&input[..total]);
                input.advance(total);
                continue;
            }
            match opcode {
                0 if self.fragmented => {}
                1 | 2 if !self.fragmented => self.message = 0,
                _ => return Feed::Protocol,
            }
            if input.len() < header {
                return Feed::More;
            }
            if self.message.saturating_add(len) > self.limit {
                return Feed::TooBig;
            }
            self.message += len;
            self.fragmented = !fin;
            self.active = true;
            out.extend_from_slice(&input[..header]);
            input.advance(header);
            self.remaining = len;
        }
    }
}

/// How a relayed connection ended.
#[derive(Debug)]
enum End {
    ClientClose(Bytes),
    UpstreamClose(Bytes),
    ClientTooBig,
    UpstreamTooBig,
    ClientProtocol,
    UpstreamProtocol,
    ClientGone,
    UpstreamGone,
    Idle,
    MaxDuration,
}

/// The close code of a close frame's payload (`None`: no code).
fn code_of(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Python's `_wire_code`: a code that cannot go on the wire becomes 1000.
fn wire_code(code: Option<u16>) -> u16 {
    match code {
        Some(code @ 1000..=4999) if !matches!(code, 1005 | 1006 | 1015) => code,
        _ => 1000,
    }
}

/// A close frame with `code` and `reason` (at most 123 bytes of it), masked
/// with a fresh key when it goes to the upstream.
fn close_frame(out: &mut BytesMut, code: u16, reason: &[u8], masked: bool) {
    let reason = &reason[..reason.len().min(123)];
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason);
    raw_close(out, &payload, masked);
}

/// A close frame carrying `payload` as it is (an echo).
fn raw_close(out: &mut BytesMut, payload: &[u8], masked: bool) {
    let payload = &payload[..payload.len().min(125)];
    out.extend_from_slice(&[0x88, payload.len() as u8 | if masked { 0x80 } else { 0 }]);
    if masked {
        let mut key = [0u8; 4];
        // A failed read of the system RNG leaves a zero key: still a valid frame.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key);
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    } else {
        out.extend_from_slice(payload);
    }
}

/// A close frame to send: its code and reason.
type Close = (u16, &'static [u8]);

/// Relay one switched connection until either side closes (see the module
/// documentation for the close codes). Both streams are shut down on return.
pub async fn relay<C, U>(client: C, upstream: U, policy: Policy)
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let mut from_client = Frames::new(true, policy.max_message_size);
    let mut from_upstream = Frames::new(false, policy.max_message_size);
    let mut cin = BytesMut::with_capacity(READ_CHUNK);
    let mut uin = BytesMut::with_capacity(READ_CHUNK);
    let mut to_upstream = BytesMut::new();
    let mut to_client = BytesMut::new();
    let started = Instant::now();
    let deadline = started + policy.max_duration;
    let mut idle_until = started + policy.idle_timeout;
    // One timer, moved forward lazily: activity only moves `idle_until`.
    let timer = tokio::time::sleep_until(idle_until.min(deadline));
    tokio::pin!(timer);
    let end = loop {
        for buf in [&mut cin, &mut uin] {
            if buf.capacity() - buf.len() < READ_CHUNK / 4 {
                buf.reserve(READ_CHUNK);
            }
        }
        tokio::select! {
            read = cr.read_buf(&mut cin), if to_upstream.len() < HIGH_WATER => {
                if !matches!(read, Ok(n) if n > 0) {
                    break End::ClientGone;
                }
                match from_client.feed(&mut cin, &mut to_upstream) {
                    Feed::More => {}
                    Feed::Close(payload) => break End::ClientClose(payload),
                    Feed::TooBig => break End::ClientTooBig,
                    Feed::Protocol => break End::ClientProtocol,
                }
            }
            read = ur.read_buf(&mut uin), if to_client.len() < HIGH_WATER => {
                if !matches!(read, Ok(n) if n > 0) {
                    break End::UpstreamGone;
                }
                match from_upstream.feed(&mut uin, &mut to_client) {
                    Feed::More => {}
                    Feed::Close(payload) => break End::UpstreamClose(payload),
                    Feed::TooBig => break End::UpstreamTooBig,
                    Feed::Protocol => break End::UpstreamProtocol,
                }
            }
            written = uw.write_buf(&mut to_upstream), if !to_upstream.is_empty() => {
                if !matches!(written, Ok(n) if n > 0) {
                    break End::UpstreamGone;
                }
            }
            written = cw.write_buf(&mut to_client), if !to_client.is_empty() => {
                if !matches!(written, Ok(n) if n > 0) {
                    break End::ClientGone;
                }
            }
            () = &mut timer => {
                let now = Instant::now();
                if now >= deadline {
                    break End::MaxDuration;
                }
                if now >= idle_until {
                    break End::Idle;
                }
                timer.as_mut().reset(idle_until.min(deadline));
            }
        }
        if from_client.active || from_upstream.active {
            from_client.active = false;
            from_upstream.active = false;
            idle_until = Instant::now() + policy.idle_timeout;
        }
    };
    // The close frames each side gets: (to the client, to the upstream).
    let (client_close, upstream_close): (Option<Close>, Option<Close>) = match &end {
        End::ClientClose(_) | End::UpstreamClose(_) => (None, None), // below
        End::ClientTooBig => (Some((1009, b"message too big")), Some((1001, b""))),
        End::UpstreamTooBig => (Some((1009, b"message too big")), Some((1009, b""))),
        End::ClientProtocol => (Some((1002, b"")), Some((1002, b""))),
        End::UpstreamProtocol => (Some((1011, b"")), Some((1002, b""))),
        End::ClientGone => (None, Some((1000, b""))),
        End::UpstreamGone => (Some((1011, b"")), None),
        End::Idle => (Some((1001, b"idle timeout")), Some((1000, b""))),
        End::MaxDuration => (Some((1001, b"maximum duration reached")), Some((1000, b""))),
    };
    let client_ok = from_upstream.between_frames() && !matches!(end, End::ClientGone);
    let upstream_ok = from_client.between_frames() && !matches!(end, End::UpstreamGone);
    match &end {
        End::ClientClose(payload) => {
            // Echoed to the client (its closing handshake), its code to the upstream.
            if client_ok {
                raw_close(&mut to_client, payload, false);
            }
            if upstream_ok {
                close_frame(&mut to_upstream, wire_code(code_of(payload)), b"", true);
            }
        }
        End::UpstreamClose(payload) => {
            if client_ok {
                let reason = payload.get(2..).unwrap_or_default();
                close_frame(&mut to_client, wire_code(code_of(payload)), reason, false);
            }
            if upstream_ok {
                raw_close(&mut to_upstream, payload, true);
            }
        }
        _ => {
            if let (Some((code, reason)), true) = (client_close, client_ok) {
                close_frame(&mut to_client, code, reason, false);
            }
            if let (Some((code, reason)), true) = (upstream_close, upstream_ok) {
                close_frame(&mut to_upstream, code, reason, true);
            }
        }
    }
    let client_gone = matches!(end, End::ClientGone);
    let upstream_gone = matches!(end, End::UpstreamGone);
    // Send what is left and the close frames, end the writes, then read until
    // each peer closes (its close reply), within the close timeout.
    let closing = async {
        let client = async {
            if !client_gone {
                let _ = cw.write_all_buf(&mut to_client).await;
                let _ = cw.shutdown().await;
                drain(&mut cr).await;
            }
        };
        let upstream = async {
            if !upstream_gone {
                let _ = uw.write_all_buf(&mut to_upstream).await;
                let _ = uw.shutdown().await;
                drain(&mut ur).await;
            }
        };
        tokio::join!(client, upstream);
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}

/// Read and discard until the peer closes (or fails).
async fn drain<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut sink = [0u8; 1024];
    while matches!(reader.read(&mut sink).await, Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests;
