"""Identity propagation to the upstream (DESIGN.md, pipeline step 5): the rules the native
core applies (``native/src/mutate.rs``), compiled from these settings.

First every client-sent identity header is stripped — an upstream that trusts
``X-Bastion-Subject`` must only ever see the value bastion set:

- any header whose name, lower-cased and with ``_`` read as ``-``, starts with
  ``x-bastion-`` (servers and frameworks that fold ``_`` into ``-`` — CGI,
  WSGI, nginx with ``underscores_in_headers`` — would otherwise let
  ``X_Bastion_Subject`` through as the real thing);
- any header equal, after the same folding, to one of a configurable list of
  commonly trusted identity headers (:data:`DEFAULT_STRIPPED_HEADERS`);
- any header named in the request's ``Connection`` header (folded the same
  way) except those the proxy owns (``Host``, body framing, ``X-Forwarded-*``,
  hop-by-hop), and the ``Connection`` header itself: a hop-by-hop list must
  not be able to make the proxy drop the identity headers bastion adds next.

Then bastion's own headers are added, each only when it has a value:
``X-Bastion-Subject``, ``X-Bastion-Client``, ``X-Bastion-Scopes`` (sorted,
space-separated), ``X-Bastion-Key-Id``, ``X-Bastion-Request-Id``. Values that
are not printable ASCII, or contain ``%``, are percent-encoded (UTF-8), so a
value can never split the request head.

The names of bastion's headers are configurable (``identity_headers:``); a
renamed header is stripped from the client like every ``x-bastion-*``. With
an :class:`~bastion.gateway.assertion.AssertionSigner`, authenticated requests
also carry a short-lived signed assertion (its header stripped from the
client's request first).

The step works on a copy of the header list: the server's scope is left as
it was received.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import quote

from bastion.gateway.assertion import AssertionSigner
from bastion.gateway.authn.identity import Identity
from bastion.gateway.headers import HOP_BY_HOP_HEADERS, PROXY_OWNED_REQUEST_HEADERS

__all__ = [
    "DEFAULT_STRIPPED_HEADERS",
    "IDENTITY_HEADER_PREFIX",
    "IdentityHeaders",
]

IDENTITY_HEADER_PREFIX = "x-bastion-"

DEFAULT_STRIPPED_HEADERS: tuple[str, ...] = (
    "x-user-id",
    "x-user",
    "x-forwarded-user",
    "x-auth-request-user",
    "x-remote-user",
    "remote-user",
    "x-client-id",
    "x-scopes",
)

SUBJECT_HEADER = b"x-bastion-subject"
CLIENT_HEADER = b"x-bastion-client"
SCOPES_HEADER = b"x-bastion-scopes"
KEY_ID_HEADER = b"x-bastion-key-id"
REQUEST_ID_HEADER = b"x-bastion-request-id"

# Where bastion.http.middleware.request_id stores the request id (not imported: the
# http package builds on the gateway, not the other way round).
_REQUEST_ID_SCOPE_KEY = "bastion.request_id"

_PREFIX = IDENTITY_HEADER_PREFIX.encode("ascii")
_CONNECTION = b"connection"
_TOKEN_CHARS = frozenset(b"!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
# Every printable ASCII character but "%" stays as is; the rest is percent-encoded.
_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")

_PROXY_OWNED = PROXY_OWNED_REQUEST_HEADERS | HOP_BY_HOP_HEADERS

Header = tuple[bytes, bytes]

_IS_CONNECTION = "connection"  # a verdict: the Connection header (dropped; names others)
_CACHE_MAX = 4096


def _fold(name: bytes) -> bytes:
    return name.lower().replace(b"_", b"-")


def _header_name(name: str, what: str = "identity header") -> bytes:
    raw = name.strip().lower().encode("latin-1", "replace")
    if not raw or not set(raw) <= _TOKEN_CHARS:
        raise ValueError(f"{what} {name!r} is not a valid header name")
    return raw


def _encode(value: str) -> bytes:
    if not (value.isascii() and value.isprintable() and "%" not in value):
        value = quote(value, safe=_SAFE)
    return value.encode("ascii")


class IdentityHeaders:
    """Strips client-sent identity headers and adds bastion's (see the module docstring).

    ``strip`` lists header names stripped besides every ``x-bastion-*``
    (compared lower-cased, ``_`` as ``-``). ``names`` renames bastion's headers
    (keys ``subject``, ``client``, ``scopes``, ``key_id``, ``request_id``);
    ``assertion`` signs the optional identity assertion. Raises ``ValueError``
    for a name that is empty or not an HTTP token.
    """

    __slots__ = (
        "_by_identity",
        "_verdicts",
        "assertion",
        "assertion_header",
        "client",
        "key_id",
        "request_id",
        "scopes",
        "strip",
        "subject",
    )

    def __init__(
        self,
        strip: Iterable[str] = DEFAULT_STRIPPED_HEADERS,
        *,
        names: Mapping[str, str] | None = None,
        assertion: AssertionSigner | None = None,
    ) -> None:
        names = dict(names or {})
        chosen = {
            "subject": SUBJECT_HEADER,
            "client": CLIENT_HEADER,
            "scopes": SCOPES_HEADER,
            "key_id": KEY_ID_HEADER,
            "request_id": REQUEST_ID_HEADER,
        }
        for field, name in names.items():
            if field not in chosen:
                raise ValueError(f"unknown identity header {field!r}")
            chosen[field] = _header_name(name)
        self.subject = chosen["subject"]
        self.client = chosen["client"]
        self.scopes = chosen["scopes"]
        self.key_id = chosen["key_id"]
        self.request_id = chosen["request_id"]
        self.assertion = assertion
        self.assertion_header = _header_name(assertion.header) if assertion is not None else b""
        folded: set[bytes] = {_fold(_header_name(n, "identity header to strip")) for n in strip}
        # Whatever bastion sends, the client must not be able to send too.
        folded.update(_fold(name) for name in chosen.values())
        if self.assertion_header:
            folded.add(_fold(self.assertion_header))
        self.strip: frozenset[bytes] = frozenset(folded)
        # Hot-path caches: header name as sent -> stripped always (True), kept (False)
        # or the Connection header; identity -> its headers (identities are immutable).
        self._verdicts: dict[bytes, object] = {}
        self._by_identity: dict[int, tuple[Identity, list[Header]]] = {}

    def rewrite(
        self,
        headers: Sequence[Header],
        identity: Identity | None,
        request_id: str | None = None,
    ) -> list[Header]:
        """A new header list: ``headers`` without identity headers, plus bastion's."""
        verdicts = self._verdicts
        out: list[Header] = []
        connection = False
        for header in headers:
            name = header[0]
            drop = verdicts.get(name)
            if drop is None:
                drop = self._verdict(name)
            if drop:
                if drop is _IS_CONNECTION:
                    connection = True
                continue
            out.append(header)
        if connection:
            # Headers named in Connection go too, except those the proxy sets or frames
            # the body by (stripping Content-Length here would change the framing).
            named: set[bytes] = set()
            for name, value in headers:
                if name.lower() == _CONNECTION:
                    for token in value.split(b","):
                        token = token.strip()
                        if token:
                            named.add(_fold(token))
            named -= _PROXY_OWNED
            if named:
                out = [h for h in out if _fold(h[0]) not in named]
        if identity is not None:
            out.extend(self._identity_headers(identity))
        if request_id:
            out.append((self.request_id, _encode(request_id)))
        return out

    def _verdict(self, name: bytes) -> object:
        """Whether a header called ``name`` is always stripped (cached per spelling)."""
        folded = _fold(name)
        verdict: object = (
            _IS_CONNECTION
            if folded == _CONNECTION
            else (folded.startswith(_PREFIX) or folded in self.strip)
        )
        if len(self._verdicts) < _CACHE_MAX:  # bounded: header names are the client's
            self._verdicts[name] = verdict
        return verdict

    def _identity_headers(self, identity: Identity) -> list[Header]:
        """bastion's identity headers for ``identity`` (cached per identity object)."""
        cached = self._by_identity.get(id(identity))
        if cached is not None and cached[0] is identity:
            return cached[1]
        headers: list[Header] = []
        if identity.subject:
            headers.append((self.subject, _encode(identity.subject)))
        client = identity.claims.get("client_id")
        if isinstance(client, str) and client:
            headers.append((self.client, _encode(client)))
        if identity.scopes:
            headers.append((self.scopes, _encode(" ".join(sorted(identity.scopes)))))
        if identity.key_id:
            headers.append((self.key_id, _encode(identity.key_id)))
        if len(self._by_identity) >= _CACHE_MAX:
            self._by_identity.clear()
        # The identity is kept with its headers, so its id() cannot be reused meanwhile.
        self._by_identity[id(identity)] = (identity, headers)
        return headers
