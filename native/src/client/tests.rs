//! The client's framing rules (every refusal), the chunked decoder at every
//! split of its input, and the pool's reuse rules over in-memory streams.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use http_body_util::BodyExt;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::decode::{Decoder, Framing, Malformed};
use super::head::{self, BodyFraming, FramingFields, Parsed, Refused};
use super::*;
use crate::http::full;

fn parse_with(raw: &str, method: &Method, upgrade: bool) -> Result<Parsed, Refused> {
    let mut buf = BytesMut::from(raw.as_bytes());
    head::parse(&mut buf, method, upgrade, head::MAX_HEAD)
}

fn final_head(raw: &str) -> Result<head::Head, Refused> {
    match parse_with(raw, &Method::GET, false)? {
        Parsed::Final(head) => Ok(head),
        other => panic!("not a final head: {other:?}"),
    }
}

fn framing_of(raw: &str) -> Result<Framing, Refused> {
    final_head(raw).map(|h| h.framing)
}

#[test]
fn framing_is_content_length_chunked_or_close() {
    let ok = |raw: &str| framing_of(raw).expect(raw);
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
        Framing::Length(5)
    );
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        Framing::Empty
    );
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"),
        Framing::Length(5)
    );
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n"),
        Framing::Length(5)
    );
    assert_eq!(
        ok("HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked \r\n\r\n"),
        Framing::Chunked
    );
    assert_eq!(ok("HTTP/1.1 200 OK\r\n\r\n"), Framing::Close);
    assert_eq!(ok("HTTP/1.1 204 No Content\r\n\r\n"), Framing::Empty);
    assert_eq!(
        ok("HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n"),
        Framing::Empty
    );
    let head = parse_with(
        "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
        &Method::HEAD,
        false,
    );
    assert!(matches!(head, Ok(Parsed::Final(h)) if h.framing == Framing::Empty));
}

#[test]
fn ambiguous_framing_is_refused() {
    for raw in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5, 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5a\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 5,\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\n\r\n",
        "HTTP/1.1 200 OK\r\ntransfer-encoding: xchunked\r\n\r\n",
        "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
        // Refused even where no body follows: the upstream is not trustworthy.
        "HTTP/1.1 204 No Content\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
    ] {
        assert!(framing_of(raw).is_err(), "{raw:?} accepted");
    }
}

#[test]
fn malformed_heads_are_refused() {
    for raw in [
        // obs-fold
        "HTTP/1.1 200 OK\r\nx-a: 1\r\n  folded\r\ncontent-length: 0\r\n\r\n",
        // whitespace before the colon
        "HTTP/1.1 200 OK\r\ncontent-length : 0\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/2.0 200 OK\r\n\r\n",
        "NOT HTTP AT ALL\r\n\r\n",
        "HTTP/1.1 200 OK\r\nx-a: a\rb\r\n\r\n",
    ] {
        assert!(
            parse_with(raw, &Method::GET, false).is_err(),
            "{raw:?} accepted"
        );
    }
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=head::MAX_HEADERS {
        many.push_str(&format!("x-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(
        parse_with(&many, &Method::GET, false).err(),
        Some(Refused("too many header fields"))
    );
}

#[test]
fn a_head_too_large_is_refused_even_when_it_arrives_whole() {
    // Python's limit: the bytes of the names and values (64 KiB), not the line breaks.
    let field = |n: usize| format!("x-big: {}\r\n", "a".repeat(n));
    let at_limit = format!(
        "HTTP/1.1 200 OK\r\n{}content-length: 0\r\n\r\n",
        field(head::UPSTREAM_FIELD_BYTES - "x-big".len() - "content-length0".len())
    );
    let mut buf = BytesMut::from(at_limit.as_bytes());
    assert!(matches!(
        head::parse(&mut buf, &Method::GET, false, head::UPSTREAM_FIELD_BYTES),
        Ok(Parsed::Final(_))
    ));
    let over = at_limit.replacen("x-big: ", "x-big: a", 1);
    let mut buf = BytesMut::from(over.as_bytes());
    assert_eq!(
        head::parse(&mut buf, &Method::GET, false, head::UPSTREAM_FIELD_BYTES).err(),
        Some(Refused("the response head is too large"))
    );
    // Whatever the field limit, a head over MAX_HEAD that arrived whole.
    let whole = format!("HTTP/1.1 200 OK\r\n{}\r\n", field(head::MAX_HEAD));
    let mut buf = BytesMut::from(whole.as_bytes());
    assert_eq!(
        head::parse(&mut buf, &Method::GET, false, usize::MAX).err(),
        Some(Refused("the response head is too large"))
    );
}

#[test]
fn interim_responses_are_skipped_and_101_needs_an_upgrade() {
    let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"[..]);
    assert!(matches!(
        head::parse(&mut buf, &Method::GET, false, head::MAX_HEAD),
        Ok(Parsed::Interim(25))
    ));
    assert!(matches!(
        head::parse(&mut buf, &Method::GET, false, head::MAX_HEAD),
        Ok(Parsed::Final(h)) if h.status == StatusCode::OK
    ));
    let switching = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n";
    assert!(parse_with(switching, &Method::GET, false).is_err());
    assert!(matches!(
        parse_with(switching, &Method::GET, true),
        Ok(Parsed::Switching(_))
    ));
    assert!(matches!(
        parse_with(
            "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n",
            &Method::GET,
            false
        ),
        Ok(Parsed::Interim(_))
    ));
    assert!(matches!(
        parse_with("HTTP/1.1 200 OK\r\ncontent-le", &Method::GET, false),
        Ok(Parsed::Partial)
    ));
}

#[test]
fn keep_alive_needs_http11_without_close() {
    let keep = |raw: &str| final_head(raw).expect(raw).keep_alive;
    assert!(keep("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
    assert!(!keep(
        "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n"
    ));
    assert!(!keep(
        "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
    ));
    let head = final_head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").expect("1.0");
    assert_eq!(head.version, Version::HTTP_10);
}

#[test]
fn request_heads_are_one_buffer_with_their_framing() {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("client.example"));
    headers.insert("content-length", HeaderValue::from_static("99"));
    headers.insert("transfer-encoding", HeaderValue::from_static("chunked"));
    headers.append("x-a", HeaderValue::from_static("1"));
    headers.append("x-a", HeaderValue::from_static("2"));
    let host = HeaderValue::from_static("up:8080");
    let out = head::encode(
        &Method::POST,
        "/p?q",
        Some(&host),
        &headers,
        BodyFraming::Length(5),
        FramingFields::Ours,
        false,
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "POST /p?q HTTP/1.1\r\nhost: up:8080\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n\r\n"
    );
    // The hop to Python keeps an HTTP/1.0 client's version (Python's hygiene judges it).
    let out = head::encode(
        &Method::GET,
        "/",
        None,
        &HeaderMap::new(),
        BodyFraming::None,
        FramingFields::Theirs,
        true,
    );
    assert_eq!(String::from_utf8_lossy(&out), "GET / HTTP/1.0\r\n\r\n");
    for n in [0, 7, 10, 1_234_567, u64::MAX] {
        let out = head::encode(
            &Method::PUT,
            "/",
            None,
            &HeaderMap::new(),
            BodyFraming::Length(n),
            FramingFields::Ours,
            false,
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("PUT / HTTP/1.1\r\ncontent-length: {n}\r\n\r\n")
        );
    }
    let out = head::encode(
        &Method::GET,
        "/",
        None,
        &headers,
        BodyFraming::Chunked,
        FramingFields::Ours,
        false,
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        "GET / HTTP/1.1\r\nhost: client.example\r\nx-a: 1\r\nx-a: 2\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}

/// Decode `input` fed in pieces cut at `cuts`: the data, or the refusal.
fn decode_split(framing: Framing, input: &[u8], cuts: &[usize]) -> Result<Vec<u8>, Malformed> {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c < input.len()).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        buf.extend_from_slice(&input[start..end.max(start)]);
        start = end.max(start);
        while let Some(data) = decoder.decode(&mut buf)? {
            out.extend_from_slice(&data);
        }
    }
    if !decoder.is_done() {
        decoder.eof()?;
    }
    Ok(out)
}

fn chunked(input: &str) -> Result<Vec<u8>, Malformed> {
    decode_split(Framing::Chunked, input.as_bytes(), &[])
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let body = "5;name=value;quoted=\"a \\\" b\" ; flag\r\nhello\r\n\
                6\r\n world\r\n\
                0;last\r\nx-trailer: 1\r\nother:two words\r\n\r\n";
    assert_eq!(chunked(body).expect("valid"), b"hello world");
    assert_eq!(
        chunked("A\r\n0123456789\r\n0\r\n\r\n").expect("hex"),
        b"0123456789"
    );
    assert_eq!(chunked("0\r\n\r\n").expect("empty"), b"");
}

#[test]
fn malformed_chunked_bodies_are_refused() {
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "10000000000000000\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhelloXX0\r\n\r\n",
        "5 5\r\nhello\r\n0\r\n\r\n",
        "5;\r\nhello\r\n0\r\n\r\n",
        "5;=v\r\nhello\r\n0\r\n\r\n",
        "5;a=\r\nhello\r\n0\r\n\r\n",
        "5;a=\"open\r\nhello\r\n0\r\n\r\n",
        "5;a b\r\nhello\r\n0\r\n\r\n",
        "5;a=b c\r\nhello\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\n folded: x\r\n\r\n",
        "5\r\nhello\r\n0\r\nno colon\r\n\r\n",
        "5\r\nhello\r\n0\r\n: empty name\r\n\r\n",
        "5\r\nhello\r\n0\r\nx: a\x01b\r\n\r\n",
        "5\r\nhello\r\n0\r\n\n",
        // Cut short: the body never ended.
        "5\r\nhel",
        "5\r\nhello\r\n",
        "5\r\nhello\r\n0\r\n",
    ] {
        assert!(chunked(body).is_err(), "{body:?} accepted");
    }
    let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "a".repeat(5000));
    assert_eq!(chunked(&long), Err(Malformed("chunk-size line too long")));
    let many: String = (0..5)
        .map(|_| format!("1;{}\r\nx\r\n", "e".repeat(4000)))
        .collect();
    assert_eq!(
        chunked(&format!("{many}0\r\n\r\n")),
        Err(Malformed("too many chunk extensions"))
    );
    let trailers: String = (0..300)
        .map(|i| format!("x-{i}: {}\r\n", "v".repeat(60)))
        .collect();
    assert_eq!(
        chunked(&format!("0\r\n{trailers}\r\n")),
        Err(Malformed("trailers too large"))
    );
}

#[test]
fn lengths_and_close_delimited_bodies() {
    assert_eq!(
        decode_split(Framing::Length(5), b"hello", &[1, 3]).expect("length"),
        b"hello"
    );
    assert!(decode_split(Framing::Length(5), b"hel", &[]).is_err());
    assert_eq!(
        decode_split(Framing::Close, b"until the end", &[4]).expect("close"),
        b"until the end"
    );
    // Bytes past the length stay in the buffer (the pool then refuses the connection).
    let mut decoder = Decoder::new(Framing::Length(2));
    let mut buf = BytesMut::from(&b"okHTTP/1.1"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Bytes::from_static(b"ok")))
    );
    assert!(decoder.is_done());
    assert_eq!(&buf[..], b"HTTP/1.1");
}

#[test]
fn the_end_of_a_chunked_body_is_seen_with_its_last_data() {
    let mut decoder = Decoder::new(Framing::Chunked);
    let mut buf = BytesMut::from(&b"2\r\nok\r\n0\r\n\r\n"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Bytes::from_static(b"ok")))
    );
    assert!(!decoder.is_done());
    assert_eq!(decoder.settle(&mut buf), Ok(()));
    assert!(decoder.is_done());
    assert!(buf.is_empty());
}

/// A chunked encoding of `parts`, with an extension and a trailer.
fn encode_chunked(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts.iter().filter(|p| !p.is_empty()) {
        out.extend_from_slice(format!("{:X};e=\"v\"\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nx-t: 1\r\n\r\n");
    out
}

proptest! {
    #[test]
    fn chunked_decodes_the_same_at_every_split(
        parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
        cuts in proptest::collection::vec(0usize..400, 0..12),
    ) {
        let input = encode_chunked(&parts);
        let expected: Vec<u8> = parts.concat();
        prop_assert_eq!(decode_split(Framing::Chunked, &input, &cuts), Ok(expected));
    }
}

#[test]
fn chunked_decodes_the_same_split_at_every_byte() {
    let input = encode_chunked(&[b"hello".to_vec(), vec![0u8; 17], b"\r\n0\r\n".to_vec()]);
    let expected = [&b"hello"[..], &[0u8; 17], b"\r\n0\r\n"].concat();
    for cut in 0..=input.len() {
        assert_eq!(
            decode_split(Framing::Chunked, &input, &[cut]),
            Ok(expected.clone()),
            "cut at {cut}"
        );
    }
    let every: Vec<usize> = (0..input.len()).collect();
    assert_eq!(decode_split(Framing::Chunked, &input, &every), Ok(expected));
}

// ---- exchanges over in-memory streams ----

fn get_expect() -> Expect {
    Expect {
        method: Method::GET,
        upgrade: false,
        keep_alive: true,
        field_limit: head::UPSTREAM_FIELD_BYTES,
    }
}

fn get_upload() -> Upload {
    let head = head::encode(
        &Method::GET,
        "/",
        None,
        &HeaderMap::new(),
        BodyFraming::None,
        FramingFields::Ours,
        false,
    );
    Upload::new(Bytes::from(head), full(Bytes::new()), BodyFraming::None)
}

/// One exchange on a fresh in-memory connection whose peer writes `answer`
/// after reading the request head; the peer's end is returned to go on.
async fn exchange_with(
    answer: &'static [u8],
    pool: &Arc<Pool<DuplexStream>>,
) -> (Result<Answer<DuplexStream>, Failed>, DuplexStream) {
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let exchange = Exchange::new(
        Conn::new(ours),
        get_upload(),
        get_expect(),
        Some(pool.clone()),
    );
    let peer = async {
        let mut head = [0u8; 64];
        let _ = theirs.read(&mut head).await;
        let _ = theirs.write_all(answer).await;
    };
    let (outcome, ()) = tokio::join!(exchange, peer);
    (outcome, theirs)
}

async fn body_of(answer: Answer<DuplexStream>) -> Result<Bytes, Error> {
    match answer {
        Answer::Response(_, body) => body.collect().await.map(|c| c.to_bytes()),
        Answer::Switched(..) => panic!("switched"),
    }
}

#[tokio::test]
async fn a_clean_keep_alive_exchange_is_pooled_and_reused() {
    let pool = Arc::new(Pool::new(4, None));
    let (outcome, _peer) =
        exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", &pool).await;
    let body = body_of(outcome.ok().expect("answered"))
        .await
        .expect("body");
    assert_eq!(&body[..], b"ok");
    assert_eq!(pool.len(), 1);
    assert!(pool.take().await.is_some());
    // A chunked body read to its end, a 100 Continue skipped first.
    let (outcome, _peer) = exchange_with(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        &pool,
    )
    .await;
    let body = body_of(outcome.ok().expect("answered"))
        .await
        .expect("body");
    assert_eq!(&body[..], b"ok");
    assert_eq!(pool.len(), 1);
}

#[tokio::test]
async fn connections_that_cannot_be_trusted_are_not_pooled() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"[..],
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
        // Pipelined garbage after the response.
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\nstray",
    ] {
        let pool = Arc::new(Pool::new(4, None));
        let (outcome, _peer) = exchange_with(answer, &pool).await;
        let body = body_of(outcome.ok().expect("answered")).await;
        assert!(body.is_ok(), "{answer:?}");
        assert_eq!(pool.len(), 0, "{:?}", String::from_utf8_lossy(answer));
    }
    // Close-delimited: read to the close, never pooled.
    let pool = Arc::new(Pool::new(4, None));
    let (outcome, peer) = exchange_with(b"HTTP/1.1 200 OK\r\n\r\nuntil close", &pool).await;
    drop(peer);
    let body = body_of(outcome.ok().expect("answered"))
        .await
        .expect("body");
    assert_eq!(&body[..], b"until close");
    assert_eq!(pool.len(), 0);
}

#[tokio::test]
async fn a_pooled_connection_with_late_bytes_or_closed_is_not_handed_out() {
    let pool = Arc::new(Pool::new(4, None));
    let (outcome, mut late) =
        exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", &pool).await;
    body_of(outcome.ok().expect("answered"))
        .await
        .expect("body");
    let (outcome, closed) =
        exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", &pool).await;
    body_of(outcome.ok().expect("answered"))
        .await
        .expect("body");
    assert_eq!(pool.len(), 2);
    late.write_all(b"HTTP/1.1 200 OK\r\n\r\n")
        .await
        .expect("late");
    drop(closed);
    assert!(pool.take().await.is_none());
    assert_eq!(pool.len(), 0);
}

#[tokio::test]
async fn idle_connections_expire_and_max_idle_bounds_the_pool() {
    let pool = Arc::new(Pool::new(1, Some(Duration::from_millis(50))));
    let mut peers = Vec::new();
    for _ in 0..2 {
        let (outcome, peer) =
            exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", &pool).await;
        body_of(outcome.ok().expect("answered"))
            .await
            .expect("body");
        peers.push(peer);
    }
    assert_eq!(pool.len(), 1);
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(pool.take().await.is_none());
}

#[tokio::test]
async fn refused_responses_fail_the_exchange_and_the_body() {
    let pool = Arc::new(Pool::new(4, None));
    let (outcome, _peer) = exchange_with(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\nok",
        &pool,
    )
    .await;
    let failed = outcome.err().expect("refused");
    assert!(matches!(failed.error, Error::Invalid(_)));
    assert!(failed.answered);
    let (outcome, _peer) = exchange_with(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokXX",
        &pool,
    )
    .await;
    let error = body_of(outcome.ok().expect("head"))
        .await
        .expect_err("bad chunk");
    assert!(matches!(error, Error::Invalid(_)), "{error}");
    assert_eq!(pool.len(), 0);
}

/// An exchange whose peer answers with `prefix`, then `chunk` over and over
/// (past the head bound): how it failed.
async fn flooded(prefix: &'static [u8], chunk: Vec<u8>) -> Error {
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let exchange = Exchange::new(Conn::new(ours), get_upload(), get_expect(), None);
    let peer = async move {
        let mut head = [0u8; 64];
        let _ = theirs.read(&mut head).await;
        let _ = theirs.write_all(prefix).await;
        for _ in 0..(head::MAX_HEAD / chunk.len() + 2) {
            if theirs.write_all(&chunk).await.is_err() {
                break;
            }
        }
        theirs
    };
    let (outcome, _theirs) = tokio::join!(exchange, peer);
    outcome.err().expect("refused").error
}

#[tokio::test]
async fn a_head_over_the_bound_is_refused() {
    let line = format!("x-big: {}\r\n", "v".repeat(40_000));
    let error = flooded(b"HTTP/1.1 200 OK\r\n", line.into_bytes()).await;
    assert!(
        matches!(error, Error::Invalid("the response head is too large")),
        "{error}"
    );
}

#[tokio::test]
async fn a_closed_connection_before_any_answer_gives_the_request_back_only_if_unwritten() {
    // Written, then closed unanswered: not given back, nothing answered.
    let pool = Arc::new(Pool::new(4, None));
    let (ours, theirs) = tokio::io::duplex(1024);
    let exchange = Exchange::new(Conn::new(ours), get_upload(), get_expect(), Some(pool));
    let peer = async move {
        let mut theirs = theirs;
        let mut head = [0u8; 64];
        let _ = theirs.read(&mut head).await;
    };
    let (outcome, ()) = tokio::join!(exchange, peer);
    let failed = outcome.err().expect("closed");
    assert!(failed.error.is_closed());
    assert!(!failed.answered);
    assert!(failed.unsent.is_none());
    // Closed before the head could be written: the request comes back whole.
    let (ours, theirs) = tokio::io::duplex(1024);
    drop(theirs);
    let outcome = Exchange::new(Conn::new(ours), get_upload(), get_expect(), None).await;
    let failed = outcome.err().expect("closed");
    assert!(failed.unsent.is_some());
}

#[tokio::test]
async fn request_bodies_are_framed_and_checked_against_their_length() {
    // Chunked: each part framed, then the last chunk.
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body = crate::http::boxed(Chunks(rx));
    let head = head::encode(
        &Method::POST,
        "/",
        None,
        &HeaderMap::new(),
        BodyFraming::Chunked,
        FramingFields::Ours,
        false,
    );
    let upload = Upload::new(Bytes::from(head), body, BodyFraming::Chunked);
    let mut expect = get_expect();
    expect.method = Method::POST;
    let exchange = Exchange::new(Conn::new(ours), upload, expect, None);
    let peer = async move {
        tx.send(Bytes::from_static(b"abc")).await.expect("send");
        tx.send(Bytes::from_static(b"0123456789abcdef"))
            .await
            .expect("send");
        drop(tx);
        let mut got = Vec::new();
        let mut chunk = [0u8; 256];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = theirs.read(&mut chunk).await.expect("read");
            got.extend_from_slice(&chunk[..n]);
        }
        theirs
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .expect("answer");
        got
    };
    let (outcome, got) = tokio::join!(exchange, peer);
    assert!(outcome.is_ok());
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.ends_with("\r\n\r\n3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"),
        "{text:?}"
    );
    // A body longer than its Content-Length is the client's failure, never sent on.
    let (ours, _theirs) = tokio::io::duplex(64 * 1024);
    let head = head::encode(
        &Method::POST,
        "/",
        None,
        &HeaderMap::new(),
        BodyFraming::Length(2),
        FramingFields::Ours,
        false,
    );
    let upload = Upload::new(Bytes::from(head), full("toolong"), BodyFraming::Length(2));
    let failed = Exchange::new(Conn::new(ours), upload, get_expect(), None)
        .await
        .err()
        .expect("refused");
    assert!(matches!(failed.error, Error::Body(_)), "{}", failed.error);
}

/// A body of unknown length: the parts sent on the channel.
struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test]
async fn a_101_hands_over_the_connection_with_the_bytes_already_read() {
    let (ours, mut theirs) = tokio::io::duplex(1024);
    let mut expect = get_expect();
    expect.upgrade = true;
    let exchange = Exchange::new(Conn::new(ours), get_upload(), expect, None);
    let peer = async {
        let mut head = [0u8; 64];
        let _ = theirs.read(&mut head).await;
        let _ = theirs
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\nearly")
            .await;
    };
    let (outcome, ()) = tokio::join!(exchange, peer);
    let Ok(Answer::Switched(head, mut upgraded)) = outcome else {
        panic!("not switched");
    };
    assert_eq!(head.status, StatusCode::SWITCHING_PROTOCOLS);
    let mut early = [0u8; 5];
    upgraded.read_exact(&mut early).await.expect("early bytes");
    assert_eq!(&early, b"early");
    upgraded.write_all(b"ping").await.expect("write");
    let mut ping = [0u8; 4];
    theirs.read_exact(&mut ping).await.expect("read");
    assert_eq!(&ping, b"ping");
}

#[tokio::test]
async fn endless_interim_responses_are_bounded() {
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(1000);
    let error = flooded(b"", interim).await;
    assert!(
        matches!(error, Error::Invalid("too many interim responses")),
        "{error}"
    );
}

#[test]
fn the_hop_to_python_keeps_the_client_s_own_framing_fields() {
    let theirs = |fields: &[(&'static str, &'static str)], framing: BodyFraming| {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(*name, HeaderValue::from_static(value));
        }
        let out = head::encode(
            &Method::POST,
            "/",
            None,
            &headers,
            framing,
            FramingFields::Theirs,
            false,
        );
        String::from_utf8_lossy(&out).into_owned()
    };
    assert_eq!(
        theirs(
            &[
                ("transfer-encoding", "gzip, chunked"),
                ("content-length", "4")
            ],
            BodyFraming::Chunked
        ),
        "POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
    );
    assert_eq!(
        theirs(&[("content-length", "05")], BodyFraming::Length(5)),
        "POST / HTTP/1.1\r\ncontent-length: 05\r\n\r\n"
    );
    // Fields that do not describe the framing are never written: ours are.
    assert_eq!(
        theirs(&[("content-length", "05")], BodyFraming::Length(6)),
        "POST / HTTP/1.1\r\ncontent-length: 6\r\n\r\n"
    );
    assert_eq!(
        theirs(
            &[("transfer-encoding", "chunked, gzip")],
            BodyFraming::Chunked
        ),
        "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
}
