//! Request paths in Python's normal form: `bastion.gateway.paths.normalize_path`
//! (RFC 3986 §6.2.2 normalisation plus the refusals of the hardening issue),
//! ported byte for byte as [`normalize`] and held to Python's own answers by
//! `tests/vectors/normalize_path.json`.
//!
//! Most paths are already normal; [`is_clean_path`] tells them in one pass
//! (conservatively: such a path is its own normal form), so [`normalize`]
//! borrows them. A path is clean when:
//! - it starts with `/` and is at most [`MAX_PATH_BYTES`] long;
//! - no segment is empty (no `//`), except a single trailing slash;
//! - no segment is `.` or `..`;
//! - every byte is an unreserved character, a sub-delimiter other than `;`,
//!   `:` or `@` (no backslash, no control character, nothing non-ASCII);
//! - a `%` starts an escape Python keeps as it is: two *upper-case* hex
//!   digits naming a byte that is not unreserved (those are decoded), not a
//!   control character, not `/`, `\` (refused) and not `;` (dot-parameter rule).
//!
//! The query (after the first `?`) is forwarded as sent, so it is clean when it
//! holds visible ASCII only and no `#`.

/// `bastion.gateway.paths.MAX_PATH_BYTES`: longer paths are refused by Python.
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// A clean request target, split: `path` is already in Python's normal form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanTarget<'a> {
    /// The path, exactly as `normalize_path` returns it.
    pub path: &'a str,
    /// The raw query without its `?`; `None` when absent or empty (Python
    /// forwards no `?` for an empty query string).
    pub query: Option<&'a str>,
}

/// Split a raw request-target (origin-form: path + optional query) when it is
/// clean; `None` means "let Python normalise, rewrite or refuse it".
pub fn clean_target(target: &str) -> Option<CleanTarget<'_>> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    if !is_clean_path(path.as_bytes()) || !is_clean_query(query.as_bytes()) {
        return None;
    }
    Some(CleanTarget {
        path,
        query: (!query.is_empty()).then_some(query),
    })
}

/// Whether `normalize_path(path) == path` for certain (see the module docs).
/// One pass over the bytes.
pub fn is_clean_path(path: &[u8]) -> bool {
    if path.len() > MAX_PATH_BYTES || path.first() != Some(&b'/') {
        return false;
    }
    let mut start = 1; // of the current segment
    let mut i = 1;
    while let Some(&byte) = path.get(i) {
        match byte {
            b'/' => {
                if !is_clean_segment(&path[start..i]) {
                    return false;
                }
                start = i + 1;
                i += 1;
            }
            b'%' => match (path.get(i + 1), path.get(i + 2)) {
                (Some(&hi), Some(&lo)) if is_kept_escape(hi, lo) => i += 3,
                _ => return false,
            },
            _ if PLAIN[usize::from(byte)] => i += 1,
            _ => return false,
        }
    }
    // The last segment may be empty: a trailing slash (or the root itself).
    let last = &path[start..];
    last.is_empty() || is_clean_segment(last)
}

/// Not empty, not a dot segment (its bytes were checked by the caller).
fn is_clean_segment(segment: &[u8]) -> bool {
    !(segment.is_empty() || segment == b"." || segment == b"..")
}

/// The bytes `normalize_path` keeps as they are, outside an escape: the
/// unreserved characters and the sub-delimiters, `:` and `@` — without `;`.
const PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            );
        byte += 1;
    }
    table
};

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// `%HI LO` that `normalize_path` keeps verbatim and does not refuse.
fn is_kept_escape(hi: u8, lo: u8) -> bool {
    let (Some(hi), Some(lo)) = (upper_hex(hi), upper_hex(lo)) else {
        return false;
    };
    let value = hi * 16 + lo;
    !(is_unreserved(value) || value < 0x20 || value == 0x7F || matches!(value, b'/' | b'\\' | b';'))
}

fn upper_hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Visible ASCII, no fragment: forwarded upstream byte for byte.
pub(crate) fn is_clean_query(query: &[u8]) -> bool {
    query
        .iter()
        .all(|&byte| (0x21..=0x7E).contains(&byte) && byte != b'#')
}

/// The details of Python's `BadRequestPathError` for the paths
/// `normalize_path` refuses.
pub mod refused {
    pub const TOO_LONG: &str = "The request path is longer than 8192 bytes.";
    pub const NO_SLASH: &str = "The request path must start with '/'.";
    pub const BAD_ESCAPE: &str = "The request path contains an invalid percent-escape.";
    pub const ENCODED_SLASH: &str =
        "The request path contains an encoded slash (%2F), which is refused.";
    pub const ENCODED_BACKSLASH: &str =
        "The request path contains an encoded backslash (%5C), which is refused.";
    pub const ENCODED_CONTROL: &str =
        "The request path contains an encoded control character, which is refused.";
    pub const CONTROL: &str = "The request path contains a control character.";
    pub const BACKSLASH: &str = "The request path contains a backslash, which is refused.";
    pub const DOT_PARAMETER: &str = "The request path contains a dot segment with a path \
                                     parameter ('..;'), which is refused.";
    pub const ABOVE_ROOT: &str = "The request path climbs above the root ('..').";
}

/// `bastion.gateway.paths.normalize_path`, byte for byte: the normal form of
/// a raw request path (without its query) — unreserved escapes decoded, the
/// others upper-cased, bytes outside `pchar` escaped, dot segments resolved,
/// empty segments dropped, a directory's trailing slash kept — or the detail
/// of the `400 invalid_path` Python answers instead ([`refused`]), the first
/// refusal in the order Python meets it. Borrowed when the path is already
/// normal ([`is_clean_path`]: the common case, one pass, no allocation).
/// `tests/vectors/normalize_path.json` holds both implementations to it.
pub fn normalize(raw: &[u8]) -> Result<std::borrow::Cow<'_, str>, &'static str> {
    if raw.len() > MAX_PATH_BYTES {
        return Err(refused::TOO_LONG);
    }
    if raw.first() != Some(&b'/') {
        return Err(refused::NO_SLASH);
    }
    if is_clean_path(raw) {
        // Clean paths are ASCII (`PLAIN` and escapes only).
        if let Ok(path) = std::str::from_utf8(raw) {
            return Ok(std::borrow::Cow::Borrowed(path));
        }
    }
    // The kept segments, each "/segment", one after the other in `out`;
    // `starts` says where each begins (a `..` truncates to the last one).
    let mut out = String::with_capacity(raw.len() + 8);
    let mut starts: Vec<usize> = Vec::new();
    let mut segment = String::new();
    let mut trailing = false;
    for raw_segment in raw[1..].split(|&b| b == b'/') {
        segment.clear();
        canonical_segment(raw_segment, &mut segment)?;
        if segment.contains(';') || segment.contains("%3B") {
            let head = segment.split(';').next().unwrap_or_default();
            let head = head.split("%3B").next().unwrap_or_default();
            if head == "." || head == ".." {
                return Err(refused::DOT_PARAMETER);
            }
        }
        // A path ending in "/", "/." or "/.." names a directory: its trailing slash stays.
        trailing = matches!(segment.as_str(), "" | "." | "..");
        match segment.as_str() {
            "" | "." => {}
            ".." => match starts.pop() {
                Some(start) => out.truncate(start),
                None => return Err(refused::ABOVE_ROOT),
            },
            kept => {
                starts.push(out.len());
                out.push('/');
                out.push_str(kept);
            }
        }
    }
    if starts.is_empty() {
        return Ok(std::borrow::Cow::Borrowed("/"));
    }
    if trailing {
        out.push('/');
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// `_canonical_segment`: one raw segment into `out` (unreserved escapes
/// decoded, the others upper-cased, bytes outside `pchar` escaped), or the
/// refusal of its first bad byte.
fn canonical_segment(segment: &[u8], out: &mut String) -> Result<(), &'static str> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let escape = |out: &mut String, value: u8| {
        out.push('%');
        out.push(char::from(HEX[usize::from(value >> 4)]));
        out.push(char::from(HEX[usize::from(value & 0xF)]));
    };
    let mut i = 0;
    while let Some(&byte) = segment.get(i) {
        if byte == b'%' {
            let (Some(hi), Some(lo)) = (segment.get(i + 1), segment.get(i + 2)) else {
                return Err(refused::BAD_ESCAPE);
            };
            let (Some(hi), Some(lo)) = (any_hex(*hi), any_hex(*lo)) else {
                return Err(refused::BAD_ESCAPE);
            };
            let value = hi * 16 + lo;
            match value {
                b'/' => return Err(refused::ENCODED_SLASH),
                b'\\' => return Err(refused::ENCODED_BACKSLASH),
                _ if value < 0x20 || value == 0x7F => return Err(refused::ENCODED_CONTROL),
                _ if is_unreserved(value) => out.push(char::from(value)),
                _ => escape(out, value),
            }
            i += 3;
            continue;
        }
        if byte < 0x20 || byte == 0x7F {
            return Err(refused::CONTROL);
        }
        if byte == b'\\' {
            return Err(refused::BACKSLASH);
        }
        if PLAIN[usize::from(byte)] || byte == b';' {
            out.push(char::from(byte));
        } else {
            escape(out, byte);
        }
        i += 1;
    }
    Ok(())
}

fn any_hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// `bastion.gateway.paths.resolve_dot_segments`: the path without empty and `.` segments,
/// `..` resolved (never above the root), the trailing slash of a directory
/// kept — how the app tells its own paths from the gateway's.
pub fn app_normalise(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let trailing = (path.ends_with('/') || path.ends_with("/.") || path.ends_with("/.."))
        && !segments.is_empty();
    let mut out = String::with_capacity(path.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    if trailing {
        out.push('/');
    }
    out
}

/// `urllib.parse.unquote_to_bytes`: `%XX` decoded, any other `%` kept.
pub fn unquote_to_bytes(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            if let (Some(high), Some(low)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unquote_to_bytes_is_pythons() {
        // urllib.parse.unquote_to_bytes: either hex case, anything else kept as sent.
        let cases: [(&[u8], &[u8]); 6] = [
            (b"a%41%2fb", b"aA/b"),
            (b"%e2%82%AC", "\u{20ac}".as_bytes()),
            (b"100%", b"100%"),
            (b"%4", b"%4"),
            (b"%zz%4g", b"%zz%4g"),
            (b"%%41", b"%A"),
        ];
        for (raw, decoded) in cases {
            assert_eq!(unquote_to_bytes(raw), decoded, "{raw:?}");
        }
    }

    #[test]
    fn refusals_are_pythons_in_pythons_order() {
        fn normal(p: &str) -> Result<std::borrow::Cow<'_, str>, &'static str> {
            normalize(p.as_bytes())
        }
        for ok in [
            "/",
            "/a//b",
            "/a/./b/..",
            "/a/../b",
            "/a;b/c",
            "/x/.a",
            "x/..",
        ] {
            if ok.starts_with('/') {
                assert!(normal(ok).is_ok(), "{ok}");
            }
        }
        assert_eq!(normal("x/.."), Err(refused::NO_SLASH));
        assert_eq!(normal("/a/../.."), Err(refused::ABOVE_ROOT));
        assert_eq!(normal("/%2e%2e/.."), Err(refused::ABOVE_ROOT));
        assert_eq!(normal("/a/..;x/b"), Err(refused::DOT_PARAMETER));
        assert_eq!(normal("/a/.;"), Err(refused::DOT_PARAMETER));
        assert_eq!(normal("/a/%2E%2e%3bx"), Err(refused::DOT_PARAMETER));
        assert_eq!(normal("/a\\b/../.."), Err(refused::BACKSLASH));
        assert_eq!(normal("/a/\tb"), Err(refused::CONTROL));
        assert_eq!(normal("/a/%2f"), Err(refused::ENCODED_SLASH));
        assert_eq!(normal("/a/%5c"), Err(refused::ENCODED_BACKSLASH));
        assert_eq!(normal("/a/%7f"), Err(refused::ENCODED_CONTROL));
        assert_eq!(normal("/a/%4"), Err(refused::BAD_ESCAPE));
        assert_eq!(normal("/a/%zz/%2F"), Err(refused::BAD_ESCAPE));
        // The first refusal met, segment by segment: "..", then the escape.
        assert_eq!(normal("/../%2F"), Err(refused::ABOVE_ROOT));
        assert_eq!(normal("/%2F/.."), Err(refused::ENCODED_SLASH));
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(normal(&long), Err(refused::TOO_LONG));
        assert_eq!(
            refused::TOO_LONG,
            format!("The request path is longer than {MAX_PATH_BYTES} bytes.")
        );
    }

    #[test]
    fn rewrites_are_pythons() {
        for (raw, expected) in [
            ("/", "/"),
            ("//", "/"),
            ("/api//x", "/api/x"),
            ("//api/x/", "/api/x/"),
            ("/api/./x", "/api/x"),
            ("/api/.", "/api/"),
            ("/api/x/..", "/api/"),
            ("/a/b/../../..x", "/..x"),
            ("/%61pi/%7e", "/api/~"),
            ("/api/%2e%2E/x", "/x"),
            ("/a%3a%e2%82%ac", "/a%3A%E2%82%AC"),
            ("/a\"<>[]^`{|}", "/a%22%3C%3E%5B%5D%5E%60%7B%7C%7D"),
            ("/a;v=1/b;", "/a;v=1/b;"),
            ("/a%3b", "/a%3B"),
            ("/caf\u{e9}", "/caf%C3%A9"),
        ] {
            assert_eq!(normalize(raw.as_bytes()).as_deref(), Ok(expected), "{raw}");
        }
        assert!(matches!(
            normalize(b"/api/x"),
            Ok(std::borrow::Cow::Borrowed("/api/x"))
        ));
    }

    /// `tests/vectors/normalize_path.json` (`tests/vectors/make_path_vectors.py`,
    /// from Python's `normalize_path`; `tests/gateway/test_path_vectors.py`
    /// holds Python to the same file).
    #[test]
    fn the_vectors_are_pythons() {
        const VECTORS: &str = include_str!("../../tests/vectors/normalize_path.json");
        let vectors: serde_json::Value = serde_json::from_str(VECTORS).expect("vectors");
        let vectors = vectors["vectors"].as_array().expect("a list");
        assert!(vectors.len() > 1000);
        for vector in vectors {
            let raw = vector["raw"].as_str().expect("raw");
            let got = normalize(raw.as_bytes());
            match (vector.get("path"), vector.get("refused")) {
                (Some(path), None) => {
                    assert_eq!(got.as_deref(), Ok(path.as_str().unwrap()), "{raw:?}")
                }
                (None, Some(detail)) => assert_eq!(got, Err(detail.as_str().unwrap()), "{raw:?}"),
                _ => panic!("bad vector {vector}"),
            }
        }
    }

    #[test]
    fn app_normalise_is_the_apps() {
        for (path, expected) in [
            ("/", "/"),
            ("//admin", "/admin"),
            ("/x/../admin/", "/admin/"),
            ("/../../oauth2/.", "/oauth2/"),
            ("/a/./b//c", "/a/b/c"),
            ("/..", "/"),
            ("/a/..", "/"),
        ] {
            assert_eq!(app_normalise(path), expected, "{path}");
        }
    }

    #[test]
    fn clean_paths() {
        for path in [
            "/",
            "/api",
            "/api/",
            "/api/x",
            "/a/.../b",
            "/.well-known/x",
            "/x/.hidden",
            "/a:b@c!$&'()*+,=",
            "/a%20b",
            "/a%E2%82%AC",
            "/%25",
            "/API/x",
        ] {
            assert!(is_clean_path(path.as_bytes()), "{path}");
        }
    }

    #[test]
    fn paths_python_rewrites_or_refuses_are_not_clean() {
        for path in [
            "",
            "api/x",
            "*",
            "http://evil/x",
            "//api/x",
            "/api//x",
            "/api//",
            "//",
            "/api/./x",
            "/api/.",
            "/api/..",
            "/..",
            "/./",
            "/x/../api",
            "/api/%2e/x",
            "/%61pi/x",
            "/api/%3a",
            "/a%e2%82%ac",
            "/a b",
            "/é",
            "/api%2Fx",
            "/api%5Cx",
            "/api\\x",
            "/api/x%00",
            "/api/x%7F",
            "/api/x\u{0}",
            "/api/\tx",
            "/api/x%",
            "/api/x%4",
            "/api/x%zz",
            "/raw/..;/api",
            "/a;v=1/b",
            "/raw/..%3B/api",
            "/a%3Bb",
        ] {
            assert!(!is_clean_path(path.as_bytes()), "{path:?}");
        }
    }

    #[test]
    fn length_limit() {
        let longest = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
        assert!(is_clean_path(longest.as_bytes()));
        assert!(!is_clean_path(format!("{longest}a").as_bytes()));
    }

    #[test]
    fn splits_the_query() {
        assert_eq!(
            clean_target("/api?x=1&y=%20"),
            Some(CleanTarget {
                path: "/api",
                query: Some("x=1&y=%20")
            })
        );
        assert_eq!(
            clean_target("/api?"),
            Some(CleanTarget {
                path: "/api",
                query: None
            })
        );
        assert_eq!(
            clean_target("/api?a?b"),
            Some(CleanTarget {
                path: "/api",
                query: Some("a?b")
            })
        );
        assert_eq!(clean_target("/api?a b"), None);
        assert_eq!(clean_target("/api?a#b"), None);
        assert_eq!(clean_target("/api?é"), None);
        assert_eq!(clean_target("/a/../b?x"), None);
    }

    fn segment() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                "[A-Za-z0-9._~!$&'()*+,=:@-]",
                Just("%20".to_owned()),
                Just("%E2".to_owned()),
                Just("%3A".to_owned()),
            ],
            1..6,
        )
        .prop_map(|parts| parts.concat())
        .prop_filter("dot segment", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn never_panics(target in ".*", bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = clean_target(&target);
            let _ = is_clean_path(&bytes);
            let _ = normalize(&bytes);
            let _ = normalize(target.as_bytes());
        }

        /// Python's normal form is a fixed point of itself, ASCII, without
        /// empty or dot segments (a directory's trailing slash aside); a clean
        /// path is its own normal form.
        #[test]
        fn the_normal_form_is_normal(
            parts in prop::collection::vec(
                prop_oneof![
                    Just(b"/".to_vec()), Just(b".".to_vec()), Just(b"..".to_vec()),
                    Just(b";".to_vec()), Just(b"%".to_vec()), Just(b"%2e".to_vec()),
                    Just(b"%3B".to_vec()), Just(b"%7E".to_vec()), Just(b"%c3".to_vec()),
                    Just(b"\\".to_vec()), Just(b"a".to_vec()), Just(b"\"".to_vec()),
                    prop::collection::vec(any::<u8>(), 1..3),
                ],
                0..12,
            ),
        ) {
            let mut raw = b"/".to_vec();
            for part in parts {
                raw.extend_from_slice(&part);
            }
            if let Ok(normal) = normalize(&raw) {
                let again = normalize(normal.as_bytes());
                prop_assert_eq!(again.as_deref(), Ok(normal.as_ref()));
                prop_assert!(normal.is_ascii() && normal.starts_with('/'));
                let body = normal.strip_suffix('/').unwrap_or(&normal);
                prop_assert!(
                    normal == "/" || body[1..].split('/').all(|s| !s.is_empty() && s != "." && s != ".."),
                    "{}", normal
                );
            }
            if is_clean_path(&raw) {
                let normal = normalize(&raw);
                prop_assert_eq!(normal.as_deref().ok().map(str::as_bytes), Some(&raw[..]));
            }
        }

        #[test]
        fn a_clean_path_round_trips(
            segments in prop::collection::vec(segment(), 0..6),
            trailing in any::<bool>(),
            query in "[a-z0-9=&%]{0,8}",
        ) {
            let mut path = format!("/{}", segments.join("/"));
            if trailing && !segments.is_empty() {
                path.push('/');
            }
            prop_assert!(is_clean_path(path.as_bytes()), "{}", path);
            let target = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
            let clean = clean_target(&target);
            prop_assert_eq!(clean, Some(CleanTarget { path: &path, query: (!query.is_empty()).then_some(query.as_str()) }));
        }
    }
}
