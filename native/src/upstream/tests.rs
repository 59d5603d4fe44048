//! The proxy end to end against real sockets: a hyper echo upstream and raw
//! TCP servers that misbehave on purpose.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::http::full;

/// An echo upstream: answers every request with what it received (JSON).
async fn echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_echo(stream));
        }
    });
    addr
}

async fn serve_echo<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(|req: Request<Incoming>| async move {
        let method = req.method().to_string();
        let uri = req.uri().to_string();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let out = json!({"method": method, "uri": uri, "headers": headers,
                         "body": String::from_utf8_lossy(&body)});
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .header("connection", "keep-alive, x-internal")
            .header("x-internal", "secret")
            .header("keep-alive", "timeout=5")
            .header("server", "echo/1")
            .body(http_body_util::Full::new(Bytes::from(out.to_string())))
            .expect("response");
        Ok::<_, Infallible>(response)
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A raw upstream: `script` gets each accepted connection.
async fn raw<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let script = std::sync::Arc::new(script);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(script(stream));
        }
    });
    addr
}

/// Read one request head (and nothing else) from `stream`.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

/// A port nothing listens on.
fn closed_port() -> SocketAddr {
    let sock = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    sock.local_addr().expect("addr")
}

fn target(addr: SocketAddr) -> Value {
    json!({
        "scheme": "http",
        "host": addr.ip().to_string(),
        "port": addr.port(),
        "base_path": "",
        "host_header": addr.to_string(),
        "key": format!("http://{addr}|"),
    })
}

fn section(targets: Vec<Value>, overrides: Value) -> Value {
    let mut out = json!({
        "targets": targets,
        "base_path": "",
        "strip_prefix": null,
        "timeout": 5.0,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "health": {"failures": 3, "cooldown": 5.0, "max_cooldown": 300.0},
        "pool": {"max_idle": 64, "idle_timeout": 30.0},
        "tls": {"ca": null},
        "mutate": {
            "headers": {"subject": "x-bastion-subject", "client": "x-bastion-client",
                        "scopes": "x-bastion-scopes", "key_id": "x-bastion-key-id",
                        "request_id": "x-bastion-request-id"},
            "strip": [],
        },
    });
    if let (Some(out), Some(extra)) = (out.as_object_mut(), overrides.as_object()) {
        for (k, v) in extra {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn get(uri: &str) -> Request<Body> {
    request(Method::GET, uri, full(Bytes::new()))
}

fn request(method: Method, uri: &str, body: Body) -> Request<Body> {
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri.parse().expect("uri");
    req.headers_mut()
        .insert("x-kept", HeaderValue::from_static("yes"));
    req
}

async fn json_of(response: Response<Body>) -> Value {
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&body).expect("json")
}

fn header<'a>(echoed: &'a Value, name: &str) -> Vec<&'a str> {
    echoed["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter(|h| h[0] == name)
                .filter_map(|h| h[1].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn forwards_path_query_host_and_strips_response_hop_by_hop() {
    let addr = echo().await;
    let mut t = target(addr);
    t["base_path"] = json!("/v1");
    let up = Upstream::from_section(&section(
        vec![t],
        json!({"base_path": "/v1", "strip_prefix": "/api"}),
    ))
    .expect("section");
    let response = up.send(get("/api/orders/7?a=1&b=%20")).await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(headers.get("connection"), None);
    assert_eq!(headers.get("keep-alive"), None);
    assert_eq!(headers.get("x-internal"), None);
    assert_eq!(
        headers.get("server").map(|v| v.as_bytes()),
        Some(&b"echo/1"[..])
    );
    let echoed = json_of(response).await;
    assert_eq!(echoed["uri"], "/v1/orders/7?a=1&b=%20");
    assert_eq!(header(&echoed, "host"), vec![addr.to_string().as_str()]);
    assert_eq!(header(&echoed, "x-kept"), vec!["yes"]);
    assert_eq!(header(&echoed, "content-length"), Vec::<&str>::new());
    assert_eq!(header(&echoed, "transfer-encoding"), Vec::<&str>::new());
}

#[test]
fn upstream_path_is_python_s() {
    let t = target(closed_port());
    let build =
        |extra: Value| Upstream::from_section(&section(vec![t.clone()], extra)).expect("section");
    let plain = build(json!({}));
    assert_eq!(plain.upstream_path("/api/x"), "/api/x");
    let strip = build(json!({"strip_prefix": "/api", "base_path": "/base"}));
    assert_eq!(strip.upstream_path("/api"), "/base/");
    assert_eq!(strip.upstream_path("/api/"), "/base/");
    assert_eq!(strip.upstream_path("/api/x/y"), "/base/x/y");
    let root = build(json!({"strip_prefix": "/"}));
    assert_eq!(root.upstream_path("/x"), "/x");
    // The query as sent, bytes outside ASCII too (Python's `query_string`); never a
    // space or a control character in the request line.
    let target = plain.request_target("/api/x", Some("q=caf\u{e9}"));
    assert_eq!(target.expect("forwarded"), "/api/x?q=caf\u{e9}");
    for query in ["a b", "a\tb", "a\r\nb"] {
        assert!(
            plain.request_target("/api/x", Some(query)).is_err(),
            "{query:?}"
        );
    }
}

#[tokio::test]
async fn keep_alive_connections_are_reused_and_bounded() {
    let addr = echo().await;
    let up = Upstream::from_section(&section(
        vec![target(addr)],
        json!({"pool": {"max_idle": 1, "idle_timeout": 30.0}}),
    ))
    .expect("section");
    for _ in 0..3 {
        let response = up.send(get("/x")).await.expect("sent");
        json_of(response).await;
    }
    assert_eq!(up.targets()[0].connections_opened(), 1);
    // Two at once need two connections; only one stays idle (max_idle).
    let (a, b) = tokio::join!(up.send(get("/a")), up.send(get("/b")));
    let (a, b) = (a.expect("a"), b.expect("b"));
    json_of(a).await;
    json_of(b).await;
    assert_eq!(up.targets()[0].connections_opened(), 2);
    assert_eq!(up.targets()[0].idle_connections(), 1);
}

#[tokio::test]
async fn body_framing_follows_python() {
    let addr = echo().await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    let echoed = json_of(
        up.send(request(Method::POST, "/p", full("hello")))
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(header(&echoed, "content-length"), vec!["5"]);
    assert_eq!(echoed["body"], "hello");
    let echoed = json_of(
        up.send(request(Method::POST, "/p", full(Bytes::new())))
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(header(&echoed, "content-length"), vec!["0"]);
    let echoed = json_of(
        up.send(request(Method::DELETE, "/p", full(Bytes::new())))
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(header(&echoed, "content-length"), Vec::<&str>::new());
    // A body of unknown length is streamed chunked.
    let chunks = futures_stream(vec!["ab", "cd", "e"]);
    let echoed = json_of(
        up.send(request(Method::PUT, "/p", chunks))
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(header(&echoed, "transfer-encoding"), vec!["chunked"]);
    assert_eq!(header(&echoed, "content-length"), Vec::<&str>::new());
    assert_eq!(echoed["body"], "abcde");
}

/// A body of unknown length made of `parts`, sent one by one.
fn futures_stream(parts: Vec<&'static str>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        for part in parts {
            let _ = tx.send(Bytes::from(part)).await;
        }
    });
    crate::http::boxed(Chunks(rx))
}

struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[tokio::test]
async fn refused_connections_eject_the_target_after_three_failures() {
    let up =
        Upstream::from_section(&section(vec![target(closed_port())], json!({}))).expect("section");
    for _ in 0..3 {
        let error = up.send(get("/x")).await.expect_err("refused");
        assert_eq!(
            error.problem(),
            (
                502,
                "upstream_unavailable",
                "Upstream unavailable",
                "The upstream could not be reached."
            )
        );
        assert_eq!(error.cause(), Some(Cause::Refused));
    }
    assert!(!up.targets()[0].healthy());
    let error = up.send(get("/x")).await.expect_err("ejected");
    assert_eq!(
        error.problem(),
        (
            503,
            "upstream_unavailable",
            "Upstream unavailable",
            "Every upstream target of this route is failing; retry later."
        )
    );
    assert_eq!(error.retry_after(), Some(5));
    assert_eq!(error.cause(), Some(Cause::NoHealthyTarget));
}

#[tokio::test]
async fn a_failed_connection_is_retried_on_the_next_target_for_idempotent_methods_only() {
    let addr = echo().await;
    let down = closed_port();
    let up = Upstream::from_section(&section(vec![target(down), target(addr)], json!({})))
        .expect("section");
    // Round-robin starts at the down target: GET moves on to the echo.
    let response = up.send(get("/a")).await.expect("retried");
    assert_eq!(response.status(), StatusCode::OK);
    json_of(response).await;
    let response = up.send(get("/b")).await.expect("second target");
    json_of(response).await;
    // POST is never retried (it starts at the down target again).
    let error = up
        .send(request(Method::POST, "/c", full("x")))
        .await
        .expect_err("not retried");
    assert_eq!(error.cause(), Some(Cause::Refused));
    assert_eq!(up.targets()[1].connections_opened(), 1);
}

#[tokio::test]
async fn no_answer_in_read_timeout_is_504() {
    let addr = raw(|mut stream| async move {
        read_head(&mut stream).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({"read_timeout": 0.2})))
        .expect("section");
    let error = up.send(get("/slow")).await.expect_err("timeout");
    assert_eq!(
        error.problem(),
        (
            504,
            "upstream_timeout",
            "Upstream timeout",
            "The upstream did not answer in time."
        )
    );
    assert_eq!(error.note(), "no bytes for read_timeout (0.2 s)");
    // The route's timeout bounds the read timeout.
    let up = Upstream::from_section(&section(
        vec![target(addr)],
        json!({"timeout": 0.1, "read_timeout": 3.0}),
    ))
    .expect("section");
    let error = up.send(get("/slow")).await.expect_err("timeout");
    assert_eq!(error.cause(), Some(Cause::Timeout));
}

/// Answers the first request of each connection, then closes the connection
/// when the second request arrives (a keep-alive race with the upstream).
async fn closes_on_second_request() -> SocketAddr {
    raw(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await;
        read_head(&mut stream).await;
        // Read what body came (so closing sends FIN, not RST), then drop unanswered.
        let mut rest = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut rest)).await;
    })
    .await
}

#[tokio::test]
async fn a_stale_pooled_connection_is_retried_for_an_empty_get() {
    let addr = closes_on_second_request().await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    let first = up.send(get("/1")).await.expect("first");
    first.into_body().collect().await.expect("body");
    let second = up
        .send(get("/2"))
        .await
        .expect("retried on a fresh connection");
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(up.targets()[0].connections_opened(), 2);
}

#[tokio::test]
async fn a_stale_pooled_connection_is_not_retried_for_a_post_with_a_body() {
    let addr = closes_on_second_request().await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    let first = up.send(get("/1")).await.expect("first");
    first.into_body().collect().await.expect("body");
    let error = up
        .send(request(Method::POST, "/2", full("data")))
        .await
        .expect_err("not retried");
    assert_eq!(
        error.problem(),
        (
            502,
            "upstream_unavailable",
            "Upstream unavailable",
            "The upstream closed the connection without answering."
        )
    );
    assert_eq!(error.cause(), Some(Cause::Closed));
}

#[tokio::test]
async fn an_invalid_response_is_502() {
    let addr = raw(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
    })
    .await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    let error = up.send(get("/x")).await.expect_err("invalid");
    assert_eq!(error.cause(), Some(Cause::InvalidResponse));
    assert_eq!(error.problem().0, 502);
}

fn aborted(error: &crate::http::BoxError) -> Option<Cause> {
    error.downcast_ref::<UpstreamAborted>().map(|a| a.cause)
}

#[tokio::test]
async fn an_upstream_dying_mid_body_aborts_the_body() {
    let addr = raw(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            .await;
    })
    .await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    let response = up.send(get("/x")).await.expect("head");
    let error = response.into_body().collect().await.expect_err("aborted");
    assert_eq!(aborted(&error), Some(Cause::Closed));
    assert_eq!(up.targets()[0].idle_connections(), 0);
}

#[tokio::test]
async fn a_stalled_body_times_out() {
    let addr = raw(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({"read_timeout": 0.2})))
        .expect("section");
    let response = up.send(get("/x")).await.expect("head");
    let error = response.into_body().collect().await.expect_err("timed out");
    assert_eq!(aborted(&error), Some(Cause::Timeout));
}

#[tokio::test]
async fn head_responses_return_the_connection_at_once() {
    let addr = echo().await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    let response = up
        .send(request(Method::HEAD, "/h", full(Bytes::new())))
        .await
        .expect("head");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(up.targets()[0].idle_connections(), 1);
    drop(response);
    let response = up.send(get("/g")).await.expect("get");
    json_of(response).await;
    assert_eq!(up.targets()[0].connections_opened(), 1);
}

#[tokio::test]
async fn targets_are_shared_by_key() {
    let addr = echo().await;
    let a = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("a");
    let b = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("b");
    assert!(Arc::ptr_eq(&a.targets()[0], &b.targets()[0]));
    json_of(a.send(get("/1")).await.expect("a")).await;
    json_of(b.send(get("/2")).await.expect("b")).await;
    assert_eq!(b.targets()[0].connections_opened(), 1);
}

#[test]
fn bad_sections_are_refused_with_the_field() {
    let t = target(closed_port());
    let err = |extra: Value| Upstream::from_section(&section(vec![t.clone()], extra)).err();
    assert_eq!(
        err(json!({"timeout": 0.0})),
        Some("timeout: must be positive".to_string())
    );
    assert_eq!(
        err(json!({"targets": []})),
        Some("upstream.targets: a route needs at least one target".to_string())
    );
    let mut ftp = t.clone();
    ftp["scheme"] = json!("ftp");
    assert_eq!(
        Upstream::from_section(&section(vec![ftp], json!({}))).err(),
        Some("upstream.targets: scheme \"ftp\" is not http(s)".to_string())
    );
    assert!(err(json!({"tls": 1})).is_some_and(|e| e.starts_with("upstream: invalid type")));
}

/// A CA and a server certificate for 127.0.0.1 made with the openssl CLI.
fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).expect("dir");
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs (the TLS tests need the openssl CLI)");
        assert!(status.success(), "openssl {args:?}");
    };
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").expect("ext");
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=bastion test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=bastion",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.pem",
        "-days",
        "1",
        "-extfile",
        "client.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("srv.pem"), dir.join("srv.key"))
}

async fn tls_echo(cert: &std::path::Path, key: &std::path::Path) -> SocketAddr {
    tls_echo_with(cert, key, None).await
}

/// A TLS echo; with `client_ca` it requires a client certificate issued by it.
async fn tls_echo_with(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).expect("ca") {
                roots.add(c.expect("ca cert")).expect("root");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(certs, key).expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    serve_echo(tls).await;
                }
            });
        }
    });
    addr
}

fn https_target(addr: SocketAddr, profile: &str) -> Value {
    let mut t = target(addr);
    t["scheme"] = json!("https");
    t["key"] = json!(format!("https://{addr}|{profile}"));
    t
}

#[tokio::test]
async fn https_upstreams_are_verified_against_the_route_ca() {
    let dir = std::env::temp_dir().join(format!("bastion-upstream-tls-{}", std::process::id()));
    let (ca, cert, key) = certificates(&dir);
    let addr = tls_echo(&cert, &key).await;
    let ca_text = ca.display().to_string();
    let up = Upstream::from_section(&section(
        vec![https_target(addr, &format!("r:{ca_text}:None"))],
        json!({"tls": {"ca": ca_text}}),
    ))
    .expect("section");
    let echoed = json_of(up.send(get("/secure")).await.expect("verified")).await;
    assert_eq!(echoed["uri"], "/secure");
    assert_eq!(header(&echoed, "host"), vec![addr.to_string().as_str()]);
    json_of(up.send(get("/again")).await.expect("pooled")).await;
    assert_eq!(up.targets()[0].connections_opened(), 1);
    // The system store does not know the test CA: a TLS error, counted against health.
    let untrusted =
        Upstream::from_section(&section(vec![https_target(addr, "")], json!({}))).expect("section");
    let error = untrusted.send(get("/x")).await.expect_err("not trusted");
    assert_eq!(
        error.problem(),
        (
            502,
            "upstream_tls_error",
            "Upstream TLS error",
            "The TLS handshake with the upstream failed."
        )
    );
    assert_eq!(error.cause(), Some(Cause::Tls));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_read_timeout_starts_after_the_upload() {
    let addr = echo().await;
    let up = Upstream::from_section(&section(
        vec![target(addr)],
        json!({"read_timeout": 0.2, "timeout": 3.0}),
    ))
    .expect("section");
    // An upload slower than read_timeout (4 parts, 100 ms apart) still gets its answer.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        for part in ["a", "b", "c", "d"] {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tx.send(Bytes::from(part)).await;
        }
    });
    let response = up
        .send(request(
            Method::POST,
            "/upload",
            crate::http::boxed(Chunks(rx)),
        ))
        .await
        .expect("answered");
    assert_eq!(json_of(response).await["body"], "abcd");
    // The route's timeout still bounds it.
    let up = Upstream::from_section(&section(vec![target(addr)], json!({"timeout": 0.15})))
        .expect("section");
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let _ = tx.send(Bytes::from("late")).await;
    });
    let error = up
        .send(request(
            Method::POST,
            "/upload",
            crate::http::boxed(Chunks(rx)),
        ))
        .await
        .expect_err("route timeout");
    assert_eq!(error.note(), "the route's timeout (0.15 s) passed");
}

/// This thread's CPU time (user + system), from `/proc` (clock ticks).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 (11 and 12 after the command).
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Not a test: the proxy's own cost per request against a local echo, next to a
/// bare hyper `SendRequest` on one connection (`cargo nextest run --release
/// --run-ignored only bench_`): wall time and the thread's CPU time (the
/// current-thread runtime runs the echo server on the same thread, so both
/// include its work).
#[tokio::test]
#[ignore]
async fn bench_pooled_sequential_requests() {
    const N: u32 = 20_000;
    let addr = echo().await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    let cpu = thread_cpu();
    let start = std::time::Instant::now();
    for _ in 0..N {
        let response = up.send(get("/bench")).await.expect("sent");
        response.into_body().collect().await.expect("body");
    }
    let proxied = start.elapsed();
    let proxied_cpu = thread_cpu() - cpu;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut bare, conn) = hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(tcp))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let cpu = thread_cpu();
    let start = std::time::Instant::now();
    for _ in 0..N {
        bare.ready().await.expect("ready");
        let mut req = get("/bench");
        req.headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static("x"));
        let response = bare.send_request(req).await.expect("sent");
        response.into_body().collect().await.expect("body");
    }
    let direct = start.elapsed();
    let direct_cpu = thread_cpu() - cpu;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(N);
    println!(
        "upstream::send {:.1} us/req ({:.1} CPU), bare hyper {:.1} us/req ({:.1} CPU), opened {}",
        us(proxied),
        us(proxied_cpu),
        us(direct),
        us(direct_cpu),
        up.targets()[0].connections_opened()
    );
}

/// A request body whose client goes away after the first chunk.
struct Vanishing(bool);

impl http_body::Body for Vanishing {
    type Data = Bytes;
    type Error = crate::http::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.0 {
            return std::task::Poll::Ready(Some(Err("client went away".into())));
        }
        self.0 = true;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(
            b"part",
        )))))
    }
}

#[tokio::test]
async fn a_client_gone_mid_upload_is_not_the_upstream_s_fault() {
    let addr = echo().await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    let error = up
        .send(request(
            Method::POST,
            "/up",
            crate::http::boxed(Vanishing(false)),
        ))
        .await
        .expect_err("client gone");
    assert!(
        matches!(error, UpstreamError::ClientGone { .. }),
        "{error:?}"
    );
    assert_eq!(error.cause(), None);
    assert!(up.targets()[0]
        .health
        .lock()
        .map(|h| h.clean())
        .unwrap_or(false));
}

#[tokio::test]
async fn an_answer_before_the_upload_ended_does_not_pool_the_connection() {
    // Answers as soon as the head arrives, without reading the body.
    let addr = raw(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    // One part, then the body never ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from_static(b"part")).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    });
    let response = up
        .send(request(
            Method::POST,
            "/big",
            crate::http::boxed(Chunks(rx)),
        ))
        .await
        .expect("answered");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    drop(response);
    assert_eq!(up.targets()[0].idle_connections(), 0);
}

#[tokio::test]
async fn idle_connections_expire() {
    let addr = echo().await;
    let up = Upstream::from_section(&section(
        vec![target(addr)],
        json!({"pool": {"max_idle": 8, "idle_timeout": 0.1}}),
    ))
    .expect("section");
    json_of(up.send(get("/1")).await.expect("1")).await;
    json_of(up.send(get("/2")).await.expect("2")).await;
    assert_eq!(up.targets()[0].connections_opened(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    json_of(up.send(get("/3")).await.expect("3")).await;
    assert_eq!(up.targets()[0].connections_opened(), 2);
}

#[tokio::test]
async fn a_connection_close_answer_is_not_reused() {
    let addr = raw(|mut stream| async move {
        read_head(&mut stream).await;
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
            .await;
    })
    .await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    for _ in 0..2 {
        let response = up.send(get("/x")).await.expect("answered");
        assert_eq!(response.headers().get("connection"), None);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(&body[..], b"ok");
    }
    assert_eq!(up.targets()[0].connections_opened(), 2);
}

#[tokio::test]
async fn forward_is_mutate_then_send() {
    let addr = echo().await;
    let up = Upstream::from_section(&section(
        vec![target(addr)],
        json!({"strip_prefix": "/api"}),
    ))
    .expect("section");
    let mut req = request(Method::GET, "/API/../api//orders?q=1", full(Bytes::new()));
    req.headers_mut()
        .insert("host", HeaderValue::from_static("gw.example"));
    req.headers_mut()
        .insert("x-bastion-subject", HeaderValue::from_static("forged"));
    req.headers_mut()
        .insert("authorization", HeaderValue::from_static("Bearer bst_x"));
    let identity = crate::http::Identity {
        method: "api_key",
        subject: Some("key:k1".into()),
        key_id: Some("k1".into()),
        ..Default::default()
    };
    let info = crate::http::ConnInfo {
        peer: "198.51.100.4:5000".parse().expect("peer"),
        tls: true,
        client_certs: Vec::new(),
    };
    let consumed = [http::header::AUTHORIZATION];
    let ctx = crate::mutate::ForwardContext {
        conn: &info,
        trusted_peer: false,
        request_id: Some("rid-9"),
        consumed: &consumed,
        authority: None,
        assertion: None,
        identity_headers: None,
    };
    let response = up
        .forward(req, "/api/orders", Some(&identity), &ctx)
        .await
        .expect("sent");
    let echoed = json_of(response).await;
    assert_eq!(echoed["uri"], "/orders?q=1");
    let mut names: Vec<(&str, &str)> = echoed["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .filter_map(|h| Some((h[0].as_str()?, h[1].as_str()?)))
        .collect();
    names.sort_unstable();
    let host = addr.to_string();
    assert_eq!(
        names,
        vec![
            ("host", host.as_str()),
            ("x-bastion-key-id", "k1"),
            ("x-bastion-request-id", "rid-9"),
            ("x-bastion-subject", "key:k1"),
            ("x-forwarded-for", "198.51.100.4"),
            ("x-forwarded-host", "gw.example"),
            ("x-forwarded-proto", "https"),
            ("x-kept", "yes"),
        ]
    );
}

#[tokio::test]
async fn upstream_mtls_presents_the_route_client_certificate() {
    let dir = std::env::temp_dir().join(format!("bastion-upstream-mtls-{}", std::process::id()));
    let (ca, cert, key) = certificates(&dir);
    let addr = tls_echo_with(&cert, &key, Some(&ca)).await;
    let ca_text = ca.display().to_string();
    let client = dir.join("client.pem").display().to_string();
    let client_key = dir.join("client.key").display().to_string();
    let up = Upstream::from_section(&section(
        vec![https_target(addr, &format!("r:{ca_text}:{client}"))],
        json!({"tls": {"ca": ca_text, "client_cert": client, "client_key": client_key}}),
    ))
    .expect("section");
    let echoed = json_of(up.send(get("/mtls")).await.expect("accepted")).await;
    assert_eq!(echoed["uri"], "/mtls");
    // Without the client certificate the upstream refuses the connection.
    let bare = Upstream::from_section(&section(
        vec![https_target(addr, &format!("r:{ca_text}:None"))],
        json!({"tls": {"ca": ca_text}}),
    ))
    .expect("section");
    let error = bare.send(get("/mtls")).await.expect_err("refused");
    assert_eq!(error.problem().0, 502);
    // A key file that is not a key names both files.
    let broken = section(
        vec![https_target(addr, "broken")],
        json!({"tls": {"ca": null, "client_cert": client, "client_key": client}}),
    );
    let err = Upstream::from_section(&broken).err().unwrap_or_default();
    assert!(
        err.starts_with(&format!(
            "upstream_client_cert {client} / upstream_client_key {client} rejected"
        )),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_body_of_unknown_length_complete_in_one_part_is_sent_with_content_length() {
    let addr = echo().await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section");
    // Empty (a chunked request with only its last chunk): Content-Length 0 for POST.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    drop(tx);
    let echoed = json_of(
        up.send(request(Method::POST, "/p", crate::http::boxed(Chunks(rx))))
            .await
            .expect("sent"),
    )
    .await;
    assert_eq!(header(&echoed, "content-length"), vec!["0"]);
    assert_eq!(header(&echoed, "transfer-encoding"), Vec::<&str>::new());
    // One part, then the end: Content-Length.
    let echoed = json_of(
        up.send(request(
            Method::POST,
            "/p",
            crate::http::boxed(OnePart(Some(Bytes::from_static(b"hello")))),
        ))
        .await
        .expect("sent"),
    )
    .await;
    assert_eq!(header(&echoed, "content-length"), vec!["5"]);
    assert_eq!(echoed["body"], "hello");
}

/// A body of unknown length whose one frame ends it (HTTP/2 DATA with END_STREAM).
struct OnePart(Option<Bytes>);

impl http_body::Body for OnePart {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.take().map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

#[tokio::test]
async fn a_client_that_never_sends_its_body_meets_the_route_timeout() {
    let addr = echo().await;
    let up = Upstream::from_section(&section(vec![target(addr)], json!({"timeout": 0.1})))
        .expect("section");
    let (_tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let error = up
        .send(request(Method::POST, "/p", crate::http::boxed(Chunks(rx))))
        .await
        .expect_err("timeout");
    assert_eq!(error.problem().0, 504);
    assert_eq!(error.note(), "the route's timeout (0.1 s) passed");
    assert_eq!(up.targets()[0].connections_opened(), 0, "nothing was sent");
}

/// Not a test: 50 concurrent requesters through one `Upstream` on this
/// current-thread runtime (the front's shape) against an upstream outside the
/// process: `BASTION_BENCH_UPSTREAM=127.0.0.1:PORT cargo nextest run --release
/// --run-ignored only bench_concurrent --no-capture`.
#[tokio::test]
#[ignore]
async fn bench_concurrent_requests_to_an_outside_upstream() {
    const TASKS: u32 = 50;
    const EACH: u32 = 2_000;
    let Some(addr) = std::env::var("BASTION_BENCH_UPSTREAM")
        .ok()
        .and_then(|a| a.parse::<SocketAddr>().ok())
    else {
        return;
    };
    let up =
        Arc::new(Upstream::from_section(&section(vec![target(addr)], json!({}))).expect("section"));
    let cpu = thread_cpu();
    let start = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let up = up.clone();
        tasks.spawn(async move {
            for _ in 0..EACH {
                let response = up.send(get("/public")).await.expect("sent");
                response.into_body().collect().await.expect("body");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let n = f64::from(TASKS * EACH);
    let wall = start.elapsed().as_secs_f64();
    let cpu = (thread_cpu() - cpu).as_secs_f64();
    println!(
        "concurrent: {:.0} req/s, {:.1} us CPU/req, opened {}",
        n / wall,
        cpu * 1e6 / n,
        up.targets()[0].connections_opened()
    );
}
