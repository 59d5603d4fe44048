//! Request heads written straight from the request's parts, and response heads
//! parsed with `httparse` and checked for every framing a desync could hide
//! behind.

use std::mem::MaybeUninit;

use bytes::{Buf, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};

use super::decode::Framing;

/// Header fields in a response head (hyper's default, kept).
pub const MAX_HEADERS: usize = 100;
/// Bytes of response head, 1xx heads included (hyper's default buffer bound, kept).
pub const MAX_HEAD: usize = 8192 + 4096 * 100;
/// Bytes of an upstream response's header names and values: Python's
/// `MAX_RESPONSE_HEAD_BYTES` (a longer head is its `502 upstream_unavailable`).
pub const UPSTREAM_FIELD_BYTES: usize = 64 * 1024;

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body and no framing header.
    None,
    /// `Content-Length: n` (also `0`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Which framing header fields a request head carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingFields {
    /// Ours only: the request's own `Content-Length`/`Transfer-Encoding` are dropped.
    Ours,
    /// The request's own fields as they are, where they describe `framing`
    /// exactly (a `Transfer-Encoding` ending in `chunked`, a `Content-Length`
    /// equal to the length); ours otherwise. The hop to Python: its hygiene
    /// judges the client's own spelling.
    Theirs,
}

/// The request head: `METHOD target HTTP/1.1` (`HTTP/1.0` when `http10`: the
/// hop to Python says which version the client spoke, as Python's hygiene
/// judges it), `host` first when given (any
/// `Host` in `headers` is then skipped), the headers in order, the framing
/// fields (see [`FramingFields`]), CRLF.
///
/// `target` must be a valid request target; `HeaderValue`s cannot hold CR/LF.
pub fn encode(
    method: &Method,
    target: &str,
    host: Option<&HeaderValue>,
    headers: &HeaderMap,
    framing: BodyFraming,
    fields: FramingFields,
    http10: bool,
) -> Vec<u8> {
    let theirs = fields == FramingFields::Theirs;
    let their_te = theirs && framing == BodyFraming::Chunked && ends_chunked(headers);
    let their_cl = theirs
        && !headers.contains_key(TRANSFER_ENCODING)
        && matches!(framing, BodyFraming::Length(n) if content_length(headers) == Ok(Some(n)));
    let mut size = method.as_str().len() + target.len() + 16;
    for (name, value) in headers {
        size += name.as_str().len() + value.len() + 4;
    }
    size += host.map_or(0, |h| h.len() + 8) + 32;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(if http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    if let Some(host) = host {
        field(&mut out, b"host", host.as_bytes());
    }
    for (name, value) in headers {
        let keep = if name == TRANSFER_ENCODING {
            their_te
        } else if name == CONTENT_LENGTH {
            their_cl
        } else {
            host.is_none() || name != HOST
        };
        if keep {
            field(&mut out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    match framing {
        BodyFraming::None => {}
        BodyFraming::Length(_) if their_cl => {}
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(&mut out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked if their_te => {}
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Whether the last transfer coding of `headers` is `chunked`.
fn ends_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A parsed final response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub framing: Framing,
    /// HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
}

/// Header fields the gateway may add to an upstream response head.
const RESPONSE_ROOM: usize = 8;

/// Why a response head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused(pub &'static str);

/// What the buffer holds.
#[derive(Debug)]
pub enum Parsed {
    /// Not a complete head yet.
    Partial,
    /// A 1xx the exchange skips (100, 102, 103); its bytes (this many) were consumed.
    Interim(usize),
    /// 101 Switching Protocols (only when the request asked to upgrade).
    Switching(Head),
    /// The final response head (consumed from the buffer).
    Final(Head),
}

/// Parse one response head at the front of `buf` for a request whose method is
/// `method`; `upgrade`: the request asked to switch protocols. A head over
/// [`MAX_HEAD`] bytes, or whose header names and values add up to more than
/// `field_limit` bytes, is refused — whether it arrived in pieces or whole.
pub fn parse(
    buf: &mut BytesMut,
    method: &Method,
    upgrade: bool,
    field_limit: usize,
) -> Result<Parsed, Refused> {
    // Left uninitialised (as `h1::parse` does): httparse writes the fields it
    // parses, and zeroing 100 of them cost more than parsing a short head.
    let mut fields = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    // Defaults are strict (as `Response::parse`'s): obs-fold, a space before the
    // colon, bare CR refused.
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Refused("too many header fields")),
        Err(_) => return Err(Refused("not a valid HTTP/1.1 response head")),
    };
    let field_bytes: usize = response
        .headers
        .iter()
        .map(|field| field.name.len() + field.value.len())
        .sum();
    if length > MAX_HEAD || field_bytes > field_limit {
        return Err(Refused("the response head is too large"));
    }
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| Refused("an invalid status code"))?;
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        buf.advance(length);
        return Ok(Parsed::Interim(length));
    }
    // Where each field's name and value lie in the head, before the head leaves the
    // buffer (the parsed fields borrow it).
    let base = buf.as_ptr() as usize;
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let count = response.headers.len();
    for (span, field) in spans.iter_mut().zip(response.headers.iter()) {
        let offset = |bytes: &[u8]| (bytes.as_ptr() as usize - base) as u32;
        let name = field.name.as_bytes();
        *span = (
            offset(name),
            name.len() as u32,
            offset(field.value),
            field.value.len() as u32,
        );
    }
    // The head leaves the buffer as one shared `Bytes`, and every value is a slice
    // of it: no allocation and no copy per value (`HeaderValue::from_bytes` made
    // both; about 900 instructions a request on a 5-field response). The buffer
    // already hands its body bytes out this way (`decode`); it reuses its storage
    // once the response's head and body are dropped. A head over `MAX_HEAD` was
    // refused above, so the offsets fit in `u32`.
    let head_bytes = buf.split_to(length).freeze();
    // Room for what the gateway adds before the head goes out (security headers,
    // `RateLimit`, the request id, CORS): sized to the upstream's fields alone, the
    // map grew (every entry rehashed) on nearly every response — about 500
    // instructions a request in the profile.
    let mut headers = HeaderMap::with_capacity(count + RESPONSE_ROOM);
    for &(name_at, name_len, value_at, value_len) in &spans[..count] {
        let (name_at, value_at) = (name_at as usize, value_at as usize);
        let name = &head_bytes[name_at..name_at + name_len as usize];
        let name = HeaderName::from_bytes(name).map_err(|_| Refused("an invalid header name"))?;
        let value = head_bytes.slice(value_at..value_at + value_len as usize);
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| Refused("an invalid header value"))?;
        headers.append(name, value);
    }
    let framing = framing(status, version, &headers, method)?;
    let keep_alive = version == Version::HTTP_11 && !has_token(&headers, b"close");
    let head = Head {
        status,
        version,
        headers,
        framing,
        keep_alive,
    };
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if !upgrade {
            return Err(Refused(
                "101 Switching Protocols to a request that did not ask",
            ));
        }
        return Ok(Parsed::Switching(head));
    }
    Ok(Parsed::Final(head))
}

/// How the response body is delimited (RFC 9112 §6.3), refusing every
/// ambiguity: both `Content-Length` and `Transfer-Encoding`, a transfer coding
/// other than exactly `chunked`, differing or malformed lengths.
fn framing(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    method: &Method,
) -> Result<Framing, Refused> {
    let te = headers.get_all(TRANSFER_ENCODING);
    let has_te = te.iter().next().is_some();
    let length = content_length(headers)?;
    if has_te && length.is_some() {
        return Err(Refused("both Content-Length and Transfer-Encoding"));
    }
    if has_te {
        let mut values = te.iter();
        let chunked = values
            .next()
            .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if !chunked || values.next().is_some() {
            return Err(Refused("a Transfer-Encoding other than chunked"));
        }
        if version != Version::HTTP_11 {
            return Err(Refused("Transfer-Encoding in an HTTP/1.0 response"));
        }
    }
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::SWITCHING_PROTOCOLS
    {
        return Ok(Framing::Empty);
    }
    Ok(match (has_te, length) {
        (true, _) => Framing::Chunked,
        (false, Some(0)) => Framing::Empty,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::Close,
    })
}

/// The one `Content-Length` (repeated identical values allowed, as a list or
/// as several fields), digits only.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Refused> {
    const BAD: Refused = Refused("an invalid or ambiguous Content-Length");
    let mut length: Option<u64> = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || item.len() > 19 || !item.iter().all(u8::is_ascii_digit) {
                return Err(BAD);
            }
            let n = item.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            match length {
                Some(previous) if previous != n => return Err(BAD),
                _ => length = Some(n),
            }
        }
    }
    Ok(length)
}

/// Whether a `Connection` field of `headers` has `token`.
pub fn has_token(headers: &HeaderMap, token: &[u8]) -> bool {
    headers.get_all(CONNECTION).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}
