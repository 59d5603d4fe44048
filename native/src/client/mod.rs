//! A lean HTTP/1.1 client over pooled keep-alive connections, for both hops
//! of the data plane: a route's upstream (TCP or TLS, `upstream`) and the
//! deferred requests to Python's Unix socket (`forward`).
//!
//! Everything runs in the request's own task: no task per connection and no
//! channel. [`Exchange`] writes the head (one buffer, with the body's first
//! part in hand as one vectored write) and streams the request body while it
//! waits for the response head; the head is parsed with `httparse`
//! ([`head`]); [`ResponseBody`] streams the response bytes ([`decode`]), keeps
//! uploading what is left of the request body (full duplex, as hyper did),
//! and gives the connection back to its [`Pool`] only when
//!
//! - the response body was read to its exact end (not close-delimited),
//! - the request body was sent completely,
//! - the response allowed keep-alive (HTTP/1.1, no `Connection: close`) and
//!   the request did not say `close`,
//! - no byte is left over in the read buffer (pipelined garbage);
//!
//! and the pool hands a connection out again only when it has nothing to read
//! (no stray bytes, no close from the peer). Any refusal ([`Error::Invalid`])
//! drops the connection.

pub mod decode;
pub mod head;
mod pool;

use std::fmt;
use std::future::Future;
use std::io;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::Method;
use http_body::{Body as _, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

pub use self::decode::Framing;
pub use self::head::BodyFraming;
pub use self::pool::Pool;
use crate::http::{Body, BoxError};

/// Read-buffer growth per read (and its first size).
const READ_CHUNK: usize = 8192;

/// A stream the client can speak HTTP/1.1 over (TCP, TLS over TCP, Unix).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// One connection: the stream and the bytes read from it not yet consumed.
pub struct Conn<S> {
    stream: S,
    buf: BytesMut,
}

impl<S: Io> Conn<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let read = std::pin::pin!(self.stream.read_buf(&mut self.buf));
        read.poll(cx)
    }

    /// Whether the idle connection is still clean: nothing to read (a close
    /// from the peer, stray bytes or an error make it unusable). Registers
    /// the task's waker, which is harmless.
    fn poll_usable(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        matches!(self.poll_fill(cx), Poll::Pending)
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum Error {
    /// A socket error.
    Io(io::Error),
    /// The peer closed the connection where bytes were due.
    Closed,
    /// The response is refused (its head or framing); never reused.
    Invalid(&'static str),
    /// The request body failed (the client went away, or it did not match
    /// its announced length).
    Body(BoxError),
}

impl Error {
    /// The peer closed (or reset) the connection: on a pooled connection, the
    /// keep-alive race a fresh connection may retry.
    pub fn is_closed(&self) -> bool {
        match self {
            Error::Closed => true,
            Error::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "connection error: {e}"),
            Error::Closed => f.write_str("connection closed before message completed"),
            Error::Invalid(why) => write!(f, "invalid response: {why}"),
            Error::Body(e) => write!(f, "request body failed: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// The request on its way out: the bytes due (head, chunk framing, data)
/// and the rest of the body.
pub struct Upload {
    /// Due to be written, in order (empty entries skipped): the head, a
    /// chunk-size line, data, the CRLF closing a chunk.
    out: [Bytes; 4],
    body: Option<Body>,
    chunked: bool,
    /// Body bytes still announced by `Content-Length` (checked, never exceeded).
    left: u64,
    written: bool,
    /// The body failed while it was staged ahead of time ([`Upload::new`]).
    failed: Option<Error>,
}

impl Upload {
    /// A request: its `head` ([`head::encode`] with the same `framing`) and body.
    pub fn new(head: Bytes, body: Body, framing: BodyFraming) -> Self {
        let (body, chunked, left) = match framing {
            BodyFraming::None => (None, false, 0),
            BodyFraming::Length(0) => (None, false, 0),
            BodyFraming::Length(n) => (Some(body), false, n),
            BodyFraming::Chunked => (Some(body), true, 0),
        };
        let mut upload = Self {
            out: [head, Bytes::new(), Bytes::new(), Bytes::new()],
            body,
            chunked,
            left,
            written: false,
            failed: None,
        };
        // The body's first part when it is already in hand goes out with the
        // head, in one write.
        upload.stage_now();
        upload
    }

    fn stage_now(&mut self) {
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        if let Poll::Ready(Err(e)) = self.stage(&mut cx) {
            self.failed = Some(e);
        }
    }

    /// Poll the body for its next part into `out` (`out` must be empty but for
    /// the head). `Ready(Ok)`: staged something or the body ended.
    fn stage(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => {
                self.body = None;
                Poll::Ready(Err(Error::Body(e)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    return Poll::Ready(Ok(())); // trailers: not forwarded
                };
                if data.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                if self.chunked {
                    self.out[1] = Bytes::from(format!("{:x}\r\n", data.len()));
                    self.out[2] = data;
                    self.out[3] = Bytes::from_static(b"\r\n");
                } else {
                    let len = data.len() as u64;
                    if len > self.left {
                        self.body = None;
                        return Poll::Ready(Err(Error::Body(
                            "the request body is longer than its Content-Length".into(),
                        )));
                    }
                    self.left -= len;
                    self.out[2] = data;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(None) => {
                self.body = None;
                if self.chunked {
                    self.out[1] = Bytes::from_static(b"0\r\n\r\n");
                } else if self.left > 0 {
                    return Poll::Ready(Err(Error::Body(
                        "the request body is shorter than its Content-Length".into(),
                    )));
                }
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Write what is due and keep staging the body until it is all sent.
    fn poll_send<S: Io>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), Error>> {
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Err(error));
        }
        loop {
            if self.out.iter().any(|b| !b.is_empty()) {
                let slices = [
                    IoSlice::new(&self.out[0]),
                    IoSlice::new(&self.out[1]),
                    IoSlice::new(&self.out[2]),
                    IoSlice::new(&self.out[3]),
                ];
                let n = ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &slices))
                    .map_err(Error::Io)?;
                if n == 0 {
                    return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())));
                }
                self.written = true;
                let mut n = n;
                for part in &mut self.out {
                    let take = n.min(part.len());
                    part.advance(take);
                    n -= take;
                }
                continue;
            }
            if self.body.is_none() {
                return Pin::new(&mut *stream).poll_flush(cx).map_err(Error::Io);
            }
            // Flush before waiting for the client's next part.
            if self.stage(cx)?.is_pending() {
                ready!(Pin::new(&mut *stream).poll_flush(cx)).map_err(Error::Io)?;
                return Poll::Pending;
            }
        }
    }
}

/// What the response needs to know about its request.
#[derive(Debug, Clone)]
pub struct Expect {
    pub method: Method,
    /// The request asked to switch protocols: a 101 is accepted.
    pub upgrade: bool,
    /// The request did not say `Connection: close`.
    pub keep_alive: bool,
    /// The most bytes of header names and values the response may have
    /// (`head::UPSTREAM_FIELD_BYTES` for an upstream).
    pub field_limit: usize,
}

/// The answer to an exchange.
// Nearly every answer is a `Response`, moved once into the response: boxing
// its body would cost an allocation per request to save a rare upgrade bytes.
#[allow(clippy::large_enum_variant)]
pub enum Answer<S> {
    /// A final response: its head and its streamed body.
    Response(Head, ResponseBody<S>),
    /// 101 Switching Protocols: the connection is the caller's now.
    Switched(Head, Upgraded<S>),
}

pub use self::head::Head;

/// A failed exchange: the error, the connection's request if not one byte
/// of it was written (it can go out again on another connection), and
/// whether any response byte had arrived.
pub struct Failed {
    pub error: Error,
    pub unsent: Option<Upload>,
    pub answered: bool,
}

/// One request/response exchange on a connection (see the module docs).
pub struct Exchange<S> {
    conn: Option<Conn<S>>,
    upload: Option<Upload>,
    /// The upload failed writing: an answer may still come (the upstream
    /// answered early and stopped reading); reported if none does.
    write_error: Option<io::Error>,
    expect: Expect,
    /// Bytes of 1xx heads skipped so far (bounded with the final head).
    interim: usize,
    pool: Option<Arc<Pool<S>>>,
}

impl<S: Io> Exchange<S> {
    /// Start `upload` on `conn`; the response's connection goes back to `pool`.
    pub fn new(conn: Conn<S>, upload: Upload, expect: Expect, pool: Option<Arc<Pool<S>>>) -> Self {
        Self {
            conn: Some(conn),
            upload: Some(upload),
            write_error: None,
            expect,
            interim: 0,
            pool,
        }
    }

    /// The request body was sent completely (or given up after a write error).
    pub fn upload_done(&self) -> bool {
        self.upload.is_none()
    }

    fn fail(&mut self, error: Error) -> Poll<Result<Answer<S>, Failed>> {
        let answered = self.interim > 0 || self.conn.as_ref().is_some_and(|c| !c.buf.is_empty());
        // Given back only whole: not one byte written, the body intact.
        let body_failed = matches!(error, Error::Body(_));
        let unsent = self.upload.take().filter(|u| !u.written && !body_failed);
        self.conn = None;
        Poll::Ready(Err(Failed {
            error,
            unsent,
            answered,
        }))
    }

    /// Parse what the buffer holds; `None`: a head is not complete yet.
    fn parse(&mut self) -> Option<Poll<Result<Answer<S>, Failed>>> {
        loop {
            let conn = self.conn.as_mut()?;
            if conn.buf.is_empty() {
                return None;
            }
            let parsed = head::parse(
                &mut conn.buf,
                &self.expect.method,
                self.expect.upgrade,
                self.expect.field_limit,
            );
            let head = match parsed {
                Ok(head::Parsed::Partial) => {
                    if conn.buf.len() + self.interim >= head::MAX_HEAD {
                        return Some(self.fail(Error::Invalid("the response head is too large")));
                    }
                    return None;
                }
                Ok(head::Parsed::Interim(length)) => {
                    self.interim += length;
                    if self.interim >= head::MAX_HEAD {
                        return Some(self.fail(Error::Invalid("too many interim responses")));
                    }
                    continue;
                }
                Ok(head::Parsed::Switching(head)) => {
                    let conn = self.conn.take()?;
                    return Some(Poll::Ready(Ok(Answer::Switched(head, Upgraded { conn }))));
                }
                Ok(head::Parsed::Final(head)) => head,
                Err(refused) => return Some(self.fail(Error::Invalid(refused.0))),
            };
            let conn = self.conn.take()?;
            let keep_alive =
                head.keep_alive && self.expect.keep_alive && self.write_error.is_none();
            let body = ResponseBody::new(
                conn,
                head.framing,
                self.upload.take(),
                keep_alive,
                self.pool.take(),
            );
            return Some(Poll::Ready(Ok(Answer::Response(head, body))));
        }
    }
}

impl<S: Io> Future for Exchange<S> {
    type Output = Result<Answer<S>, Failed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(Err(Failed {
                error: Error::Closed,
                unsent: None,
                answered: false,
            }));
        };
        if let Some(upload) = this.upload.as_mut() {
            match upload.poll_send(&mut conn.stream, cx) {
                Poll::Ready(Ok(())) => this.upload = None,
                Poll::Ready(Err(Error::Io(e))) if upload.written => {
                    this.write_error = Some(e);
                    this.upload = None;
                    this.expect.keep_alive = false;
                }
                Poll::Ready(Err(e)) => return this.fail(e),
                Poll::Pending => {}
            }
        }
        loop {
            if let Some(done) = this.parse() {
                return done;
            }
            let Some(conn) = this.conn.as_mut() else {
                return this.fail(Error::Closed);
            };
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    let error = match this.write_error.take() {
                        Some(e) if conn.buf.is_empty() => Error::Io(e),
                        _ => Error::Closed,
                    };
                    return this.fail(error);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(Error::Io(e)),
            }
        }
    }
}

/// A streamed response body (see the module docs).
pub struct ResponseBody<S> {
    conn: Option<Conn<S>>,
    decoder: decode::Decoder,
    /// What is left of the request body, still being sent.
    upload: Option<Upload>,
    keep_alive: bool,
    pool: Option<Arc<Pool<S>>>,
}

impl<S: Io> ResponseBody<S> {
    fn new(
        conn: Conn<S>,
        framing: Framing,
        upload: Option<Upload>,
        keep_alive: bool,
        pool: Option<Arc<Pool<S>>>,
    ) -> Self {
        let mut body = Self {
            conn: Some(conn),
            decoder: decode::Decoder::new(framing),
            upload,
            keep_alive: keep_alive && framing != Framing::Close,
            pool,
        };
        if body.decoder.is_done() {
            body.finish(); // HEAD, 204, 304, an empty body
        }
        body
    }

    /// The body ended: the connection goes back to the pool when it is clean.
    fn finish(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if self.keep_alive && self.upload.is_none() && conn.buf.is_empty() {
            if let Some(pool) = &self.pool {
                pool.put(conn);
            }
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.conn = None;
        self.upload = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl<S: Io> http_body::Body for ResponseBody<S> {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if let Some(upload) = this.upload.as_mut() {
            match upload.poll_send(&mut conn.stream, cx) {
                Poll::Ready(Ok(())) => this.upload = None,
                Poll::Ready(Err(_)) => {
                    // The answer stands; the rest of the upload is given up and
                    // the connection with it.
                    this.upload = None;
                    this.keep_alive = false;
                }
                Poll::Pending => {}
            }
        }
        loop {
            match this.decoder.decode(&mut conn.buf) {
                Err(malformed) => return this.fail(Error::Invalid(malformed.0)),
                Ok(Some(data)) => {
                    if let Err(malformed) = this.decoder.settle(&mut conn.buf) {
                        return this.fail(Error::Invalid(malformed.0));
                    }
                    if this.decoder.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) if this.decoder.is_done() => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
            }
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    if let Err(malformed) = this.decoder.eof() {
                        let _ = malformed;
                        return this.fail(Error::Closed);
                    }
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return this.fail(Error::Io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) if self.conn.is_some() || n == 0 => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// A connection after 101 Switching Protocols: the bytes already read first.
pub struct Upgraded<S> {
    conn: Conn<S>,
}

impl<S: Io> AsyncRead for Upgraded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.conn.buf.is_empty() {
            let n = out.remaining().min(this.conn.buf.len());
            out.put_slice(&this.conn.buf[..n]);
            this.conn.buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.conn.stream).poll_read(cx, out)
    }
}

impl<S: Io> AsyncWrite for Upgraded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn.stream).poll_shutdown(cx)
    }
}

/// A response head as `http`'s response parts (status, version, headers).
pub fn parts(head: Head) -> http::response::Parts {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = head.status;
    parts.version = head.version;
    parts.headers = head.headers;
    parts
}

/// A waker that does nothing: staging a body part already in hand needs no
/// wake-up (a pending body is polled again with the task's waker).
fn noop_waker() -> std::task::Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    static NOOP: std::sync::OnceLock<std::task::Waker> = std::sync::OnceLock::new();
    NOOP.get_or_init(|| std::task::Waker::from(Arc::new(Noop)))
        .clone()
}

#[cfg(test)]
mod tests;
