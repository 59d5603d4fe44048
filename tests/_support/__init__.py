"""Test helpers shared by the end-to-end tests: free ports, a bastion subprocess, a TCP proxy.

Importable as ``_support`` (``pythonpath = ["tests"]`` in pyproject).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from _support.workers import port_range
from bastion.demo.echo import EchoServer, start_echo_server

BASTION = [sys.executable, "-m", "bastion"]


_port_lock = threading.Lock()
_ports = port_range()
_next_port = random.randrange(len(_ports))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Taken in turn from this worker's own range (:func:`_support.workers.port_range`,
    below the kernel's ephemeral ports): two workers never pick the same port, and one
    worker picks a port again only after the rest of its range.
    """
    global _next_port
    with _port_lock:
        for _ in range(len(_ports)):
            port = _ports[_next_port % len(_ports)]
            _next_port += 1
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue  # in use (another program, or a connection of this one)
                return port
    with socket.socket() as sock:  # the whole slice in use: any port the kernel gives
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without BASTION_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(extra or {})
    return env


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``bastion ARGS`` to completion (``stdin`` its input) and capture its output."""
    return subprocess.run(
        [*BASTION, *args],
        input=stdin,
        env=clean_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class BastionProcess:
    """``bastion serve --json`` in a subprocess; waits for its ``ready`` event."""

    def __init__(
        self, *args: str, env: Mapping[str, str] | None = None, cwd: Path, port: int | None = None
    ) -> None:
        self.port = port or free_port()
        self.args = ["serve", "--json", "--port", str(self.port), *args]
        self.env = clean_env(env)
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.events: list[dict[str, Any]] = []
        self.stderr = ""

    def start(self, timeout: float = 30) -> BastionProcess:
        self.proc = subprocess.Popen(
            [*BASTION, *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            event = orjson.loads(line)
            self.events.append(event)
            if event.get("event") == "ready":
                self.url = event["url"]
                return self
        self.stop()
        raise AssertionError(f"bastion did not become ready: {self.events} {self.stderr}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.stderr = err or ""
        return int(self.proc.returncode)

    def __enter__(self) -> BastionProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TCPProxy:
    """A loopback TCP forwarder that can be cut and restored — a database "going down".

    Runs its own event loop in a thread. ``cut()`` closes the listener and every
    open connection; ``restore()`` listens again on the same port.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self._call(self._start())

    def cut(self) -> None:
        self._call(self._stop())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


class EchoThread:
    """The demo echo upstream on its own event loop in a thread (the tests are synchronous)."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_echo_server("127.0.0.1", port, tls=tls), self.loop
        )
        self.server: EchoServer = future.result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextlib.contextmanager
def tcp_proxy(host: str, port: int) -> Iterator[TCPProxy]:
    """A running :class:`TCPProxy` to ``host:port``, closed afterwards."""
    proxy = TCPProxy(host, port)
    proxy.restore()
    try:
        yield proxy
    finally:
        proxy.close()
