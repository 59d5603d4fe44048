"""The control plane's pushes into the native authentication caches (``bastion._native``).

The native data plane allows a request only with a credential found in its
own caches, and Python fills them with what *it* accepted:

- :func:`api_key_found`: a key record, when :class:`~bastion.apikeys.ApiKeyService`
  fills its own cache from the database (the native core re-checks the
  record's state and deadlines on every request, like ``verify``);
- :func:`api_key_refused`: a digest Python found no key for (or a key whose format
  can never be valid), for Python's negative TTL: the native core answers Python's
  ``401 invalid_api_key`` itself meanwhile (so does it for a cached key that is
  revoked, disabled, expired or past its grace), and every ``api-keys`` change
  forgets every refusal;
- :func:`token_verified`: one of bastion's own access tokens, after the
  ``jwt`` authenticator accepted it (signature, claims, ``jti`` deny-list,
  client status); the native core verifies it again with the signing keys
  pushed here (:func:`signing_keys`) before caching it. The token's client is
  remembered as active (:func:`client_active`), so where :func:`verify_misses`
  is on, that client's *other* tokens are verified natively without Python.
- :func:`issuer_keys`: a trusted external issuer's public keys, after every
  successful JWKS fetch of its :class:`~bastion.gateway.authn.jwks_cache.JwksCache`
  (Python keeps the refresh policy), usable natively until Python would
  refetch them; where :func:`verify_misses` is on, that issuer's tokens are
  then verified natively against the route's compiled policy
  (``auth.jwt.issuers``). A token whose ``kid`` the pushed set lacks defers.

- :func:`introspected`: an answer the ``introspection`` authenticator cached
  (by the SHA-256 of the token): the identity it built from an active answer,
  or ``None`` for an inactive / refused one, until the same deadline. The
  native core admits the token (active) or answers Python's ``401
  invalid_token`` (inactive) until then; :func:`introspection_cleared` drops
  them all when a new authenticator (with an empty cache) is built.

- :func:`cert_identity`: the identity the ``mtls`` authenticator derived from a
  verified client certificate, keyed natively by the certificate's thumbprint
  (``cnf.x5t#S256``): a function of the certificate alone, never invalidated, bounded.

- :func:`session_found` / :func:`session_refused`: what a native ``session`` lookup
  found for the SHA-256 of a browser session's id (``SessionManager.resolve_digest``):
  the user, the session's absolute end, last use and idle timeout — or no live
  session, remembered for :data:`SESSION_REFUSED_TTL` seconds. :func:`session_changed`
  (the feed's ``sessions`` channel: a session started or ended) and
  :func:`session_user_changed` (``users``) drop them on every node.

Every invalidation the Python caches follow reaches the native ones in the
same call, before the next request: :func:`api_key_invalidated` (channel
``api-keys``), :func:`token_revoked` (``revoked-tokens``),
:func:`client_changed` (``clients``), :func:`signing_keys_changed`
(``signing-keys``), :func:`tokens_cleared`, and :func:`following`, which
stops native token hits while Python does not follow every channel. When
in doubt a whole cache is cleared: a native miss only costs a trip to Python.

:func:`install` configures the native core from the settings (issuer, leeway,
maximum token lifetime, API key pepper) and registers where the current
signing keys come from.

:func:`assertion_key` hands the native core bastion's *current* signing key
(PKCS#8 DER, straight from :class:`~bastion.crypto.SigningKeyPair` into ring;
nothing here keeps it) whenever the active key changes, so the native
``mutate`` step signs the identity assertion as
:class:`~bastion.gateway.assertion.AssertionSigner` does. While no key is held
(none active, or one ring refuses), routes with the assertion answer 503
``assertion_unavailable``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

from bastion import _native
from bastion.apikeys.state import api_key_subject
from bastion.crypto import SigningKeyPair
from bastion.crypto.keys import PublicKeySet
from bastion.gateway.authn.identity import Identity
from bastion.gateway.authn.jwks_cache import JwksCache
from bastion.ratelimit.gcra import Limit
from bastion.ratelimit.keys import compile_key_limits
from bastion.storage.models import ApiKey

__all__ = [
    "SESSION_REFUSED_TTL",
    "NativeApiKeys",
    "api_key_found",
    "api_key_invalidated",
    "api_key_record",
    "api_key_refused",
    "apply_revocation",
    "assertion_key",
    "cert_identity",
    "client_active",
    "client_changed",
    "client_inactive",
    "following",
    "install",
    "introspected",
    "introspection_cleared",
    "issuer_keys",
    "session_changed",
    "session_found",
    "session_refused",
    "session_user_changed",
    "sessions_used",
    "signing_key",
    "signing_keys",
    "signing_keys_changed",
    "token_exchanged",
    "token_revoked",
    "token_verified",
    "tokens_cleared",
    "verify_misses",
]

#: How long a revocation announced without its ``exp`` is remembered natively
#: (the longest access-token lifetime the settings allow, plus the leeway's maximum).
_REVOKED_WITHOUT_EXP: Final = 86_400.0 + 300.0
_EMPTY_JWKS: Final = '{"keys":[]}'
#: How long the native core answers "no session" for an id Python found no live session
#: for, without asking again (a started session's feed message drops it at once).
SESSION_REFUSED_TTL: Final = 10.0

_keys: Callable[[], PublicKeySet] | None = None
log = logging.getLogger(__name__)


def install(settings: Any, keys: Callable[[], PublicKeySet] | None) -> None:
    """Configure the native caches for ``settings`` (bastion's :class:`Settings`).

    ``keys`` returns bastion's current public signing keys (``None``: tokens
    are never cached natively). Everything cached before is dropped.
    """
    global _keys
    pepper = settings.api_keys.pepper
    _native.authn_configure(
        settings.issuer_url,
        float(settings.tokens.leeway),
        float(settings.tokens.max_access_token_ttl),
        pepper.get_secret_value().encode("utf-8") if pepper else None,
    )
    _keys = keys
    _native.signing_keys_set(_EMPTY_JWKS)
    _native.api_keys_clear()


def _timestamp(value: Any) -> float | None:
    return None if value is None else float(value.timestamp())


def api_key_record(key: ApiKey) -> str:
    """The JSON record of ``key`` the native cache holds (never its digest or secret)."""
    return json.dumps(
        {
            "id": key.id,
            # The identity's key_prefix claim, which a route's claims / roles rules may read.
            "prefix": key.prefix,
            # The identity's subject, by the rule's one home (the native core keeps it as is).
            "subject": api_key_subject(key),
            "scopes": list(key.scopes),
            "routes": list(key.routes),
            "expires_at": _timestamp(key.expires_at),
            "grace_until": _timestamp(key.grace_until),
            "revoked": key.revoked_at is not None,
            "disabled": key.disabled,
            "ip_allow": list(key.ip_allow),
            "key_limits": [
                {
                    "rate": limit.rate,
                    "period": limit.period,
                    "burst": limit.capacity,
                    "name": limit.label,
                }
                for limit in _key_limits(key)
            ],
        }
    )


def _key_limits(key: ApiKey) -> tuple[Limit, ...]:
    try:
        return compile_key_limits(key.rate_limits)
    except ValueError:
        return ()  # as the api_key authenticator: validated when stored, none applied


def api_key_found(key: ApiKey, ttl: float) -> None:
    """Cache ``key`` (just read from the database) natively for ``ttl`` seconds."""
    _native.api_key_put(key.digest, api_key_record(key), ttl)


def api_key_refused(digest: str, ttl: float) -> None:
    """Python refused the key with stored ``digest`` (no such key, or never a valid key):
    the native plane answers its 401 itself for ``ttl`` seconds (Python's negative TTL)."""
    _native.api_key_refuse(digest, ttl)


def api_key_invalidated(key_id: str | None) -> None:
    """Forget the key ``key_id`` natively (every key when ``None``), and every refusal."""
    if key_id:
        _native.api_key_drop(key_id)
    else:
        _native.api_keys_clear()


class NativeApiKeys:
    """The native API key cache as a mirror of :class:`~bastion.apikeys.ApiKeyService`'s
    (``api_keys.mirror(NativeApiKeys())``)."""

    def found(self, key: ApiKey, ttl: float) -> None:
        api_key_found(key, ttl)

    def refused(self, digest: str, ttl: float) -> None:
        api_key_refused(digest, ttl)

    def invalidated(self, key_id: str | None) -> None:
        api_key_invalidated(key_id)

    def used(self) -> list[tuple[str, float]]:
        return _native.api_keys_used()


def cert_identity(identity: Identity) -> None:
    """Cache the identity of a verified client certificate (an ``mtls`` identity) natively."""
    claims = identity.claims
    cnf = claims.get("cnf")
    thumbprint = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
    if identity.method != "mtls" or identity.subject is None or not isinstance(thumbprint, str):
        return
    record = json.dumps({"subject": identity.subject, "claims": dict(claims)})
    _native.cert_identity_put(thumbprint, record)


def introspected(digest: str, identity: Identity | None, until: float) -> None:
    """Cache natively what the introspection endpoint said about the token with this hex digest."""
    if identity is None:
        _native.introspection_put(digest, None, until)
        return
    if identity.method != "introspection" or not identity.subject:
        return
    record = json.dumps(
        {
            "subject": identity.subject,
            "scopes": sorted(identity.scopes),
            "claims": dict(identity.claims),
        }
    )
    try:
        _native.introspection_put(digest, record, until)
    except ValueError as exc:  # not for the native cache: Python keeps answering it
        log.warning("introspection answer not cached natively: %s", exc)


def introspection_cleared() -> None:
    """Forget every introspection answer cached natively."""
    _native.introspection_clear()


def signing_keys() -> bool:
    """Push bastion's current public signing keys; whether there were any to push."""
    if _keys is None:
        return False
    _native.signing_keys_set(json.dumps(_keys().jwks()))
    return True


def signing_key(kid: str) -> bool:
    """After a native ``signing_key`` lookup: whether bastion's current public keys hold
    ``kid``, and if so push them (the native core's are older). A ``kid`` they lack is
    never pushed for: a flood of made-up ``kid`` s must not clear the native token cache."""
    if _keys is None:
        return False
    keys = _keys()
    if kid not in keys:
        return False
    _native.signing_keys_set(json.dumps(keys.jwks()))
    return True


def issuer_keys(issuer: str, keys: PublicKeySet, ttl: float) -> None:
    """Push the verified public keys of the trusted issuer ``issuer``, usable for ``ttl`` s."""
    _native.issuer_keys_set(issuer, json.dumps(keys.jwks()), ttl)


def issuer_state(jwks: JwksCache) -> None:
    """Push what the trusted issuer's key cache holds now (after a native ``jwks`` lookup):
    its set, fresh for what remains of ``cache_ttl``, and how long no fetch may be tried
    (``min_refresh_interval``): until then the native core verifies with that set —
    stale, or lacking a token's ``kid`` — as :class:`JwksCache` does, and refuses a
    ``kid`` it lacks natively."""
    keys, fresh, retry = jwks.native_state()
    if keys is None:
        return
    _native.issuer_keys_set(jwks.issuer, json.dumps(keys.jwks()), fresh)
    _native.issuer_retry_in(jwks.issuer, retry)


def token_verified(token: str, ttl: float) -> str | None:
    """Cache an access token Python just accepted; ``None`` when cached, else why not.

    A token signed by a key the native core does not hold yet makes it take
    the current keys first.
    """
    reason = _native.token_put(token, ttl)
    if reason == "unknown_kid" and signing_keys():
        reason = _native.token_put(token, ttl)
    return reason


def client_active(client_id: str, ttl: float) -> None:
    """Python just found the OAuth client ``client_id`` active: trust that for ``ttl`` seconds.

    (What lets the native core verify the client's *uncached* tokens itself,
    where :func:`verify_misses` allowed it.)
    """
    _native.client_active(client_id, ttl)


def token_exchanged(token: str, ttl: float, identity: Identity) -> str | None:
    """Cache a token exchanged from an API key that Python just accepted as that key
    (``identity``: its key id, routes and limits); ``None`` when cached, else why not.
    The key's next change drops it (:func:`client_changed` of ``apikey:<id>``)."""
    if identity.key_id is None:
        return "not_exchanged"
    key = {
        "key_id": identity.key_id,
        "routes": sorted(identity.routes) if identity.routes is not None else None,
        "key_limits": [
            {
                "rate": limit.rate,
                "period": limit.period,
                "burst": limit.capacity,
                "name": limit.label,
            }
            for limit in identity.key_limits
        ],
    }
    return _native.token_put_exchanged(token, json.dumps(key), ttl)


def client_inactive(client_id: str, ttl: float) -> None:
    """Python just found the OAuth client ``client_id`` disabled or deleted: the native core
    refuses its tokens (``401 invalid_token``) for ``ttl`` seconds, or until it changes."""
    _native.client_inactive(client_id, ttl)


def verify_misses(on: bool) -> None:
    """Let the native core verify uncached tokens of clients known active.

    Only sound where every revocation reaches the native deny-list: the
    runtime turns it on once :func:`apply_revocation` runs before every
    ``revoked-tokens`` delivery of the change feed (and over its start-up
    replay), and native token hits need :func:`following` besides.
    """
    _native.tokens_verify_misses(on)


async def apply_revocation(message: str) -> None:
    """A change-feed applier for ``revoked-tokens`` (``"<jti> <exp>"``), replay included."""
    token_revoked(message)


def token_revoked(message: str | None) -> None:
    """Apply a revocation (``"<jti> <exp>"``, or a bare ``jti``); ``None``: forget all tokens.

    Introspection answers are cleared too: one may be bastion's own answer about the token
    just revoked (an ``introspection`` route asking bastion itself), held natively for its
    waiters (``cache_ttl: 0``) or cached; the next request asks again."""
    _native.introspection_clear()
    if message is None:
        _native.tokens_clear()
        return
    jti, _, exp_text = message.partition(" ")
    if not jti:
        _native.tokens_clear()
        return
    try:
        exp = float(exp_text)
    except ValueError:
        exp = math.nan
    if not math.isfinite(exp):
        exp = time.time() + _REVOKED_WITHOUT_EXP
    _native.token_revoke(jti, exp)


def client_changed(client_id: str | None) -> None:
    """Forget the tokens of the OAuth client ``client_id`` (all tokens when ``None``)."""
    if client_id:
        _native.tokens_forget_client(client_id)
    else:
        _native.tokens_clear()


def assertion_key(key: SigningKeyPair | None) -> None:
    """Make ``key`` the native identity assertion's signing key (``None``: forget it).

    A key ring refuses (say an RSA modulus over 4096 bits) is logged by kid and
    forgotten: routes sending the assertion then answer 503 ``assertion_unavailable``
    until the key is rotated.
    """
    if key is None:
        _native.assertion_key_clear()
        return
    try:
        _native.assertion_key_set(key.kid, key.alg, key.private_der())
    except ValueError as error:  # the message names the kid, never the key
        log.warning(
            "identity assertion: the native gateway cannot sign with this key; routes "
            "sending the assertion answer 503 assertion_unavailable until it is rotated "
            "(bastion signing-keys rotate)",
            extra={"kid": key.kid, "detail": str(error)},
        )


def signing_keys_changed() -> None:
    """A signing key changed state: forget every token and key (pushed again on demand)."""
    _native.signing_keys_set(_EMPTY_JWKS)


def tokens_cleared() -> None:
    """Forget every cached token (a routes reload, a lost subscription)."""
    _native.tokens_clear()


def following(value: bool) -> None:
    """Whether Python follows every invalidation channel (native token hits only then)."""
    _native.tokens_following(value)


def session_found(id_digest: str, active: Any, idle_timeout: float) -> None:
    """Hold the live browser session ``active`` (an ``ActiveSession``) natively under
    ``id_digest`` (hex SHA-256 of its id): its user, absolute end, last use, idle timeout."""
    session, user = active.session, active.user
    record = json.dumps(
        {
            "user_id": user.id,
            "username": user.username,
            "email": user.email,
            "roles": list(user.roles),
            "expires_at": session.expires_at.timestamp(),
            "last_seen_at": session.last_seen_at.timestamp(),
            "idle_timeout": float(idle_timeout),
        }
    )
    _native.session_put(id_digest, record)


def session_refused(id_digest: str, ttl: float = SESSION_REFUSED_TTL) -> None:
    """No live session has this id digest: the native core says so for ``ttl`` seconds."""
    _native.session_refuse(id_digest, ttl)


def session_changed(message: str | None) -> None:
    """The feed's ``sessions`` channel (a session's ``id_digest`` started or ended); ``None``
    or an empty message (a lost subscription): forget every session held natively."""
    if not message:
        _native.sessions_clear()
        return
    try:
        _native.session_drop(message)
    except ValueError:  # not a digest: drop everything rather than guess
        _native.sessions_clear()


async def session_user_changed(message: str) -> None:
    """A change-feed applier for ``users``: the user's sessions are looked up again."""
    if message:
        _native.sessions_drop_user(message)
    else:
        _native.sessions_clear()


def sessions_used() -> list[tuple[str, float]]:
    """The sessions the native core served since the last call: ``[(id_digest, unix time)]``."""
    return _native.sessions_used()
