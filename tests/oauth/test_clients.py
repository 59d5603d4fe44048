"""ClientService: validation, secrets shown once and stored as digests, rotation with grace,
constant-work authentication, the find_active cache and its invalidation.

Runs on SQLite and on the real PostgreSQL; the invalidation across processes on the real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import bastion.oauth.clients as clients_module
from _support.subscriptions import subscribed
from _support.waiting import wait_until_async
from bastion.crypto import SigningKeyPair, constant_time_equals, sha256_hex
from bastion.oauth.clients import (
    CLIENT_SECRET_PREFIX,
    CLIENTS_CHANNEL,
    MIN_DIGEST_COMPARISONS,
    ClientService,
    ClientSpec,
    ClientSpecError,
)
from bastion.protocol.rfc6749.errors import InvalidClientError
from bastion.settings import Settings
from bastion.storage import Client, ConflictError, Database, NotFoundError
from bastion.storage.shared import SharedState, open_shared_state

SECRET_RE = re.compile(r"bcs_[A-Za-z0-9_-]{43}")
T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


# -- fixtures: `db_url` and `db` come from tests/conftest.py (both backends) -------------------


@pytest.fixture
async def shared() -> AsyncIterator[SharedState]:
    state = await open_shared_state("memory://")
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def service(db: Database, settings: Settings, shared: SharedState) -> ClientService:
    return ClientService(db, settings, shared)


def jwks() -> dict[str, Any]:
    return {"keys": [SigningKeyPair.generate("ES256").public_jwk()]}


async def reason_of(awaitable: Any) -> str:
    with pytest.raises(InvalidClientError) as info:
        await awaitable
    error = info.value
    # Outward every failure looks the same.
    assert error.code == "invalid_client"
    assert error.status == 401
    assert error.error_description == "client authentication failed"
    assert error.to_json() == {
        "error": "invalid_client",
        "error_description": "client authentication failed",
    }
    return str(error.reason)


# -- create -----------------------------------------------------------------------------------


async def test_create_confidential_defaults_and_secret_shown_once(
    service: ClientService, db: Database
) -> None:
    client, secret = await service.create(ClientSpec(name="Billing", scopes=["orders:read"]))
    assert secret is not None and SECRET_RE.fullmatch(secret)
    assert re.fullmatch(r"[A-Za-z0-9]{22}", client.client_id)
    assert client.client_type == "confidential"
    assert client.token_endpoint_auth_method == "client_secret_basic"
    assert client.grant_types == ("client_credentials",)
    assert client.scopes == ("orders:read",)
    stored = await db.clients.list_secrets(client.client_id)
    assert len(stored) == 1
    # Only the digest and an 8-character display prefix are kept.
    assert stored[0].digest == sha256_hex(secret.encode())
    assert stored[0].prefix == secret[:8] and stored[0].prefix.startswith(CLIENT_SECRET_PREFIX)
    assert stored[0].expires_at is None
    assert secret not in repr(await service.get(client.client_id))


async def test_client_ids_and_secrets_are_random(service: ClientService) -> None:
    made = [await service.create(ClientSpec(name=f"c{i}")) for i in range(5)]
    assert len({c.client_id for c, _ in made}) == 5
    assert len({s for _, s in made}) == 5


async def test_private_key_jwt_has_no_secret(service: ClientService, db: Database) -> None:
    keyed, secret = await service.create(
        ClientSpec(name="svc", token_endpoint_auth_method="private_key_jwt", jwks=jwks())
    )
    assert secret is None
    assert keyed.jwks is not None and len(keyed.jwks["keys"]) == 1
    assert await db.clients.list_secrets(keyed.client_id) == ()


async def test_clients_may_register_the_authorization_code_grant(
    service: ClientService, db: Database
) -> None:
    # A public client's default grants are authorization_code + refresh_token.
    spa, secret = await service.create(
        ClientSpec(name="SPA", client_type="public", redirect_uris=["http://127.0.0.1:8080/cb"])
    )
    assert secret is None
    assert spa.grant_types == ("authorization_code", "refresh_token")
    web, _ = await service.create(
        ClientSpec(
            name="web",
            grant_types=["authorization_code"],
            redirect_uris=["https://app.example.com/cb"],
        )
    )
    assert web.grant_types == ("authorization_code",)
    await db.clients.create(
        Client(client_id="service", name="svc", grant_types=("client_credentials",))
    )
    added = await service.update(
        "service",
        grant_types=["client_credentials", "authorization_code"],
        redirect_uris=["https://svc.example.com/cb"],
    )
    assert added.grant_types == ("client_credentials", "authorization_code")


async def test_refresh_tokens_need_the_authorization_code_grant(
    service: ClientService, db: Database
) -> None:
    with pytest.raises(ClientSpecError) as info:
        await service.create(
            ClientSpec(name="svc", grant_types=["client_credentials", "refresh_token"])
        )
    assert (info.value.code, info.value.status, info.value.field) == (
        "invalid_client_metadata",
        400,
        "grant_types",
    )
    assert info.value.detail == (
        "grant_types: refresh_token needs authorization_code: refresh tokens are issued "
        "only by the authorization_code grant; allow both"
    )
    assert (await db.clients.list()).items == ()
    # One holding refresh_token without authorization_code keeps it, and cannot add it anew.
    await db.clients.create(
        Client(client_id="odd", grant_types=("client_credentials", "refresh_token"))
    )
    assert (await service.update("odd", name="kept")).grant_types == (
        "client_credentials",
        "refresh_token",
    )
    await db.clients.create(Client(client_id="svc2", grant_types=("client_credentials",)))
    with pytest.raises(ClientSpecError) as info:
        await service.update("svc2", grant_types=["client_credentials", "refresh_token"])
    assert info.value.detail.startswith("grant_types: refresh_token needs authorization_code")


@pytest.mark.parametrize(
    ("spec", "field", "detail"),
    [
        (ClientSpec(name=" "), "name", "name: give the client a non-empty name"),
        (
            ClientSpec(
                name="x",
                client_type="public",
                grant_types=["client_credentials"],
                token_endpoint_auth_method="none",
            ),
            "grant_types",
            "grant_types: a public client cannot use client_credentials (it has no credential): "
            "make the client confidential",
        ),
        (
            ClientSpec(name="x", token_endpoint_auth_method="none"),
            "token_endpoint_auth_method",
            None,
        ),
        (
            ClientSpec(
                name="x", client_type="public", token_endpoint_auth_method="client_secret_basic"
            ),
            "token_endpoint_auth_method",
            "token_endpoint_auth_method: a public client cannot keep a credential: "
            "use 'none' (or make it confidential)",
        ),
        (
            ClientSpec(name="x", token_endpoint_auth_method="private_key_jwt"),
            "jwks",
            "jwks: private_key_jwt needs the client's public keys: register a JWK Set",
        ),
        (
            ClientSpec(name="x", token_endpoint_auth_method="private_key_jwt", jwks={"keys": []}),
            "jwks",
            "jwks: holds no key: register at least one public key",
        ),
        (
            ClientSpec(name="x", token_endpoint_auth_method="client_secret_jwt"),
            "token_endpoint_auth_method",
            None,
        ),
        (ClientSpec(name="x", grant_types=["password"]), "grant_types", None),
        (ClientSpec(name="x", grant_types=["implicit"]), "grant_types", None),
        (ClientSpec(name="x", grant_types=[]), "grant_types", None),
        (ClientSpec(name="x", scopes=["two words"]), "scopes", None),
        (ClientSpec(name="x", scopes=['quo"te']), "scopes", None),
        (ClientSpec(name="x", audiences=["not a uri"]), "audiences", None),
        (ClientSpec(name="x", audiences=["api.example.com"]), "audiences", None),
        (
            ClientSpec(name="x", audiences=["https://api.example.com/#frag"]),
            "audiences",
            "audiences: 'https://api.example.com/#frag' must not contain a fragment ('#...')",
        ),
        (ClientSpec(name="x", access_token_ttl=10), "access_token_ttl", None),
        (
            ClientSpec(name="x", access_token_ttl=86401),
            "access_token_ttl",
            "access_token_ttl: 86401 s is outside 30..86400 s "
            "(the maximum is tokens.max_access_token_ttl)",
        ),
        (
            ClientSpec(name="x", redirect_uris=["http://app.example.com/cb"]),
            "redirect_uris",
            "redirect_uris: 'http://app.example.com/cb' must use https (http only for a "
            "loopback host: 127.0.0.1, [::1], localhost)",
        ),
        (
            ClientSpec(name="x", redirect_uris=["https://app.example.com/cb#x"]),
            "redirect_uris",
            None,
        ),
        (
            ClientSpec(name="x", redirect_uris=["https://app.example.com/cb?iss=a&code=b&x=1"]),
            "redirect_uris",
            "redirect_uris: 'https://app.example.com/cb?iss=a&code=b&x=1': its query must not "
            "hold code, iss (the authorization response adds them)",
        ),
        (
            ClientSpec(name="x", redirect_uris=["http://127.0.0.1:8080/cb?state="]),
            "redirect_uris",
            None,
        ),
        (
            ClientSpec(name="x", post_logout_redirect_uris=["http://app.example.com/bye"]),
            "post_logout_redirect_uris",
            "post_logout_redirect_uris: 'http://app.example.com/bye' must use https (http only "
            "for a loopback host: 127.0.0.1, [::1], localhost)",
        ),
        (
            ClientSpec(name="x", post_logout_redirect_uris=["https://app.example.com/bye#x"]),
            "post_logout_redirect_uris",
            "post_logout_redirect_uris: 'https://app.example.com/bye#x' must not contain a "
            "fragment ('#...')",
        ),
        (
            ClientSpec(name="x", post_logout_redirect_uris=["/bye"]),
            "post_logout_redirect_uris",
            None,
        ),
        (
            ClientSpec(name="x", backchannel_logout_uri="http://rp.example.com/bc"),
            "backchannel_logout_uri",
            "backchannel_logout_uri: 'http://rp.example.com/bc' must use https (http only for "
            "a loopback host: 127.0.0.1, [::1], localhost)",
        ),
        (
            ClientSpec(name="x", backchannel_logout_uri="https://rp.example.com/bc#f"),
            "backchannel_logout_uri",
            None,
        ),
        (ClientSpec(name="x", backchannel_logout_uri=""), "backchannel_logout_uri", None),
        (
            ClientSpec(name="x", backchannel_logout_session_required="yes"),  # type: ignore[arg-type]
            "backchannel_logout_session_required",
            "backchannel_logout_session_required: must be true or false",
        ),
        (ClientSpec(name="x", metadata={"n": float("nan")}), "metadata", None),
        (ClientSpec(name="x", metadata={"n": 2**70}), "metadata", None),
        (ClientSpec(name="x", metadata={"s": "a\x00b"}), "metadata", None),
        (ClientSpec(name="na\x00me"), "name", None),
    ],
)
async def test_create_refuses_invalid_metadata(
    service: ClientService, db: Database, spec: ClientSpec, field: str, detail: str | None
) -> None:
    with pytest.raises(ClientSpecError) as info:
        await service.create(spec)
    assert info.value.code == "invalid_client_metadata"
    assert info.value.status == 400
    assert info.value.field == field
    assert info.value.to_problem()["field"] == field
    assert info.value.detail.startswith(f"{field}: ")
    if detail is not None:
        assert info.value.detail == detail
    assert (await db.clients.list()).items == ()


async def test_private_key_jwt_refuses_private_keys(service: ClientService) -> None:
    from bastion.crypto.keys import b64url_encode

    jwk = SigningKeyPair.generate("ES256").public_jwk()
    jwk["d"] = b64url_encode(b"\x01" * 32)
    with pytest.raises(ClientSpecError) as info:
        await service.create(
            ClientSpec(name="x", token_endpoint_auth_method="private_key_jwt", jwks={"keys": [jwk]})
        )
    assert info.value.field == "jwks"
    assert "private" in info.value.detail


async def test_loopback_http_and_https_redirect_uris_accepted(service: ClientService) -> None:
    client, _ = await service.create(
        ClientSpec(
            name="native",
            redirect_uris=[
                "https://app.example.com/cb",
                "http://127.0.0.1:51000/cb",
                "http://[::1]/cb",
                "http://localhost:3000/cb",
            ],
            audiences=["https://api.example.com", "urn:example:api"],
        )
    )
    assert len(client.redirect_uris) == 4
    assert client.audiences == ("https://api.example.com", "urn:example:api")


# -- update / disable / enable / delete -------------------------------------------------------


async def test_logout_members_registered_shown_and_updated(service: ClientService) -> None:
    client, _ = await service.create(
        ClientSpec(
            name="RP",
            client_type="public",
            redirect_uris=["https://rp.example.com/cb"],
            post_logout_redirect_uris=["https://rp.example.com/bye", "http://127.0.0.1/bye"],
            backchannel_logout_uri="https://rp.example.com/bc",
            backchannel_logout_session_required=True,
        )
    )
    stored = await service.get(client.client_id)
    assert stored.post_logout_redirect_uris == (
        "https://rp.example.com/bye",
        "http://127.0.0.1/bye",
    )
    assert stored.backchannel_logout_uri == "https://rp.example.com/bc"
    assert stored.backchannel_logout_session_required is True
    updated = await service.update(
        client.client_id, post_logout_redirect_uris=[], backchannel_logout_uri=None
    )
    assert (updated.post_logout_redirect_uris, updated.backchannel_logout_uri) == ((), None)


async def test_update_returns_the_updated_record(service: ClientService) -> None:
    client, _ = await service.create(ClientSpec(name="a"))
    updated = await service.update(
        client.client_id, name="b", scopes=["x", "y", "x"], access_token_ttl=600
    )
    assert (updated.name, updated.scopes, updated.access_token_ttl) == ("b", ("x", "y"), 600)
    assert (await service.get(client.client_id)) == updated
    cleared = await service.update(client.client_id, access_token_ttl=None)
    assert cleared.access_token_ttl is None


async def test_update_validates_the_result(service: ClientService) -> None:
    client, _ = await service.create(ClientSpec(name="a"))
    with pytest.raises(ClientSpecError) as info:
        await service.update(client.client_id, token_endpoint_auth_method="private_key_jwt")
    assert info.value.field == "jwks"
    with pytest.raises(ClientSpecError) as info:
        await service.update(client.client_id, client_type="public")
    assert info.value.detail == "client_type: cannot be changed — create a new client instead"
    with pytest.raises(ClientSpecError) as info:
        await service.update(client.client_id, disabled=True)
    assert info.value.field == "disabled"
    assert (await service.get(client.client_id)).token_endpoint_auth_method == "client_secret_basic"


async def test_missing_client_is_not_found(service: ClientService) -> None:
    for call in (
        service.get("nope"),
        service.update("nope", name="x"),
        service.disable("nope"),
        service.enable("nope"),
        service.delete("nope"),
        service.rotate_secret("nope"),
    ):
        with pytest.raises(NotFoundError):
            await call


async def test_delete_removes_client_and_secrets(service: ClientService, db: Database) -> None:
    client, secret = await service.create(ClientSpec(name="a"))
    assert secret is not None
    await service.delete(client.client_id)
    with pytest.raises(NotFoundError):
        await service.get(client.client_id)
    assert await db.clients.find_secret(sha256_hex(secret.encode())) is None
    assert await reason_of(service.authenticate_secret(client.client_id, secret)) == (
        "unknown_client"
    )


async def test_list_pages(service: ClientService) -> None:
    ids = sorted([(await service.create(ClientSpec(name=f"c{i}")))[0].client_id for i in range(3)])
    first = await service.list(limit=2)
    assert [c.client_id for c in first.items] == ids[:2]
    second = await service.list(limit=2, cursor=first.next_cursor)
    assert [c.client_id for c in second.items] == ids[2:]
    assert second.next_cursor is None


# -- authentication ---------------------------------------------------------------------------


async def test_authenticate_secret(service: ClientService) -> None:
    client, secret = await service.create(ClientSpec(name="a"))
    assert secret is not None
    assert (await service.authenticate_secret(client.client_id, secret)).client_id == (
        client.client_id
    )
    assert (
        await service.authenticate_secret(client.client_id, secret, method="client_secret_basic")
    ).client_id == client.client_id
    assert await reason_of(service.authenticate_secret(client.client_id, secret + "x")) == (
        "bad_secret"
    )
    assert await reason_of(service.authenticate_secret(client.client_id, "")) == "bad_secret"
    assert await reason_of(service.authenticate_secret("unknown", secret)) == "unknown_client"
    assert (
        await reason_of(
            service.authenticate_secret(client.client_id, secret, method="client_secret_post")
        )
        == "wrong_auth_method"
    )


async def test_other_clients_secret_is_refused(service: ClientService) -> None:
    a, _ = await service.create(ClientSpec(name="a"))
    _, secret_b = await service.create(ClientSpec(name="b"))
    assert secret_b is not None
    assert await reason_of(service.authenticate_secret(a.client_id, secret_b)) == "bad_secret"


async def test_unknown_client_and_wrong_secret_are_indistinguishable(
    service: ClientService,
) -> None:
    client, secret = await service.create(ClientSpec(name="a"))
    errors = []
    for client_id, presented in ((client.client_id, "bcs_wrong"), ("no-such-client", secret)):
        with pytest.raises(InvalidClientError) as info:
            await service.authenticate_secret(client_id, presented or "")
        errors.append(info.value)
    unknown, wrong = errors[1], errors[0]
    assert unknown.to_token_response() == wrong.to_token_response()
    assert unknown.to_problem() == wrong.to_problem()
    assert (unknown.reason, wrong.reason) == ("unknown_client", "bad_secret")


async def test_authentication_does_the_same_work_for_every_outcome(
    service: ClientService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No timing assertion: count the digest comparisons and database queries instead."""
    client, secret = await service.create(ClientSpec(name="a"))
    assert secret is not None
    comparisons: list[tuple[str, str]] = []
    real_compare = constant_time_equals

    def counting(a: Any, b: Any) -> bool:
        comparisons.append((a, b))
        return real_compare(a, b)

    monkeypatch.setattr(clients_module, "constant_time_equals", counting)
    queries: list[str] = []
    repo = service.db.clients
    for name in ("get", "list_secrets"):
        real = getattr(repo, name)

        def wrap(real: Any = real, name: str = name) -> Any:
            async def call(*args: Any, **kwargs: Any) -> Any:
                queries.append(name)
                return await real(*args, **kwargs)

            return call

        monkeypatch.setattr(repo, name, wrap())

    outcomes = {}
    for label, client_id, presented in (
        ("right", client.client_id, secret),
        ("wrong", client.client_id, "bcs_" + "A" * 43),
        ("unknown", "unknown-client", secret),
    ):
        service.invalidate()  # cold: every outcome reads the database the same way
        comparisons.clear()
        queries.clear()
        with contextlib.suppress(InvalidClientError):
            await service.authenticate_secret(client_id, presented)
        outcomes[label] = (len(comparisons), list(queries))
        comparisons.clear()
        queries.clear()  # warm: every outcome is answered from memory the same way
        with contextlib.suppress(InvalidClientError):
            await service.authenticate_secret(client_id, presented)
        outcomes[label + "-warm"] = (len(comparisons), list(queries))
    assert outcomes["right"] == outcomes["wrong"] == outcomes["unknown"]
    assert outcomes["right"] == (MIN_DIGEST_COMPARISONS, ["get", "list_secrets"])
    assert outcomes["right-warm"] == outcomes["wrong-warm"] == outcomes["unknown-warm"]
    assert outcomes["right-warm"] == (MIN_DIGEST_COMPARISONS, [])

    # With a second secret in grace, a match on the first one still compares both (no early exit).
    await service.rotate_secret(client.client_id, grace=3600)
    comparisons.clear()
    await service.authenticate_secret(client.client_id, secret)
    assert len(comparisons) == 2


async def test_disabled_client_is_refused_immediately(service: ClientService) -> None:
    client, secret = await service.create(ClientSpec(name="a"))
    assert secret is not None
    assert await service.find_active(client.client_id) is not None  # cached now
    disabled = await service.disable(client.client_id)
    assert disabled.disabled is True
    assert await reason_of(service.authenticate_secret(client.client_id, secret)) == (
        "client_disabled"
    )
    assert await service.find_active(client.client_id) is None
    enabled = await service.enable(client.client_id)
    assert enabled.disabled is False
    await service.authenticate_secret(client.client_id, secret)
    assert await service.find_active(client.client_id) == enabled


async def test_secret_refused_after_switch_to_private_key_jwt(service: ClientService) -> None:
    client, old_secret = await service.create(ClientSpec(name="c"))
    assert old_secret is not None
    # The old secret row stays, but a private_key_jwt client cannot use a secret.
    await service.update(
        client.client_id, token_endpoint_auth_method="private_key_jwt", jwks=jwks()
    )
    assert await reason_of(service.authenticate_secret(client.client_id, old_secret)) == (
        "wrong_auth_method"
    )
    with pytest.raises(ClientSpecError) as info:
        await service.rotate_secret(client.client_id)
    assert info.value.field == "token_endpoint_auth_method"


# -- rotation with grace ----------------------------------------------------------------------


async def test_rotation_with_grace(service: ClientService, db: Database) -> None:
    client, old = await service.create(ClientSpec(name="a"), now=T0)
    assert old is not None
    new = await service.rotate_secret(client.client_id, grace=3600, now=T0)
    assert SECRET_RE.fullmatch(new) and new != old
    during = T0 + timedelta(seconds=3599)
    # Both secrets work during the grace period.
    await service.authenticate_secret(client.client_id, old, now=during)
    await service.authenticate_secret(client.client_id, new, now=during)
    after = T0 + timedelta(seconds=3600)
    assert await reason_of(service.authenticate_secret(client.client_id, old, now=after)) == (
        "secret_expired"
    )
    await service.authenticate_secret(client.client_id, new, now=after)
    stored = await db.clients.list_secrets(client.client_id)
    assert [s.expires_at for s in stored] == [T0 + timedelta(seconds=3600), None]

    # The next rotation deletes the expired secret and puts the current one in grace.
    newest = await service.rotate_secret(client.client_id, grace=60, now=after)
    stored = await db.clients.list_secrets(client.client_id)
    assert len(stored) == 2
    assert stored[0].digest == sha256_hex(new.encode())
    assert stored[0].expires_at == after + timedelta(seconds=60)
    assert stored[1].digest == sha256_hex(newest.encode())
    # The deleted secret is now simply wrong.
    assert await reason_of(service.authenticate_secret(client.client_id, old, now=after)) == (
        "bad_secret"
    )


async def test_rotation_grace_zero_and_default(
    service: ClientService, db: Database, settings: Settings
) -> None:
    client, old = await service.create(ClientSpec(name="a"), now=T0)
    assert old is not None
    new = await service.rotate_secret(client.client_id, grace=0, now=T0)
    assert await reason_of(service.authenticate_secret(client.client_id, old, now=T0)) == (
        "secret_expired"
    )
    await service.authenticate_secret(client.client_id, new, now=T0)
    # Default grace: tokens.client_secret_grace (a day); the expired secret is deleted.
    await service.rotate_secret(client.client_id, now=T0)
    stored = await db.clients.list_secrets(client.client_id)
    grace = timedelta(seconds=settings.tokens.client_secret_grace)
    assert [s.expires_at for s in stored] == [T0 + grace, None]
    assert stored[0].digest == sha256_hex(new.encode())
    # A shorter grace shortens a running one; a longer one never extends it.
    await service.rotate_secret(client.client_id, grace=60, now=T0)
    await service.rotate_secret(client.client_id, grace=7200, now=T0)
    stored = await db.clients.list_secrets(client.client_id)
    minute = T0 + timedelta(seconds=60)
    assert [s.expires_at for s in stored] == [minute, minute, T0 + timedelta(seconds=7200), None]
    with pytest.raises(ClientSpecError) as info:
        await service.rotate_secret(client.client_id, grace=-1)
    assert info.value.field == "grace"


# -- the find_active cache --------------------------------------------------------------------


async def test_find_active_caches_and_mutations_invalidate(
    service: ClientService, db: Database
) -> None:
    client, _ = await service.create(ClientSpec(name="a"))
    assert await service.find_active("unknown") is None
    cached = await service.find_active(client.client_id)
    assert cached is not None and cached.name == "a"
    # A write behind the service's back is not seen until the cache entry lapses …
    await db.clients.update(client.client_id, name="changed")
    assert (await service.find_active(client.client_id)) == cached
    service.invalidate(client.client_id)
    assert (await service.find_active(client.client_id)).name == "changed"  # type: ignore[union-attr]
    # … while the service's own mutations take effect at once.
    await service.update(client.client_id, name="b")
    assert (await service.find_active(client.client_id)).name == "b"  # type: ignore[union-attr]
    await service.delete(client.client_id)
    assert await service.find_active(client.client_id) is None


async def _invalidation_across_services(
    db: Database, state_a: SharedState, state_b: SharedState
) -> None:
    settings = Settings()
    writer = ClientService(db, settings, state_a)
    reader = ClientService(db, settings, state_b)
    client, _ = await writer.create(ClientSpec(name="a"))
    stop = asyncio.Event()
    task = asyncio.create_task(reader.run(stop))
    try:
        await wait_until_async(lambda: subscribed(state_b, CLIENTS_CHANNEL), "the subscription")
        assert await reader.find_active(client.client_id) is not None
        await writer.disable(client.client_id)
        for _ in range(100):
            if await reader.find_active(client.client_id) is None:
                break
            await asyncio.sleep(0.02)
        assert await reader.find_active(client.client_id) is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_invalidation_reaches_other_services_in_process(
    db: Database, shared: SharedState
) -> None:
    await _invalidation_across_services(db, shared, shared)


@pytest.mark.redis
async def test_invalidation_reaches_other_nodes_over_redis(
    db: Database, redis_url: str, redis_prefix: str
) -> None:
    a = await open_shared_state(redis_url, key_prefix=redis_prefix)
    b = await open_shared_state(redis_url, key_prefix=redis_prefix)
    try:
        await _invalidation_across_services(db, a, b)
    finally:
        await a.close()
        await b.close()


async def test_duplicate_secret_digest_is_a_conflict(service: ClientService, db: Database) -> None:
    """Storage refuses a second row with the same digest: secrets are unique by construction."""
    from bastion.storage import ClientSecret

    client, secret = await service.create(ClientSpec(name="a"))
    assert secret is not None
    with pytest.raises(ConflictError):
        await db.clients.add_secret(
            ClientSecret(client_id=client.client_id, digest=sha256_hex(secret.encode()))
        )


@pytest.mark.parametrize("client_id", ["a\x00b", "\udcff", "x" * 256, ""])
async def test_ids_no_client_can_have_are_unknown_not_errors(
    service: ClientService, client_id: str
) -> None:
    """Request-supplied ids with NUL or lone surrogates must not reach the database driver."""
    assert await reason_of(service.authenticate_secret(client_id, "bcs_x")) == "unknown_client"
    assert await service.find_active(client_id) is None
    assert await service.list_secrets(client_id) == ()
    for call in (service.get(client_id), service.disable(client_id), service.delete(client_id)):
        with pytest.raises(NotFoundError):
            await call
