//! Minimal single-core reverse proxy spike (tokio current_thread + hyper 1.x).
//!
//! Usage: native-spike LISTEN_PORT UPSTREAM_PORT [--keycheck]
//!
//! Forwards every request to http://127.0.0.1:UPSTREAM_PORT through a pooled
//! keep-alive hyper-util legacy client (HTTP/1.1), streaming bodies both ways,
//! copying status and headers, dropping hop-by-hop headers and appending
//! X-Forwarded-For. With --keycheck, each request must carry an `authorization`
//! header whose value is one of 10,000 preloaded keys (`key-00000`..`key-09999`),
//! otherwise a 401 JSON answer is returned without touching the upstream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type Body = Either<Incoming, Full<Bytes>>;
type HttpClient = Client<HttpConnector, Incoming>;

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");

struct State {
    client: HttpClient,
    authority: hyper::http::uri::Authority,
    /// API key -> tenant id; None when the key check is off.
    keys: Option<HashMap<Vec<u8>, u32>>,
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
}

fn simple(status: StatusCode, ctype: &'static str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(body.as_bytes()))));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

async fn handle(
    st: Arc<State>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if let Some(keys) = &st.keys {
        let ok = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| keys.contains_key(v.as_bytes()))
            .unwrap_or(false);
        if !ok {
            return Ok(simple(
                StatusCode::UNAUTHORIZED,
                "application/json",
                "{\"error\":\"unauthorized\"}",
            ));
        }
    }

    // Rewrite the target to the upstream.
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme("http")
        .authority(st.authority.clone())
        .path_and_query(pq)
        .build()
        .expect("valid upstream uri");
    *req.uri_mut() = uri;
    *req.version_mut() = hyper::Version::HTTP_11;

    let h = req.headers_mut();
    strip_hop_by_hop(h);
    let ip = peer.ip().to_string();
    let xff = match h.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(XFF.clone(), v);
    }

    match st.client.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, Either::Left(body)))
        }
        Err(_) => Ok(simple(
            StatusCode::BAD_GATEWAY,
            "application/json",
            "{\"error\":\"bad gateway\"}",
        )),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: {} LISTEN_PORT UPSTREAM_PORT [--keycheck]", args[0]);
        std::process::exit(2);
    }
    let port: u16 = args[1].parse().expect("listen port");
    let upport: u16 = args[2].parse().expect("upstream port");
    let keycheck = args.iter().skip(3).any(|a| a == "--keycheck");

    let keys = keycheck.then(|| {
        (0..10_000u32)
            .map(|i| (format!("key-{i:05}").into_bytes(), i))
            .collect::<HashMap<_, _>>()
    });

    let mut conn = HttpConnector::new();
    conn.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(conn);

    let st = Arc::new(State {
        client,
        authority: format!("127.0.0.1:{upport}").parse().expect("authority"),
        keys,
    });

    // One core: a current-thread runtime, like a single nginx worker.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        eprintln!(
            "native-spike listening on 127.0.0.1:{port} -> 127.0.0.1:{upport} keycheck={keycheck}"
        );
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(_) => continue,
            };
            let _ = stream.set_nodelay(true);
            let st = st.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(st.clone(), peer, req));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
