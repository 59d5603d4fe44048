"""The one request-path normalisation of the gateway, and the app's.

The same normalised path is matched against routes, used as a rate-limit key
and forwarded upstream, so an attacker cannot spell a path one way for the
matcher and another way for the upstream (RFC 3986 §6.2.2). The ASGI app
(``bastion.http.app``) tells its own paths from the gateway's with the same code:
:func:`normalize_path` for a path with ``%``, :func:`resolve_dot_segments` (the
dot-segment removal below, without refusals) for one without. No other module
resolves dot segments (``tests/gateway/test_paths.py`` pins it); the native core's
twins are ``normalize`` and ``app_normalise`` in ``native/src/paths.rs``.

:func:`normalize_path` works on the raw request target path (ASGI
``raw_path``, without the query string):

- percent-encoded *unreserved* characters (ALPHA DIGIT ``-`` ``.`` ``_`` ``~``)
  are decoded (RFC 3986 §6.2.2.2); every other ``%XX`` is kept, upper-cased
  (§6.2.2.1); characters that are not allowed in a path are percent-encoded;
- dot segments are removed (RFC 3986 §5.2.4), including those spelled with
  ``%2e`` — the decoding happens first;
- duplicate slashes are collapsed (a trailing slash is kept).

Path parameters (``;…`` in a segment, RFC 3986 §3.3) are kept as they are,
except on a dot segment: Tomcat, Jetty and Spring strip ``;…`` before they
resolve dot segments, so ``/public/..;/admin`` is ``/admin`` to them while it
would be ``/public/..;/admin`` to the matcher. A segment whose part before the
first ``;`` (raw or ``%3B``) is ``.`` or ``..`` in any spelling (``%2e``,
``%2E``) is therefore refused.

It refuses, with :class:`~bastion.gateway.errors.BadRequestPathError`: an
encoded slash or backslash (``%2F``, ``%5C``), a raw backslash, NUL and every
other control character (raw or encoded), invalid ``%`` escapes, paths that do
not start with ``/``, paths longer than :data:`MAX_PATH_BYTES`, ``..``
segments that would climb above the root, and dot segments with a path
parameter (``..;``, ``.;x``, ``%2e%2e;``).

Case is preserved: matching is case-sensitive, so ``/API/x`` does **not**
match a route for ``/api`` (paths are case-sensitive in HTTP, and upstreams
usually treat them so).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from bastion.gateway.errors import BadRequestPathError

__all__ = ["MAX_PATH_BYTES", "normalize_path", "resolve_dot_segments"]

MAX_PATH_BYTES = 8 * 1024

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# pchar = unreserved / pct-encoded / sub-delims / ":" / "@"  (RFC 3986 §3.3), plus "/".
_PATH_SAFE = _UNRESERVED | frozenset(b"!$&'()*+,;=:@")
_HEX = frozenset(b"0123456789abcdefABCDEF")

# A path that is already normal: non-empty segments of safe characters, none of them
# "." or ".." (nor those followed by a ";" parameter), optionally a trailing slash.
# Most real requests take this exit.
_ALREADY_NORMAL = re.compile(rb"(?:/(?!\.\.?(?:[/;]|\Z))[A-Za-z0-9\-._~!$&'()*+,;=:@]+)*/?")

_ENCODED_SEPARATORS = {0x2F: "an encoded slash (%2F)", 0x5C: "an encoded backslash (%5C)"}


def _canonical_segment(segment: bytes) -> str:
    """Decode unreserved escapes, upper-case the others, encode unsafe bytes; refuse the rest."""
    out: list[str] = []
    i = 0
    n = len(segment)
    while i < n:
        byte = segment[i]
        if byte == 0x25:  # "%"
            if i + 2 >= n:
                raise BadRequestPathError("The request path contains an invalid percent-escape.")
            hi, lo = segment[i + 1], segment[i + 2]
            if hi not in _HEX or lo not in _HEX:
                raise BadRequestPathError("The request path contains an invalid percent-escape.")
            value = int(segment[i + 1 : i + 3], 16)
            if value in _ENCODED_SEPARATORS:
                raise BadRequestPathError(
                    f"The request path contains {_ENCODED_SEPARATORS[value]}, which is refused."
                )
            if value < 0x20 or value == 0x7F:
                raise BadRequestPathError(
                    "The request path contains an encoded control character, which is refused."
                )
            if value in _UNRESERVED:
                out.append(chr(value))
            else:
                out.append(f"%{value:02X}")
            i += 3
            continue
        if byte < 0x20 or byte == 0x7F:
            raise BadRequestPathError("The request path contains a control character.")
        if byte == 0x5C:
            raise BadRequestPathError("The request path contains a backslash, which is refused.")
        if byte in _PATH_SAFE:
            out.append(chr(byte))
        else:
            out.append(f"%{byte:02X}")
        i += 1
    return "".join(out)


def _refuse_dot_parameter(segment: str) -> None:
    """Refuse a dot segment carrying a path parameter (``..;x``, ``.;``, ``..%3Bx``)."""
    head = segment.split(";", 1)[0].split("%3B", 1)[0]
    if head in (".", ".."):
        raise BadRequestPathError(
            "The request path contains a dot segment with a path parameter ('..;'), which is "
            "refused."
        )


def normalize_path(raw_path: bytes) -> str:
    """Return the normal form of a raw request path (see the module docstring).

    Raises :class:`BadRequestPathError` (code ``invalid_path``) for paths that
    cannot be normalised safely.
    """
    if len(raw_path) > MAX_PATH_BYTES:
        raise BadRequestPathError(f"The request path is longer than {MAX_PATH_BYTES} bytes.")
    if not raw_path.startswith(b"/"):
        raise BadRequestPathError("The request path must start with '/'.")
    if _ALREADY_NORMAL.fullmatch(raw_path):
        return raw_path.decode("ascii")
    return _resolve(_canonical_segments(raw_path.split(b"/")[1:]), strict=True)


def resolve_dot_segments(path: str) -> str:
    """``path`` with empty and ``.`` segments dropped and ``..`` segments resolved, a
    ``..`` above the root dropped too; no decoding, nothing refused.

    Not a normal form to match, limit or forward by (that is :func:`normalize_path`):
    the app's test of whether a ``%``-free path spells one of bastion's own
    (``bastion.gateway.reserved.is_reserved``: ``//admin``, ``/x/../admin``), which must not
    refuse what it does not own — the gateway's ``match`` step refuses that, audited.
    """
    return _resolve(path.split("/"), strict=False)


def _canonical_segments(raw_segments: Iterable[bytes]) -> Iterator[str]:
    for raw_segment in raw_segments:
        segment = _canonical_segment(raw_segment)
        if ";" in segment or "%3B" in segment:
            _refuse_dot_parameter(segment)
        yield segment


def _resolve(segments: Iterable[str], *, strict: bool) -> str:
    """Remove dot segments and empty ones (RFC 3986 §5.2.4); a ``..`` above the root
    raises BadRequestPathError when ``strict``, else it is dropped."""
    stack: list[str] = []
    trailing_slash = False
    for segment in segments:
        # A path ending in "/", "/." or "/.." names a directory: keep its trailing slash.
        trailing_slash = segment in ("", ".", "..")
        if segment in ("", "."):
            continue
        if segment == "..":
            if stack:
                stack.pop()
            elif strict:
                raise BadRequestPathError("The request path climbs above the root ('..').")
            continue
        stack.append(segment)
    if not stack:
        return "/"
    return "/" + "/".join(stack) + ("/" if trailing_slash else "")
