"""OpenID Connect Core 1.0 (https://openid.net/specs/openid-connect-core-1_0.html): its rules.

- :func:`id_token_claims` — the ID token of §2 and §3.1.3.6: ``iss``, ``sub``, ``aud``,
  ``exp``, ``iat``, ``auth_time``, ``nonce``, ``acr``, ``amr``, ``azp``, ``sid``,
  ``at_hash`` and ``c_hash``.
- :func:`token_hash` — ``at_hash`` / ``c_hash`` (§3.1.3.6, §3.3.2.11): the base64url
  left-most half of the hash of the ASCII value, the hash being the one of the ID
  token's ``alg``: SHA-256 for ES256, RS256 and PS256. Core names no hash for
  ``EdDSA`` (its signature hashes internally); the OpenID Connect working group
  settled on SHA-512 for Ed25519 (connect issue #1125, call of 25 Nov 2019), as the
  OpenID Connect Token Hash Algorithms implementer's guide records and as panva's
  ``oidc-token-hash`` (used by ``openid-client``) computes it. bastion's EdDSA keys
  are Ed25519 only (``crypto/keys.py`` refuses Ed448), so ``EdDSA`` means SHA-512.
- :func:`required_interaction` — the ``prompt`` and ``max_age`` rules of §3.1.2.1:
  re-authentication when ``prompt=login`` or when ``auth_time + max_age < now``,
  consent when ``prompt=consent`` or none was given; with ``prompt=none`` any needed
  interaction is an error instead (§3.1.2.6: ``login_required``, ``consent_required``,
  ``interaction_required``).
- The authentication error codes of §3.1.2.6 the authorization endpoint returns.
"""

from __future__ import annotations

import base64
import enum
import hashlib
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from bastion.protocol.rfc6749.errors import OAuthError

__all__ = [
    "ID_TOKEN_CLAIMS",
    "UNSUPPORTED_PARAMETERS",
    "ConsentRequiredError",
    "Interaction",
    "InteractionRequiredError",
    "LoginRequiredError",
    "ParameterNotSupportedError",
    "id_token_claims",
    "refuse_interaction",
    "required_interaction",
    "token_hash",
]

#: The request parameters bastion refuses, each with its own error code (§3.1.2.6): request
#: objects (§6) and dynamic registration at the authorization endpoint are not supported.
UNSUPPORTED_PARAMETERS: Final = ("request", "request_uri", "registration")

#: The claims :func:`id_token_claims` sets; ``extra`` may not replace them.
ID_TOKEN_CLAIMS: Final = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "acr",
        "amr",
        "azp",
        "sid",
        "at_hash",
        "c_hash",
    }
)

#: The hash of each ID token ``alg`` bastion signs with (see the module docstring for EdDSA).
_TOKEN_HASHES: Final = {
    "ES256": hashlib.sha256,
    "RS256": hashlib.sha256,
    "PS256": hashlib.sha256,
    "EdDSA": hashlib.sha512,
}


class InteractionRequiredError(OAuthError):
    """``prompt=none``, but the user must interact with the server (§3.1.2.6)."""

    code = "interaction_required"
    title = "Interaction required"


class LoginRequiredError(InteractionRequiredError):
    """``prompt=none``, but the user must (re-)authenticate: ``login_required``."""

    code = "login_required"
    title = "Login required"


class ConsentRequiredError(InteractionRequiredError):
    """``prompt=none``, but the user must consent: ``consent_required``."""

    code = "consent_required"
    title = "Consent required"


class ParameterNotSupportedError(OAuthError):
    """The request uses one of :data:`UNSUPPORTED_PARAMETERS`; §3.1.2.6 gives each its
    code, ``<parameter>_not_supported`` (``request_not_supported``, …)."""

    title = "Parameter not supported"

    def __init__(self, parameter: str) -> None:
        if parameter not in UNSUPPORTED_PARAMETERS:
            raise ValueError(f"{parameter!r} has no _not_supported error code")
        self.code = f"{parameter}_not_supported"
        super().__init__(f"the {parameter} parameter is not supported")


class Interaction(enum.Enum):
    """What the user must do before the authorization request can be answered."""

    LOGIN = "login"
    CONSENT = "consent"
    #: Anything else (e.g. a second factor): ``interaction_required`` under ``prompt=none``.
    OTHER = "other"


_PROMPT_NONE_ERRORS: Final = {
    Interaction.LOGIN: (LoginRequiredError, "the user must log in"),
    Interaction.CONSENT: (ConsentRequiredError, "the user must consent"),
    Interaction.OTHER: (InteractionRequiredError, "the user must interact with the server"),
}


def token_hash(value: str, alg: str) -> str:
    """The ``at_hash`` / ``c_hash`` of ``value`` for an ID token signed with ``alg``.

    Raises:
        ValueError: ``alg`` is not one of ES256, RS256, PS256, EdDSA, or ``value`` is
            not ASCII (tokens and codes bastion issues always are).
    """
    hash_function = _TOKEN_HASHES.get(alg)
    if hash_function is None:
        raise ValueError(f"no token hash is defined for alg {alg!r}")
    digest = hash_function(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def id_token_claims(
    *,
    issuer: str,
    subject: str,
    client_id: str,
    auth_time: float,
    ttl: float,
    now: float,
    alg: str,
    nonce: str | None = None,
    acr: str | None = None,
    amr: Sequence[str] = (),
    sid: str | None = None,
    access_token: str | None = None,
    code: str | None = None,
    audiences: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The claims of an ID token (§2, §3.1.3.6), times in whole seconds.

    ``aud`` is ``client_id``, or a list starting with it when ``audiences`` adds
    others, in which case ``azp`` names the client (§2). ``auth_time`` is always
    included (§2 requires it when ``max_age`` was asked; always sending it costs
    nothing). ``nonce``, ``acr``, ``amr`` (non-empty) and ``sid`` are included when
    given; ``at_hash`` when ``access_token`` is given, ``c_hash`` when ``code`` is,
    hashed for ``alg`` (:func:`token_hash`).

    Raises:
        ValueError: ``ttl`` not positive, ``alg`` unknown, or ``extra`` replacing a
            claim set here (programming errors).
    """
    if not ttl > 0:
        raise ValueError("ttl must be positive")
    if alg not in _TOKEN_HASHES:
        raise ValueError(f"no token hash is defined for alg {alg!r}")
    issued_at = int(now)
    others = [audience for audience in audiences if audience != client_id]
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": [client_id, *others] if others else client_id,
        "exp": issued_at + int(ttl),
        "iat": issued_at,
        "auth_time": int(auth_time),
    }
    optional: dict[str, Any] = {
        "nonce": nonce,
        "acr": acr,
        "amr": list(amr) or None,
        "azp": client_id if others else None,
        "sid": sid,
        "at_hash": token_hash(access_token, alg) if access_token is not None else None,
        "c_hash": token_hash(code, alg) if code is not None else None,
    }
    claims.update({name: value for name, value in optional.items() if value is not None})
    clash = sorted(ID_TOKEN_CLAIMS.intersection(extra or {}))
    if clash:
        raise ValueError(f"extra claims may not replace {clash}")
    return {**claims, **(extra or {})}


def required_interaction(
    *,
    prompt: Collection[str],
    max_age: int | None,
    auth_time: float | None,
    consented_at: float | None,
    requested_at: float,
    now: float,
) -> Interaction | None:
    """What the user must do first, or ``None`` when the request can be answered now.

    ``auth_time`` is when the session's user authenticated (``None``: no session);
    ``consented_at`` when the user last consented to this client and scope set
    (``None``: never); ``requested_at`` when this authorization request arrived. A
    login or consent given after ``requested_at`` satisfies ``prompt=login``,
    ``prompt=consent`` and ``max_age`` — else the user would be asked again in a loop
    (``max_age=0`` would never be met a second later).

    Login is needed without a session, with ``prompt=login``, or when
    ``auth_time + max_age < now`` (§3.1.2.1); then consent, when never given or with
    ``prompt=consent``.

    Raises:
        LoginRequiredError, ConsentRequiredError: ``prompt`` contains ``none`` and the
            user would have to log in or consent (:func:`refuse_interaction`).
    """
    needed = _login_needed(prompt, max_age, auth_time, requested_at, now) or _consent_needed(
        prompt, consented_at, requested_at
    )
    if needed is not None and "none" in prompt:
        refuse_interaction(needed)
    return needed


def _login_needed(
    prompt: Collection[str], max_age: int | None, auth_time: float | None, since: float, now: float
) -> Interaction | None:
    if auth_time is None:
        return Interaction.LOGIN
    fresh = auth_time >= since
    expired = max_age is not None and auth_time + max_age < now
    return Interaction.LOGIN if not fresh and ("login" in prompt or expired) else None


def _consent_needed(
    prompt: Collection[str], consented_at: float | None, since: float
) -> Interaction | None:
    if consented_at is None or ("consent" in prompt and consented_at < since):
        return Interaction.CONSENT
    return None


def refuse_interaction(interaction: Interaction) -> None:
    """Raise the ``prompt=none`` error of ``interaction`` (§3.1.2.6).

    Raises:
        LoginRequiredError: for :attr:`Interaction.LOGIN`.
        ConsentRequiredError: for :attr:`Interaction.CONSENT`.
        InteractionRequiredError: for :attr:`Interaction.OTHER`.
    """
    error, description = _PROMPT_NONE_ERRORS[interaction]
    raise error(f"prompt=none, but {description}", reason=f"prompt_none_{interaction.value}")
