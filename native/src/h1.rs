//! A lean HTTP/1.1 server connection loop for the common request, with hyper
//! as the fallback for everything else.
//!
//! Why: hyper's HTTP/1 state machine, header maps and channel hand-offs were
//! a large share of the front's user CPU per request (issue 14's profile).
//! This loop reads into one reusable buffer, parses the head with `httparse`,
//! hands an `http::Request` to the same handler as hyper's service, and
//! writes the response head (and, when it is ready, the body) in one write.
//!
//! **Only what is plainly safe is served here.** A request head with one
//! `Transfer-Encoding: chunked`, `Upgrade` / `Connection: upgrade`, `Expect`,
//! `CONNECT`, the HTTP/2 preface, a head larger than the bound, or a request
//! line `httparse` (or `http`'s URI / header name parsers) refuses, is handed
//! to hyper **for the rest of the connection**, with the bytes already read
//! replayed first ([`Rewind`]): hyper then answers exactly as it did before
//! this loop existed (its 400 / 414 / 431, chunked bodies, WebSocket upgrades,
//! h2c). There is one framing rule here — one `Content-Length` of digits, or
//! no body — so a request cannot be read two ways (request smuggling): any
//! other framing (`Content-Length` with `Transfer-Encoding`, two lengths or an
//! odd one, another coding, HTTP/1.0 chunked) is handed to the handler as a
//! head alone, marked `hygiene::Unreadable`, and header fields `httparse`
//! cannot read as an empty head marked `hygiene::Malformed`: the front
//! answers both, and the connection closes after the answer without reading
//! further (lingering: [`linger`]). Every header field is counted, past the
//! 128 parsed on the stack, so that the gateway answers `request_limits`.
//!
//! What the loop keeps from hyper, byte for byte where it writes: the status
//! line, lower-case header names in the response's order, `content-length` /
//! `transfer-encoding: chunked` / close-delimited framing by the same rules
//! (`Server::encode_headers`), exactly one `date`, `connection: close` or
//! `keep-alive` as hyper adds them (HTTP/1.0 keep-alive), no body for HEAD,
//! 204 and 304, the header read timeout (which also bounds an idle
//! keep-alive connection), and graceful stop (an idle connection closes, a
//! request in flight finishes with `connection: close`).
//!
//! What it adds: a send timeout (nginx's `send_timeout`, 60 s): a write to
//! the client that makes no progress for that long ends the connection.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::http::{Body, BoxError};

/// The head fields the loop parses itself; a request with more goes to hyper
/// (which applies the configured `max_headers`, as before).
const MAX_FIELDS: usize = 128;

/// hyper's bound for a request target (`MAX_URI_LEN`): longer ones get its 414.
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// A response body is written as it comes, but frames that are ready at once
/// are gathered into one write up to this size.
const GATHER: usize = 64 * 1024;

/// A request body the handler left unread is read and dropped up to this
/// many bytes (within [`DRAIN_TIMEOUT`]) to keep the connection; more, and
/// the connection closes.
pub(crate) const DRAIN_MAX: u64 = 64 * 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a connection closing with a request body unread reads and drops
/// what the client still sends ([`linger`]).
const LINGER: Duration = Duration::from_secs(2);

/// What the loop needs to know of the server's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `request_limits.max_headers`: more fields go to hyper (its 431).
    pub max_headers: usize,
    /// hyper's read buffer bound (`max_buf_size`): a longer head goes to
    /// hyper, which answers 431 as before.
    pub max_head: usize,
    /// A head must arrive within this (hyper's `header_read_timeout`), counted
    /// from when the loop starts waiting for it — so it also bounds an idle
    /// keep-alive connection, and a slow head (slowloris).
    pub header_timeout: Duration,
    /// A write that makes no progress for this long ends the connection
    /// (nginx's `send_timeout`): a client that stops reading cannot hold a
    /// connection, its buffers and an upstream exchange forever.
    pub send_timeout: Duration,
}

/// [`Limits::send_timeout`] of the public listener (nginx's default).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// How the loop ended.
pub enum Exit<S> {
    /// The connection is done (closed by either side, timed out, stopped).
    Closed,
    /// Hand the connection to hyper: replay `replay` first. `first`: no
    /// request was served on it yet (hyper may still see an HTTP/2 preface).
    Fallback { io: S, replay: Bytes, first: bool },
}

/// The connection's state shared with a request body being read elsewhere
/// (the handler may poll the body from another task on this thread).
struct Inner<S> {
    /// `None` once handed over.
    io: Option<S>,
    /// Bytes read and not yet consumed (a head, a body, pipelined requests).
    rbuf: BytesMut,
    /// [`Limits::send_timeout`].
    send_timeout: Duration,
    /// The generation of the request body allowed to read: a body left over
    /// from an earlier request cannot read the next request's bytes.
    generation: u64,
    /// Bytes of the current request body not yet read from the client.
    left: u64,
}

type Shared<S> = Arc<Mutex<Inner<S>>>;

fn lock<S>(shared: &Shared<S>) -> MutexGuard<'_, Inner<S>> {
    // A panic while holding the lock cannot leave `Inner` half-updated in a
    // way that matters more than closing the connection; go on with it.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Read what the client sent into `rbuf` (0: end of stream).
fn poll_fill<S: AsyncRead + Unpin>(
    io: &mut S,
    rbuf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if rbuf.capacity() - rbuf.len() < 1024 {
        rbuf.reserve(8 * 1024);
    }
    // `read_buf` keeps no state between polls: a fresh future each time is fine.
    pin!(io.read_buf(rbuf)).poll(cx)
}

/// One request head, parsed and checked.
struct Head {
    req: Request<()>,
    body_len: u64,
    keep_alive: bool,
    /// A body of refused framing follows, not read: linger when closing.
    unread: bool,
}

enum Parsed {
    /// More bytes are needed.
    Partial,
    /// Not for this loop: hyper takes the connection.
    Fallback,
    Head(Head),
}

/// Whether a header value holds the `token` (comma-separated, any case), as
/// hyper's `connection_has`.
fn has_token(value: &[u8], token: &str) -> bool {
    std::str::from_utf8(value).is_ok_and(|s| {
        s.split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    })
}

/// A `Content-Length` this loop accepts: 1 to 19 ASCII digits (no sign, no
/// list, no spaces inside). Anything else goes to hyper, which refuses or
/// accepts it as before.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Parse the head at the front of `rbuf`. On `Head`, the head's bytes are
/// consumed; otherwise `rbuf` is as it was.
fn parse(rbuf: &mut BytesMut, limits: &Limits, ranges: &mut Vec<FieldRange>) -> Parsed {
    // Left uninitialised (httparse's safe API for it): no 4 KiB memset per request.
    let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let checked = match req.parse_with_uninit_headers(rbuf, &mut fields) {
        Ok(status) => check(rbuf, status, &req, limits, ranges),
        Err(error) if malformed_field(error) => Checked::Malformed,
        Err(httparse::Error::TooManyHeaders) if !head_ended(rbuf) => {
            // Parsed again with room for every field once the head has ended.
            if rbuf.len() < limits.max_head {
                Checked::Partial
            } else {
                Checked::Fallback
            }
        }
        Err(httparse::Error::TooManyHeaders) => {
            // More fields than the common head has: counted here all the same, so that
            // the gateway answers Python's 431 (`hygiene::refused`). At most one field
            // per 3 bytes received (`a:` and a line end), within the head bound.
            let most = rbuf.len().min(limits.max_head) / 3 + 1;
            let mut many = vec![httparse::EMPTY_HEADER; most];
            let mut req = httparse::Request::new(&mut many);
            match req.parse(rbuf) {
                Ok(status) => check(rbuf, status, &req, limits, ranges),
                Err(error) if malformed_field(error) => Checked::Malformed,
                Err(_) => Checked::Fallback,
            }
        }
        // Malformed: hyper's answer.
        Err(_) => Checked::Fallback,
    };
    match checked {
        Checked::Partial => Parsed::Partial,
        Checked::Fallback => Parsed::Fallback,
        Checked::Malformed => {
            // Where the head ends is not known: nothing after it is read as a request.
            rbuf.clear();
            let mut req = Request::new(());
            req.extensions_mut().insert(crate::hygiene::Malformed);
            Parsed::Head(Head {
                req,
                body_len: 0,
                keep_alive: false,
                unread: true,
            })
        }
        Checked::Head(checked) => finish(rbuf, checked, ranges),
    }
}

/// Whether `buf` holds the end of a head (an empty line, CRLF or bare LF as
/// `httparse` reads them): a head with many fields is parsed once, whole.
fn head_ended(buf: &[u8]) -> bool {
    buf.windows(2).any(|pair| pair == b"\n\n") || buf.windows(3).any(|t| t == b"\n\r\n")
}

/// A header field `httparse` refuses (a name that is not a token; a control
/// character, a bare CR or line folding in a value), which no server of
/// Python's app reads either: answered by the front (`hygiene::Malformed`).
fn malformed_field(error: httparse::Error) -> bool {
    matches!(
        error,
        httparse::Error::HeaderName | httparse::Error::HeaderValue | httparse::Error::NewLine
    )
}

/// What [`check`] found in a complete head.
struct CheckedHead {
    len: usize,
    path: std::ops::Range<usize>,
    method: Method,
    http11: bool,
    keep_alive: bool,
    body_len: Option<u64>,
    /// A framing field other than one `Content-Length` of digits: judged once built.
    odd_framing: bool,
    /// An upgrade or `Expect`: hyper's, when the framing is fine.
    hyper: bool,
}

enum Checked {
    Partial,
    Fallback,
    Malformed,
    Head(CheckedHead),
}

/// The head `httparse` read from `buf` (`status`), checked; its fields'
/// places in `ranges`.
fn check(
    buf: &[u8],
    status: httparse::Status<usize>,
    req: &httparse::Request<'_, '_>,
    limits: &Limits,
    ranges: &mut Vec<FieldRange>,
) -> Checked {
    let len = match status {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial if buf.len() < limits.max_head => return Checked::Partial,
        // Too large: hyper's answer.
        httparse::Status::Partial => return Checked::Fallback,
    };
    if len > limits.max_head {
        return Checked::Fallback;
    }
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Checked::Fallback;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Checked::Fallback;
    };
    if method == Method::CONNECT || method.as_str() == "PRI" || path.len() > MAX_URI_LEN {
        return Checked::Fallback;
    }
    let http11 = version == 1;
    let mut head = CheckedHead {
        len,
        path: 0..0,
        method,
        http11,
        keep_alive: http11,
        body_len: None,
        odd_framing: false,
        hyper: false,
    };
    let mut saw_close = false;
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| s.as_ptr() as usize - base;
    let path_at = offset(path.as_bytes());
    head.path = path_at..path_at + path.len();
    ranges.clear();
    for field in req.headers.iter() {
        let name = field.name.as_bytes();
        let value = field.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            // One length, plain digits: the only body framing this loop reads.
            match content_length(value) {
                Some(n) if head.body_len.is_none() => head.body_len = Some(n),
                _ => head.odd_framing = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            head.odd_framing = true;
        } else if name.eq_ignore_ascii_case(b"upgrade") || name.eq_ignore_ascii_case(b"expect") {
            head.hyper = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            head.hyper |= has_token(value, "upgrade");
            // As hyper: once any line asks to close, a later keep-alive does not undo it.
            if saw_close || has_token(value, "close") {
                saw_close = true;
                head.keep_alive = false;
            } else if !head.keep_alive {
                head.keep_alive = has_token(value, "keep-alive");
            }
        }
        let at = offset(name);
        let vat = offset(value);
        ranges.push((at, at + name.len(), vat, vat + value.len()));
    }
    if head.hyper && !head.odd_framing {
        return Checked::Fallback;
    }
    Checked::Head(head)
}

/// Take the checked head out of `rbuf` and build its request; a head that is
/// not for this loop is put back (`Fallback`).
fn finish(rbuf: &mut BytesMut, checked: CheckedHead, ranges: &[FieldRange]) -> Parsed {
    let head = rbuf.split_to(checked.len).freeze();
    let built = build(&head, checked.path, ranges, checked.method, checked.http11);
    match built {
        Some(mut req) if checked.odd_framing => {
            match crate::hygiene::unframed(req.version(), req.headers()) {
                // Framing that cannot be read one way only (RFC 9112 §6.1, §6.3): the
                // body is not read, the front answers (`hygiene::Unreadable`), the
                // connection closes after the answer.
                Some(unframed) => {
                    req.extensions_mut()
                        .insert(crate::hygiene::Unreadable(unframed));
                    Parsed::Head(Head {
                        req,
                        body_len: 0,
                        keep_alive: false,
                        unread: true,
                    })
                }
                // One `Transfer-Encoding: chunked`: hyper decodes it.
                None => {
                    unparse(rbuf, &head);
                    Parsed::Fallback
                }
            }
        }
        Some(req) => Parsed::Head(Head {
            req,
            body_len: checked.body_len.unwrap_or(0),
            keep_alive: checked.keep_alive,
            unread: false,
        }),
        None => {
            // A target or a field name `http` refuses (hyper's 400): put the
            // head back for hyper to read.
            unparse(rbuf, &head);
            Parsed::Fallback
        }
    }
}

/// Put a head taken from `rbuf` back in front of it.
fn unparse(rbuf: &mut BytesMut, head: &Bytes) {
    let mut back = BytesMut::with_capacity(head.len() + rbuf.len());
    back.extend_from_slice(head);
    back.extend_from_slice(rbuf);
    *rbuf = back;
}

/// Where a field's name and value are in the head: name start, end, value start, end.
type FieldRange = (usize, usize, usize, usize);

/// The `http::Request` of a parsed head; values share the head's buffer.
fn build(
    head: &Bytes,
    path: std::ops::Range<usize>,
    fields: &[FieldRange],
    method: Method,
    http11: bool,
) -> Option<Request<()>> {
    let uri = Uri::from_maybe_shared(head.slice(path)).ok()?;
    let mut headers = HeaderMap::with_capacity(fields.len());
    for &(n0, n1, v0, v1) in fields {
        let name = HeaderName::from_bytes(&head[n0..n1]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(v0..v1)).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    *req.headers_mut() = headers;
    Some(req)
}

/// A request body of exactly its `Content-Length`, read from the connection.
struct RequestBody<S> {
    shared: Shared<S>,
    generation: u64,
    left: u64,
}

impl<S: AsyncRead + Unpin> http_body::Body for RequestBody<S> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let mut inner = lock(&this.shared);
        if inner.generation != this.generation {
            return Poll::Ready(Some(Err("the request is over".into())));
        }
        loop {
            if !inner.rbuf.is_empty() {
                let n = usize::try_from(this.left)
                    .unwrap_or(usize::MAX)
                    .min(inner.rbuf.len());
                let data = inner.rbuf.split_to(n).freeze();
                this.left -= n as u64;
                inner.left = this.left;
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            let Inner { io, rbuf, .. } = &mut *inner;
            let Some(io) = io.as_mut() else {
                return Poll::Ready(Some(Err("the connection is gone".into())));
            };
            match ready!(poll_fill(io, rbuf, cx)) {
                Ok(0) => {
                    return Poll::Ready(Some(Err(
                        "the client closed the connection before the end of the body".into(),
                    )))
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e.into()))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// The `date` value, formatted once per second per thread (as hyper caches it).
fn extend_date(dst: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            *cached = (second, httpdate::fmt_http_date(now));
        }
        dst.extend_from_slice(cached.1.as_bytes());
    });
}

/// How a response body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0 without a length).
    Close,
}

/// What hyper's dispatcher calls the body's length.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyLength {
    None,
    Known(u64),
    Unknown,
}

fn can_chunked(method: &Method, status: StatusCode) -> bool {
    *method != Method::HEAD
        && !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

fn can_have_content_length(status: StatusCode) -> bool {
    !status.is_informational()
        && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// Write the response head into `dst` as hyper's `Server::encode` would
/// (after its `enforce_version`), and say how the body is framed.
/// `keep_alive` comes in as the request's wish and the server's state, and
/// goes out false when the connection must close after this response.
fn encode_head(
    dst: &mut Vec<u8>,
    parts: &mut http::response::Parts,
    body: &Body,
    method: &Method,
    req_version: Version,
    keep_alive: &mut bool,
) -> Framing {
    if parts.status.is_informational() {
        // hyper cannot send a 1xx as the response: it answers 500 and closes.
        dst.extend_from_slice(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\ndate: ");
        extend_date(dst);
        dst.extend_from_slice(b"\r\n\r\n");
        *keep_alive = false;
        return Framing::Length(0);
    }
    // hyper's `enforce_version`.
    let mut version = parts.version;
    if req_version == Version::HTTP_10 {
        let says_keep_alive = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), "keep-alive"));
        if !says_keep_alive {
            match version {
                Version::HTTP_10 => *keep_alive = false,
                Version::HTTP_11 if *keep_alive => {
                    parts
                        .headers
                        .append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
                }
                _ => {}
            }
        }
        version = Version::HTTP_10;
    } else if !*keep_alive
        && !parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), "close"))
    {
        parts
            .headers
            .append(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let length = if body.is_end_stream() {
        BodyLength::None
    } else {
        match body.size_hint().exact() {
            Some(n) => BodyLength::Known(n),
            None => BodyLength::Unknown,
        }
    };
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if version == Version::HTTP_11 && parts.status == StatusCode::OK && reason.is_none() {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        dst.extend_from_slice(if version == Version::HTTP_10 {
            b"HTTP/1.0 "
        } else {
            b"HTTP/1.1 "
        });
        dst.extend_from_slice(parts.status.as_str().as_bytes());
        dst.push(b' ');
        match reason {
            Some(reason) => dst.extend_from_slice(reason.as_bytes()),
            None => dst.extend_from_slice(
                parts
                    .status
                    .canonical_reason()
                    .unwrap_or("<none>")
                    .as_bytes(),
            ),
        }
        dst.extend_from_slice(b"\r\n");
    }
    let chunkable = version != Version::HTTP_10 && can_chunked(method, parts.status);
    let mut is_last = !*keep_alive;
    let mut framing = Framing::Length(0);
    let mut wrote_len = false;
    let mut wrote_date = false;
    let mut open = false; // a combined line (content-length, transfer-encoding, connection) is open
    let mut must_chunk = false;
    let mut prev_len = None;
    let mut current: Option<HeaderName> = None;
    let close_line = |dst: &mut Vec<u8>, open: bool, must_chunk: bool| {
        if open {
            dst.extend_from_slice(if must_chunk {
                b", chunked\r\n"
            } else {
                b"\r\n"
            });
        }
    };
    for (name, value) in std::mem::take(&mut parts.headers) {
        if let Some(name) = name {
            close_line(dst, open, must_chunk);
            open = false;
            current = Some(name);
        }
        let Some(name) = current.as_ref() else {
            continue;
        };
        match *name {
            header::CONTENT_LENGTH => {
                if wrote_len && !open {
                    // Both a length and chunked: hyper refuses such a response.
                    return refuse(dst, keep_alive);
                }
                match length {
                    BodyLength::Known(n) => {
                        if !open {
                            framing = Framing::Length(n);
                            dst.extend_from_slice(b"content-length: ");
                            dst.extend_from_slice(value.as_bytes());
                            wrote_len = true;
                            open = true;
                        }
                        continue;
                    }
                    BodyLength::Unknown => match content_length(value.as_bytes()) {
                        Some(n) => {
                            if let Some(prev) = prev_len {
                                if prev != n {
                                    return refuse(dst, keep_alive);
                                }
                                continue;
                            }
                            framing = Framing::Length(n);
                            dst.extend_from_slice(b"content-length: ");
                            dst.extend_from_slice(value.as_bytes());
                            wrote_len = true;
                            open = true;
                            prev_len = Some(n);
                            continue;
                        }
                        None => return refuse(dst, keep_alive),
                    },
                    BodyLength::None => {
                        if *method != Method::HEAD {
                            continue;
                        }
                    }
                }
                wrote_len = true;
            }
            header::TRANSFER_ENCODING => {
                if wrote_len && !open {
                    return refuse(dst, keep_alive);
                }
                if !chunkable {
                    continue;
                }
                wrote_len = true;
                must_chunk = !is_chunked(value.as_bytes());
                if !open {
                    framing = Framing::Chunked;
                    open = true;
                    dst.extend_from_slice(b"transfer-encoding: ");
                } else {
                    dst.extend_from_slice(b", ");
                }
                dst.extend_from_slice(value.as_bytes());
                continue;
            }
            header::CONNECTION => {
                if !is_last && has_token(value.as_bytes(), "close") {
                    is_last = true;
                }
                if !open {
                    open = true;
                    dst.extend_from_slice(b"connection: ");
                } else {
                    dst.extend_from_slice(b", ");
                }
                dst.extend_from_slice(value.as_bytes());
                continue;
            }
            header::DATE => wrote_date = true,
            header::TRAILER => {
                // Trailers are not sent by this loop; neither is their announcement.
                continue;
            }
            _ => {}
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    close_line(dst, open, must_chunk);
    if !wrote_len {
        framing = match length {
            BodyLength::Unknown => {
                if chunkable {
                    dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                    Framing::Chunked
                } else {
                    Framing::Close
                }
            }
            BodyLength::None | BodyLength::Known(0) => {
                if can_have_content_length(parts.status) && *method != Method::HEAD {
                    dst.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            BodyLength::Known(n) => {
                if can_have_content_length(parts.status) {
                    dst.extend_from_slice(b"content-length: ");
                    dst.extend_from_slice(n.to_string().as_bytes());
                    dst.extend_from_slice(b"\r\n");
                    Framing::Length(n)
                } else {
                    Framing::Length(0)
                }
            }
        };
    }
    if !can_chunked(method, parts.status) {
        // HEAD, 204, 304: no body, whatever the headers say.
        framing = Framing::Length(0);
    }
    if !wrote_date {
        dst.extend_from_slice(b"date: ");
        extend_date(dst);
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    if is_last || framing == Framing::Close {
        *keep_alive = false;
    }
    framing
}

/// hyper's answer to a response whose framing headers contradict each other
/// (two lengths, a length and chunked, a length that is not a number): the
/// head is discarded, nothing is sent, and the connection closes.
fn refuse(dst: &mut Vec<u8>, keep_alive: &mut bool) -> Framing {
    dst.clear();
    *keep_alive = false;
    Framing::Length(0)
}

fn is_chunked(value: &[u8]) -> bool {
    // hyper's `is_chunked_`: the last coding is `chunked`.
    std::str::from_utf8(value).is_ok_and(|s| {
        s.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    })
}

/// Write all of `buf` to the connection; a write that makes no progress
/// within the send timeout fails with `TimedOut`.
async fn write_all<S: AsyncWrite + Unpin>(shared: &Shared<S>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = patient(
            shared,
            poll_fn(|cx| match lock(shared).io.as_mut() {
                Some(io) => Pin::new(io).poll_write(cx, buf),
                None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            }),
        )
        .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

async fn flush<S: AsyncWrite + Unpin>(shared: &Shared<S>) -> io::Result<()> {
    patient(
        shared,
        poll_fn(|cx| match lock(shared).io.as_mut() {
            Some(io) => Pin::new(io).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }),
    )
    .await
}

/// Run one write (or flush) to the client; if it cannot finish at once (the
/// socket's buffer is full: the client reads slowly or not at all), give it
/// the send timeout. The timer is only armed then, so a response that fits the
/// buffer costs none.
async fn patient<S, T>(
    shared: &Shared<S>,
    io_op: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    let mut io_op = pin!(io_op);
    if let Poll::Ready(done) = poll_fn(|cx| Poll::Ready(io_op.as_mut().poll(cx))).await {
        return done;
    }
    let limit = lock(shared).send_timeout;
    match tokio::time::timeout(limit, io_op).await {
        Ok(done) => done,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

async fn shutdown<S: AsyncWrite + Unpin>(shared: &Shared<S>) {
    let _ = poll_fn(|cx| match lock(shared).io.as_mut() {
        Some(io) => Pin::new(io).poll_shutdown(cx),
        None => Poll::Ready(Ok(())),
    })
    .await;
}

/// Write `wbuf` (the head, maybe more) and drain it.
async fn send<S: AsyncWrite + Unpin>(shared: &Shared<S>, wbuf: &mut Vec<u8>) -> io::Result<()> {
    write_all(shared, wbuf).await?;
    wbuf.clear();
    flush(shared).await
}

/// Write the response body after the head in `wbuf`. Frames that are ready
/// at once go out with the head in one write. An error (the body failed, or
/// its length is not the declared one, or the client is gone) means the
/// connection must close, as hyper aborts it.
async fn write_body<S: AsyncWrite + Unpin>(
    shared: &Shared<S>,
    wbuf: &mut Vec<u8>,
    mut body: Body,
    framing: Framing,
) -> Result<(), BoxError> {
    let mut left = match framing {
        Framing::Length(0) => return Ok(send(shared, wbuf).await?),
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    loop {
        // Ready now: gather; not yet: send what we have, then wait.
        let frame = match poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if !wbuf.is_empty() {
                    send(shared, wbuf).await?;
                }
                body.frame().await
            }
        };
        match frame {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(frame)) => {
                let Ok(data) = frame.into_data() else {
                    continue; // trailers: not sent (see `encode_head`)
                };
                if data.is_empty() {
                    continue;
                }
                let len = data.len() as u64;
                if framing != Framing::Chunked && framing != Framing::Close {
                    if len > left {
                        return Err("the body is longer than its content-length".into());
                    }
                    left -= len;
                }
                if framing == Framing::Chunked {
                    wbuf.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
                }
                if wbuf.len() + data.len() <= GATHER {
                    wbuf.extend_from_slice(&data);
                } else {
                    write_all(shared, wbuf).await?;
                    wbuf.clear();
                    write_all(shared, &data).await?;
                }
                if framing == Framing::Chunked {
                    wbuf.extend_from_slice(b"\r\n");
                }
                if wbuf.len() >= GATHER {
                    write_all(shared, wbuf).await?;
                    wbuf.clear();
                }
            }
        }
        if let Framing::Length(_) = framing {
            if left == 0 {
                break;
            }
        }
    }
    match framing {
        Framing::Length(_) if left != 0 => {
            return Err("the body ended before its content-length".into())
        }
        Framing::Chunked => wbuf.extend_from_slice(b"0\r\n\r\n"),
        _ => {}
    }
    send(shared, wbuf).await?;
    Ok(())
}

/// Read and drop what the handler left of a request body (bounded), so that
/// the connection can serve the next request. False: close instead.
async fn drain_body<S: AsyncRead + Unpin>(shared: &Shared<S>) -> bool {
    {
        let mut inner = lock(shared);
        // The body object may still be alive: it may not read any more.
        inner.generation += 1;
        if inner.left == 0 {
            return true;
        }
        if inner.left > DRAIN_MAX {
            return false;
        }
    }
    let drained = poll_fn(|cx| {
        let mut inner = lock(shared);
        loop {
            let n = usize::try_from(inner.left)
                .unwrap_or(usize::MAX)
                .min(inner.rbuf.len());
            inner.rbuf.advance(n);
            inner.left -= n as u64;
            if inner.left == 0 {
                return Poll::Ready(true);
            }
            let Inner { io, rbuf, .. } = &mut *inner;
            let Some(io) = io.as_mut() else {
                return Poll::Ready(false);
            };
            match ready!(poll_fill(io, rbuf, cx)) {
                Ok(0) | Err(_) => return Poll::Ready(false),
                Ok(_) => {}
            }
        }
    });
    tokio::time::timeout(DRAIN_TIMEOUT, drained)
        .await
        .unwrap_or(false)
}

/// After the answer to a request whose body was not read (and the write side
/// shut): read and drop what the client still sends, until it closes or for
/// [`LINGER`] at most, as nginx's lingering close. Closing at once with
/// unread bytes would reset the connection, and a reset can destroy the
/// answer before a client still sending has read it.
async fn linger<S: AsyncRead + Unpin>(shared: &Shared<S>) {
    let drop_all = poll_fn(|cx| {
        let mut inner = lock(shared);
        loop {
            inner.rbuf.clear();
            let Inner { io, rbuf, .. } = &mut *inner;
            let Some(io) = io.as_mut() else {
                return Poll::Ready(());
            };
            match ready!(poll_fill(io, rbuf, cx)) {
                Ok(0) | Err(_) => return Poll::Ready(()),
                Ok(_) => {}
            }
        }
    });
    let _ = tokio::time::timeout(LINGER, drop_all).await;
}

/// Serve HTTP/1.x requests on `io` until it closes, or until a request is not
/// for this loop (then hyper takes the connection: [`Exit::Fallback`]).
/// `stop` turning `Some` is the graceful stop.
pub async fn serve<S, F, Fut>(
    io: S,
    limits: &Limits,
    mut stop: watch::Receiver<Option<Duration>>,
    mut handler: F,
) -> Exit<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnMut(Request<Body>) -> Fut,
    Fut: Future<Output = Response<Body>>,
{
    let shared: Shared<S> = Arc::new(Mutex::new(Inner {
        io: Some(io),
        rbuf: BytesMut::with_capacity(8 * 1024),
        send_timeout: limits.send_timeout,
        generation: 0,
        left: 0,
    }));
    let mut wbuf: Vec<u8> = Vec::with_capacity(4 * 1024);
    let mut ranges: Vec<FieldRange> = Vec::with_capacity(32);
    let mut first = true;
    let deadline = tokio::time::sleep(limits.header_timeout);
    let mut deadline = pin!(deadline);
    loop {
        // The head: from the buffer (pipelined), or read within the deadline.
        let mut armed = false;
        let head = loop {
            let parsed = parse(&mut lock(&shared).rbuf, limits, &mut ranges);
            match parsed {
                Parsed::Head(head) => break head,
                Parsed::Fallback => {
                    if stop.borrow().is_some() {
                        return Exit::Closed;
                    }
                    let mut inner = lock(&shared);
                    let replay = inner.rbuf.split().freeze();
                    return match inner.io.take() {
                        Some(io) => Exit::Fallback { io, replay, first },
                        None => Exit::Closed,
                    };
                }
                Parsed::Partial => {}
            }
            if stop.borrow().is_some() {
                return Exit::Closed;
            }
            if !armed {
                deadline
                    .as_mut()
                    .reset(Instant::now() + limits.header_timeout);
                armed = true;
            }
            let read = poll_fn(|cx| {
                let mut inner = lock(&shared);
                let Inner { io, rbuf, .. } = &mut *inner;
                match io.as_mut() {
                    Some(io) => poll_fill(io, rbuf, cx),
                    None => Poll::Ready(Ok(0)),
                }
            });
            tokio::select! {
                biased;
                read = read => match read {
                    Ok(0) | Err(_) => return Exit::Closed,
                    Ok(_) => {}
                },
                // hyper: a head that does not arrive in time closes the
                // connection without an answer; so does a stop.
                () = &mut deadline => return Exit::Closed,
                _ = stop.changed() => return Exit::Closed,
            }
        };
        first = false;
        let Head {
            req,
            body_len,
            mut keep_alive,
            unread,
        } = head;
        let body = if body_len == 0 {
            // A zero-sized body: boxing it does not allocate.
            Empty::new().map_err(|never| match never {}).boxed_unsync()
        } else {
            let mut inner = lock(&shared);
            inner.generation += 1;
            inner.left = body_len;
            RequestBody {
                shared: Arc::clone(&shared),
                generation: inner.generation,
                left: body_len,
            }
            .boxed_unsync()
        };
        let method = req.method().clone();
        let version = req.version();
        let response = handler(req.map(|()| body)).await;
        // A stop while the request was served: this response is the last. So is one
        // leaving more of the request body unread than the connection drains: the
        // answer says so (`connection: close`).
        keep_alive &= stop.borrow().is_none() && lock(&shared).left <= DRAIN_MAX;
        let (mut parts, body) = response.into_parts();
        wbuf.clear();
        let framing = encode_head(
            &mut wbuf,
            &mut parts,
            &body,
            &method,
            version,
            &mut keep_alive,
        );
        drop(parts);
        if write_body(&shared, &mut wbuf, body, framing).await.is_err() {
            return Exit::Closed;
        }
        if !keep_alive || !drain_body(&shared).await {
            let unread = unread || lock(&shared).left > 0;
            shutdown(&shared).await;
            if unread {
                linger(&shared).await;
            }
            return Exit::Closed;
        }
    }
}

/// An IO that first replays bytes already read, then reads from the stream:
/// hyper reads the request heads this loop handed over as if it were first.
pub struct Rewind<S> {
    pre: Bytes,
    io: S,
}

impl<S> Rewind<S> {
    pub fn new(io: S, pre: Bytes) -> Self {
        Rewind { pre, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.pre.is_empty() {
            let n = self.pre.len().min(buf.remaining());
            buf.put_slice(&self.pre[..n]);
            self.pre.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::full;
    use std::collections::VecDeque;
    use tokio::io::{duplex, AsyncWriteExt, DuplexStream};

    fn limits() -> Limits {
        Limits {
            max_headers: 100,
            max_head: 64 * 1024,
            header_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
        }
    }

    /// A body of unknown length (an upstream's chunked response).
    struct Unknown(VecDeque<Bytes>);

    impl http_body::Body for Unknown {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    /// The test handler: reads the whole body, answers what it saw. The path
    /// picks special answers.
    async fn echo(req: Request<Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_owned();
        let builder = Response::builder();
        if parts
            .extensions
            .get::<crate::hygiene::Malformed>()
            .is_some()
        {
            let text = format!(
                "malformed {} {} {}",
                parts.method,
                parts.uri,
                parts.headers.len()
            );
            return builder.body(full(text)).unwrap();
        }
        if let Some(unreadable) = parts.extensions.get::<crate::hygiene::Unreadable>() {
            // Answered without reading the body (as the gateway refuses it).
            let text = format!("unreadable {:?} {}", unreadable.0, parts.headers.len());
            return builder.body(full(text)).unwrap();
        }
        match path.as_str() {
            "/unread" => return builder.body(full("unread")).unwrap(),
            "/chunked" => {
                let chunks = VecDeque::from([Bytes::from("ab"), Bytes::from("cdefghijklmnop")]);
                return builder.body(Unknown(chunks).boxed_unsync()).unwrap();
            }
            "/204" => return builder.status(204).body(full("")).unwrap(),
            "/big" => return builder.body(full(vec![b'x'; 2 << 20])).unwrap(),
            "/dated" => {
                return builder
                    .header("date", "Thu, 01 Jan 1970 00:00:00 GMT")
                    .body(full("x"))
                    .unwrap()
            }
            _ => {}
        }
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::from_static(b"<body error>"),
        };
        let text = format!(
            "{} {} {:?} {}",
            parts.method,
            parts.uri,
            parts
                .headers
                .get("x-a")
                .map(|v| v.to_str().unwrap().to_owned()),
            String::from_utf8_lossy(&body)
        );
        builder.header("x-seen", "1").body(full(text)).unwrap()
    }

    type Served = tokio::task::JoinHandle<Exit<DuplexStream>>;

    fn start(limits: Limits, stop: watch::Receiver<Option<Duration>>) -> (DuplexStream, Served) {
        let (client, server) = duplex(256 * 1024);
        let task = tokio::spawn(async move { serve(server, &limits, stop, echo).await });
        (client, task)
    }

    fn no_stop() -> watch::Receiver<Option<Duration>> {
        let (tx, rx) = watch::channel(None);
        std::mem::forget(tx);
        rx
    }

    /// Everything the server wrote until it closed, with the date masked.
    async fn read_all(client: &mut DuplexStream) -> String {
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        mask_date(&String::from_utf8(out).unwrap())
    }

    fn mask_date(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("date: ") {
            out.push_str(&rest[..at + 6]);
            rest = &rest[at + 6..];
            // The loop's own date is masked; a handler's (1970) is kept.
            if !rest.starts_with("Thu, 01 Jan 1970") {
                out.push('D');
                rest = &rest[29..];
            }
        }
        out.push_str(rest);
        out
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nx-seen: 1\r\ncontent-length: {}\r\ndate: D\r\n\r\n{body}",
            body.len()
        )
    }

    /// What the loop answered to `input`, and what it handed over (`None`: it closed).
    async fn exchange(input: &[u8]) -> (String, Option<(Bytes, bool)>) {
        let (mut client, task) = start(limits(), no_stop());
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let handed = match task.await.unwrap() {
            Exit::Closed => None,
            // Dropping the connection lets `read_all` end.
            Exit::Fallback { replay, first, .. } => Some((replay, first)),
        };
        (read_all(&mut client).await, handed)
    }

    /// What the loop answered to `input` when it closed by itself (the client
    /// keeps its side open).
    async fn closed_by_server(input: &[u8]) -> String {
        let (mut client, task) = start(limits(), no_stop());
        client.write_all(input).await.unwrap();
        let out = read_all(&mut client).await;
        assert!(matches!(task.await.unwrap(), Exit::Closed));
        out
    }

    #[tokio::test]
    async fn a_get_is_answered_with_one_date_and_its_length() {
        let (out, exit) = exchange(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n").await;
        assert_eq!(out, ok("GET /a?b=1 Some(\"1\") "));
        assert!(exit.is_none());
        let (out, _) = exchange(b"GET /dated HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 1970 00:00:00 GMT\r\ncontent-length: 1\r\n\r\nx"
        );
    }

    const PIPELINE: &[u8] = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /g HTTP/1.1\r\nHost: x\r\nX-A: 2\r\n\r\nPUT /q HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n";

    fn pipeline_answer() -> String {
        ok("POST /p None hello") + &ok("GET /g Some(\"2\") ") + &ok("PUT /q None ")
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order() {
        let (out, _) = exchange(PIPELINE).await;
        assert_eq!(out, pipeline_answer());
    }

    #[tokio::test]
    async fn every_split_of_the_bytes_gives_the_same_answers() {
        for at in 0..=PIPELINE.len() {
            let (mut client, task) = start(limits(), no_stop());
            client.write_all(&PIPELINE[..at]).await.unwrap();
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            client.write_all(&PIPELINE[at..]).await.unwrap();
            client.shutdown().await.unwrap();
            assert_eq!(
                read_all(&mut client).await,
                pipeline_answer(),
                "split at {at}"
            );
            assert!(matches!(task.await.unwrap(), Exit::Closed));
        }
    }

    #[tokio::test]
    async fn a_body_the_client_cuts_short_closes_the_connection() {
        let (out, exit) =
            exchange(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel").await;
        // The handler saw the body fail; its answer is written, then the end.
        assert_eq!(out, ok("POST /p None <body error>"));
        assert!(exit.is_none());
    }

    #[tokio::test]
    async fn an_unread_body_is_drained_when_small_and_closes_when_large() {
        let (out, _) = exchange(
            b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbodyGET /g HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        let unread = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\ndate: D\r\n\r\nunread";
        assert_eq!(out, format!("{unread}{}", ok("GET /g None ")));
        // More than the connection drains: the answer says it closes, and it does.
        let input = b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nxx";
        let closing =
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 6\r\ndate: D\r\n\r\nunread";
        assert_eq!(closed_by_server(input).await, closing);
    }

    #[tokio::test]
    async fn closing_with_a_body_unread_reads_what_the_client_still_sends() {
        let (mut client, task) = start(limits(), no_stop());
        client
            .write_all(b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            .await
            .unwrap();
        // The answer comes while the client is still sending: it reads it, then sends
        // more than any socket buffer holds; the loop reads it all until the client
        // closes (a server closing with bytes unread would reset the connection).
        let mut head = [0u8; 16];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200 OK\r");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..12 {
            client.write_all(&chunk).await.unwrap();
        }
        client.shutdown().await.unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(task.await.unwrap(), Exit::Closed));
        assert!(started.elapsed() < LINGER, "it ended with the client");
    }

    #[tokio::test]
    async fn fields_it_cannot_read_are_answered_and_closed() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 1\r\n\r\nx",
            b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX{A}: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\rX-A: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\x002\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\x7f2\r\n\r\n",
            // Seen before the head ends: answered at once, the rest never read as a request.
            b"GET / HTTP/1.1\r\nX-A: \x01",
        ];
        for case in cases {
            let (out, exit) = exchange(case).await;
            assert!(exit.is_none(), "{}", String::from_utf8_lossy(case));
            let text = "malformed GET / 0";
            let expected = format!(
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: {}\r\ndate: D\r\n\r\n{text}",
                text.len()
            );
            assert_eq!(out, expected, "{}", String::from_utf8_lossy(case));
        }
        // Obs-text in a value and a tab inside it are read (Python's servers read them too).
        let (out, _) = exchange(b"GET /o HTTP/1.1\r\nHost: x\r\nX-B: caf\xe9\tb\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\nx-seen: 1\r\n"), "{out}");
    }

    #[tokio::test]
    async fn framing_it_cannot_read_one_way_is_answered_unread_and_closed() {
        use crate::hygiene::Unframed;
        let cases: &[(&[u8], Unframed)] = &[
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", Unframed::Both),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", Unframed::Both),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", Unframed::Length),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\nx", Unframed::Length),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx", Unframed::Length),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x1\r\n\r\nx", Unframed::Length),
            (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", Unframed::Length),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", Unframed::Coding),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Unframed::Coding),
            (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Unframed::Coding),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Unframed::Http10),
            // An upgrade or `Expect` does not send such a head to hyper.
            (b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", Unframed::Length),
        ];
        for (case, why) in cases {
            let (out, exit) = exchange(case).await;
            assert!(exit.is_none(), "{}", String::from_utf8_lossy(case));
            let version = if case.starts_with(b"POST / HTTP/1.0") {
                "1.0"
            } else {
                "1.1"
            };
            let fields = case
                .split(|&b| b == b'\n')
                .filter(|l| l.contains(&b':'))
                .count();
            let text = format!("unreadable {why:?} {fields}");
            let expected = format!(
                "HTTP/{version} 200 OK\r\n{}content-length: {}\r\ndate: D\r\n\r\n{text}",
                if version == "1.1" {
                    "connection: close\r\n"
                } else {
                    ""
                },
                text.len()
            );
            assert_eq!(out, expected, "{}", String::from_utf8_lossy(case));
        }
    }

    #[tokio::test]
    async fn head_204_chunked_and_close() {
        let (out, _) = exchange(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nx-seen: 1\r\ncontent-length: 13\r\ndate: D\r\n\r\n"
        );
        let (out, _) = exchange(b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(out, "HTTP/1.1 204 No Content\r\ndate: D\r\n\r\n");
        let (out, _) = exchange(b"GET /chunked HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ndate: D\r\n\r\n2\r\nab\r\nE\r\ncdefghijklmnop\r\n0\r\n\r\n"
        );
        let expected = "HTTP/1.1 200 OK\r\nx-seen: 1\r\nconnection: close\r\ncontent-length: 12\r\ndate: D\r\n\r\nGET /g None ";
        let input = b"GET /g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        assert_eq!(closed_by_server(input).await, expected);
    }

    #[tokio::test]
    async fn http_10_keeps_alive_only_when_asked() {
        // Unknown length in HTTP/1.0: the body runs to the close.
        assert_eq!(
            closed_by_server(b"GET /chunked HTTP/1.0\r\n\r\n").await,
            "HTTP/1.0 200 OK\r\ndate: D\r\n\r\nabcdefghijklmnop"
        );
        let (out, _) =
            exchange(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n")
                .await;
        assert_eq!(
            out,
            "HTTP/1.0 200 OK\r\nx-seen: 1\r\nconnection: keep-alive\r\ncontent-length: 12\r\ndate: D\r\n\r\nGET /a None \
             HTTP/1.0 200 OK\r\nx-seen: 1\r\ncontent-length: 12\r\ndate: D\r\n\r\nGET /b None "
        );
    }

    /// Heads this loop does not take: hyper gets the connection with every byte.
    #[tokio::test]
    async fn what_is_not_plainly_safe_goes_to_hyper_with_every_byte() {
        let cases: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, upgrade\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: x\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
            b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
        ];
        for case in cases {
            let (out, exit) = exchange(case).await;
            assert_eq!(out, "", "{}", String::from_utf8_lossy(case));
            let Some((replay, first)) = exit else {
                panic!("served {}", String::from_utf8_lossy(case));
            };
            assert_eq!(&replay[..], *case, "{}", String::from_utf8_lossy(case));
            assert!(first);
        }
    }

    #[tokio::test]
    async fn after_a_served_request_the_rest_is_handed_over() {
        let rest: &[u8] =
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let mut input = b"GET /g HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        input.extend_from_slice(rest);
        let (out, exit) = exchange(&input).await;
        assert_eq!(out, ok("GET /g None "));
        let Some((replay, first)) = exit else {
            panic!("not handed over");
        };
        assert_eq!(&replay[..], rest);
        assert!(!first);
    }

    #[tokio::test]
    async fn too_many_fields_are_counted_and_too_long_a_head_goes_to_hyper() {
        // Over `max_headers`, and over the fields parsed on the stack: the handler
        // gets them all (the gateway answers Python's 431, `hygiene::refused`).
        assert!(head_ended(b"GET / HTTP/1.1\r\nA: 1\r\n\r\n") && head_ended(b"A: 1\n\n"));
        assert!(!head_ended(b"GET / HTTP/1.1\r\nA: 1\r\n"));
        for count in [101, 129, 1000] {
            let mut many = b"GET /unread HTTP/1.1\r\n".to_vec();
            for i in 0..count {
                many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
            }
            many.extend_from_slice(b"\r\n");
            let (out, exit) = exchange(&many).await;
            assert!(exit.is_none(), "{count}");
            assert!(out.ends_with("\r\n\r\nunread"), "{count}");
            // In two parts: the first is not yet a head.
            let (mut client, task) = start(limits(), no_stop());
            let (first, rest) = many.split_at(many.len() / 2);
            client.write_all(first).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            client.write_all(rest).await.unwrap();
            client.shutdown().await.unwrap();
            assert!(read_all(&mut client).await.ends_with("\r\n\r\nunread"));
            assert!(matches!(task.await.unwrap(), Exit::Closed));
        }
        // A head that does not end within the bound: handed over at the bound,
        // without waiting for the rest.
        let (mut client, task) = start(
            Limits {
                max_head: 1024,
                ..limits()
            },
            no_stop(),
        );
        let mut long = b"GET / HTTP/1.1\r\nx-long: ".to_vec();
        long.resize(2000, b'a');
        client.write_all(&long).await.unwrap();
        let Exit::Fallback { replay, .. } = task.await.unwrap() else {
            panic!("not handed over");
        };
        assert!(replay.len() >= 1024 && long.starts_with(&replay));
    }

    #[tokio::test]
    async fn a_slow_head_times_out_without_an_answer() {
        let (mut client, task) = start(
            Limits {
                header_timeout: Duration::from_millis(100),
                ..limits()
            },
            no_stop(),
        );
        client.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let started = std::time::Instant::now();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let _ = client.write_all(b"s").await;
        }
        assert_eq!(read_all(&mut client).await, "");
        assert!(matches!(task.await.unwrap(), Exit::Closed));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_after_the_send_timeout() {
        let (mut client, task) = start(
            Limits {
                send_timeout: Duration::from_millis(100),
                ..limits()
            },
            no_stop(),
        );
        // 2 MiB answered into a 256 KiB pipe nobody reads.
        client
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert!(matches!(ended, Ok(Ok(Exit::Closed))), "still writing");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_gets_everything() {
        let (mut client, task) = start(
            Limits {
                send_timeout: Duration::from_millis(200),
                ..limits()
            },
            no_stop(),
        );
        client
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        // Longer in all than the timeout, but never idle for it.
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 128 * 1024];
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let n = client.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got.ends_with(&vec![b'x'; 2 << 20]));
        assert!(matches!(task.await.unwrap(), Exit::Closed));
    }

    #[tokio::test]
    async fn a_stop_closes_idle_connections_and_ends_busy_ones_with_close() {
        let (tx, rx) = watch::channel(None);
        let (mut client, task) = start(limits(), rx);
        client
            .write_all(b"GET /g HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        // The answer's length on the wire: the date is 29 bytes, not "D".
        let mut first = vec![0u8; ok("GET /g None ").len() - 1 + 29];
        client.read_exact(&mut first).await.unwrap();
        tx.send(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(read_all(&mut client).await, "");
        assert!(matches!(task.await.unwrap(), Exit::Closed));
        // Stopped before the response is written: `connection: close`.
        let (tx, rx) = watch::channel(None);
        let (client, server) = duplex(64 * 1024);
        let tx = Arc::new(tx);
        let signal = Arc::clone(&tx);
        let task = tokio::spawn(async move {
            serve(server, &limits(), rx, move |req: Request<Body>| {
                let _ = signal.send(Some(Duration::from_secs(1)));
                echo(req)
            })
            .await
        });
        let mut client = client;
        client
            .write_all(b"GET /g HTTP/1.1\r\nHost: x\r\n\r\nGET /h HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            read_all(&mut client).await,
            "HTTP/1.1 200 OK\r\nx-seen: 1\r\nconnection: close\r\ncontent-length: 12\r\ndate: D\r\n\r\nGET /g None "
        );
        assert!(matches!(task.await.unwrap(), Exit::Closed));
    }

    #[tokio::test]
    async fn rewind_replays_then_reads() {
        let (mut client, server) = duplex(1024);
        client.write_all(b"world").await.unwrap();
        drop(client);
        let mut io = Rewind::new(server, Bytes::from_static(b"hello "));
        let mut out = String::new();
        io.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }

    #[test]
    fn content_lengths_are_plain_digits_only() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"0012"), Some(12));
        assert_eq!(content_length(b"18446744073709551615"), None);
        assert_eq!(
            content_length(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for bad in [&b""[..], b"+1", b"-1", b"1 ", b"1,1", b"0x1", b"1.0"] {
            assert_eq!(content_length(bad), None, "{:?}", bad);
        }
    }
}
