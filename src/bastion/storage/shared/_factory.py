"""Open the shared state a URL names."""

from __future__ import annotations

from bastion.storage.shared._memory import MemorySharedState
from bastion.storage.shared._url import MEMORY_SCHEMES, REDIS_SCHEMES, redact_url, url_scheme
from bastion.storage.shared.base import DEFAULT_KEY_PREFIX, SharedState
from bastion.storage.shared.errors import SharedStateConfigError


async def open_shared_state(url: str, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> SharedState:
    """Open the shared state at ``url``: ``memory://``, ``redis://``, ``rediss://`` or ``unix://``.

    A Redis is connected to and pinged before this returns.

    Raises SharedStateConfigError for an unsupported scheme or a malformed URL,
    and SharedStateUnavailableError when Redis cannot be reached (the message
    names the URL without its password, and the cause).
    """
    scheme = url_scheme(url)
    if scheme in MEMORY_SCHEMES:
        rest = url.partition(":")[2]
        if rest not in ("", "//", "///"):
            raise SharedStateConfigError(
                f"shared state URL {redact_url(url)} must be exactly memory:// "
                "(the in-process backend takes no host, path or options)"
            )
        return MemorySharedState(key_prefix=key_prefix)
    if scheme in REDIS_SCHEMES:
        # Imported only here: redis-py is ~15 MiB resident, which memory:// never needs.
        from bastion.storage.shared._redis import RedisSharedState

        return await RedisSharedState.connect(url, key_prefix=key_prefix)
    raise SharedStateConfigError(
        f"shared state URL {redact_url(url)} has unsupported scheme {scheme or '(none)'!r}: "
        "use memory://, redis://, rediss:// or unix://"
    )
