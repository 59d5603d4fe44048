//! Response body framing (RFC 9112 §6–7): a known length, chunked, or
//! delimited by the connection's close, decoded from the connection's read
//! buffer without copying the data.
//!
//! Strict on purpose (a gateway must never disagree with the upstream about
//! where a response ends): a chunk size is 1–16 hex digits, extensions follow
//! the grammar, every line ends with CRLF (a bare LF is refused), the trailer
//! section is well-formed field lines without obs-fold. Extensions and
//! trailers are bounded as hyper bounds them (16 KiB each over the body).
//! Trailers are dropped (as Python's proxy drops them).

use bytes::{Buf, Bytes, BytesMut};

/// Longest chunk-size line (size + extensions + CRLF) read before refusing.
const MAX_CHUNK_LINE: usize = 4096;
/// Chunk-extension bytes over the whole body (hyper's `CHUNKED_EXTENSIONS_LIMIT`).
const MAX_EXTENSIONS: usize = 16 * 1024;
/// Trailer-section bytes (hyper's `TRAILER_LIMIT`).
const MAX_TRAILERS: usize = 16 * 1024;

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304, `Content-Length: 0`).
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends when the upstream closes the connection.
    Close,
}

/// Why a body's framing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data (bytes left).
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The trailer section after the last chunk.
    Trailers,
    Close,
    Done,
}

/// The decoder of one response body (see the module docs).
#[derive(Debug)]
pub struct Decoder {
    state: State,
    extensions: usize,
    trailers: usize,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size,
            Framing::Close => State::Close,
        };
        Self {
            state,
            extensions: 0,
            trailers: 0,
        }
    }

    /// The body was read to its exact end.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Delimited by the connection's close (never reusable).
    pub fn is_close_delimited(&self) -> bool {
        self.state == State::Close
    }

    /// Bytes still expected, when the framing says.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The next data in `buf` (consumed from it), `None` when `buf` holds no
    /// data yet or the body is done ([`Decoder::is_done`]).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, Malformed> {
        self.step(buf, true)
    }

    /// Consume the framing that follows the data in `buf` without yielding
    /// data: reaches the end when the last chunk and trailers are already in
    /// hand, so the connection can be released with the last data frame.
    pub fn settle(&mut self, buf: &mut BytesMut) -> Result<(), Malformed> {
        self.step(buf, false).map(|_| ())
    }

    /// The connection reached its end of stream.
    pub fn eof(&mut self) -> Result<(), Malformed> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(Malformed("the upstream closed the connection mid-body")),
        }
    }

    fn step(&mut self, buf: &mut BytesMut, emit: bool) -> Result<Option<Bytes>, Malformed> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Length(left) | State::Data(left) => {
                    if !emit || buf.is_empty() {
                        return Ok(None);
                    }
                    let take = take_len(left, buf.len());
                    let rest = left - take as u64;
                    self.state = match (self.state, rest) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), rest) => State::Length(rest),
                        (_, 0) => State::DataEnd,
                        (_, rest) => State::Data(rest),
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                State::Close => {
                    if !emit || buf.is_empty() {
                        return Ok(None);
                    }
                    return Ok(Some(buf.split().freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Malformed("no CRLF after a chunk's data"));
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE, "chunk-size line too long")?
                    else {
                        return Ok(None);
                    };
                    let (size, extensions) = chunk_size(&line)?;
                    self.extensions += extensions;
                    if self.extensions > MAX_EXTENSIONS {
                        return Err(Malformed("too many chunk extensions"));
                    }
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Trailers => {
                    let room = MAX_TRAILERS - self.trailers;
                    let Some(line) = take_line(buf, room, "trailers too large")? else {
                        return Ok(None);
                    };
                    self.trailers += line.len() + 2;
                    if line.is_empty() {
                        self.state = State::Done;
                    } else {
                        trailer_field(&line)?;
                    }
                }
            }
        }
    }
}

fn take_len(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |left| left.min(available))
}

/// One CRLF-terminated line out of `buf` (without the CRLF), `None` when it is
/// not complete yet. A bare LF, or a line longer than `max`, is refused.
fn take_line(
    buf: &mut BytesMut,
    max: usize,
    too_long: &'static str,
) -> Result<Option<BytesMut>, Malformed> {
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() >= max {
            return Err(Malformed(too_long));
        }
        return Ok(None);
    };
    if lf + 1 > max {
        return Err(Malformed(too_long));
    }
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(Malformed("a bare LF in the chunked framing"));
    }
    let mut line = buf.split_to(lf + 1);
    line.truncate(lf - 1);
    Ok(Some(line))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `chunk-size [ chunk-ext ]`: the size and the extension bytes.
fn chunk_size(line: &[u8]) -> Result<(u64, usize), Malformed> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(Malformed("a chunk size is not hexadecimal"));
    }
    if digits > 16 {
        return Err(Malformed("a chunk size is too large"));
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        // Sixteen hex digits fit a u64 exactly: no overflow.
        let digit = char::from(b).to_digit(16).unwrap_or(0);
        size = (size << 4) | u64::from(digit);
    }
    let ext = &line[digits..];
    chunk_ext(ext)?;
    Ok((size, ext.len()))
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] )`, value a token or a
/// quoted-string (RFC 9112 §7.1.1).
fn chunk_ext(mut ext: &[u8]) -> Result<(), Malformed> {
    const BAD: Malformed = Malformed("a malformed chunk extension");
    let skip_ws = |s: &mut &[u8]| {
        while let [first, rest @ ..] = *s {
            if !is_ws(*first) {
                break;
            }
            *s = rest;
        }
    };
    let token = |s: &mut &[u8]| -> Result<(), Malformed> {
        let n = s.iter().take_while(|b| is_tchar(**b)).count();
        if n == 0 {
            return Err(BAD);
        }
        *s = &s[n..];
        Ok(())
    };
    loop {
        skip_ws(&mut ext);
        let [b';', rest @ ..] = ext else {
            return if ext.is_empty() { Ok(()) } else { Err(BAD) };
        };
        ext = rest;
        skip_ws(&mut ext);
        token(&mut ext)?;
        skip_ws(&mut ext);
        let [b'=', rest @ ..] = ext else {
            continue;
        };
        ext = rest;
        skip_ws(&mut ext);
        if let [b'"', rest @ ..] = ext {
            ext = quoted_rest(rest).ok_or(BAD)?;
        } else {
            token(&mut ext)?;
        }
    }
}

/// After the opening quote of a quoted-string: what follows the closing quote.
fn quoted_rest(mut s: &[u8]) -> Option<&[u8]> {
    let qdtext = |b: u8| {
        b == b'\t'
            || b == b' '
            || b == 0x21
            || (0x23..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)
            || b >= 0x80
    };
    loop {
        match s {
            [b'"', rest @ ..] => return Some(rest),
            [b'\\', escaped, rest @ ..]
                if *escaped == b'\t'
                    || *escaped == b' '
                    || (0x21..=0x7e).contains(escaped)
                    || *escaped >= 0x80 =>
            {
                s = rest;
            }
            [b, rest @ ..] if qdtext(*b) => s = rest,
            _ => return None,
        }
    }
}

/// `field-name ":" OWS field-value OWS`; a line starting with whitespace is
/// obs-fold (refused).
fn trailer_field(line: &[u8]) -> Result<(), Malformed> {
    const BAD: Malformed = Malformed("a malformed trailer field");
    let name = line.iter().take_while(|b| is_tchar(**b)).count();
    if name == 0 || line.get(name) != Some(&b':') {
        return Err(BAD);
    }
    let value_ok = line[name + 1..]
        .iter()
        .all(|&b| is_ws(b) || (0x21..=0x7e).contains(&b) || b >= 0x80);
    if !value_ok {
        return Err(BAD);
    }
    Ok(())
}
