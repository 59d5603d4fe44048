//! Forward a deferred request to the Python control plane over its private
//! Unix socket.
//!
//! - a pool of keep-alive HTTP/1.1 connections ([`crate::client`], the same
//!   client and pool as the upstreams'); a connection goes back to the pool
//!   when its response body was read to its exact end;
//! - bodies stream both ways; HTTP/2 requests are sent as HTTP/1.1 (origin-form
//!   target, `Host` from `:authority`, split `cookie` fields joined);
//! - `Upgrade` requests (WebSocket) get a connection of their own and, after a
//!   101, the two upgraded streams are copied into each other;
//! - every incoming `x-bastion-front-*` header is removed, then the front's own
//!   are set (peer, scheme, TLS version, client certificate): Python trusts them
//!   only because its socket is private;
//! - Python unreachable: 503 problem+json, reason `control_plane_unavailable`.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::client::{self, BodyFraming, Conn, Pool};
use crate::http::{boxed, full, Body, ConnInfo};

/// The prefix of the headers only the front may set.
pub const FRONT_PREFIX: &str = "x-bastion-front-";
pub const PEER: &str = "x-bastion-front-peer";
pub const SCHEME: &str = "x-bastion-front-scheme";
pub const TLS_VERSION: &str = "x-bastion-front-tls-version";
pub const CLIENT_CERT: &str = "x-bastion-front-client-cert";
pub const METHOD: &str = "x-bastion-front-method";

/// Methods sent to Python as they are; any other (`delete`, `PROPFIND`, `FOO`) is
/// sent as `GET` with the real one in `x-bastion-front-method`: uvicorn's parser
/// (llhttp) refuses methods outside its fixed list in plain text, before bastion
/// could refuse or route them with its own problem+json.
const PLAIN_METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::OPTIONS,
    Method::PATCH,
];

/// Methods a stale pooled connection is retried with (when bodiless).
const IDEMPOTENT: [Method; 4] = [Method::GET, Method::HEAD, Method::OPTIONS, Method::DELETE];

/// Idle connections kept per front (more are opened under load and closed after).
const MAX_IDLE: usize = 64;

/// What the front adds to [`ConnInfo`] for the hop to Python.
#[derive(Debug, Clone, Default)]
pub struct Hop {
    /// The negotiated TLS version's wire code (0x0303 / 0x0304), when TLS.
    pub tls_version: Option<u16>,
}

/// The pool of connections to the Python app.
pub struct Forwarder {
    socket: PathBuf,
    pool: Arc<Pool<UnixStream>>,
}

/// Why the hop failed before a response head arrived.
#[derive(Debug)]
enum HopError {
    /// Could not connect or handshake: Python is down (or not yet up).
    Unreachable,
    /// The client's own request body failed (malformed chunking, reset).
    ClientBody,
    /// The connection to Python failed mid-exchange.
    Broken,
}

impl Forwarder {
    pub fn new(socket: PathBuf) -> Arc<Self> {
        Arc::new(Forwarder {
            socket,
            // Idle connections are kept until Python closes them (the pool
            // notices when it hands one out).
            pool: Arc::new(Pool::new(MAX_IDLE, None)),
        })
    }

    /// Idle connections in the pool now (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.pool.len()
    }

    async fn connect(&self) -> Result<Conn<UnixStream>, HopError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|_| HopError::Unreachable)?;
        Ok(Conn::new(stream))
    }

    /// Forward `req` to Python and return its response (or a 503 / 400 of our own).
    pub async fn forward(
        self: &Arc<Self>,
        mut req: Request<Body>,
        conn: &ConnInfo,
        hop: &Hop,
    ) -> Response<Body> {
        let upgrade = is_upgrade(&req);
        let client_upgrade = if upgrade {
            Some(hyper::upgrade::on(&mut req))
        } else {
            None
        };
        prepare(&mut req, conn, hop);
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match self.exchange(req, upgrade).await {
            Ok(client::Answer::Response(head, body)) => {
                Response::from_parts(client::parts(head), boxed(body))
            }
            Ok(client::Answer::Switched(head, server)) => {
                if let Some(client_upgrade) = client_upgrade {
                    tokio::spawn(async move {
                        if let Ok(client) = client_upgrade.await {
                            let mut client = TokioIo::new(client);
                            let mut server = server;
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
                Response::from_parts(client::parts(head), full(Bytes::new()))
            }
            Err(HopError::ClientBody) => bad_request(),
            Err(HopError::Unreachable | HopError::Broken) => unavailable(request_id),
        }
    }

    async fn exchange(
        &self,
        req: Request<Body>,
        upgrade: bool,
    ) -> Result<client::Answer<UnixStream>, HopError> {
        let pooled = if upgrade {
            None
        } else {
            self.pool.take().await
        };
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        let (parts, body) = req.into_parts();
        // The body framed as the client framed it (its own fields go to Python as
        // they are, for its hygiene to judge): chunked under its Transfer-Encoding;
        // its exact length (a Content-Length it sent, also 0); else chunked.
        let framing = if parts.headers.contains_key(TRANSFER_ENCODING) {
            BodyFraming::Chunked
        } else {
            match body.size_hint().exact() {
                Some(0) if !parts.headers.contains_key(CONTENT_LENGTH) => BodyFraming::None,
                Some(length) => BodyFraming::Length(length),
                None => BodyFraming::Chunked,
            }
        };
        let target = if parts.uri.scheme().is_some() {
            parts.uri.to_string()
        } else {
            parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned())
        };
        // An HTTP/1.0 client's request reaches Python as HTTP/1.0 (no Host is
        // required of it there) on a connection that is not kept.
        let http10 = parts.version == Version::HTTP_10;
        let head = Bytes::from(client::head::encode(
            &parts.method,
            &target,
            None,
            &parts.headers,
            framing,
            client::head::FramingFields::Theirs,
            http10,
        ));
        let replayable = matches!(framing, BodyFraming::None | BodyFraming::Length(0))
            && IDEMPOTENT.contains(&parts.method);
        let expect = client::Expect {
            keep_alive: !http10 && !client::head::has_token(&parts.headers, b"close"),
            method: parts.method,
            upgrade,
            // The Python app's answer: bounded by the head's size only (it relays an
            // upstream's head, already held to `UPSTREAM_FIELD_BYTES`, with its own).
            field_limit: client::head::MAX_HEAD,
        };
        let pool = (!upgrade).then(|| Arc::clone(&self.pool));
        let upload = client::Upload::new(head.clone(), body, framing);
        let failed = match client::Exchange::new(conn, upload, expect.clone(), pool.clone()).await {
            Ok(answer) => return Ok(answer),
            Err(failed) => failed,
        };
        // A pooled connection Python closed as it was handed out (its keep-alive
        // timeout): once more on a new one when nothing was written, or when the
        // request is idempotent and bodiless and nothing came back.
        let retry = match failed.unsent {
            Some(unsent) if reused => Some(unsent),
            _ if reused && replayable && !failed.answered && failed.error.is_closed() => {
                Some(client::Upload::new(head, full(Bytes::new()), framing))
            }
            _ => None,
        };
        let Some(upload) = retry else {
            return Err(hop_error(&failed.error));
        };
        let conn = self.connect().await?;
        client::Exchange::new(conn, upload, expect, pool)
            .await
            .map_err(|failed| hop_error(&failed.error))
    }
}

fn hop_error(error: &client::Error) -> HopError {
    match error {
        client::Error::Body(_) => HopError::ClientBody,
        _ => HopError::Broken,
    }
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(UPGRADE)
        && req
            .headers()
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Make `req` the request Python receives: the front's headers replaced,
/// HTTP/2 expressed as HTTP/1.1.
pub fn prepare<B>(req: &mut Request<B>, conn: &ConnInfo, hop: &Hop) {
    let headers = req.headers_mut();
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(FRONT_PREFIX))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(&name);
    }
    if let Ok(value) = HeaderValue::from_str(&conn.peer.to_string()) {
        headers.insert(PEER, value);
    }
    let scheme = if conn.tls { "https" } else { "http" };
    headers.insert(SCHEME, HeaderValue::from_static(scheme));
    if let Some(version) = hop.tls_version {
        if let Ok(value) = HeaderValue::from_str(&format!("0x{version:04x}")) {
            headers.insert(TLS_VERSION, value);
        }
    }
    if let Some(leaf) = conn.client_certs.first() {
        if let Ok(value) = HeaderValue::from_str(&url_encode(&pem(leaf))) {
            headers.insert(CLIENT_CERT, value);
        }
    }
    if !PLAIN_METHODS.contains(req.method()) {
        if let Ok(value) = HeaderValue::from_str(req.method().as_str()) {
            req.headers_mut().insert(METHOD, value);
            *req.method_mut() = Method::GET;
        }
    }
    if req.version() == Version::HTTP_2 {
        downgrade(req);
    }
}

/// An HTTP/2 request as HTTP/1.1: `Host` from the authority, an origin-form
/// target, the `cookie` fields joined (RFC 9113 §8.2.3).
fn downgrade<B>(req: &mut Request<B>) {
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    if let Some(authority) = authority {
        if !req.headers().contains_key(HOST) {
            if let Ok(value) = HeaderValue::from_str(&authority) {
                req.headers_mut().insert(HOST, value);
            }
        }
    }
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    if let Ok(uri) = target.parse() {
        *req.uri_mut() = uri;
    }
    let cookies: Vec<&[u8]> = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if cookies.len() > 1 {
        let joined = cookies.join(&b"; "[..]);
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            req.headers_mut().insert(COOKIE, value);
        }
    }
    *req.version_mut() = Version::HTTP_11;
}

/// A DER certificate as PEM (64-column base64 lines).
pub fn pem(der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn bad_request() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::BAD_REQUEST;
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// The 503 problem+json of `bastion.http.problem` when Python cannot be reached.
pub fn unavailable(request_id: Option<String>) -> Response<Body> {
    let request_id = request_id.unwrap_or_else(new_request_id);
    let document = serde_json::json!({
        "type": "urn:bastion:problem:control_plane_unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "the control plane is not reachable; retry shortly",
        "reason": "control_plane_unavailable",
        "request_id": request_id,
    });
    let body = serde_json::to_vec(&document).unwrap_or_default();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", value);
    }
    resp
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn conn(tls: bool, certs: Vec<Vec<u8>>) -> ConnInfo {
        ConnInfo {
            peer: SocketAddr::from(([192, 0, 2, 7], 40123)),
            tls,
            client_certs: certs,
        }
    }

    #[test]
    fn spoofed_front_headers_are_replaced() {
        let mut req = Request::builder()
            .uri("/x")
            .header("X-Bastion-Front-Peer", "10.0.0.1:1")
            .header("x-bastion-front-client-cert", "forged")
            .header("x-bastion-front-anything", "forged")
            .header("x-other", "kept")
            .body(())
            .unwrap_or_default();
        prepare(&mut req, &conn(false, vec![]), &Hop::default());
        let h = req.headers();
        assert_eq!(h.get_all(PEER).iter().count(), 1);
        assert_eq!(h[PEER], "192.0.2.7:40123");
        assert_eq!(h[SCHEME], "http");
        assert!(h.get(CLIENT_CERT).is_none());
        assert!(h.get(TLS_VERSION).is_none());
        assert!(h.get("x-bastion-front-anything").is_none());
        assert_eq!(h["x-other"], "kept");
    }

    #[test]
    fn tls_and_client_cert_are_announced() {
        let mut req = Request::builder().uri("/x").body(()).unwrap_or_default();
        let hop = Hop {
            tls_version: Some(0x0304),
        };
        prepare(&mut req, &conn(true, vec![vec![1, 2, 3]]), &hop);
        let h = req.headers();
        assert_eq!(h[SCHEME], "https");
        assert_eq!(h[TLS_VERSION], "0x0304");
        assert_eq!(
            h[CLIENT_CERT],
            "-----BEGIN%20CERTIFICATE-----%0AAQID%0A-----END%20CERTIFICATE-----%0A"
        );
    }

    #[test]
    fn methods_outside_the_plain_list_travel_in_a_header() {
        for (method, sent, header) in [
            ("delete", "GET", Some("delete")),
            ("PROPFIND", "GET", Some("PROPFIND")),
            ("DELETE", "DELETE", None),
            ("HEAD", "HEAD", None),
        ] {
            let mut req = Request::builder()
                .method(method)
                .uri("/x")
                .header(METHOD, "forged")
                .body(())
                .unwrap_or_default();
            prepare(&mut req, &conn(false, vec![]), &Hop::default());
            assert_eq!(req.method().as_str(), sent);
            assert_eq!(
                req.headers().get(METHOD).and_then(|v| v.to_str().ok()),
                header
            );
        }
    }

    #[test]
    fn http2_requests_become_http11() {
        let mut req = Request::builder()
            .version(Version::HTTP_2)
            .uri("https://example.test:8443/a/b?c=d")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(())
            .unwrap_or_default();
        prepare(&mut req, &conn(true, vec![]), &Hop::default());
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.uri().to_string(), "/a/b?c=d");
        assert_eq!(req.headers()[HOST], "example.test:8443");
        assert_eq!(req.headers()[COOKIE], "a=1; b=2");
    }

    #[test]
    fn upgrade_needs_the_connection_token() {
        let ws = Request::builder()
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .unwrap_or_default();
        assert!(is_upgrade(&ws));
        let no_token = Request::builder()
            .header("upgrade", "websocket")
            .body(())
            .unwrap_or_default();
        assert!(!is_upgrade(&no_token));
    }

    #[test]
    fn pem_wraps_at_64_columns() {
        let text = pem(&[0u8; 60]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2], "A".repeat(16));
    }

    #[tokio::test]
    async fn an_unreachable_python_is_a_503_problem() {
        let forwarder = Forwarder::new(PathBuf::from("/nonexistent/bastion.sock"));
        let req = Request::builder()
            .uri("/healthz")
            .header("x-request-id", "abc-1")
            .body(full(Bytes::new()))
            .unwrap_or_default();
        let resp = forwarder
            .forward(req, &conn(false, vec![]), &Hop::default())
            .await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        assert_eq!(resp.headers()["retry-after"], "1");
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(doc["reason"], "control_plane_unavailable");
        assert_eq!(doc["status"], 503);
        assert_eq!(doc["request_id"], "abc-1");
        assert_eq!(doc["title"], "Service unavailable");
    }
}
