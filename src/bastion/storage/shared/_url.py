"""Shared state URLs: which backend a URL names, and how to show one without its secret."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

MEMORY_SCHEMES = frozenset({"memory"})
REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
_SECRET_QUERY_KEYS = frozenset({"password"})


def url_scheme(url: str) -> str:
    """The lower-cased scheme of ``url`` (``""`` when it has none)."""
    scheme, sep, _ = url.partition(":")
    return scheme.lower() if sep else ""


def redact_url(url: str) -> str:
    """``url`` with its password (userinfo or ``?password=``) replaced by ``***``.

    Userinfo without a colon is redacted whole: for Redis a lone ``secret@host``
    is easily a password written in the wrong place.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<malformed URL>"
    # Edit the original text rather than re-assembling it: urlunsplit would turn
    # unix:///path into unix:/path.
    redacted = url
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, colon, _ = userinfo.partition(":")
        hidden = f"{user}:***" if colon else "***"
        redacted = redacted.replace(userinfo + "@", hidden + "@", 1)
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(key.lower() in _SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode(
                [(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs],
                safe="*/",
            )
            redacted = redacted.replace("?" + parts.query, "?" + query, 1)
    return redacted
