"""Reload without restart: routes from the configuration file, renewed TLS certificates.

How a reload is asked for:

- ``SIGHUP`` to the ``bastion serve`` process;
- ``bastion routes reload`` — reads the pid file ``{data_dir}/bastion.pid`` that
  ``bastion serve`` writes (or ``--pid-file``) and sends that process SIGHUP.
  With several nodes, each node is its own process: signal every one (e.g.
  ``kill -HUP`` through your orchestrator) after updating its configuration.

What a reload does (:meth:`Reloader.reload`):

1. re-read the configuration (file + ``BASTION_*`` environment) and validate it;
   an invalid configuration is logged and changes nothing;
2. compile the new routes off to the side and swap the native core's route table in
   one assignment (``load_table``, then :meth:`bastion.gateway.GatewayControl.reload`):
   requests in flight
   finish on the routes they matched; no connection is dropped; upstream pools
   and target health are kept. Other sections (storage, listen, …) need a
   restart: a changed one is logged as ignored;
3. check the TLS certificate files (also every ``tls.reload_interval`` seconds):
   when they changed, the new pair is validated (by OpenSSL too) and the native
   front's rustls configuration is swapped — new handshakes present the new
   certificate, connections already open keep theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bastion.crypto import TLSConfigError, load_server_certificate, server_ssl_context
from bastion.errors import BastionError
from bastion.settings import Settings

if TYPE_CHECKING:
    from bastion.runtime import Runtime

__all__ = [
    "PID_FILE_NAME",
    "CertificateWatcher",
    "ReloadError",
    "Reloadable",
    "Reloader",
    "remove_pid_file",
    "serving_reloads",
    "signal_reload",
    "write_pid_file",
]

log = logging.getLogger("bastion.reload")

PID_FILE_NAME = "bastion.pid"


class ReloadError(BastionError):
    """The running server cannot be asked to reload (no pid file, no such process)."""

    code = "reload_failed"
    status = 500
    title = "Reload failed"


def write_pid_file(path: Path) -> None:
    """Write this process's id to ``path`` (0644), replacing a stale file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
    tmp.replace(path)


def remove_pid_file(path: Path) -> None:
    """Remove ``path`` if it still names this process."""
    with contextlib.suppress(OSError, ValueError):
        if int(path.read_text(encoding="ascii").strip()) == os.getpid():
            path.unlink()


def signal_reload(path: Path) -> int:
    """Send SIGHUP to the process named in the pid file ``path``; return its pid.

    Raises :class:`ReloadError` when the file is missing or malformed, or the
    process is gone or not ours to signal.
    """
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        raise ReloadError(
            f"no pid file at {path} — is `bastion serve` running with this data_dir? "
            "(or give --pid-file)"
        ) from None
    if not text.isdigit() or int(text) <= 1:
        raise ReloadError(f"pid file {path} does not hold a process id — remove it")
    pid = int(text)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise ReloadError(
            f"process {pid} from {path} is not running — remove the stale pid file"
        ) from None
    except PermissionError:
        raise ReloadError(
            f"not allowed to signal process {pid} — run as the user that runs bastion serve"
        ) from None
    return pid


def _stamp(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return (info.st_mtime_ns, info.st_size, info.st_ino)


class CertificateWatcher:
    """The server's SSL context for ``cert`` / ``key``, reloaded when the files change.

    Raises :class:`~bastion.crypto.TLSConfigError` from the constructor for an
    unusable pair (as :func:`~bastion.crypto.server_ssl_context`).
    """

    def __init__(self, cert: Path, key: Path, min_version: str = "1.2") -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.context: ssl.SSLContext = server_ssl_context(self.cert, self.key, min_version)
        self._stamps = self._read_stamps()
        self.reloads = 0
        # Called after a new pair is loaded into ``context``, for a server that serves
        # from its own TLS configuration (the native front's ``reload_tls``); raising
        # ``ValueError`` refuses the pair.
        self.on_reload: Callable[[], None] | None = None

    def _read_stamps(self) -> tuple[tuple[int, int, int], ...] | None:
        try:
            return (_stamp(self.cert), _stamp(self.key))
        except OSError:
            return None  # mid-renewal (a file replaced): look again next time

    def changed(self) -> bool:
        """Whether the files differ from the pair last loaded."""
        stamps = self._read_stamps()
        return stamps is not None and stamps != self._stamps

    def check(self) -> bool:
        """Load the files into the context if they changed; True when a new pair was loaded.

        Raises :class:`~bastion.crypto.TLSConfigError` when the new pair is unusable
        (the context keeps serving the previous one).
        """
        stamps = self._read_stamps()
        if stamps is None or stamps == self._stamps:
            return False
        load_server_certificate(self.cert, self.key)  # key matches, not expired
        try:
            self.context.load_cert_chain(certfile=os.fspath(self.cert), keyfile=os.fspath(self.key))
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(
                f"tls.cert {self.cert} / tls.key {self.key} rejected by OpenSSL ({exc})"
            ) from None
        if self.on_reload is not None:
            try:
                self.on_reload()
            except ValueError as exc:
                raise TLSConfigError(str(exc)) from None
        self._stamps = stamps
        self.reloads += 1
        return True


class Reloadable(Protocol):
    """What a reload swaps routes in (``bastion.runtime.Runtime`` is one)."""

    @property
    def settings(self) -> Settings:
        """The settings the runtime was built from."""
        ...

    def reload_routes(self, settings: Settings) -> list[str]:
        """Swap in the routes of ``settings`` as one new table; return their names.

        Raises ``BastionError`` (the current routes stay) for an invalid route.
        """
        ...


class Reloader:
    """Reloads routes (and certificates) of a running ``bastion serve`` on request.

    ``load`` re-reads the settings (raising ``SettingsError``); ``runtime``
    swaps the routes (:class:`Reloadable`); ``certificates`` is the
    server's watcher (``None`` without TLS or with a generated certificate).
    """

    def __init__(
        self,
        runtime: Reloadable,
        load: Callable[[], Settings],
        *,
        certificates: CertificateWatcher | None = None,
    ) -> None:
        self.runtime = runtime
        self.load = load
        self.certificates = certificates
        self._lock = asyncio.Lock()

    async def reload(self) -> bool:
        """Re-read the configuration and swap the routes; False (logged) when refused."""
        async with self._lock:
            self.check_certificates()
            try:
                settings = self.load()
            except BastionError as exc:
                log.error("reload refused, the current routes stay: %s", exc.detail)
                return False
            if not settings.routes and self.runtime.settings.routes:
                # Most likely a file caught half-written (an empty file is a valid, empty
                # configuration): never drop every route on a reload.
                log.error(
                    "reload refused, the current routes stay: the configuration has no routes "
                    "(a half-written file?) — to remove every route, restart bastion"
                )
                return False
            try:
                names = self.runtime.reload_routes(settings)
            except BastionError as exc:
                log.error("reload refused, the current routes stay: %s", exc.detail)
                return False
            ignored = _changed_sections(self.runtime.settings, settings)
            if ignored:
                log.warning(
                    "reload: %s changed — only routes reload; restart bastion to apply the rest",
                    ", ".join(ignored),
                )
            log.info("routes reloaded: %s", ", ".join(names) or "(none)")
            return True

    def check_certificates(self) -> None:
        """Load renewed certificate files into the server (its ``on_reload``)."""
        watcher = self.certificates
        if watcher is None:
            return
        try:
            if watcher.check():
                log.info("TLS certificate reloaded from %s", watcher.cert)
        except TLSConfigError as exc:
            log.error("renewed TLS certificate refused, still serving the previous one: %s", exc)

    def install(self) -> Callable[[], None]:
        """Handle SIGHUP in the running loop; returns the function that uninstalls it."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[bool]] = set()

        def on_hup() -> None:
            log.info("received SIGHUP: reloading routes and certificates")
            task = loop.create_task(self.reload())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)

        def uninstall() -> None:
            loop.remove_signal_handler(signal.SIGHUP)

        return uninstall

    async def watch_certificates(self, interval: float) -> None:
        """Check the certificate files every ``interval`` seconds (until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            self.check_certificates()


def _changed_sections(old: Settings, new: Settings) -> list[str]:
    """Top-level settings other than routes that differ between ``old`` and ``new``."""
    new_sections = dict(new)
    return [name for name, value in old if name != "routes" and value != new_sections[name]]


@contextlib.asynccontextmanager
async def serving_reloads(
    runtime: Runtime, settings: Settings, load: Callable[[], Settings] | None
) -> AsyncIterator[CertificateWatcher | None]:
    """While ``bastion serve`` runs: the pid file, the SIGHUP handler, the certificate checks.

    Yields the certificate watcher (``None`` without TLS files): the native front
    registers its reload as ``on_reload``.
    """
    tls = runtime.tls
    watcher = None
    if tls.certfile is not None and tls.keyfile is not None:
        watcher = CertificateWatcher(tls.certfile, tls.keyfile, settings.tls.min_version)
    reloader = Reloader(
        runtime,
        load or (lambda: settings),
        certificates=watcher,
    )
    pid_file = settings.data_dir / PID_FILE_NAME
    pid_path: Path | None = pid_file
    try:
        write_pid_file(pid_file)
    except OSError as exc:
        pid_path = None
        log.warning("cannot write the pid file (%s): `bastion routes reload` needs --pid-file", exc)
    uninstall: Callable[[], None] | None = None
    if threading.current_thread() is threading.main_thread():
        uninstall = reloader.install()
    interval = settings.tls.reload_interval
    watching = (
        asyncio.ensure_future(reloader.watch_certificates(interval))
        if watcher is not None and interval > 0
        else None
    )
    try:
        yield watcher
    finally:
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        if uninstall is not None:
            uninstall()
        if pid_path is not None:
            remove_pid_file(pid_path)
