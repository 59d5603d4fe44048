"""Generate ``normalize_path.json``: request paths and what Python's ``normalize_path`` says.

Each vector is ``{"raw": ..., "path": ...}`` (the normal form) or ``{"raw": ...,
"refused": ...}`` (the detail of its ``BadRequestPathError``). ``raw`` is text; both
implementations normalise its UTF-8 bytes. The native normaliser
(``native/src/paths.rs``, ``normalize``) is tested against this file, and so is Python
(``tests/gateway/test_path_vectors.py``), so the two cannot drift apart.

The vectors: hand-picked spellings (every refusal, every rewrite rule, the path tricks
of the hardening issue), then paths drawn with a fixed seed from an alphabet of
segments and characters chosen to meet every branch (``%``, ``.``, ``/``, ``;``,
``\\``, escapes of every class, bytes outside ``pchar``, control characters, non-ASCII).
Run: ``.venv/bin/python tests/vectors/make_path_vectors.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from bastion.gateway.errors import BadRequestPathError
from bastion.gateway.paths import MAX_PATH_BYTES, normalize_path

HAND_PICKED = [
    "/", "//", "///", "/api", "/api/", "/api//x", "//api/x/", "/api/./x", "/api/.", "/api/..",
    "/api/x/..", "/a/b/../../..x", "/..", "/../x", "/a/../..", "/a/./../b/", "/.", "/./",
    "/%61pi/%7e", "/%7E%2D%2E%5F", "/api/%2e%2E/x", "/%2e%2e/x", "/%2E", "/x/%2e/",
    "/a%3a%e2%82%ac", "/a%3A%E2%82%AC", "/a\"<>[]^`{|}", "/a;v=1/b;", "/a%3b", "/a%3B", "/..;/x",
    "/x/..;", "/.;x",
    "/x/..;jsessionid=1/y", "/x/%2e%2e;/y", "/x/%2E.;/y", "/x/.%2e%3bq", "/x/..%3B/y",
    "/x/...;/y", "/x/.a;b", "/caf\u00e9", "/caf%C3%A9", "/caf%c3%a9", "/api%2Fx", "/api%2fx",
    "/api%5Cx", "/api%5cx", "/api\\x", "/api/x%00", "/api/x%0d%0a", "/api/x%7F", "/api/x%7f",
    "/api/x%1F", "/api/x%20", "/api/x%25", "/api/x%", "/api/x%4", "/api/x%zz", "/api/x%g0",
    "/api/\tx", "/api/x\x00", "/api/x\x7f", "/a b", "/api/x%2F..%2F..%2Fadmin",
    "/api/x%5C..%5C..", "/../%2F", "/%2F/..", "/a/%zz/%2F", "/API", "/api;x=1", "/api/../admin",
    "/api/%2e%2e/admin", "//oauth2/token", "/api/%2Fadmin", "/s!$&'()*+,=:@", "api", "",
    "x/..", "*", "/" + "a" * (MAX_PATH_BYTES - 1), "/" + "a" * MAX_PATH_BYTES,
    "/" + "%41" * 3000,
]  # fmt: skip

# Segments Python keeps, rewrites, or resolves ...
SEGMENTS = [
    "", ".", "..", "...", "api", "x", "A", "~", ";", "a;b", ";p=1", "%2e", "%2E", "%2e%2e",
    ".%2e", "%2e.", "%3b", "%3B", "%41", "%7e", "%7E", "%2d", "%5f", "%20", "%25", "%3a", "%3A",
    "%c3%a9", "%C3%A9", "\u00e9", " ", "\"", "<", "{", "|", "`", "^", "[", "]", "}", ">",
    "!$&'()*+,=:@", "admin", "oauth2",
]  # fmt: skip
# ... and segments it refuses (drawn less often, so most paths get far).
REFUSED = [
    "..;", ".;", "%2e%2e;x", "..%3b", "%2F", "%2f", "%5C", "%5c", "%00", "%09", "%7f", "%", "%4",
    "%zz", "%G1", "\\", "\t", "\x7f",
]  # fmt: skip
CHARS = "aZ09-._~!$&'()*+,;=:@%%%///...\"<>[]^`{|} \u00e9" + "2eE5fFcC3bB7d" * 2
RARE = "\\\t\x00\x7f"


def vector(raw: str) -> dict[str, str]:
    try:
        return {"raw": raw, "path": normalize_path(raw.encode("utf-8"))}
    except BadRequestPathError as exc:
        return {"raw": raw, "refused": exc.detail}


def generated(rng: random.Random) -> list[str]:
    out: list[str] = []
    for _ in range(3000):
        count = rng.randint(0, 7)
        pick = [rng.choice(REFUSED if rng.random() < 0.05 else SEGMENTS) for _ in range(count)]
        out.append("/" + "/".join(pick))
    for _ in range(2000):
        size = rng.randint(0, 16)
        out.append(
            "/" + "".join(rng.choice(RARE if rng.random() < 0.02 else CHARS) for _ in range(size))
        )
    return out


def main() -> None:
    rng = random.Random(20261207)
    raws = list(dict.fromkeys([*HAND_PICKED, *generated(rng)]))
    document = {
        "about": "Python's normalize_path on each raw path (tests/vectors/make_path_vectors.py).",
        "vectors": [vector(raw) for raw in raws],
    }
    target = Path(__file__).with_name("normalize_path.json")
    target.write_text(json.dumps(document, indent=0, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main()
