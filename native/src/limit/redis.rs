//! The limit step on Redis: Python's `RedisLimiter` script over one pipelined
//! native connection, so native and Python nodes (of any version) share the
//! same buckets, keys and semantics.
//!
//! One Lua script per request (EVALSHA, EVAL on NOSCRIPT) reads every TAT,
//! decides on the Redis server's clock and writes all or nothing; the reply
//! `{admitted, now, TAT_1 .. TAT_n}` gives the decision and headers through
//! [`super::decision_of`], exactly as Python derives them. Keys are
//! `<key_prefix>ratelimit:<bucket>`. Commands are written as they come on one
//! connection and replies matched in order (RESP pipelining).
//!
//! Any failure (connect, a broken connection, a late reply, an error reply)
//! is a [`RedisError`]: the native path then defers the request to Python,
//! whose limiter applies the route's fail mode (503 or the local share) and
//! audits the outage. `rediss://` connects over TLS as redis-py does with its
//! defaults (`super::redis_tls`); a URL with other TLS options stays with Python.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::{Buf, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::gcra::Limit;
use super::{checks_for, decision_of, LimitDecision, RouteLimits, Take};
use crate::http::Identity;

/// The GCRA script of `bastion.ratelimit.backends` (`src/bastion/ratelimit/gcra.lua`,
/// compiled in): the same text and SHA as Python's, so nodes of both kinds share
/// Redis's script cache.
pub const GCRA_SCRIPT: &str = include_str!("../../../src/bastion/ratelimit/gcra.lua");

/// Python's `DEFAULT_NAMESPACE`.
pub const NAMESPACE: &str = "ratelimit:";

/// Why Redis did not decide; the request is deferred to Python.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisError(pub String);

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis: {}", self.0)
    }
}

impl std::error::Error for RedisError {}

fn err(text: impl Into<String>) -> RedisError {
    RedisError(text.into())
}

/// Where and how to connect, as redis-py's `parse_url` read the shared URL
/// (Python passes it: one URL parser for both planes).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RedisConfig {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    /// A unix socket path (`unix://`), instead of host and port.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub db: i64,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// `shared.key_prefix`.
    #[serde(default)]
    pub key_prefix: String,
    /// Seconds to connect (and authenticate).
    #[serde(default = "default_timeout")]
    pub connect_timeout: f64,
    /// Seconds a reply may take.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// `rediss://`: TLS, with the URL's files (`None`: plain TCP).
    #[serde(default)]
    pub tls: Option<super::redis_tls::RedisTls>,
}

fn default_port() -> u16 {
    6379
}

fn default_timeout() -> f64 {
    1.0
}

/// One RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Parse one reply from the front of `buf`: `Ok(None)` when incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, RedisError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..end].split_first() else {
        return Err(err("empty reply line"));
    };
    let text = std::str::from_utf8(line).map_err(|_| err("reply is not UTF-8"))?;
    let after = end + 2;
    let int = || {
        text.parse::<i64>()
            .map_err(|_| err(format!("bad integer {text:?}")))
    };
    match kind {
        b'+' => Ok(Some((Reply::Simple(text.to_owned()), after))),
        b'-' => Ok(Some((Reply::Error(text.to_owned()), after))),
        b':' => Ok(Some((Reply::Int(int()?), after))),
        b'$' => {
            let len = int()?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), after)));
            }
            let len = usize::try_from(len).map_err(|_| err("bulk length"))?;
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            let data = buf[after..after + len].to_vec();
            Ok(Some((Reply::Bulk(Some(data)), after + len + 2)))
        }
        b'*' => {
            let count = int()?;
            if count < 0 {
                return Ok(Some((Reply::Array(None), after)));
            }
            let mut items = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1024));
            let mut at = after;
            for _ in 0..count {
                match parse_reply(&buf[at..])? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        other => Err(err(format!("unknown reply type {:?}", other as char))),
    }
}

/// One command as a RESP array of bulk strings.
pub fn pack(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Who waits for a reply (`None` in the queue: a handshake reply).
type Waiter = oneshot::Sender<Result<Reply, RedisError>>;

struct Command {
    bytes: Vec<u8>,
    reply: Waiter,
}

/// The limiter: the config and the current connection (re-opened on demand).
pub struct RedisLimiter {
    config: RedisConfig,
    /// The TLS client configuration (`rediss://`), or why it cannot be built
    /// (every connection then fails, and the requests defer to Python).
    tls: Option<Result<Arc<rustls::ClientConfig>, String>>,
    namespace: String,
    sha: String,
    conn: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl RedisLimiter {
    pub fn new(config: RedisConfig) -> Self {
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            GCRA_SCRIPT.as_bytes(),
        );
        let sha = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let tls = config.tls.as_ref().map(super::redis_tls::client_config);
        RedisLimiter {
            namespace: format!("{}{NAMESPACE}", config.key_prefix),
            tls,
            config,
            sha,
            conn: Mutex::new(None),
        }
    }

    /// The script's SHA-1 (hex), as EVALSHA names it.
    pub fn script_sha(&self) -> &str {
        &self.sha
    }

    /// The full Redis key of bucket `key` (Python's `RedisLimiter.redis_key`).
    pub fn redis_key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    /// Queue `command` on the live connection, or on a new one. A new connection's
    /// first command is queued before its task starts: a connection that fails at once
    /// (a refused TLS handshake) then answers it with the reason, where sending after
    /// the spawn could find the queue already closed on a loaded machine and say only
    /// "connection closed".
    fn send(&self, command: Command) -> Result<(), RedisError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = conn.as_ref().filter(|tx| !tx.is_closed()) {
            return tx.send(command).map_err(|_| err("connection closed"));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(command).map_err(|_| err("connection closed"))?;
        tokio::spawn(run_connection(self.config.clone(), self.tls.clone(), rx));
        *conn = Some(tx);
        Ok(())
    }

    /// Send one command and wait (at most `timeout`) for its reply.
    pub async fn call(&self, bytes: Vec<u8>) -> Result<Reply, RedisError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command { bytes, reply })?;
        let timeout = Duration::from_secs_f64(self.config.timeout.max(0.001));
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(err("connection lost")),
            Err(_) => Err(err(format!("no reply within {}s", self.config.timeout))),
        }
    }

    /// Run the script for `checks` at cost `cost`: the TATs (raised to
    /// Redis' now), whether it admitted, and Redis' clock (µs).
    pub async fn take(
        &self,
        checks: &[(String, &Limit)],
        cost: i64,
    ) -> Result<(Take, i64), RedisError> {
        let keys: Vec<String> = checks.iter().map(|(key, _)| self.redis_key(key)).collect();
        let mut args: Vec<String> = vec![cost.to_string()];
        for (_, limit) in checks {
            args.push(limit.interval_us.to_string());
            args.push(limit.tolerance_us.to_string());
        }
        let numkeys = keys.len().to_string();
        let command = |verb: &str, script: &str| {
            let mut parts: Vec<&[u8]> =
                vec![verb.as_bytes(), script.as_bytes(), numkeys.as_bytes()];
            parts.extend(keys.iter().map(|k| k.as_bytes()));
            parts.extend(args.iter().map(|a| a.as_bytes()));
            pack(&parts)
        };
        let mut reply = self.call(command("EVALSHA", &self.sha)).await?;
        if matches!(&reply, Reply::Error(text) if text.starts_with("NOSCRIPT")) {
            reply = self.call(command("EVAL", GCRA_SCRIPT)).await?;
        }
        let Reply::Array(Some(items)) = reply else {
            return Err(err(format!("unexpected script reply {reply:?}")));
        };
        let mut ints = items.into_iter().map(|item| match item {
            Reply::Int(n) => Ok(n),
            other => Err(err(format!("unexpected script item {other:?}"))),
        });
        let admitted = ints.next().ok_or_else(|| err("empty script reply"))?? == 1;
        let now = ints
            .next()
            .ok_or_else(|| err("script reply without time"))??;
        let tats = ints.map(|t| t.map(Some)).collect::<Result<Vec<_>, _>>()?;
        if tats.len() != checks.len() {
            return Err(err("script reply does not match its keys"));
        }
        Ok((Take { admitted, tats }, now))
    }
}

/// The limit step on Redis (see [`super::check`]); an error means: defer to Python.
pub async fn check(
    limiter: &RedisLimiter,
    limits: &RouteLimits,
    identity: &Identity,
    key_limits: &[Limit],
    client_ip: Option<IpAddr>,
    route_name: &str,
) -> Result<LimitDecision, RedisError> {
    let checks = checks_for(limits, identity, key_limits, client_ip, route_name);
    if checks.is_empty() {
        return Ok(LimitDecision::unlimited());
    }
    let (take, now) = limiter.take(&checks, 1).await?;
    let decision = decision_of(&checks, &take, now);
    if decision.allowed != take.admitted {
        return Err(err("Redis disagreed with the local GCRA decision"));
    }
    Ok(decision)
}

fn current_slot() -> &'static ArcSwapOption<RedisLimiter> {
    static CURRENT: OnceLock<ArcSwapOption<RedisLimiter>> = OnceLock::new();
    CURRENT.get_or_init(ArcSwapOption::empty)
}

/// The Redis limiter the control plane configured (`None`: limits are in memory).
pub fn current() -> Option<Arc<RedisLimiter>> {
    current_slot().load_full()
}

/// Install (or, with `None`, remove) the Redis limiter.
pub fn configure(config: Option<RedisConfig>) {
    current_slot().store(config.map(|c| Arc::new(RedisLimiter::new(c))));
}

// -- the connection task ------------------------------------------------------

type Tls = Option<Result<Arc<rustls::ClientConfig>, String>>;

async fn run_connection(config: RedisConfig, tls: Tls, mut rx: mpsc::UnboundedReceiver<Command>) {
    let connect_timeout = Duration::from_secs_f64(config.connect_timeout.max(0.001));
    let opened = tokio::time::timeout(connect_timeout, open(&config, tls)).await;
    match opened {
        Ok(Ok(Stream::Tcp(stream))) => serve(stream, &config, &mut rx).await,
        Ok(Ok(Stream::Tls(stream))) => serve(*stream, &config, &mut rx).await,
        #[cfg(unix)]
        Ok(Ok(Stream::Unix(stream))) => serve(stream, &config, &mut rx).await,
        Ok(Err(e)) => fail_queued(&mut rx, &e),
        Err(_) => fail_queued(&mut rx, &err("connect timed out")),
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

async fn open(config: &RedisConfig, tls: Tls) -> Result<Stream, RedisError> {
    #[cfg(unix)]
    if let Some(path) = &config.path {
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| err(format!("connect {path}: {e}")))?;
        return Ok(Stream::Unix(stream));
    }
    let host = config.host.as_deref().unwrap_or("localhost");
    let stream = tokio::net::TcpStream::connect((host, config.port))
        .await
        .map_err(|e| err(format!("connect {host}:{}: {e}", config.port)))?;
    let _ = stream.set_nodelay(true);
    match tls {
        None => Ok(Stream::Tcp(stream)),
        Some(Err(why)) => Err(err(why)),
        Some(Ok(tls)) => super::redis_tls::connect(stream, host, tls)
            .await
            .map(|stream| Stream::Tls(Box::new(stream)))
            .map_err(err),
    }
}

fn fail_queued(rx: &mut mpsc::UnboundedReceiver<Command>, error: &RedisError) {
    rx.close();
    while let Ok(command) = rx.try_recv() {
        let _ = command.reply.send(Err(error.clone()));
    }
}

async fn serve<S>(stream: S, config: &RedisConfig, rx: &mut mpsc::UnboundedReceiver<Command>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut pending: VecDeque<(Option<Waiter>, Instant)> = VecDeque::new();
    // The handshake goes first, its replies checked like any other.
    let mut hello: Vec<u8> = Vec::new();
    if let Some(password) = &config.password {
        hello.extend(match &config.username {
            Some(user) => pack(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
            None => pack(&[b"AUTH", password.as_bytes()]),
        });
        pending.push_back((None, Instant::now()));
    }
    if config.db != 0 {
        hello.extend(pack(&[b"SELECT", config.db.to_string().as_bytes()]));
        pending.push_back((None, Instant::now()));
    }
    let timeout = Duration::from_secs_f64(config.timeout.max(0.001));
    let error = 'connection: {
        if !hello.is_empty() {
            if let Err(e) = writer.write_all(&hello).await {
                break 'connection err(format!("write: {e}"));
            }
        }
        let mut tick = tokio::time::interval(timeout / 4);
        loop {
            tokio::select! {
                command = rx.recv() => {
                    let Some(command) = command else { break 'connection err("closed") };
                    let mut out = command.bytes;
                    let now = Instant::now();
                    pending.push_back((Some(command.reply), now));
                    while let Ok(more) = rx.try_recv() {
                        out.extend_from_slice(&more.bytes);
                        pending.push_back((Some(more.reply), now));
                    }
                    if let Err(e) = writer.write_all(&out).await {
                        break 'connection err(format!("write: {e}"));
                    }
                }
                read = reader.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => break 'connection err("closed by the server"),
                        Err(e) => break 'connection err(format!("read: {e}")),
                        Ok(_) => {}
                    }
                    loop {
                        match parse_reply(&buf) {
                            Ok(Some((reply, used))) => {
                                buf.advance(used);
                                let Some((waiter, _)) = pending.pop_front() else {
                                    break 'connection err("a reply nobody asked for");
                                };
                                match waiter {
                                    Some(waiter) => { let _ = waiter.send(Ok(reply)); }
                                    None => if let Reply::Error(text) = reply {
                                        break 'connection err(format!("handshake: {text}"));
                                    },
                                }
                            }
                            Ok(None) => break,
                            Err(e) => break 'connection e,
                        }
                    }
                }
                _ = tick.tick() => {
                    // Replies come in order: a late oldest one means a stalled connection.
                    if pending.front().is_some_and(|(_, sent)| sent.elapsed() > timeout) {
                        break 'connection err("reply timed out");
                    }
                }
            }
        }
    };
    for (waiter, _) in pending.drain(..) {
        if let Some(waiter) = waiter {
            let _ = waiter.send(Err(error.clone()));
        }
    }
    fail_queued(rx, &error);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_incrementally() {
        let whole = b"*4\r\n:1\r\n:1700000000000000\r\n$-1\r\n+OK\r\n-NOSCRIPT x\r\n";
        for cut in 0..whole.len() - 14 {
            assert_eq!(parse_reply(&whole[..cut]).ok(), Some(None), "cut at {cut}");
        }
        let (reply, used) = parse_reply(whole).ok().flatten().expect("complete");
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Int(1),
                Reply::Int(1_700_000_000_000_000),
                Reply::Bulk(None),
                Reply::Simple("OK".into()),
            ]))
        );
        assert_eq!(
            parse_reply(&whole[used..]).ok().flatten().map(|r| r.0),
            Some(Reply::Error("NOSCRIPT x".into()))
        );
        assert!(parse_reply(b"?x\r\n").is_err());
        assert_eq!(
            parse_reply(b"$3\r\nabc\r\n").ok().flatten(),
            Some((Reply::Bulk(Some(b"abc".to_vec())), 9))
        );
    }

    #[test]
    fn commands_pack_as_bulk_arrays() {
        assert_eq!(
            pack(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }

    #[test]
    fn script_sha_and_keys_match_python() {
        let limiter = RedisLimiter::new(RedisConfig {
            host: None,
            port: 6379,
            path: None,
            db: 0,
            username: None,
            password: None,
            key_prefix: "bastion:".into(),
            connect_timeout: 1.0,
            timeout: 1.0,
            tls: None,
        });
        assert_eq!(
            limiter.redis_key("orders:ip:192.0.2.1"),
            "bastion:ratelimit:orders:ip:192.0.2.1"
        );
        assert_eq!(limiter.script_sha().len(), 40);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = parse_reply(&bytes);
        }
    }
}
