//! The public listener: one single-threaded tokio runtime per core (thread per
//! core), the accept loop, HTTP/1.1 and HTTP/2 (ALPN over TLS, prior
//! knowledge in clear), and graceful drain.
//!
//! HTTP/1.x connections (clear, or TLS without ALPN `h2`) start in the lean
//! loop of [`crate::h1`]; what it does not take (chunked or upgrade requests,
//! malformed or oversized heads, the h2c preface…) is handed, with the bytes
//! already read, to hyper for the rest of the connection. HTTP/2 over TLS goes
//! to hyper directly.
//!
//! Every request goes to [`crate::gateway::handle`]; what it defers is
//! forwarded to the Python control plane ([`crate::forward`]).
//!
//! The socket is bound (and listening) when it arrives here: Python binds it
//! so that its one-line start-up errors stay as they are.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::forward::{Forwarder, Hop};
use crate::gateway;
use crate::h1;
use crate::http::{boxed, Body, ConnInfo, Outcome};
use crate::tls::{self, Tls, TlsError, TlsFiles};

/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request head must arrive within this (hyper's default, set explicitly so
/// that the lean loop and hyper agree); it also closes an idle keep-alive
/// connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How the front is configured (JSON from Python).
#[derive(Debug, Clone, Deserialize)]
pub struct FrontConfig {
    /// Worker threads (each its own runtime); 0 = one per core.
    #[serde(default)]
    pub threads: usize,
    /// The Python app's private Unix socket.
    pub upstream_socket: PathBuf,
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// `request_limits.max_headers`: more header fields get Python's 431
    /// (`headers_too_large`) from the native gateway where Python's gateway
    /// would judge the head, over every protocol (hyper is given room for
    /// them: [`Front::start`]); on a control-plane path, a bare 431 and the
    /// connection closed (as granian does).
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// `request_limits.max_header_bytes`: hyper's read buffer is set well above
    /// it, so that Python renders its own 431 problem for header bytes.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
}

fn default_max_headers() -> usize {
    100
}

fn default_max_header_bytes() -> usize {
    16 * 1024
}

/// Why the front could not start.
#[derive(Debug)]
pub enum FrontError {
    Config(String),
    Tls(TlsError),
    Io(std::io::Error),
    Stopped,
}

impl fmt::Display for FrontError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontError::Config(reason) => write!(f, "native front configuration: {reason}"),
            FrontError::Tls(e) => write!(f, "{e}"),
            FrontError::Io(e) => write!(f, "{e}"),
            FrontError::Stopped => write!(f, "the native front is stopped"),
        }
    }
}

impl std::error::Error for FrontError {}

impl From<TlsError> for FrontError {
    fn from(e: TlsError) -> Self {
        FrontError::Tls(e)
    }
}

impl From<std::io::Error> for FrontError {
    fn from(e: std::io::Error) -> Self {
        FrontError::Io(e)
    }
}

/// What every connection task shares.
struct Shared {
    tls: Option<Arc<Tls>>,
    forwarder: Arc<Forwarder>,
    /// A new connection, or one the lean loop handed over before its first
    /// request: HTTP/1 or HTTP/2 (prior knowledge).
    builder: auto::Builder<TokioExecutor>,
    /// A connection the lean loop handed over after serving requests on it:
    /// HTTP/1 only (an h2 preface there is a malformed request, as before).
    h1_builder: auto::Builder<TokioExecutor>,
    limits: h1::Limits,
    stopped: watch::Receiver<Option<Duration>>,
}

/// A running front: one thread per core, each with a single-threaded tokio
/// runtime accepting on the same listening socket (thread-per-core, as nginx's
/// workers: no work stealing, no cross-thread wake-ups within a connection),
/// the stop signal, and the TLS it serves.
pub struct Front {
    workers: Vec<std::thread::JoinHandle<bool>>,
    /// `None` while serving; the drain deadline once stopping.
    stop: watch::Sender<Option<Duration>>,
    tls: Option<Arc<Tls>>,
    local_addr: SocketAddr,
}

impl Front {
    /// Start serving `listener` (bound and listening) on `config.threads`
    /// threads (0: one per core).
    pub fn start(
        config: FrontConfig,
        listener: std::net::TcpListener,
    ) -> Result<Front, FrontError> {
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(Tls::load(files.clone())?)),
            None => None,
        };
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let max_head = config.max_header_bytes.saturating_mul(2).max(64 * 1024);
        // hyper answers a head past its own bounds with a bare 431 before any
        // service runs. Within them the gateway renders Python's problem+json 431
        // (`hygiene::refused`), so they are set where the HTTP/1 loop's are: as
        // many fields as `max_head` bytes can carry (`a:` and a line end each);
        // an HTTP/2 header list (names and values, plus RFC 9113's 32 bytes a
        // field) of `max_head` bytes and one field more than `max_headers`
        // (hyper's default, 16 KiB, refused heads Python's limits take). A head
        // past `max_head` itself is never read to its end: hyper's bare 431
        // (HTTP/1, `max_buf_size`; `h2`'s for a longer header list), as before.
        let h1_fields = max_head / 3 + 1;
        let h2_list = max_head.saturating_add(32 * config.max_headers.saturating_add(1));
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_headers(h1_fields)
            .max_buf_size(max_head);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(h2_list).unwrap_or(u32::MAX));
        let (stop, stopped) = watch::channel(None);
        let shared = Arc::new(Shared {
            tls: tls.clone(),
            forwarder: Forwarder::new(config.upstream_socket.clone()),
            h1_builder: builder.clone().http1_only(),
            builder,
            limits: h1::Limits {
                max_headers: config.max_headers,
                max_head,
                header_timeout: HEADER_READ_TIMEOUT,
                send_timeout: h1::SEND_TIMEOUT,
            },
            stopped: stopped.clone(),
        });
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let listener = {
                let _guard = runtime.enter();
                TcpListener::from_std(listener.try_clone()?)?
            };
            let shared = Arc::clone(&shared);
            let stopped = stopped.clone();
            let worker = std::thread::Builder::new()
                .name(format!("bastion-front-{index}"))
                .spawn(move || {
                    let finished = runtime.block_on(serve_until_stopped(listener, shared, stopped));
                    runtime.shutdown_timeout(Duration::from_millis(200));
                    finished
                })?;
            workers.push(worker);
        }
        drop(listener); // every worker holds its own descriptor
        Ok(Front {
            workers,
            stop,
            tls,
            local_addr,
        })
    }

    /// The address the front listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Re-read the TLS files; the previous configuration stays on error.
    /// Without TLS, nothing to do.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// Stop accepting, let in-flight requests finish for up to `graceful`,
    /// then stop the runtimes. True when everything finished in time.
    /// Blocks; call it off the Python event loop.
    pub fn stop(&mut self, graceful: Duration) -> bool {
        if self.workers.is_empty() {
            return true;
        }
        let _ = self.stop.send(Some(graceful));
        let mut finished = true;
        for worker in self.workers.drain(..) {
            finished &= worker.join().unwrap_or(false);
        }
        finished
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        // Not stopped: drop the connections at once; the threads end on their own.
        let _ = self.stop.send(Some(Duration::ZERO));
    }
}

/// One worker: accept until the stop signal, then drain for its deadline.
async fn serve_until_stopped(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<Option<Duration>>,
) -> bool {
    let graceful = accept_loop(listener, shared, stopped.clone()).await;
    let deadline = stopped.borrow_and_update().unwrap_or(Duration::ZERO);
    tokio::time::timeout(deadline, graceful.shutdown())
        .await
        .is_ok()
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<Option<Duration>>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let watcher = graceful.watcher();
                    tokio::spawn(serve(stream, peer, shared, watcher));
                }
                // Out of file descriptors and the like: pause instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
        }
    }
    drop(listener);
    graceful
}

async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, watcher: Watcher) {
    match &shared.tls {
        None => {
            let conn = (
                ConnInfo {
                    peer,
                    tls: false,
                    client_certs: Vec::new(),
                },
                Hop::default(),
            );
            serve_h1(stream, conn, &shared, watcher).await;
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let (_, session) = stream.get_ref();
            let client_certs = session
                .peer_certificates()
                .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect())
                .unwrap_or_default();
            let hop = Hop {
                tls_version: session.protocol_version().and_then(tls::version_code),
            };
            let h2 = session.alpn_protocol() == Some(b"h2");
            let conn = (
                ConnInfo {
                    peer,
                    tls: true,
                    client_certs,
                },
                hop,
            );
            if h2 {
                let builder = &shared.builder;
                serve_http(
                    builder,
                    TokioIo::new(stream),
                    Arc::new(conn),
                    &shared,
                    watcher,
                )
                .await;
            } else {
                serve_h1(stream, conn, &shared, watcher).await;
            }
        }
    }
}

/// An HTTP/1.x connection: the lean loop, then hyper if it hands over. The
/// watcher is held throughout, so that a graceful stop waits for this
/// connection either way.
async fn serve_h1<S>(stream: S, conn: (ConnInfo, Hop), shared: &Arc<Shared>, watcher: Watcher)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let forwarder = &shared.forwarder;
    let exit = {
        let conn = &conn;
        let max_headers = shared.limits.max_headers;
        h1::serve(stream, &shared.limits, shared.stopped.clone(), |req| {
            respond(req, conn, forwarder, max_headers)
        })
        .await
    };
    if let h1::Exit::Fallback { io, replay, first } = exit {
        let builder = if first {
            &shared.builder
        } else {
            &shared.h1_builder
        };
        let io = TokioIo::new(h1::Rewind::new(io, replay));
        serve_http(builder, io, Arc::new(conn), shared, watcher).await;
    }
}

async fn serve_http<I>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    conn: Arc<(ConnInfo, Hop)>,
    shared: &Arc<Shared>,
    watcher: Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let forwarder = Arc::clone(&shared.forwarder);
    let max_headers = shared.limits.max_headers;
    let service = service_fn(move |req: Request<Incoming>| {
        let conn = Arc::clone(&conn);
        let forwarder = Arc::clone(&forwarder);
        async move {
            let response = respond(req.map(boxed), &conn, &forwarder, max_headers).await;
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let _ = watcher.watch(connection).await;
}

/// The answer to one request: the gateway's, or Python's. A deferred request
/// with more header fields than `max_headers` that Python's gateway would not
/// judge (a control-plane path: its `framing` 431 is for the gateway's, which
/// the native gateway renders itself unless the head defers) gets hyper's bare
/// 431 and the connection closed, as before the lean loop counted them: the
/// rest of Python's app is never handed more.
async fn respond(
    req: Request<Body>,
    conn: &(ConnInfo, Hop),
    forwarder: &Arc<Forwarder>,
    max_headers: usize,
) -> Response<Body> {
    let (info, hop) = conn;
    match gateway::handle(req, info).await {
        Outcome::Respond(resp) => resp,
        Outcome::Defer(req)
            if req.headers().len() > max_headers && !crate::decide::gateway_judges(&req) =>
        {
            let mut response = Response::new(crate::http::full(bytes::Bytes::new()));
            *response.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            response
        }
        Outcome::Defer(req) => forwarder.forward(req, info, hop).await,
    }
}
