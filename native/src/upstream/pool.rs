//! One upstream target: where it is, its passive health, and its pool of idle
//! keep-alive HTTP/1.1 connections ([`crate::client::Pool`]).
//!
//! Targets are shared by key (`scheme://host:port|tls profile`, Python's
//! `Upstream.key`) in a process-wide registry, so routes naming the same
//! target share its pool and health, and both survive a table reload (the new
//! table finds the targets the old one still holds).
//!
//! The pool is bounded by `max_idle`; a connection idle for `idle_timeout` is
//! dropped when next seen. A connection goes back only after its response body
//! was read to its exact end (the client's response body does it); anything
//! else drops it, which closes the connection.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::error::{Cause, UpstreamError, CONNECT_TIMEOUT, UNREACHABLE};
use super::health::TargetHealth;
use crate::client::{Conn, Pool};

/// What the `upstream` section says about one target.
#[derive(Debug, Clone)]
pub(crate) struct TargetSpec {
    pub key: String,
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub host_header: HeaderValue,
    pub tls: Option<Arc<ClientConfig>>,
    pub max_idle: usize,
    pub idle_timeout: Duration,
}

/// A connection to an upstream: plain TCP or TLS over TCP.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One upstream target (shared; see the module docs).
pub struct Target {
    key: String,
    /// `scheme://host:port`, for log lines (never sent to clients).
    pub(crate) describe: String,
    pub(crate) host_header: HeaderValue,
    host: String,
    port: u16,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    pub(crate) health: Mutex<TargetHealth>,
    /// `health.clean()`, mirrored after every verdict: the hot path reads it
    /// without taking the lock every request on every core would contend for.
    clean: AtomicBool,
    pub(crate) pool: Arc<Pool<Stream>>,
    opened: AtomicU64,
}

impl Target {
    fn new(spec: &TargetSpec) -> Result<Self, String> {
        let tls = match (&spec.tls, spec.https) {
            (Some(config), true) => {
                let name = ServerName::try_from(spec.host.clone())
                    .map_err(|_| format!("{:?} is not a TLS server name", spec.host))?;
                Some((config.clone(), name))
            }
            (None, true) => return Err("an https target needs a TLS configuration".into()),
            _ => None,
        };
        let host = if spec.host.contains(':') {
            format!("[{}]", spec.host)
        } else {
            spec.host.clone()
        };
        let scheme = if spec.https { "https" } else { "http" };
        Ok(Self {
            key: spec.key.clone(),
            describe: format!("{scheme}://{host}:{}", spec.port),
            host_header: spec.host_header.clone(),
            host: spec.host.clone(),
            port: spec.port,
            tls,
            health: Mutex::new(TargetHealth::default()),
            clean: AtomicBool::new(true),
            pool: Arc::new(Pool::new(spec.max_idle, Some(spec.idle_timeout))),
            opened: AtomicU64::new(0),
        })
    }

    /// The shared target for `spec.key` (created on first use).
    pub(crate) fn shared(spec: &TargetSpec) -> Result<Arc<Self>, String> {
        let mut map = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(target) = map.get(&spec.key).and_then(Weak::upgrade) {
            return Ok(target);
        }
        let target = Arc::new(Self::new(spec)?);
        map.retain(|_, weak| weak.strong_count() > 0);
        map.insert(spec.key.clone(), Arc::downgrade(&target));
        Ok(target)
    }

    /// Every target some loaded route still uses (for `/metrics`).
    pub fn all() -> Vec<Arc<Target>> {
        let map = registry().lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter_map(Weak::upgrade).collect()
    }

    /// Whether the target has a clean record (no recent failure, not ejected).
    pub fn healthy(&self) -> bool {
        self.clean.load(Ordering::Acquire)
    }

    /// Change the health state (a verdict, a released probe) and mirror `clean`.
    pub(crate) fn with_health(&self, change: impl FnOnce(&mut TargetHealth)) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut health);
        self.clean.store(health.clean(), Ordering::Release);
    }

    /// The pool and health key (`scheme://host:port|tls profile`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Connections opened to this target so far (for tests and stats).
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Idle pooled connections right now.
    pub fn idle_connections(&self) -> usize {
        self.pool.len()
    }

    /// A pooled connection ready for a request, if one is left.
    pub(crate) async fn take_idle(&self) -> Option<Conn<Stream>> {
        self.pool.take().await
    }

    /// Open a new connection within `limit` (TCP, and TLS for https).
    pub(crate) async fn connect(&self, limit: Duration) -> Result<Conn<Stream>, UpstreamError> {
        let attempt = tokio::time::timeout(limit, self.open());
        let stream = match attempt.await {
            Ok(result) => result?,
            Err(_) => {
                return Err(UpstreamError::Timeout {
                    detail: CONNECT_TIMEOUT,
                    target: self.describe.clone(),
                    note: format!("no connection within {} s", limit.as_secs_f64()),
                })
            }
        };
        self.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Conn::new(stream))
    }

    async fn open(&self) -> Result<Stream, UpstreamError> {
        let tcp = self.tcp().await?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Tcp(tcp)),
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| self.io_error(&e, true))?;
                Ok(Stream::Tls(Box::new(stream)))
            }
        }
    }

    async fn tcp(&self) -> Result<TcpStream, UpstreamError> {
        let addrs: Vec<SocketAddr> = match self.host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, self.port)],
            Err(_) => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map_err(|e| self.unavailable(Cause::Dns, e.to_string()))?
                .collect(),
        };
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => self.io_error(&e, false),
            None => self.unavailable(Cause::Dns, "the host name has no address".into()),
        })
    }

    fn unavailable(&self, cause: Cause, note: String) -> UpstreamError {
        UpstreamError::Unavailable {
            cause,
            detail: UNREACHABLE,
            target: self.describe.clone(),
            note,
        }
    }

    fn io_error(&self, error: &io::Error, during_tls: bool) -> UpstreamError {
        let tls_failure = error
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        let kind = error.kind();
        if during_tls
            && (tls_failure
                || matches!(
                    kind,
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                ))
        {
            return UpstreamError::Tls {
                target: self.describe.clone(),
                note: error.to_string(),
            };
        }
        let cause = match kind {
            io::ErrorKind::ConnectionRefused => Cause::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Cause::Reset,
            _ => Cause::Unreachable,
        };
        self.unavailable(cause, error.to_string())
    }
}

/// The targets by key, shared by every route and table that names them.
fn registry() -> &'static Mutex<HashMap<String, Weak<Target>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Target>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}
