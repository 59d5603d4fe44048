"""open_shared_state: which URL opens what, and how bad URLs are reported."""

from __future__ import annotations

import pytest

from bastion.errors import BastionError
from bastion.storage.errors import StorageError
from bastion.storage.shared import MemorySharedState, SharedStateConfigError, open_shared_state
from bastion.storage.shared._url import redact_url


@pytest.mark.parametrize("url", ["memory://", "memory:", "MEMORY://"])
async def test_memory_urls(url: str) -> None:
    state = await open_shared_state(url, key_prefix="p:")
    assert isinstance(state, MemorySharedState)
    assert state.backend == "memory"
    assert state.exact_across_processes is False
    assert state.key_prefix == "p:"
    await state.close()


async def test_default_prefix() -> None:
    state = await open_shared_state("memory://")
    assert state.key_prefix == "bastion:"
    assert state.namespaced("k") == "bastion:k"


async def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(SharedStateConfigError) as caught:
        await open_shared_state("memcached://:s3cret@cache:11211")
    error = caught.value
    assert isinstance(error, StorageError)
    assert isinstance(error, BastionError)
    assert error.code == "shared_state_config"
    assert error.detail == (
        "shared state URL memcached://:***@cache:11211 has unsupported scheme 'memcached': "
        "use memory://, redis://, rediss:// or unix://"
    )


async def test_url_without_scheme_is_a_config_error() -> None:
    with pytest.raises(SharedStateConfigError) as caught:
        await open_shared_state("localhost:6379")
    assert caught.value.detail == (
        "shared state URL localhost:6379 has unsupported scheme 'localhost': "
        "use memory://, redis://, rediss:// or unix://"
    )
    with pytest.raises(SharedStateConfigError) as caught:
        await open_shared_state("")
    assert "has unsupported scheme '(none)'" in caught.value.detail


async def test_memory_url_with_a_host_is_a_config_error() -> None:
    with pytest.raises(SharedStateConfigError) as caught:
        await open_shared_state("memory://somewhere")
    assert caught.value.detail == (
        "shared state URL memory://somewhere must be exactly memory:// "
        "(the in-process backend takes no host, path or options)"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://bastion:s3cret@cache:6380/1", "rediss://bastion:***@cache:6380/1"),
        ("redis://s3cret@cache/0", "redis://***@cache/0"),
        ("redis://u:p%40ss@word@cache/0", "redis://u:***@cache/0"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        ("unix:///run/redis.sock?db=2&password=s3cret", "unix:///run/redis.sock?db=2&password=***"),
        ("unix://bastion:s3cret@/run/redis.sock", "unix://bastion:***@/run/redis.sock"),
        ("redis://[::1", "<malformed URL>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
