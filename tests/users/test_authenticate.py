"""authenticate: one argon2 verify whatever the outcome, one uniform refusal, rehash on login.

The timing test counts argon2 verifies — never wall time: an unknown user, a wrong
password, a disabled account and an account without a password each cost exactly one.
"""

from __future__ import annotations

import pytest

from _support.argon2_calls import count_verifies
from bastion.settings import Settings
from bastion.storage import Database, User, feed
from bastion.users import (
    INVALID_CREDENTIALS_DETAIL,
    InvalidCredentialsError,
    UserService,
    UserSpec,
)

PASSWORD = "violet staple orbit 42"


@pytest.fixture
def verifies(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hashes argon2 verified, in order."""
    return count_verifies(monkeypatch)


@pytest.fixture
async def alice(db: Database) -> User:
    return await UserService(db, Settings()).create(UserSpec("Alice"), PASSWORD)


async def _refusal(service: UserService, username: str, password: str) -> InvalidCredentialsError:
    with pytest.raises(InvalidCredentialsError) as info:
        await service.authenticate(username, password)
    return info.value


async def test_the_right_password_any_case_of_username(db: Database, alice: User) -> None:
    service = UserService(db, Settings())
    assert (await service.authenticate("alice", PASSWORD)).id == alice.id
    assert (await service.authenticate("ALICE", PASSWORD)).id == alice.id


async def test_unknown_user_and_wrong_password_cost_one_verify_and_answer_alike(
    db: Database, alice: User, verifies: list[str]
) -> None:
    service = UserService(db, Settings())
    unknown = await _refusal(service, "mallory", PASSWORD)
    assert len(verifies) == 1
    assert verifies[0].startswith("$argon2id$v=19$m=19456,t=2,p=1$")  # the dummy hash
    assert verifies[0] != alice.password_hash
    wrong = await _refusal(service, "alice", PASSWORD + "!")
    assert len(verifies) == 2 and verifies[1] == alice.password_hash
    assert (unknown.reason, wrong.reason) == ("unknown_user", "bad_password")
    assert unknown.to_problem() == wrong.to_problem()
    assert (unknown.status, unknown.code, unknown.detail) == (
        401,
        "invalid_credentials",
        INVALID_CREDENTIALS_DETAIL,
    )


async def test_disabled_and_passwordless_users_refused_alike(
    db: Database, alice: User, verifies: list[str]
) -> None:
    service = UserService(db, Settings())
    await service.set_disabled(alice.id, True)
    await service.create(UserSpec("nopass"))
    disabled = await _refusal(service, "alice", PASSWORD)  # even with the right password
    no_password = await _refusal(service, "nopass", "")
    assert (disabled.reason, no_password.reason) == ("disabled", "no_password")
    assert disabled.to_problem() == no_password.to_problem()
    assert len(verifies) == 2
    await service.set_disabled(alice.id, False)
    assert (await service.authenticate("alice", PASSWORD)).id == alice.id


async def test_over_long_input_costs_one_verify_and_is_never_cut_to_fit(
    db: Database, verifies: list[str]
) -> None:
    service = UserService(db, Settings())
    await service.create(UserSpec("long"), "z" * 1024)
    refused = await _refusal(service, "long", "z" * 1024 + "extra")
    assert refused.reason == "bad_password"
    assert len(verifies) == 1
    await _refusal(service, "x" * 300, PASSWORD)  # no user can have this name
    assert len(verifies) == 2


async def test_a_deleted_user_is_unknown(db: Database, alice: User) -> None:
    service = UserService(db, Settings())
    await service.delete(alice.id)
    assert (await _refusal(service, "alice", PASSWORD)).reason == "unknown_user"


async def test_rehashed_on_login_when_parameters_rise(db: Database) -> None:
    weak = Settings.model_validate(
        {"users": {"password": {"argon2": {"memory_kib": 9216, "time_cost": 4}}}}
    )
    user = await UserService(db, weak).create(UserSpec("old"), PASSWORD)
    assert user.password_hash is not None and "m=9216,t=4" in user.password_hash
    head = await db.change_feed.head()

    stronger = UserService(db, Settings())
    await stronger.authenticate("old", PASSWORD)
    rehashed = await db.users.get(user.id)
    assert rehashed.password_hash is not None
    assert rehashed.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert rehashed.password_changed_at == user.password_changed_at  # same password
    assert [(r.channel, r.message) for r in await db.change_feed.read_after(head, limit=9)] == [
        (feed.USERS, user.id)
    ]
    await stronger.authenticate("old", PASSWORD)  # now current: no second rehash
    assert (await db.users.get(user.id)).password_hash == rehashed.password_hash
