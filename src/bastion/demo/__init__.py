"""Demo helpers: the built-in echo upstream used by examples, tests and benchmarks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the echo server loads on first use (__getattr__ below)
    from bastion.demo.echo import EchoRequest, EchoServer, start_echo_server

__all__ = ["EchoRequest", "EchoServer", "start_echo_server"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``python -m bastion.demo.echo`` does not import the module twice.
    if name in __all__:
        from bastion.demo import echo

        return getattr(echo, name)
    raise AttributeError(f"module 'bastion.demo' has no attribute {name!r}")
