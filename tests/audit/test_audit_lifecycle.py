"""Lifecycle event builders: one shape for the admin API, the CLI and the leak endpoint."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bastion.audit.events import EventTypes
from bastion.audit.lifecycle import (
    admin_actor,
    api_key_changed,
    api_key_leaked,
    cli_actor,
    client_changed,
    signing_key_changed,
    spec_fields,
)


def test_client_changed_names_fields_never_values() -> None:
    event = client_changed("cli:ops", "updated", "c1", {"name": "secret-ish", "scopes": ["a"]})
    assert (event.type, event.outcome, event.subject, event.client_id) == (
        EventTypes.CLIENT_CHANGED,
        "success",
        "cli:ops",
        "c1",
    )
    assert event.data == {
        "action": "updated",
        "actor": "cli:ops",
        "target": "c1",
        "fields": ["name", "scopes"],
    }
    assert "secret-ish" not in repr(event)


def test_api_key_changed_with_successor() -> None:
    event = api_key_changed("admin:x", "rotated", "k1", ["grace_until"], successor="k2")
    assert (event.type, event.key_id) == (EventTypes.KEY_CHANGED, "k1")
    assert event.data["successor"] == "k2"


def test_signing_key_changed() -> None:
    event = signing_key_changed("cli:ops", "retired", "kid-1", ["state"])
    assert (event.type, event.key_id, event.client_id) == (
        EventTypes.SIGNING_KEY_CHANGED,
        None,
        None,
    )
    assert event.data["target"] == "kid-1"


def test_api_key_leaked_truncates_source() -> None:
    event = api_key_leaked("k1", "bst_live_ab", "revoked", source="x" * 500)
    assert (event.type, event.reason, event.key_id) == (EventTypes.KEY_LEAKED, "revoked", "k1")
    assert event.data["source"] == "x" * 100
    assert api_key_leaked("k1", None, "already_revoked").data["source"] == "unspecified"


@pytest.mark.parametrize(
    ("claims", "actor"),
    [
        ({"sub": "alice", "client_id": "console"}, "admin:alice"),
        ({"client_id": "console"}, "admin:console"),
        ({"sub": ""}, "admin:unknown"),
        ({"sub": 7}, "admin:unknown"),
    ],
)
def test_admin_actor(claims: dict[str, object], actor: str) -> None:
    assert admin_actor(claims) == actor


def test_cli_actor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "deploy")
    assert cli_actor() == "cli:deploy"

    def no_user() -> str:
        raise OSError("no user")

    monkeypatch.setattr("getpass.getuser", no_user)
    assert cli_actor() == "cli:unknown"


def test_spec_fields() -> None:
    @dataclass(frozen=True, slots=True)
    class Spec:
        name: str
        scopes: tuple[str, ...] = ()
        ttl: int | None = None
        disabled: bool = False

    assert spec_fields(Spec(name="n", ttl=5)) == ["name", "ttl"]
    assert spec_fields(Spec(name="n", scopes=[])) == ["name"]  # type: ignore[arg-type]
    assert spec_fields(Spec(name="n", scopes=("a",), disabled=True)) == [
        "name",
        "scopes",
        "disabled",
    ]
