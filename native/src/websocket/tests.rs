use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::hygiene::python_upgrades;

#[test]
fn websocket_accept_key_is_rfc_6455s_example() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

/// A frame as a client sends it (masked) or a server (not).
fn frame(opcode: u8, fin: bool, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![opcode | if fin { 0x80 } else { 0 }];
    let bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(n as u8 | bit),
        n if n < 65536 => {
            out.push(126 | bit);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127 | bit);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [1u8, 2, 3, 4];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

#[test]
fn websocket_frames_pass_unchanged_in_any_split() {
    let mut wire = frame(1, true, b"hello", true);
    wire.extend(frame(9, true, b"ping", true));
    wire.extend(frame(2, false, &[7u8; 300], true));
    wire.extend(frame(0, true, &[8u8; 70_000], true));
    for cut in [1, 2, 3, 7, 100, wire.len()] {
        let mut frames = Frames::new(true, 100_000);
        let mut out = BytesMut::new();
        let mut input = BytesMut::new();
        for part in wire.chunks(cut) {
            input.extend_from_slice(part);
            assert_eq!(frames.feed(&mut input, &mut out), Feed::More);
        }
        assert_eq!(&out[..], &wire[..], "cut {cut}");
        assert!(frames.between_frames());
    }
}

#[test]
fn websocket_message_over_the_limit_is_refused_before_forwarding() {
    let mut frames = Frames::new(false, 10);
    let mut out = BytesMut::new();
    let mut input = BytesMut::from(&frame(1, true, b"0123456789", false)[..]);
    assert_eq!(frames.feed(&mut input, &mut out), Feed::More);
    let forwarded = out.len();
    // Fragments add up: 6 + 5 > 10.
    input.extend_from_slice(&frame(2, false, b"abcdef", false));
    input.extend_from_slice(&frame(0, true, b"ghijk", false));
    assert_eq!(frames.feed(&mut input, &mut out), Feed::TooBig);
    assert_eq!(out.len(), forwarded + 8, "only the first fragment went");
}

#[test]
fn websocket_close_and_protocol_errors() {
    let mut frames = Frames::new(true, 10);
    let mut out = BytesMut::new();
    let mut input = BytesMut::from(&frame(8, true, b"\x0f\xa2bye", true)[..]);
    assert_eq!(
        frames.feed(&mut input, &mut out),
        Feed::Close(Bytes::from_static(b"\x0f\xa2bye"))
    );
    assert!(out.is_empty());
    // An unmasked client frame, a continuation out of a message, RSV bits.
    for bad in [frame(1, true, b"x", false), frame(0, true, b"x", true), {
        let mut f = frame(1, true, b"x", true);
        f[0] |= 0x40;
        f
    }] {
        let mut frames = Frames::new(true, 10);
        let mut input = BytesMut::from(&bad[..]);
        assert_eq!(frames.feed(&mut input, &mut out), Feed::Protocol);
    }
    assert_eq!(wire_code(Some(1005)), 1000);
    assert_eq!(wire_code(None), 1000);
    assert_eq!(wire_code(Some(4001)), 4001);
    assert_eq!(wire_code(Some(5000)), 1000);
}

fn policy(idle: u64) -> Policy {
    Policy {
        max_message_size: 16,
        idle_timeout: Duration::from_millis(idle),
        max_duration: Duration::from_secs(60),
    }
}

/// Read one whole frame: (opcode, payload unmasked).
async fn read_frame(s: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.expect("frame header");
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.expect("len");
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.expect("len");
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    if masked {
        s.read_exact(&mut key).await.expect("key");
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.expect("payload");
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i & 3];
        }
    }
    (h[0] & 0x0f, payload)
}

fn pair(idle: u64) -> (DuplexStream, DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, client_side) = tokio::io::duplex(1 << 16);
    let (upstream, upstream_side) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(relay(client_side, upstream_side, policy(idle)));
    (client, upstream, task)
}

#[tokio::test]
async fn websocket_relay_messages_both_ways_and_upstream_close_code() {
    let (mut client, mut upstream, task) = pair(5_000);
    client
        .write_all(&frame(1, true, b"hi", true))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut upstream).await, (1, b"hi".to_vec()));
    upstream
        .write_all(&frame(2, true, b"\x00yo", false))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut client).await, (2, b"\x00yo".to_vec()));
    // The upstream closes with 4001: the client gets it with the reason, the
    // upstream its echo.
    upstream
        .write_all(&frame(8, true, b"\x0f\xa1asked to", false))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut client).await,
        (8, b"\x0f\xa1asked to".to_vec())
    );
    assert_eq!(
        read_frame(&mut upstream).await,
        (8, b"\x0f\xa1asked to".to_vec())
    );
    drop(client);
    drop(upstream);
    task.await.unwrap();
}

#[tokio::test]
async fn websocket_relay_client_close_goes_upstream_without_reason() {
    let (mut client, mut upstream, task) = pair(5_000);
    client
        .write_all(&frame(8, true, b"\x0f\xa2why", true))
        .await
        .unwrap();
    assert_eq!(read_frame(&mut client).await, (8, b"\x0f\xa2why".to_vec()));
    assert_eq!(read_frame(&mut upstream).await, (8, b"\x0f\xa2".to_vec()));
    drop(client);
    drop(upstream);
    task.await.unwrap();
}

#[tokio::test]
async fn websocket_relay_too_big_and_idle() {
    let (mut client, mut upstream, task) = pair(5_000);
    client
        .write_all(&frame(2, true, &[1u8; 17], true))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut client).await,
        (8, b"\x03\xf1message too big".to_vec())
    );
    assert_eq!(read_frame(&mut upstream).await, (8, b"\x03\xe9".to_vec()));
    drop(client);
    drop(upstream);
    task.await.unwrap();

    let (mut client, mut upstream, task) = pair(5_000);
    upstream
        .write_all(&frame(1, true, &[b'a'; 17], false))
        .await
        .unwrap();
    assert_eq!(
        read_frame(&mut client).await,
        (8, b"\x03\xf1message too big".to_vec())
    );
    assert_eq!(read_frame(&mut upstream).await, (8, b"\x03\xf1".to_vec()));
    drop(client);
    drop(upstream);
    task.await.unwrap();

    let (mut client, mut upstream, task) = pair(150);
    client.write_all(&frame(1, true, b"a", true)).await.unwrap();
    assert_eq!(read_frame(&mut upstream).await, (1, b"a".to_vec()));
    assert_eq!(
        read_frame(&mut client).await,
        (8, b"\x03\xe9idle timeout".to_vec())
    );
    assert_eq!(read_frame(&mut upstream).await, (8, b"\x03\xe8".to_vec()));
    drop(client);
    drop(upstream);
    task.await.unwrap();
}

#[tokio::test]
async fn websocket_relay_upstream_vanishing_is_1011() {
    let (mut client, upstream, task) = pair(5_000);
    drop(upstream);
    assert_eq!(read_frame(&mut client).await, (8, b"\x03\xf3".to_vec()));
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn websocket_relay_max_duration_is_1001() {
    let (client, client_side) = tokio::io::duplex(1 << 16);
    let (upstream, upstream_side) = tokio::io::duplex(1 << 16);
    let (mut client, mut upstream) = (client, upstream);
    let limits = Policy {
        max_message_size: 16,
        idle_timeout: Duration::from_secs(60),
        max_duration: Duration::from_millis(300),
    };
    let task = tokio::spawn(relay(client_side, upstream_side, limits));
    // Activity does not extend a connection's life.
    for _ in 0..4 {
        client.write_all(&frame(1, true, b"a", true)).await.unwrap();
        assert_eq!(read_frame(&mut upstream).await, (1, b"a".to_vec()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        read_frame(&mut client).await,
        (8, b"\x03\xe9maximum duration reached".to_vec())
    );
    assert_eq!(read_frame(&mut upstream).await, (8, b"\x03\xe8".to_vec()));
    drop(client);
    drop(upstream);
    task.await.unwrap();
}

/// Attacks on the frame reader: an unmasked client frame, a length with the
/// top bit set, a huge length within a fragmented message: 1002 both ways (or
/// 1009), nothing forwarded.
#[tokio::test]
async fn websocket_relay_refuses_malformed_frames_without_forwarding() {
    let mut huge = vec![0x82, 0xff];
    huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
    huge.extend_from_slice(&[0, 0, 0, 0]);
    for (bad, to_client) in [
        (frame(1, true, b"x", false), b"\x03\xea".to_vec()),
        (huge, b"\x03\xea".to_vec()),
        (frame(0, true, b"x", true), b"\x03\xea".to_vec()),
        (frame(9, false, b"x", true), b"\x03\xea".to_vec()),
        (
            frame(2, true, &[0u8; 70_000], true),
            b"\x03\xf1message too big".to_vec(),
        ),
    ] {
        let (mut client, mut upstream, task) = pair(5_000);
        client.write_all(&bad).await.unwrap();
        assert_eq!(read_frame(&mut client).await, (8, to_client));
        let (opcode, _) = read_frame(&mut upstream).await;
        assert_eq!(opcode, 8, "only a close frame reaches the upstream");
        drop(client);
        drop(upstream);
        task.await.unwrap();
    }
}

fn upgrade_request(method: &str, version: Version, pairs: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::builder()
        .method(method)
        .uri("/live")
        .version(version);
    for (name, value) in pairs {
        // From bytes: a value outside visible ASCII (obs-text) is a field too.
        let value = http::HeaderValue::from_bytes(value.as_bytes()).expect("field value");
        builder = builder.header(*name, value);
    }
    builder.body(()).expect("request")
}

const PLAIN: [(&str, &str); 4] = [
    ("upgrade", "websocket"),
    ("connection", "Upgrade"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("sec-websocket-version", "13"),
];

fn with(changes: &[(&str, Option<&str>)]) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = PLAIN
        .iter()
        .filter(|(name, _)| !changes.iter().any(|(n, _)| n == name))
        .map(|(n, v)| (*n, (*v).to_owned()))
        .collect();
    for (name, value) in changes {
        if let (Some(known), Some(value)) = (PLAIN.iter().find(|(n, _)| n == name), value) {
            out.push((known.0, (*value).to_owned()));
        }
    }
    out
}

#[test]
fn websocket_python_upgrades_as_uvicorn_reads_the_head() {
    let reads = |pairs: &[(&str, &str)]| {
        python_upgrades(upgrade_request("GET", Version::HTTP_11, pairs).headers())
    };
    assert!(reads(&PLAIN));
    assert!(reads(&[
        ("connection", "keep-alive, UPGRADE"),
        ("upgrade", " WebSocket ")
    ]));
    // The last field of each decides (uvicorn keeps the last it reads).
    assert!(reads(&[
        ("upgrade", "h2c"),
        ("upgrade", "websocket"),
        ("connection", "upgrade")
    ]));
    assert!(!reads(&[
        ("upgrade", "websocket"),
        ("upgrade", "h2c"),
        ("connection", "upgrade")
    ]));
    assert!(!reads(&[
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("connection", "close")
    ]));
    // Another protocol, a list, or no `Connection: upgrade`: a plain request to Python.
    assert!(!reads(&[
        ("upgrade", "h2c"),
        ("connection", "Upgrade, HTTP2-Settings")
    ]));
    assert!(!reads(&[
        ("upgrade", "websocket, h2c"),
        ("connection", "upgrade")
    ]));
    assert!(!reads(&[("upgrade", "websocket")]));
    assert!(!reads(&[("connection", "upgrade")]));
}

#[test]
fn websocket_refusals_are_websockets_in_its_order() {
    let refusal = |method: &str, pairs: &[(&str, String)], empty: bool| {
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let req = upgrade_request(method, Version::HTTP_11, &pairs);
        refused(&req, empty).map(|p| {
            let extra: Vec<_> = p
                .headers
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                .collect();
            (p.status.as_u16(), p.code, p.detail, extra)
        })
    };
    let bad = |status: u16, detail: &str| {
        Some((
            status,
            "invalid_websocket_handshake",
            detail.to_owned(),
            Vec::<String>::new(),
        ))
    };
    assert_eq!(refusal("GET", &with(&[]), true), None);
    assert_eq!(
        refusal("GET", &with(&[("sec-websocket-key", None)]), true),
        bad(400, "missing Sec-WebSocket-Key header.")
    );
    assert_eq!(
        refusal("GET", &with(&[("sec-websocket-key", Some("short"))]), true),
        bad(400, "invalid Sec-WebSocket-Key header: short.")
    );
    assert_eq!(
        refusal("GET", &with(&[("sec-websocket-key", Some(""))]), true),
        bad(400, "empty Sec-WebSocket-Key header.")
    );
    // 15 bytes of key: valid base64, the wrong length.
    assert_eq!(
        refusal(
            "GET",
            &with(&[("sec-websocket-key", Some("AAAAAAAAAAAAAAAAAAAA"))]),
            true
        ),
        bad(
            400,
            "invalid Sec-WebSocket-Key header: AAAAAAAAAAAAAAAAAAAA."
        )
    );
    let mut two_keys = with(&[]);
    two_keys.push(("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".into()));
    assert_eq!(
        refusal("GET", &two_keys, true),
        bad(400, "invalid Sec-WebSocket-Key header: multiple values.")
    );
    assert_eq!(
        refusal("GET", &with(&[("sec-websocket-version", Some("8"))]), true),
        bad(400, "invalid Sec-WebSocket-Version header: 8.")
    );
    assert_eq!(
        refusal("GET", &with(&[("sec-websocket-version", None)]), true),
        bad(400, "missing Sec-WebSocket-Version header.")
    );
    // The method before the key; a body before everything.
    assert_eq!(
        refusal("POST", &with(&[("sec-websocket-key", None)]), true),
        Some((
            405,
            "invalid_websocket_handshake",
            "unsupported HTTP method: POST.".into(),
            vec!["allow: GET".into()]
        ))
    );
    assert_eq!(
        refusal("POST", &with(&[]), false),
        bad(400, "A WebSocket handshake cannot carry a body.")
    );
    let mut length = with(&[]);
    length.push(("content-length", "5".into()));
    assert_eq!(refusal("GET", &length, true).map(|r| r.0), Some(400));
    length.pop();
    length.push(("content-length", "0".into()));
    assert_eq!(refusal("GET", &length, true), None);
    // Two Upgrade fields, the last `websocket` (uvicorn hands it over): 426.
    let mut two = with(&[]);
    two.insert(0, ("upgrade", "h2c".into()));
    assert_eq!(
        refusal("GET", &two, true),
        Some((
            426,
            "invalid_websocket_handshake",
            "invalid Upgrade header: h2c, websocket.".into(),
            vec!["upgrade: websocket".into()]
        ))
    );
    // `websocket` beside an empty field (`websockets` would join them): not RFC
    // 6455's one field, refused rather than handed to the app.
    for empty in ["", ","] {
        let mut split = with(&[]);
        split.insert(0, ("upgrade", empty.into()));
        assert_eq!(
            refusal("GET", &split, true),
            bad(
                400,
                "invalid Upgrade header: 2 fields; send one Upgrade: websocket."
            )
        );
    }
    // Fields that are not visible ASCII: quoted escaped, refused as malformed ones.
    let mut obs = with(&[]);
    obs.insert(0, ("upgrade", "é".into()));
    assert_eq!(
        refusal("GET", &obs, true).map(|r| (r.0, r.2)),
        Some((426, "invalid Upgrade header: \\xc3\\xa9, websocket.".into()))
    );
    assert_eq!(
        refusal("GET", &with(&[("sec-websocket-key", Some("é"))]), true),
        bad(400, "invalid Sec-WebSocket-Key header: \\xc3\\xa9.")
    );
    assert_eq!(
        refusal("GET", &with(&[("sec-websocket-version", Some("1é"))]), true),
        bad(400, "invalid Sec-WebSocket-Version header: 1\\xc3\\xa9.")
    );
    // HTTP/1.0: RFC 6455 §4.1 requires HTTP/1.1 (§4.2.1: a 400), before the
    // method, the fields or a body are looked at.
    let pairs: Vec<(&str, &str)> = PLAIN.to_vec();
    for (method, empty) in [("GET", true), ("POST", false)] {
        let old = upgrade_request(method, Version::HTTP_10, &pairs[1..]);
        let problem = refused(&old, empty).expect("refused");
        assert_eq!(problem.status.as_u16(), 400);
        assert_eq!(problem.code, "invalid_websocket_handshake");
        assert_eq!(
            problem.detail,
            "unsupported protocol; expected HTTP/1.1: HTTP/1.0."
        );
    }
}
