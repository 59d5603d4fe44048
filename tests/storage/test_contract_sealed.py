"""Contract: the sealed-column registry and master-key re-wrap, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from bastion.storage import Database, SigningKey, User, UserCredential, Webhook
from bastion.storage.sql import SEALED_COLUMNS, seal_context


def test_registry_lists_exactly_the_sealed_columns() -> None:
    assert {(c.table.name, c.primary_key, c.column) for c in SEALED_COLUMNS} == {
        ("user_credentials", "id", "secret_sealed"),
        ("signing_keys", "kid", "private_key_sealed"),
        ("webhooks", "id", "secret_sealed"),
    }
    # Every column named like a sealed column is registered (new ones must be too).
    from bastion.storage.sql.schema import metadata

    named = {
        (table.name, column.name)
        for table in metadata.sorted_tables
        for column in table.columns
        if column.name.endswith("_sealed")
    }
    assert named == {(c.table.name, c.column) for c in SEALED_COLUMNS}


def test_seal_context_strings() -> None:
    assert (
        seal_context("signing_keys", "private_key_sealed", "k1")
        == "signing_keys.private_key_sealed:k1"
    )
    assert seal_context("webhooks", "secret_sealed", "w1") == "webhooks.secret_sealed:w1"
    with pytest.raises(KeyError):
        seal_context("users", "password_hash", "u1")


async def test_rewrap_touches_exactly_the_sealed_columns(db: Database, user: User) -> None:
    totp = await db.users.add_credential(
        UserCredential(user_id=user.id, kind="totp", secret_sealed="v1:totp")
    )
    passkey = await db.users.add_credential(
        UserCredential(user_id=user.id, kind="webauthn", data={"public_key": "v1:not-sealed"})
    )
    key = await db.signing_keys.create(
        SigningKey(kid="k1", alg="ES256", public_jwk={"x": "v1:pub"}, private_key_sealed="v1:key")
    )
    hook = await db.webhooks.create(Webhook(url="https://h.example/v1:", secret_sealed="v1:hook"))
    already = await db.webhooks.create(Webhook(url="https://h2.example", secret_sealed="v2:done"))
    seen: list[str] = []

    def rewrap(sealed: str) -> str:
        seen.append(sealed)
        return sealed.replace("v1:", "v2:")

    assert await db.rewrap_sealed(rewrap) == 3
    assert sorted(seen) == ["v1:hook", "v1:key", "v1:totp", "v2:done"]
    assert (await db.users.get_credential(totp.id)).secret_sealed == "v2:totp"
    assert await db.users.get_credential(passkey.id) == passkey  # NULL secret, data untouched
    assert (await db.signing_keys.get("k1")).private_key_sealed == "v2:key"
    assert (await db.signing_keys.get("k1")).public_jwk == key.public_jwk
    stored_hook = await db.webhooks.get(hook.id)
    assert stored_hook.secret_sealed == "v2:hook"
    assert stored_hook.url == hook.url
    assert await db.webhooks.get(already.id) == already
    assert await db.users.get(user.id) == user
    # Nothing left to re-wrap.
    assert await db.rewrap_sealed(rewrap) == 0


async def test_rewrap_is_all_or_nothing(db: Database, user: User) -> None:
    await db.users.add_credential(
        UserCredential(user_id=user.id, kind="totp", secret_sealed="v1:totp")
    )
    await db.signing_keys.create(
        SigningKey(kid="k1", alg="ES256", public_jwk={}, private_key_sealed="v1:broken")
    )

    class Boom(Exception):
        pass

    def rewrap(sealed: str) -> str:
        if "broken" in sealed:
            raise Boom("cannot decrypt")
        return sealed.replace("v1:", "v2:")

    with pytest.raises(Boom):
        await db.rewrap_sealed(rewrap)
    credentials = await db.users.list_credentials(user.id)
    assert credentials[0].secret_sealed == "v1:totp"  # rolled back
