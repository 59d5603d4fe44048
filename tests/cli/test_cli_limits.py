"""``bastion limits show|set|clear`` in-process (typer's runner), SQLite and Redis."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    from bastion.cli.app import app

    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def ok(*args: str, env: dict[str, str] | None = None) -> Any:
    result = invoke(*args, "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_show_set_clear(in_process: Path) -> None:
    key = ok("keys", "create", "svc", "--rate-limit", "5/minute")
    doc = ok("limits", "show", key["id"])
    assert doc == {
        "key_id": key["id"],
        "source": "key",
        "key_limits": [{"rate": "5/minute", "burst": 5}],
        "override": None,
        "limits": [{"rate": "5/minute", "burst": 5}],
        "usage": None,  # in-process shared state: the server holds the counters
    }
    doc = ok("limits", "set", key["id"], "--rate", "10/second", "--burst", "20")
    assert (doc["source"], doc["limits"]) == ("override", [{"rate": "10/second", "burst": 20}])
    assert ok("limits", "show", key["id"])["source"] == "override"
    doc = ok("limits", "set", key["id"], "--rate", "10/second", "--rate", "1000/day")
    assert doc["limits"] == [
        {"rate": "10/second", "burst": 10},
        {"rate": "1000/day", "burst": 1000},
    ]
    assert ok("limits", "clear", key["id"])["source"] == "key"
    human = invoke("limits", "show", key["id"])
    assert "limits from: key" in human.stdout
    assert "5/minute (burst 5)" in human.stdout


def test_errors_are_one_line(in_process: Path) -> None:
    key = ok("keys", "create", "svc")
    result = invoke("limits", "set", key["id"], "--rate", "10/fortnight")
    assert result.exit_code == 1
    assert result.output.strip() == (
        "error: --rate: invalid rate limit '10/fortnight': unknown unit 'fortnight' "
        "(use second, minute, hour or day)"
    )
    result = invoke(
        "limits", "set", key["id"], "--rate", "1/second", "--rate", "2/second", "--burst", "3"
    )
    assert result.exit_code != 0
    assert "--burst needs exactly one --rate" in result.output
    result = invoke("limits", "show", "nope")
    assert result.exit_code == 1
    assert result.output.strip() == "error: API key 'nope' does not exist"


def test_usage_through_redis(in_process: Path, redis_url: str, redis_prefix: str) -> None:
    import asyncio

    from bastion.ratelimit import Limit, RedisLimiter
    from bastion.ratelimit.keys import key_checks
    from bastion.storage.shared import RedisSharedState

    env = {"BASTION_SHARED": redis_url, "BASTION_SHARED__KEY_PREFIX": redis_prefix}
    key = ok("keys", "create", "svc", "--rate-limit", "5/minute", env=env)

    async def spend() -> None:
        state = await RedisSharedState.connect(redis_url, key_prefix=redis_prefix)
        try:
            for _ in range(2):
                await RedisLimiter(state).check(key_checks(key["id"], (Limit(5, 60.0),)))
        finally:
            await state.close()

    asyncio.run(spend())
    usage = ok("limits", "show", key["id"], env=env)["usage"]
    assert len(usage) == 1
    assert (usage[0]["rate"], usage[0]["remaining"]) == ("5/minute", 3)
    assert 20 < usage[0]["reset"] <= 24
