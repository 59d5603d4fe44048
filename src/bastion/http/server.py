"""Serve bastion: the native front on the public port, the ASGI app behind it.

The public port is always the native front (``bastion._native.Front``, Rust:
HTTP/1.1 and HTTP/2, rustls): it serves gateway routes itself and hands every
other request (OAuth/OIDC, login, admin, health, metrics) to this process's
ASGI app, which uvicorn serves on a private Unix socket. (Until issue 14,
``server.engine: uvicorn | granian`` served the app on the public port
directly; both were retired when the native front became the only data plane.)

- listen on ``settings.listen.host/port``, with TLS when a certificate is given
  (minimum version ``settings.tls.min_version``; rustls offers only AEAD suites
  with forward secrecy);
- call ``on_ready(url)`` once, when the socket accepts connections;
- send no ``Server`` header;
- on SIGTERM / SIGINT (or ``stop`` being set) stop accepting, let in-flight
  requests finish for up to ``settings.server.graceful_timeout`` seconds, run
  the ASGI lifespan shutdown, and return. A second SIGINT forces the exit.

Start-up failures (address in use, permission denied, unresolvable host,
application start-up failed) raise one :class:`~bastion.http.errors.ServerStartError`
line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bastion.crypto import server_ssl_context
from bastion.http.errors import ServerStartError
from bastion.http.types import ASGIApp

__all__ = ["run_server", "serve_forever"]

log = logging.getLogger("bastion.http")

OnReady = Callable[[str], None]

_UNSPECIFIED_HOSTS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind


def _display_url(scheme: str, host: str, port: int) -> str:
    if host in _UNSPECIFIED_HOSTS:
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def _bind_error(host: str, port: int, exc: OSError) -> ServerStartError:
    where = f"cannot listen on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return ServerStartError(
            f"{where}: address already in use — stop the other process or choose another "
            "listen.port"
        )
    if exc.errno == errno.EACCES:
        return ServerStartError(
            f"{where}: permission denied — ports below 1024 need CAP_NET_BIND_SERVICE; "
            "choose listen.port 1024 or above"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ServerStartError(f"{where}: no such address on this machine — check listen.host")
    return ServerStartError(f"{where}: {exc.strerror or exc}")


def _bind(host: str, port: int) -> socket.socket:
    """Bind (not yet listen) a TCP socket; raise ``ServerStartError`` with one clear line."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ServerStartError(
            f"cannot listen on {host}:{port}: the host name does not resolve ({exc.strerror}) "
            "— check listen.host"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, exc) from None
    return sock


@contextlib.contextmanager
def _on_signals(graceful: Callable[[], None], force: Callable[[], None]) -> Iterator[None]:
    """Call ``graceful`` on the first SIGTERM/SIGINT, ``force`` on any later one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    seen = 0

    def handler(signum: int) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            log.info("received %s: draining in-flight requests", signal.Signals(signum).name)
            graceful()
        else:
            log.warning("received %s again: forcing exit", signal.Signals(signum).name)
            force()

    installed: list[signal.Signals] = []
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, handler, sig)
            installed.append(sig)
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _tls_context_check(settings: Any, certfile: Path | None, keyfile: Path | None) -> Any:
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise ServerStartError("TLS needs both a certificate and a key file (tls.cert, tls.key)")
    min_version = str(settings.tls.min_version)
    # Raises TLSConfigError (one line naming the file) for an unusable pair.
    return server_ssl_context(Path(certfile), Path(keyfile), min_version)


async def run_server(
    app: ASGIApp,
    *,
    settings: Any,
    certfile: Path | None,
    keyfile: Path | None,
    on_ready: OnReady | None = None,
    stop: asyncio.Event | None = None,
    certificates: Any = None,
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT (or ``stop`` is set), then drain and return.

    ``certificates`` is the :class:`bastion.reload.CertificateWatcher` of the TLS
    files: a renewed pair it accepts is loaded into the native front.

    Runs in the current event loop. ``settings`` needs ``server.threads``,
    ``server.graceful_timeout``, ``server.backlog``, ``server.access_log``,
    ``listen.host``, ``listen.port``, ``tls.min_version``, ``tls.client_ca`` and
    ``request_limits``.

    Raises:
        ServerStartError: address in use, permission denied, unresolvable host,
            or the application's start-up failed.
        TLSConfigError: the certificate / key pair is unusable.
    """
    _tls_context_check(settings, certfile, keyfile)
    await _run_native(
        app, settings, certfile, keyfile, on_ready, stop or asyncio.Event(), certificates
    )


# -- the private socket's server -------------------------------------------


def _uvicorn_server_class() -> Any:
    import uvicorn

    class _Server(uvicorn.Server):
        """uvicorn's server with bastion's signal handling and a ready callback."""

        on_started: Callable[[], None] | None = None

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises captured signals after shutdown, which would kill
            # the process before the runtime closes: run_server handles them.
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and self.on_started is not None:
                self.on_started()

    return _Server


# -- native -----------------------------------------------------------------


def _native_config(
    settings: Any, certfile: Path | None, keyfile: Path | None, socket_path: Path
) -> dict[str, Any]:
    tls: dict[str, Any] | None = None
    if certfile is not None and keyfile is not None:
        client_ca = settings.tls.client_ca
        tls = {
            "cert": str(certfile),
            "key": str(keyfile),
            "min_version": str(settings.tls.min_version),
            "client_ca": str(client_ca) if client_ca is not None else None,
        }
    limits = settings.request_limits
    return {
        "threads": int(settings.server.threads),
        "upstream_socket": str(socket_path),
        "tls": tls,
        "max_headers": int(limits.max_headers),
        "max_header_bytes": int(limits.max_header_bytes),
    }


async def _run_native(
    app: ASGIApp,
    settings: Any,
    certfile: Path | None,
    keyfile: Path | None,
    on_ready: OnReady | None,
    stop: asyncio.Event,
    certificates: Any,
) -> None:
    """The native front on the public port, the Python app behind it on a private socket.

    The app is served by uvicorn on a Unix socket in a fresh 0700 directory
    (removed at exit), behind :class:`NativeFrontMiddleware`; the front
    (``bastion._native.Front``) gets the listening socket Python bound. On
    stop: the front drains first (its in-flight requests still reach the app),
    then uvicorn stops.
    """
    import shutil
    import tempfile

    import orjson
    import uvicorn

    from bastion._native import Front
    from bastion.http.app_socket import CoalescingHttpToolsProtocol
    from bastion.http.middleware.native_front import NativeFrontMiddleware

    host, port = settings.listen.host, int(settings.listen.port)
    graceful_timeout = float(settings.server.graceful_timeout)
    sock = _bind(host, port)
    private = Path(tempfile.mkdtemp(prefix="bastion-front-"))  # mode 0700
    socket_path = private / "app.sock"
    front: Any = None
    try:
        front = Front(
            orjson.dumps(_native_config(settings, certfile, keyfile, socket_path)).decode()
        )
        bound = sock.getsockname()
        config = uvicorn.Config(
            NativeFrontMiddleware(app, server=(str(bound[0]), int(bound[1]))),
            uds=str(socket_path),
            loop="uvloop",
            # httptools, writing each response in one write (app_socket's docstring).
            http=CoalescingHttpToolsProtocol,
            lifespan="on",
            server_header=False,
            # The front (hyper) adds Date to every response that has none; uvicorn adding
            # its own would double it on proxied responses, which carry the upstream's.
            date_header=False,
            proxy_headers=False,
            forwarded_allow_ips=[],
            # The front keeps its pooled connections open: never close them as idle.
            timeout_keep_alive=3600,
            timeout_graceful_shutdown=max(1, math.ceil(graceful_timeout)),
            access_log=bool(settings.server.access_log),
            log_config=None,
        )
        config.load()
        server = _uvicorn_server_class()(config)
        started = asyncio.Event()
        server.on_started = started.set
        draining = asyncio.Event()
        forced = False

        def graceful() -> None:
            draining.set()

        def force() -> None:
            nonlocal forced
            forced = True
            draining.set()
            server.should_exit = True
            server.force_exit = True

        async def watch_stop() -> None:
            await stop.wait()
            graceful()

        async def serve_app() -> bool:
            # uvicorn exits the process when the lifespan start-up fails: report it instead.
            try:
                await server.serve()
            except SystemExit:
                return False
            return True

        watcher = asyncio.ensure_future(watch_stop())
        serving = asyncio.ensure_future(serve_app())
        try:
            with _on_signals(graceful, force):
                waiting = asyncio.ensure_future(started.wait())
                await asyncio.wait({waiting, serving}, return_when=asyncio.FIRST_COMPLETED)
                if not started.is_set():
                    waiting.cancel()
                    if not await serving:
                        raise ServerStartError(
                            "the application failed to start (ASGI lifespan start-up); "
                            "see the log above"
                        )
                    if stop.is_set() or draining.is_set():
                        return
                    raise ServerStartError("the server stopped during start-up; see the log above")
                sock.listen(int(settings.server.backlog))
                try:
                    front.start(sock.detach())
                except (OSError, ValueError) as exc:
                    raise ServerStartError(f"the native front could not start: {exc}") from None
                if certificates is not None:
                    certificates.on_reload = front.reload_tls
                if on_ready is not None:
                    on_ready(_display_url("https" if certfile else "http", host, int(bound[1])))
                await draining.wait()
                drained = await asyncio.to_thread(front.stop, graceful_timeout)
                if not drained and not forced:
                    log.error(
                        "in-flight requests did not finish within %s s; cancelled",
                        graceful_timeout,
                    )
                server.should_exit = True
                await serving
        finally:
            watcher.cancel()
            if certificates is not None:
                certificates.on_reload = None
            if not serving.done():
                server.should_exit = True
                server.force_exit = True
                with contextlib.suppress(Exception):
                    await serving
    finally:
        if front is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(front.stop, 0.0)
        sock.close()
        shutil.rmtree(private, ignore_errors=True)


def serve_forever(
    app: ASGIApp,
    *,
    settings: Any,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    on_ready: OnReady | None = None,
) -> None:
    """Blocking :func:`run_server` on a new uvloop event loop (asyncio's when uvloop is missing).

    Raises the same errors as :func:`run_server`.
    """
    coro = run_server(app, settings=settings, certfile=certfile, keyfile=keyfile, on_ready=on_ready)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(coro)
        return
    uvloop.run(coro)
