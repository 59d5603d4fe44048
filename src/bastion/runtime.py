"""The running bastion: every long-lived component, built once from the settings.

:class:`Runtime` is what the HTTP app, the CLI and the tests share: the
database, the shared ephemeral state, the master keyring, the TLS material,
the gateway and (with ``demo.enabled``) the demo echo upstream. ``open()``
builds them in dependency order and turns every failure into one
:class:`~bastion.errors.BastionError` with an actionable line; ``close()``
releases them in reverse order.

This is the one composition root: every component is complete when the
:class:`Runtime` is constructed (the gateway's control side with its limiter
companions, the token endpoint's one grant table over one token issuer);
nothing is attached afterwards. A reload (:meth:`Runtime.reload_routes`)
swaps one reference, the immutable route table. The HTTP endpoints read the
runtime through a typed view of it (:class:`bastion.http.runtime.ControlPlane`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion import _native
from bastion.apikeys import ApiKeyService, token_exchange
from bastion.audit.chain import checkpoint_signer
from bastion.audit.events import Auditor, EventTypes
from bastion.audit.monitoring import Alerting, open_alerting
from bastion.audit.native_drain import NativeAuditDrain
from bastion.audit.sinks import JsonLinesSink
from bastion.audit.writer import AuditWriter
from bastion.crypto import (
    Keyring,
    create_keyring_file,
    ensure_dev_certificate,
    load_keyring_file,
    load_server_certificate,
    parse_keyring_text,
)
from bastion.errors import BastionError
from bastion.gateway import native_push
from bastion.gateway.authn.external_jwt import TrustedIssuer
from bastion.gateway.authn.introspection import IntrospectionAuthenticator
from bastion.gateway.authn.jwks_cache import JwksCache
from bastion.gateway.authn.jwt import JwtAuthenticator
from bastion.gateway.authn.mtls import MtlsAuthenticator
from bastion.gateway.compile import load_table
from bastion.gateway.control import GatewayControl
from bastion.gateway.lookups import NativeLookups
from bastion.interaction import SessionManager
from bastion.interaction.backchannel import BackchannelLogout
from bastion.oauth.admin_tokens import admin_audience
from bastion.oauth.authorization_codes import (
    AuthorizationCodeService,
    IdTokenSigner,
    family_id_of,
)
from bastion.oauth.clients import ClientService
from bastion.oauth.exchange import ApiKeyExchangePolicy
from bastion.oauth.refresh_tokens import RefreshTokenService
from bastion.oauth.signing_keys import SigningKeyManager
from bastion.oauth.tokens import AccessTokenVerifier, TokenIssuer
from bastion.observability.tracing import GatewayTracer
from bastion.protocol import rfc8693
from bastion.protocol.rfc6749.grants import (
    authorization_code,
    client_credentials,
    refresh_token,
)
from bastion.protocol.rfc6749.token_endpoint import TokenEndpoint
from bastion.ratelimit import Limit, MemoryLimiter, RedisLimiter
from bastion.ratelimit.backends import DEFAULT_TIMEOUT as DEFAULT_LIMIT_TIMEOUT
from bastion.ratelimit.keys import KeyLimitOverrides
from bastion.ratelimit.login import LoginThrottle, ThrottlePolicy
from bastion.ratelimit.nodes import NodeCount
from bastion.ratelimit.outage import BackendHealth
from bastion.ratelimit.risk import RiskRegistry
from bastion.ratelimit.risk_alerts import tighten_on_alerts
from bastion.settings import RouteMatch, RouteSettings, Settings, redact_url
from bastion.storage import Database, NotFoundError, feed, migrate
from bastion.storage.feed import ChangeFeedFollower
from bastion.storage.models import AuthorizationCode, RefreshToken, utcnow
from bastion.storage.pruning import Pruner
from bastion.storage.shared import SharedState, is_redis, open_shared_state
from bastion.storage.shared.invalidation import follow_invalidations

if TYPE_CHECKING:
    # The demo's echo server loads only with `serve --demo`; prometheus_client only with
    # metrics.enabled (_metrics below).
    from bastion.demo.echo import EchoServer
    from bastion.observability.metrics import Metrics

log = logging.getLogger("bastion.runtime")

Announce = Callable[[str], None]


class DataDirError(BastionError):
    """The data directory for development defaults cannot be created or written."""

    code = "data_dir_unusable"
    status = 500
    title = "Data directory unusable"


@dataclass
class TLSMaterial:
    """Certificate and key files the server presents (``None`` when TLS is off)."""

    certfile: Path | None
    keyfile: Path | None
    generated: bool = False


@dataclass
class Runtime:
    """Every long-lived component of one bastion process."""

    settings: Settings
    db: Database
    shared: SharedState
    keyring: Keyring
    tls: TLSMaterial
    # What Python keeps of the gateway: routes, authenticators, limiter (gateway/control.py).
    control: GatewayControl
    node_id: str
    signing_keys: SigningKeyManager
    clients: ClientService
    token_endpoint: TokenEndpoint
    access_tokens: AccessTokenVerifier
    # Refresh-token families: rotation, reuse detection, revocation (oauth/refresh_tokens.py).
    refresh_tokens: RefreshTokenService
    # Single-use authorization codes with PKCE (oauth/authorization_codes.py).
    authorization_codes: AuthorizationCodeService
    api_keys: ApiKeyService
    # Follows the change feed: any process's changes reach this node's caches (storage/feed.py).
    changes: ChangeFeedFollower
    # The in-process audit bus: every security decision is recorded here (audit/events.py).
    auditor: Auditor = field(default_factory=Auditor)
    # Prometheus metrics (observability/metrics.py); None when metrics.enabled is false.
    metrics: Metrics | None = None
    # Detectors, alerts and webhook delivery over the auditor's events (audit/monitoring.py).
    alerting: Alerting | None = None
    # Drains the auditor into this node's hash chain (audit/writer.py); flushed at shutdown.
    audit_writer: AuditWriter | None = None
    # Moves the native data plane's decisions into the auditor (audit/native_drain.py).
    native_audit: NativeAuditDrain | None = None
    # The demo echo upstream (None unless demo.enabled; its module is imported only then).
    echo: EchoServer | None = None
    # Brute-force throttle of client authentication at the token endpoint (None: disabled).
    client_throttle: LoginThrottle | None = None
    # What API keys may obtain by token exchange, and how often (oauth/exchange.py).
    exchange_policy: ApiKeyExchangePolicy | None = None
    # Browser sessions (interaction/sessions.py) and the brute-force throttle of the login.
    sessions: SessionManager | None = None
    login_throttle: LoginThrottle | None = None
    # Logout tokens to the clients of the sessions this node ends (interaction/backchannel.py).
    backchannel: BackchannelLogout | None = None
    _closed: bool = field(default=False, repr=False)
    _stop: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, repr=False)
    _audit_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _lookups: NativeLookups | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.metrics is not None:
            # Counts auth failures, tokens and alerts from the audit bus; reads the
            # audit queue and the upstream pools only when scraped.
            self.metrics.attach(self.auditor)
            # Every upstream pool is the native core's (read by _native.upstream_pools).
            self.metrics.watch_upstreams(dict)
            self.metrics.watch_change_feed(self.changes)

    @classmethod
    async def open(cls, settings: Settings, *, announce: Announce | None = None) -> Runtime:
        """Build every component; raise one ``BastionError`` naming what failed and the fix.

        SQLite databases are migrated automatically; a PostgreSQL schema that is
        behind raises ``MigrationError`` asking for ``bastion migrate``.
        """
        say = announce or (lambda line: log.info(line))
        for line in _development_lines(settings):
            say(line)
        if uses_data_dir(settings):
            ensure_data_dir(settings.data_dir)
        keyring = open_keyring(settings)
        tls = _prepare_tls(settings)
        auditor = Auditor(max_queue=settings.audit.max_queue)

        url = settings.storage_url
        if url.startswith("sqlite"):
            await migrate(url)
        db = await Database.connect(url, pool_size=settings.storage.pool_size)
        shared: SharedState | None = None
        echo = None
        try:
            if not url.startswith("sqlite"):
                await db.check_schema()
            shared = await open_shared_state(
                settings.shared.url, key_prefix=settings.shared.key_prefix
            )
            routes = list(settings.routes)
            if settings.demo.enabled:
                from bastion.demo.echo import start_echo_server

                echo = await start_echo_server("127.0.0.1", 0, html_prefix=DEMO_APP_PATH)
                routes.extend(_demo_routes(echo.url))
                say(f"demo: echo upstream at {echo.url}, public route /demo proxies to it")
                say(
                    f"demo: {DEMO_APP_PATH}/ is a browser app behind a session route "
                    "(sign in with a user from `bastion users create`)"
                )
            node_id = settings.node_id or f"{socket.gethostname()}:{settings.listen.port}"
            audit_writer = AuditWriter(
                auditor,
                db,
                node_id,
                sinks=[JsonLinesSink(settings.audit.file)] if settings.audit.file else [],
                batch_size=settings.audit.batch_size,
                flush_interval=settings.audit.flush_interval,
                checkpoint_interval=settings.audit.checkpoint_interval,
                retention=settings.audit.retention,
                sign_checkpoint=checkpoint_signer(keyring),
            )
            metrics = _metrics(settings)
            alerting = await open_alerting(
                settings, auditor, db=db, keyring=keyring, node_id=node_id
            )
            api_keys = ApiKeyService(db, settings, shared)
            signing_keys = SigningKeyManager(db, keyring, settings, shared)
            if await signing_keys.load():
                for alg in settings.signing_keys.algorithms:
                    first = signing_keys.current(alg)
                    say(f"signing key {first.kid} ({first.alg}) is active")
            # The native data plane's caches: configured here, filled by what Python accepts.
            native_push.install(settings, signing_keys.public_key_set)
            # The identity assertion is signed natively with the current key, pushed on change.
            native_push.assertion_key(signing_keys.current())
            signing_keys.on_active_changed(native_push.assertion_key)
            api_keys.mirror(native_push.NativeApiKeys())
            clients = ClientService(db, settings, shared)

            async def client_is_active(client_id: str) -> bool:
                # Read through to the database: introspection, revocation and the
                # admin API must see a disabled client at once, on every node.
                try:
                    client = await db.clients.get(client_id)
                except NotFoundError:
                    return False
                return not client.disabled

            access_tokens = AccessTokenVerifier(
                signing_keys.public_key_set,
                issuer=settings.issuer_url,
                shared=shared,
                # Tokens exchanged for an API key live only while the key is usable.
                client_is_active=token_exchange.with_api_keys(client_is_active, api_keys),
                leeway=settings.tokens.leeway,
                max_lifetime=settings.tokens.max_access_token_ttl,
                changes=db.change_feed.append,
            )
            changes = await _follow_changes(settings, db, shared, access_tokens)
            sessions = SessionManager(db, settings.sessions, auditor)
            # Every session this node ends (only this node gets it back) is told to the
            # clients that signed into it, signed as their ID tokens are.
            backchannel = BackchannelLogout(
                db,
                settings.issuer_url,
                IdTokenSigner(signing_keys.current, signing_keys.id_token_algorithms),
                auditor,
                production=settings.env == "production",
            )
            sessions.on_ended(backchannel.session_ended)
            # A disabled, deleted or re-passworded user's sessions end on every node at once.
            changes.before_delivery(feed.USERS, sessions.user_changed)
            # … and the API keys they own are judged again (refused while they are disabled).
            changes.before_delivery(feed.USERS, api_keys.owner_changed)
            # ... and the gateway's `session` routes look that user's sessions up again.
            changes.before_delivery(feed.USERS, native_push.session_user_changed)
            control = await _gateway_control(
                settings,
                routes,
                authenticators=_authenticators(settings, access_tokens, shared, api_keys),
                db=db,
                shared=shared,
                auditor=auditor,
                node_id=node_id,
            )
            # What a key may obtain by exchange: read from the live routes.
            exchange_policy = ApiKeyExchangePolicy(
                issuer=settings.issuer_url,
                routes=lambda: control.routes,
                limiter=lambda: control.limiter,
                rate=Limit.parse(settings.api_keys.exchange_rate),
                forbidden=(admin_audience(settings.issuer_url),),
            )
            refresh_tokens = _refresh_tokens(settings, db, access_tokens, auditor)
            authorization_codes = _authorization_codes(settings, db, refresh_tokens, auditor)
            token_endpoint = _token_endpoint(
                settings, signing_keys, api_keys, exchange_policy, authorization_codes
            )
            # The same routes, compiled for the native data plane (the public listener).
            load_table(settings, routes)
            jwt = control.authenticators.get("jwt")
            if isinstance(jwt, JwtAuthenticator):
                # An emergency retirement: tokens verified with the retired key leave the
                # cache once this process's key set no longer holds it.
                signing_keys.on_keys_dropped(jwt.clear)
            _configure_native_limiter(shared)
            client_throttle = _login_throttle(shared, settings, "client")
            login_throttle = _login_throttle(shared, settings, "login")
        except BaseException:
            if echo is not None:
                await echo.close()
            if shared is not None:
                await shared.close()
            await db.close()
            raise
        return cls(
            settings=settings,
            db=db,
            shared=shared,
            keyring=keyring,
            tls=tls,
            control=control,
            node_id=node_id,
            signing_keys=signing_keys,
            clients=clients,
            token_endpoint=token_endpoint,
            access_tokens=access_tokens,
            refresh_tokens=refresh_tokens,
            authorization_codes=authorization_codes,
            api_keys=api_keys,
            changes=changes,
            auditor=auditor,
            alerting=alerting,
            audit_writer=audit_writer,
            native_audit=NativeAuditDrain(
                auditor,
                alerts=alerting.manager if alerting is not None else None,
                capacity=settings.audit.max_queue,
                tracer=control.tracer,
                limiter_health=control.limiter_health,
            ),
            echo=echo,
            metrics=metrics,
            client_throttle=client_throttle,
            exchange_policy=exchange_policy,
            sessions=sessions,
            backchannel=backchannel,
            login_throttle=login_throttle,
        )

    async def startup(self) -> None:
        """Called by the ASGI lifespan: start the background loops."""
        # Everything built so far lives as long as the process: move it out of the
        # collector's reach so full collections stay short (tail latency), as
        # CPython's gc.freeze() documentation recommends for long-lived servers.
        gc.collect()
        gc.freeze()
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self.changes.run(self._stop), name="change-feed"),
            asyncio.create_task(self.signing_keys.run(self._stop), name="signing-keys"),
            asyncio.create_task(self.clients.run(self._stop), name="clients-invalidation"),
            asyncio.create_task(self.api_keys.run(self._stop), name="api-keys"),
            # Spent codes, expired refresh tokens and finished sessions (storage/pruning.py).
            asyncio.create_task(
                Pruner(self.db, idle_timeout=self.settings.sessions.idle_timeout).run(self._stop),
                name="pruning",
            ),
        ]
        if self.alerting is not None:
            self._tasks.append(asyncio.create_task(self.alerting.run(self._stop), name="webhooks"))
        if self.native_audit is not None:
            self._tasks.append(
                asyncio.create_task(self.native_audit.run(self._stop), name="native-audit")
            )
        if self.audit_writer is not None:
            self._audit_task = asyncio.create_task(
                self.audit_writer.run(self._stop), name="audit-writer"
            )
        control = self.control
        if control.key_overrides is not None:
            self._tasks.append(
                asyncio.create_task(
                    control.key_overrides.run(self._stop), name="ratelimit-overrides"
                )
            )
        if control.node_count is not None:
            self._tasks.append(
                asyncio.create_task(control.node_count.run(self._stop), name="node-heartbeat")
            )
        jwt = control.authenticators.get("jwt")
        if isinstance(jwt, JwtAuthenticator):
            # Revocations and client changes reach the verified-token cache by channel.
            self._tasks.append(asyncio.create_task(jwt.run(self._stop), name="jwt-revocations"))
        if self.sessions is not None:
            # Sessions started or ended anywhere leave the native session cache (a lost
            # subscription clears it), and the gateway's uses of sessions move their idle end.
            self._tasks.append(
                asyncio.create_task(
                    follow_invalidations(
                        self.shared, feed.SESSIONS, native_push.session_changed, self._stop
                    ),
                    name="gateway-sessions",
                )
            )
            self._tasks.append(
                asyncio.create_task(
                    _record_session_uses(self.sessions, self._stop), name="session-uses"
                )
            )
        # A native cache miss asks for the record here (bastion.gateway.lookups).
        self._lookups = NativeLookups(
            self.api_keys, lambda: self.control.authenticators, self.sessions
        )
        self._lookups.install()

    async def shutdown(self) -> None:
        """Called by the ASGI lifespan after in-flight requests drained."""
        if self._lookups is not None:
            self._lookups.uninstall()
            self._lookups = None
        self._stop.set()
        if self._tasks:
            # The loops watch the stop event; give them a moment to finish cleanly.
            _, pending = await asyncio.wait(self._tasks, timeout=2.0)
            for task in pending:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks = []
        introspection = self.control.authenticators.get("introspection")
        if isinstance(introspection, IntrospectionAuthenticator):
            await introspection.aclose()

        # After the gateway drained: every decision is queued; write all of it.
        if self.native_audit is not None:
            self.native_audit.drain_all()
        if self._audit_task is not None:
            # It stops between batches; a write hanging on a dead database is cancelled
            # (its batch stays pending and flush() retries it).
            _, pending = await asyncio.wait([self._audit_task], timeout=5.0)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._audit_task
            self._audit_task = None
        if self.audit_writer is not None:
            await self.audit_writer.flush()
        tracer = self.control.tracer
        if tracer is not None:
            # Flush the spans still queued; the SDK's shutdown blocks (its export thread).
            await asyncio.to_thread(tracer.shutdown)

    def reload_routes(self, settings: Settings) -> list[str]:
        """Swap the gateway's routes for those of ``settings`` (demo route kept); return names.

        Raises ``GatewayConfigError`` (the current routes stay) for an invalid route.
        """
        routes = list(settings.routes)
        if self.echo is not None:
            routes.extend(_demo_routes(self.echo.url))
        # Only routes reload: the native core keeps tracing as the running gateway's tracer.
        kept = settings.model_copy(update={"tracing": self.settings.tracing})
        load_table(kept, routes)  # first: a refused native table changes nothing
        self.control.reload(routes)
        jwt = self.control.authenticators.get("jwt")
        if isinstance(jwt, JwtAuthenticator):
            # Cached tokens and per-route jwt policies were for the old routes.
            jwt.routes_changed()
        return [route.name for route in routes]

    async def close(self) -> None:
        """Release every component (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.backchannel is not None:
            await self.backchannel.aclose()
        if self.native_audit is not None:
            self.native_audit.drain_all()
        if self.audit_writer is not None and (self.auditor.queue or self.auditor.traffic.pending()):
            # Decisions made after the lifespan's shutdown flush: the server may still have
            # answered requests on open keep-alive connections while it drained. The server
            # has stopped now; write those too before the database closes.
            await self.audit_writer.flush()
        if self.control.tracer is not None:
            await asyncio.to_thread(self.control.tracer.shutdown)  # idempotent: spans flushed once
        if self.echo is not None:
            await self.echo.close()
        await self.shared.close()
        await self.db.close()


async def _record_session_uses(sessions: SessionManager, stop: asyncio.Event) -> None:
    """Write the gateway's uses of browser sessions (``native_push.sessions_used``) every
    half touch interval (0.5 to 10 s): a session used only through ``session`` routes does
    not end idle, and the database sees at most one write per session per touch interval."""
    interval = max(0.5, min(10.0, sessions.touch_every / 2))
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        uses = native_push.sessions_used()
        if uses:
            try:
                await sessions.used(uses)
            except Exception as error:  # the database is down: these are lost, later uses count
                log.warning("could not record browser session uses (will retry): %s", error)
        if stop.is_set():
            return


def _login_throttle(shared: SharedState, settings: Settings, kind: str) -> LoginThrottle | None:
    """The brute-force throttle of one kind of credential check (``ratelimit.login``)."""
    login = settings.ratelimit.login
    if not login.enabled:
        return None
    policy = ThrottlePolicy(**login.model_dump(exclude={"enabled"}))
    return LoginThrottle(shared, kind=kind, policy=policy)


async def _follow_changes(
    settings: Settings, db: Database, shared: SharedState, access_tokens: AccessTokenVerifier
) -> ChangeFeedFollower:
    """The change-feed follower of this node, positioned at the feed's end.

    Revocations of tokens that may still be live are re-applied first: with
    in-process shared state this node's deny-list starts empty.
    """
    horizon = settings.tokens.max_access_token_ttl + settings.tokens.leeway
    follower = ChangeFeedFollower(
        db.change_feed, shared, retention=max(feed.DEFAULT_RETENTION, 2 * horizon)
    )
    follower.before_delivery(feed.REVOKED_TOKENS, access_tokens.apply_revocation)
    # The native deny-list hears every revocation too (the replay included), which is
    # what lets the native core verify uncached tokens itself.
    follower.before_delivery(feed.REVOKED_TOKENS, native_push.apply_revocation)
    await follower.start()
    since = utcnow() - timedelta(seconds=horizon)
    revoked = await db.change_feed.since(feed.REVOKED_TOKENS, since)
    await follower.replay(feed.REVOKED_TOKENS, revoked)
    native_push.verify_misses(True)
    return follower


async def _gateway_control(
    settings: Settings,
    routes: list[RouteSettings],
    *,
    authenticators: dict[str, Any],
    db: Database,
    shared: SharedState,
    auditor: Auditor,
    node_id: str,
) -> GatewayControl:
    """What the control plane keeps of the gateway, every part built here and once.

    Raises ``GatewayConfigError`` for an invalid route.
    """
    limits = settings.ratelimit
    redis = is_redis(shared)
    # Exact across nodes only through Redis (one Lua round trip per request);
    # in memory, one native store shared with the native front (one budget).
    limiter = RedisLimiter(shared) if is_redis(shared) else MemoryLimiter(serve_native=True)
    key_overrides = KeyLimitOverrides(db, shared, native=True)
    await key_overrides.load()
    risk = RiskRegistry()  # detectors flag keys / addresses here
    if limits.risk.enabled:
        # Attack alerts tighten the limits of whom they name (ratelimit/risk_alerts.py).
        tighten_on_alerts(auditor, risk, factor=limits.risk.factor, duration=limits.risk.duration)
    return GatewayControl(
        routes,
        authenticators=authenticators,
        limiter=limiter,
        tracer=_tracer(settings),
        # With Redis, the fail-open fallback's buckets are the native store, so requests
        # the native front decides during an outage draw from the same local share.
        fallback_limiter=MemoryLimiter(serve_native=True) if redis else None,
        key_overrides=key_overrides,
        limiter_health=BackendHealth(auditor, node_id=node_id),
        node_count=NodeCount(shared, node_id, interval=limits.node_heartbeat) if redis else None,
        risk=risk,
    )


def _token_endpoint(
    settings: Settings,
    signing_keys: SigningKeyManager,
    api_keys: ApiKeyService,
    exchange_policy: ApiKeyExchangePolicy,
    authorization_codes: AuthorizationCodeService,
) -> TokenEndpoint:
    """The token endpoint's one grant table, over one token issuer."""
    issuer = TokenIssuer(signing_keys.current)
    return TokenEndpoint(
        {
            client_credentials.GRANT_TYPE: client_credentials.ClientCredentialsGrant(
                issuer=settings.issuer_url,
                settings_tokens=settings.tokens,
                issue_token=issuer.issue,
            ),
            refresh_token.GRANT_TYPE: refresh_token.RefreshTokenGrant(
                issuer=settings.issuer_url,
                settings_tokens=settings.tokens,
                issue_token=issuer.issue,
                refresh_tokens=authorization_codes.refresh_tokens,
            ),
            authorization_code.GRANT_TYPE: authorization_code.AuthorizationCodeGrant(
                issuer=settings.issuer_url,
                settings_tokens=settings.tokens,
                issue_token=issuer.issue,
                sign_id_token=IdTokenSigner(signing_keys.current, signing_keys.id_token_algorithms),
                codes=authorization_codes,
            ),
            rfc8693.GRANT_TYPE: token_exchange.TokenExchangeGrant(
                issuer=settings.issuer_url,
                api_keys=api_keys,
                issue_token=issuer.issue,
                settings_tokens=settings.tokens,
                audiences=exchange_policy.audiences,
                admit=exchange_policy.admit,
            ),
        },
    )


def _refresh_tokens(
    settings: Settings, db: Database, access_tokens: AccessTokenVerifier, auditor: Auditor
) -> RefreshTokenService:
    """Refresh-token families over ``db``: a disabled user's are refused, a revoked family's
    access tokens are deny-listed on this node at once (the others follow the change
    feed), and a family revoked as stolen is a ``token.refresh_reuse`` event (an alert)."""

    async def user_is_active(user_id: str) -> bool:
        try:
            return not (await db.users.get(user_id)).disabled
        except NotFoundError:
            return False

    async def deny_locally(message: str) -> None:
        await access_tokens.apply_revocation(message)
        native_push.token_revoked(message)

    def on_theft(token: RefreshToken, reason: str, ip: str | None) -> None:
        auditor.record(
            EventTypes.REFRESH_REUSE,
            "failure",
            reason=reason,
            ip=ip,
            subject=token.user_id,
            client_id=token.client_id,
            data={"family": token.family_id},
        )

    return RefreshTokenService(
        db.refresh_tokens,
        settings.tokens,
        user_is_active=user_is_active,
        deny_locally=deny_locally,
        on_theft=on_theft,
    )


def _authorization_codes(
    settings: Settings, db: Database, refresh_tokens: RefreshTokenService, auditor: Auditor
) -> AuthorizationCodeService:
    """Authorization codes over ``db``, starting families in ``refresh_tokens``; a replayed
    code (whose family is then revoked) is a ``token.code_reuse`` event (an alert)."""

    def on_replay(code: AuthorizationCode, ip: str | None) -> None:
        auditor.record(
            EventTypes.CODE_REUSE,
            "failure",
            reason="code_reuse",
            ip=ip,
            subject=code.user_id,
            client_id=code.client_id,
            data={"family": family_id_of(code.code_digest)},
        )

    return AuthorizationCodeService(db.codes, refresh_tokens, settings.tokens, on_replay=on_replay)


def _tracer(settings: Settings) -> GatewayTracer | None:
    if not settings.tracing.enabled:
        return None

    return GatewayTracer.from_settings(settings.tracing)


def _configure_native_limiter(shared: SharedState) -> None:
    """Point the native limit step at this node's Redis (or back at memory).

    Its failures defer requests to Python's limiter, which applies the fail mode.
    """
    config = shared.native_hot_path_config(DEFAULT_LIMIT_TIMEOUT) if is_redis(shared) else None
    _native.redis_limiter_configure(None if config is None else json.dumps(config))


def _metrics(settings: Settings) -> Metrics | None:
    if not settings.metrics.enabled:
        return None
    from bastion import __version__
    from bastion.observability.metrics import Metrics  # prometheus_client: only when serving

    return Metrics(version=__version__)


def _authenticators(
    settings: Settings,
    access_tokens: AccessTokenVerifier,
    shared: SharedState,
    api_keys: ApiKeyService | None = None,
) -> dict[str, Any]:
    """The gateway's jwt (own + trusted external issuers), mtls and introspection methods."""
    trusted = {
        entry.issuer: TrustedIssuer(
            JwksCache(
                entry.issuer,
                jwks_uri=entry.jwks_uri,
                algorithms=entry.algorithms,
                cache_ttl=entry.cache_ttl,
                min_refresh_interval=entry.min_refresh_interval,
                timeout=entry.timeout,
                ca_file=entry.ca_file,
                # The native core verifies the issuer's tokens with the keys fetched here.
                on_keys=native_push.issuer_keys,
            ),
            audiences=entry.audiences,
            typ=entry.typ,
            leeway=settings.tokens.leeway,
        )
        for entry in settings.trusted_issuers
    }
    jwt = JwtAuthenticator(
        access_tokens,
        shared=shared,
        issuer=settings.issuer_url,
        # RFC 8707 / 9068: a route without jwt.audience takes bastion's tokens minted
        # for its default API audience (the issuer URL), not tokens for other resources.
        default_audience=settings.issuer_url,
        trusted_issuers=trusted,
        # Tokens exchanged from an API key act as the key (its limits and routes).
        api_keys=api_keys,
    )
    # A token revoked on this node leaves the cache before the revocation answers.
    access_tokens.on_revoke(jwt.forget)
    table: dict[str, Any] = {"jwt": jwt}
    if settings.tls.client_ca is not None:
        table["mtls"] = MtlsAuthenticator(push=native_push.cert_identity)
    config = settings.introspection
    # A new authenticator starts with an empty cache: so does the native one.
    native_push.introspection_cleared()
    if config is not None:
        table["introspection"] = IntrospectionAuthenticator(
            config.endpoint,
            client_id=config.client_id,
            client_secret=config.client_secret.get_secret_value(),
            cache_ttl=config.cache_ttl,
            negative_cache_ttl=config.negative_cache_ttl,
            timeout=config.timeout,
            audience=config.audience,
            ca_file=config.ca_file,
            leeway=settings.tokens.leeway,
            push=native_push.introspected,
        )
    return table


#: The demo's protected browser app (``bastion serve --demo``).
DEMO_APP_PATH = "/app"


def _demo_routes(upstream: str) -> list[RouteSettings]:
    return [
        RouteSettings(name="demo", match=RouteMatch(path="/demo"), upstream=upstream, public=True),
        # A browser app behind bastion's login: sessions only (demo/app.py renders it).
        RouteSettings(
            name="demo-app",
            match=RouteMatch(path=DEMO_APP_PATH),
            upstream=upstream,
            auth=["session"],
        ),
    ]


def _development_lines(settings: Settings) -> list[str]:
    from bastion.settings import development_defaults

    return [f"development default: {line}" for line in development_defaults(settings)]


def uses_data_dir(settings: Settings) -> bool:
    """Whether any development default (SQLite, master key, dev certificate) lives in data_dir."""
    return (
        settings.storage.url is None
        or (settings.secrets.master_key is None and settings.secrets.master_key_file is None)
        or settings.tls.mode == "auto"
    )


def ensure_data_dir(path: Path) -> None:
    """Create ``path`` (0700) if needed; raise ``DataDirError`` when it is unusable."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirError(
            f"data_dir {path}: cannot create it ({exc.strerror or exc}) — "
            "choose a writable directory with data_dir or BASTION_DATA_DIR"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise DataDirError(
            f"data_dir {path}: not writable by this user — fix its permissions or choose "
            "another directory with data_dir or BASTION_DATA_DIR"
        )


def open_keyring(settings: Settings) -> Keyring:
    """The master keyring of ``settings``: inline, from its file, or a new development file."""
    secrets = settings.secrets
    if secrets.master_key is not None:
        return parse_keyring_text(
            secrets.master_key.get_secret_value(), source="secrets.master_key"
        )
    path = settings.master_key_path
    if secrets.master_key_file is None and not path.exists():
        return create_keyring_file(path)
    return load_keyring_file(path)


def check_keyring(settings: Settings) -> Keyring | None:
    """Load the master keyring ``serve`` would use, creating nothing (for ``check-config``).

    ``None`` when the development key would be generated (no key configured and
    none in data_dir yet). Raises MasterKeyError with the message ``serve`` gives.
    """
    secrets = settings.secrets
    generated = secrets.master_key is None and secrets.master_key_file is None
    if generated and not settings.master_key_path.exists():
        return None
    return open_keyring(settings)


def _prepare_tls(settings: Settings) -> TLSMaterial:
    tls = settings.tls
    if tls.mode == "off":
        return TLSMaterial(None, None)
    if tls.mode == "auto":
        cert, key = ensure_dev_certificate(settings.data_dir / "tls")
        return TLSMaterial(cert, key, generated=True)
    assert tls.cert is not None and tls.key is not None  # guaranteed by the settings model
    load_server_certificate(tls.cert, tls.key)
    return TLSMaterial(tls.cert, tls.key)


__all__ = [
    "DataDirError",
    "Runtime",
    "TLSMaterial",
    "check_keyring",
    "open_keyring",
    "redact_url",
]
