//! `paths::normalize` (Python's `normalize_path`) over arbitrary bytes: never
//! panics; a normal form starts with `/`, is ASCII, has no empty or dot
//! segment (a directory's trailing slash aside) and is its own normal form,
//! borrowed; a clean path (`is_clean_path`) is its own normal form. Agreement
//! with Python itself is `tests/vectors/normalize_path.json`'s.

#![no_main]

use std::borrow::Cow;

use _native::paths::{is_clean_path, normalize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|raw: &[u8]| {
    let normal = normalize(raw);
    if is_clean_path(raw) {
        assert_eq!(normal.as_deref().map(str::as_bytes), Ok(raw));
    }
    let Ok(normal) = normal else {
        return;
    };
    assert!(normal.is_ascii() && normal.starts_with('/'));
    let body = normal.strip_suffix('/').unwrap_or(&normal);
    if normal != "/" {
        assert!(body[1..]
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".."));
    }
    assert!(matches!(normalize(normal.as_bytes()), Ok(Cow::Borrowed(again)) if again == normal)
        || normal == "/");
});
