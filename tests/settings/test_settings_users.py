"""The ``users`` section: defaults, environment, and exact error lines."""

from __future__ import annotations

from collections.abc import Callable

from bastion.settings import Settings

Load = Callable[..., Settings]
Errors = Callable[..., list[str]]


def test_defaults(load: Load) -> None:
    password = load().users.password
    assert (password.min_length, password.max_length) == (12, 1024)
    argon2 = password.argon2
    assert (argon2.memory_kib, argon2.time_cost, argon2.parallelism) == (19_456, 2, 1)


def test_file_and_environment(load: Load) -> None:
    settings = load(
        "users: {password: {min_length: 8, argon2: {memory_kib: 47104, time_cost: 1}}}\n",
        {"BASTION_USERS__PASSWORD__MAX_LENGTH": "128"},
    )
    password = settings.users.password
    assert (password.min_length, password.max_length) == (8, 128)
    assert (password.argon2.memory_kib, password.argon2.time_cost) == (47_104, 1)


def test_bad_values_name_key_and_fix(errors: Errors) -> None:
    # Values under a key named "password" are never echoed (it might be one).
    assert errors("users: {password: {min_length: 7, max_length: 127, typo: 1}}\n") == [
        "users.password.min_length: the value is too small — use a number of at least 8",
        "users.password.max_length: the value is too small — use a number of at least 128",
        "users.password.typo: unknown key — remove it (keys here: min_length, max_length, argon2)",
    ]


def test_argon2_weaker_than_owasp_is_refused(errors: Errors) -> None:
    assert errors("users: {password: {argon2: {memory_kib: 19455, time_cost: 2}}}\n") == [
        "users.password.argon2: memory_kib 19455 with time_cost 2 is weaker than OWASP's "
        "argon2id minimums — use e.g. memory_kib: 19456, time_cost: 2 (or 47104 with 1, 12288 "
        "with 3, 9216 with 4, 7168 with 5)"
    ]
