//! Which request targets the native router may take exactly as they were sent.
//!
//! The specification is `bastion.gateway.paths.normalize_path` (RFC 3986
//! §6.2.2 normalisation plus the refusals of the hardening issue). The native
//! core does not re-implement it: it only recognises the targets whose path
//! that normalisation returns *unchanged* and never refuses, and leaves every
//! other spelling to Python (which rewrites, or answers 400 `invalid_path`).
//!
//! A path is clean when, conservatively:
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
fn is_clean_query(query: &[u8]) -> bool {
    query
        .iter()
        .all(|&byte| (0x21..=0x7E).contains(&byte) && byte != b'#')
}

/// For a raw path without `%` (nor query): the detail of Python's
/// `BadRequestPathError` when `normalize_path` refuses it — overlong, a
/// control character, a backslash, a dot segment with a path parameter
/// (`..;`), `..` above the root — in the order Python meets them; `None`
/// when it does not refuse, or when the path has a `%` or does not start
/// with `/` (not judged here).
pub fn refused_detail(path: &[u8]) -> Option<String> {
    if path.contains(&b'%') || path.first() != Some(&b'/') {
        return None;
    }
    if path.len() > MAX_PATH_BYTES {
        return Some(format!(
            "The request path is longer than {MAX_PATH_BYTES} bytes."
        ));
    }
    let mut depth = 0usize;
    for segment in path[1..].split(|&b| b == b'/') {
        for &byte in segment {
            if byte < 0x20 || byte == 0x7F {
                return Some("The request path contains a control character.".to_owned());
            }
            if byte == b'\\' {
                return Some("The request path contains a backslash, which is refused.".to_owned());
            }
        }
        if segment.contains(&b';') {
            let head = segment.split(|&b| b == b';').next().unwrap_or_default();
            if head == b"." || head == b".." {
                return Some(
                    "The request path contains a dot segment with a path parameter ('..;'), \
                     which is refused."
                        .to_owned(),
                );
            }
        }
        match segment {
            b"" | b"." => {}
            b".." => {
                if depth == 0 {
                    return Some("The request path climbs above the root ('..').".to_owned());
                }
                depth -= 1;
            }
            _ => depth += 1,
        }
    }
    None
}

/// `bastion.http.app._normalise`: the path without empty and `.` segments,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refused_details_are_pythons() {
        let refused = |p: &str| refused_detail(p.as_bytes());
        for ok in [
            "/",
            "/a//b",
            "/a/./b/..",
            "/a/../b",
            "/a;b/c",
            "/x/.a",
            "/%2e%2e/..",
            "x/..",
        ] {
            assert_eq!(refused(ok), None, "{ok}");
        }
        assert_eq!(
            refused("/a/../.."),
            Some("The request path climbs above the root ('..').".to_owned())
        );
        assert_eq!(
            refused("/a/..;x/b"),
            Some(
                "The request path contains a dot segment with a path parameter ('..;'), which is \
                 refused."
                    .to_owned()
            )
        );
        assert!(refused("/a/.;").is_some());
        assert_eq!(
            refused("/a\\b/../.."),
            Some("The request path contains a backslash, which is refused.".to_owned())
        );
        assert_eq!(
            refused("/a/\tb"),
            Some("The request path contains a control character.".to_owned())
        );
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(
            refused(&long),
            Some("The request path is longer than 8192 bytes.".to_owned())
        );
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
