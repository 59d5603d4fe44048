"""The authorization server's sections: ``signing_keys``, ``tokens``, and the external
issuers the gateway trusts (``trusted_issuers``, ``introspection``).
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator

from bastion.settings._values import Problems, show
from bastion.settings.fields import (
    LOOPBACK_HOSTS,
    Duration,
    FilePath,
    _duration,
    _http_url,
    _not_bool,
    _Section,
    _unreadable,
)

SigningAlgorithmName = Literal["ES256", "RS256", "PS256", "EdDSA"]


class SigningKeySettings(_Section):
    """Token signing keys: algorithms, scheduled rotation, publication before use.

    bastion holds one active key per algorithm of :attr:`algorithms`: ``algorithm``
    (access tokens, the identity assertion) and every one of ``id_token_algorithms``
    (ID tokens; a client picks one with ``id_token_signed_response_alg``, the first is
    the default).
    """

    algorithm: SigningAlgorithmName = "ES256"
    # OpenID Connect Discovery §3: RS256 MUST be among the ID-token algorithms offered.
    id_token_algorithms: tuple[SigningAlgorithmName, ...] = ("ES256", "RS256")
    # At most 4096 bits: the native gateway signs the identity assertion with ring, whose
    # RSA signing keys are 2048 to 4096 bits (crypto.keys.MAX_RSA_BITS).
    rsa_key_size: Annotated[int, BeforeValidator(_not_bool), Field(ge=2048, le=4096)] = 3072
    # None: rotate only on `bastion signing-keys rotate`.
    rotate_every: Duration | None = None
    # A new key sits in the JWKS this long before it signs, so caches that honour
    # jwks_max_age have it before the first token signed with it arrives.
    prepublish: Duration = 900.0
    jwks_max_age: Duration = 300.0

    @property
    def algorithms(self) -> tuple[SigningAlgorithmName, ...]:
        """Every algorithm bastion keeps an active key for: ``algorithm`` first."""
        return tuple(dict.fromkeys([self.algorithm, *self.id_token_algorithms]))

    @model_validator(mode="after")
    def _cache_shorter_than_prepublish(self) -> SigningKeySettings:
        ids = self.id_token_algorithms
        if len(set(ids)) != len(ids):
            raise ValueError(f"id_token_algorithms {list(ids)} names an algorithm twice")
        if "RS256" not in ids:
            raise ValueError(
                f"id_token_algorithms {list(ids)} must include RS256 (OpenID Connect Discovery "
                "section 3 requires it) — e.g. [ES256, RS256]"
            )
        if self.prepublish and self.jwks_max_age > self.prepublish:
            raise ValueError(
                f"jwks_max_age ({self.jwks_max_age:g}s) is longer than prepublish "
                f"({self.prepublish:g}s) — verifiers could see a token before its key; "
                "lower jwks_max_age or raise prepublish"
            )
        if self.rotate_every is not None and self.rotate_every < 3600:
            raise ValueError(
                f"rotate_every ({self.rotate_every:g}s) is under an hour — use e.g. 30d or 90d"
            )
        return self


class TokenSettings(_Section):
    """Lifetimes of the tokens the authorization server issues, and clock leeway."""

    access_token_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=30, le=86400)] = 900.0
    max_access_token_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=30, le=86400)] = (
        86400.0
    )
    leeway: Annotated[float, BeforeValidator(_duration), Field(ge=0, le=300)] = 30.0
    client_secret_grace: Duration = 86400.0
    # A refresh-token family ends this long after the login that started it, whatever
    # its use (absolute), and any token of it unused this long is dead (idle).
    refresh_token_ttl: Annotated[
        float, BeforeValidator(_duration), Field(ge=60, le=365 * 86400)
    ] = 30 * 86400.0
    refresh_token_idle_ttl: Annotated[
        float, BeforeValidator(_duration), Field(ge=60, le=365 * 86400)
    ] = 7 * 86400.0
    # An authorization code waits at most this long for its redemption (RFC 6749 §4.1.2:
    # "a maximum lifetime of 10 minutes is RECOMMENDED"; a client redeems at once).
    authorization_code_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=1, le=600)] = 60.0
    id_token_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=30, le=86400)] = 300.0

    @model_validator(mode="after")
    def _ttl_within_max(self) -> TokenSettings:
        if self.access_token_ttl > self.max_access_token_ttl:
            raise ValueError(
                f"access_token_ttl ({self.access_token_ttl:g}s) exceeds max_access_token_ttl "
                f"({self.max_access_token_ttl:g}s) — lower it or raise the maximum"
            )
        if self.refresh_token_idle_ttl > self.refresh_token_ttl:
            raise ValueError(
                f"refresh_token_idle_ttl ({self.refresh_token_idle_ttl:g}s) exceeds "
                f"refresh_token_ttl ({self.refresh_token_ttl:g}s) — a family ends at the latter "
                "anyway; lower the idle lifetime or raise the absolute one"
            )
        return self


# Algorithms accepted from trusted external issuers: asymmetric only (RFC 8725 §3.1/§3.2:
# no "none", and no HS* — a shared secret with an IdP would let it mint tokens for anyone).
ExternalAlgorithm = Literal["ES256", "RS256", "PS256", "EdDSA"]
_DEFAULT_EXTERNAL_ALGS: list[ExternalAlgorithm] = ["RS256", "ES256"]


class TrustedIssuerSettings(_Section):
    """An external OAuth/OIDC issuer whose JWT access tokens the ``jwt`` method accepts.

    ``jwks_uri`` is discovered from the issuer's metadata
    (``/.well-known/openid-configuration``, then RFC 8414
    ``/.well-known/oauth-authorization-server``) when not given. ``audiences`` are
    the ``aud`` values accepted from it on routes that set no ``jwt.audience``.
    """

    issuer: str
    jwks_uri: str | None = None
    audiences: list[str]
    algorithms: list[ExternalAlgorithm] = Field(default_factory=lambda: _DEFAULT_EXTERNAL_ALGS[:])
    # RFC 9068 access tokens say typ "at+jwt"; null accepts any typ (IdPs that send "JWT").
    typ: str | None = "at+jwt"
    cache_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=1, le=86400)] = 600.0
    min_refresh_interval: Annotated[float, BeforeValidator(_duration), Field(ge=1, le=3600)] = 30.0
    timeout: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=60)] = 5.0
    ca_file: FilePath | None = None

    @field_validator("issuer")
    @classmethod
    def _check_issuer(cls, value: str) -> str:
        return _issuer_url(value, "https://idp.example.com")

    @field_validator("jwks_uri")
    @classmethod
    def _check_jwks_uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _issuer_url(value, "https://idp.example.com/.well-known/jwks.json")

    @field_validator("audiences")
    @classmethod
    def _check_audiences(cls, value: list[str]) -> list[str]:
        if not value or not all(isinstance(a, str) and a.strip() for a in value):
            raise ValueError(
                "needs at least one non-empty audience — the aud your API's tokens carry, "
                "e.g. [https://api.example.com]"
            )
        return value

    @field_validator("algorithms", mode="before")
    @classmethod
    def _check_algorithms(cls, value: object) -> object:
        if isinstance(value, list):
            for item in value:
                if isinstance(item, str) and (
                    item.lower() == "none" or item.upper().startswith("HS")
                ):
                    raise ValueError(
                        f"{show(item)} is not allowed — only asymmetric algorithms are "
                        "accepted from external issuers: ES256, RS256, PS256, EdDSA"
                    )
            if not value:
                raise ValueError("is empty — list at least one of ES256, RS256, PS256, EdDSA")
        return value

    @model_validator(mode="after")
    def _check_ca_file(self) -> TrustedIssuerSettings:
        if self.ca_file is not None and (problem := _unreadable(self.ca_file)):
            raise Problems([(("ca_file",), problem)])
        return self


def _issuer_url(value: str, example: str) -> str:
    url = _http_url(value, example)
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{show(value)} uses http — use https (http only for localhost)")
    return url


class IntrospectionSettings(_Section):
    """The RFC 7662 endpoint the ``introspection`` method asks about opaque tokens."""

    endpoint: str
    client_id: str
    client_secret: SecretStr
    # Positive answers are cached until min(exp, now + cache_ttl); negative ones briefly.
    cache_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=0, le=3600)] = 60.0
    negative_cache_ttl: Annotated[float, BeforeValidator(_duration), Field(ge=0, le=300)] = 5.0
    timeout: Annotated[float, BeforeValidator(_duration), Field(gt=0, le=60)] = 3.0
    # When set, an active token must carry this aud.
    audience: str | None = None
    ca_file: FilePath | None = None

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        return _issuer_url(value, "https://idp.example.com/oauth2/introspect")

    @model_validator(mode="after")
    def _check_secret(self) -> IntrospectionSettings:
        if not self.client_secret.get_secret_value().strip():
            raise Problems([(("client_secret",), "is empty — use env:NAME")])
        if self.ca_file is not None and (problem := _unreadable(self.ca_file)):
            raise Problems([(("ca_file",), problem)])
        return self
