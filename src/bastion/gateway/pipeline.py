"""The gateway pipeline: the ordered step table and the ASGI app that runs it.

Every step takes the request's :class:`Exchange` and has three outcomes
(DESIGN.md, "The gateway pipeline"):

- **allow** — return (having recorded its result on the exchange);
- **deny** — raise a :class:`~bastion.gateway.errors.GatewayError` that renders itself;
- **not responsible** — only for authenticators: return ``None`` so the next
  accepted method is tried.

Each step also declares how it fails when it *breaks* (raises something that
is not a deliberate bastion error): ``"closed"`` re-raises (the request is
denied with a 500 by the HTTP layer), ``"open"`` skips the step. ``match``,
``authenticate``, ``authorize`` and ``mutate`` must fail closed; the table
is checked at import.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote

from bastion.apikeys.errors import ApiKeyError
from bastion.audit.events import Auditor
from bastion.errors import BastionError
from bastion.gateway.audit import count_allowed, record_denial
from bastion.gateway.authn.api_key import ApiKeyAuthenticator, ApiKeyVerifier
from bastion.gateway.authn.identity import ANONYMOUS, Identity
from bastion.gateway.authn.mtls import check_binding
from bastion.gateway.authz.claims import RequiredClaims, compile_claims
from bastion.gateway.authz.scopes import RequiredScopes, check_access, compile_scopes
from bastion.gateway.cors import cors, preflight_method
from bastion.gateway.edge import EdgePolicies, compile_edge
from bastion.gateway.errors import (
    GatewayConfigError,
    GatewayError,
    UnauthenticatedError,
    UpstreamFailureError,
)
from bastion.gateway.hygiene import body, framing
from bastion.gateway.ip_rules import ip_access
from bastion.gateway.limit import RouteLimitRule, compile_limits, limit
from bastion.gateway.matcher import CompiledRoute, RouteLike, RouteMatcher
from bastion.gateway.mutate import IdentityHeaders, mutate
from bastion.gateway.paths import normalize_path
from bastion.gateway.proxy import (
    ClientDisconnectedError,
    ProxyEntry,
    Receive,
    ResponseEdit,
    Send,
    TrustedProxies,
    UpstreamClient,
    prepare_request,
)
from bastion.ratelimit import Limiter, MemoryLimiter
from bastion.ratelimit.keys import KeyLimitOverrides
from bastion.ratelimit.nodes import NodeCount
from bastion.ratelimit.outage import BackendHealth
from bastion.ratelimit.risk import RiskRegistry

if TYPE_CHECKING:
    # adaptive.py raises a gateway error: a run-time import here would be circular.
    from bastion.ratelimit.adaptive import LoadShedder

if TYPE_CHECKING:
    from bastion.audit.metrics import Metrics

if TYPE_CHECKING:
    from bastion.audit.tracing import GatewayTracer

__all__ = [
    "ANONYMOUS",
    "STEPS",
    "Authenticator",
    "Exchange",
    "Gateway",
    "Identity",
    "Screen",
    "Step",
]

logger = logging.getLogger("bastion.gateway")
# Stands in for the load shedder's slot when a route has none (reusable: it holds nothing).
_NOT_SHED = contextlib.nullcontext()

Scope = MutableMapping[str, Any]


class Exchange:
    """The state of one gateway request as it moves through the steps."""

    __slots__ = (
        "answered",
        "body_length",
        "credential_headers",
        "door",
        "edge_headers",
        "gateway",
        "host",
        "identity",
        "method",
        "path",
        "preflight",
        "receive",
        "response_edits",
        "route",
        "scope",
        "send",
    )

    def __init__(self, gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        self.gateway = gateway
        # Which door the request came through: "gateway" (proxied), "forward_auth" or
        # "websocket" (an upgrade, relayed once allowed).
        self.door = "gateway"
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.host = ""
        self.path = ""  # normalised, set by "match"
        self.route: CompiledRoute | None = None
        self.identity: Identity | None = None
        # Lower-cased names of the headers that carried the credential the
        # authenticator consumed: stripped before proxying (the upstream never sees it).
        self.credential_headers: frozenset[bytes] = frozenset()
        # The method a CORS preflight asks for (set by "match" on routes with CORS only).
        self.preflight: str | None = None
        # The body's declared length, 0 for none, -1 if streamed without one ("framing").
        self.body_length = -1
        # A step sent the whole response itself (a CORS preflight): the pipeline stops.
        self.answered = False
        # Response headers bastion's own error responses carry too (CORS on the route).
        self.edge_headers: list[tuple[str, str]] = []
        # Changes to the upstream response's headers (rate-limit state, CORS): the
        # proxy applies them as it builds the response head.
        self.response_edits: list[ResponseEdit] = []


class Authenticator(Protocol):
    """One authentication method (``api_key``, ``jwt``, … — added by a later issue).

    Returns an :class:`Identity` (allow), ``None`` (not responsible: the
    request carries no credential of this kind) or raises (deny: a credential
    of this kind is present but invalid).
    """

    async def __call__(self, exchange: Exchange, /) -> Identity | None: ...


class Screen(Protocol):
    """An authenticator's optional pre-check, run for every method of the route first.

    Raises to deny a request whatever credential another method would accept
    (e.g. an API key in the query string); returns ``None`` otherwise.
    """

    def __call__(self, exchange: Exchange, /) -> None: ...


StepFunction = Callable[[Exchange], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Step:
    """One row of the pipeline table."""

    name: str
    run: StepFunction
    fail: Literal["open", "closed"] = "closed"

    def __post_init__(self) -> None:
        if self.name in _MUST_FAIL_CLOSED and self.fail != "closed":
            raise ValueError(f"gateway step {self.name!r} must fail closed")


# "mutate" too: failing open would forward the client's spoofed identity headers.
_MUST_FAIL_CLOSED = frozenset({"match", "authenticate", "authorize", "limit", "mutate"})
# The edge steps fail closed too: an IP rule or size limit skipped is a rule not enforced.
_MUST_FAIL_CLOSED |= {"framing", "ip", "cors", "body"}


# -- the steps -----------------------------------------------------------------


async def match(ex: Exchange) -> None:
    """Normalise the path and pick the route.

    Raises BadRequestPathError, RouteNotFoundError or MethodNotAllowedError.
    """
    scope = ex.scope
    raw_path = scope.get("raw_path")
    if not raw_path:
        # Servers that give no raw_path: re-encode the decoded path the same way.
        raw_path = quote(scope["path"], safe="/!$&'()*+,;=:@%").encode("ascii")
    ex.path = normalize_path(raw_path)
    for name, value in scope.get("headers") or ():
        if name.lower() == b"host":
            ex.host = value.decode("latin-1")
            break
    requested = preflight_method(scope) if ex.gateway.edge.cors else None
    if requested is not None:
        # A CORS preflight is matched by the method it asks for, but only a route with
        # CORS answers it (the "cors" step); for any other route it is a plain OPTIONS.
        try:
            route = ex.gateway.matcher.match(ex.host, ex.path, requested)
        except GatewayError:
            route = None
        if route is not None and route.name in ex.gateway.edge.cors:
            ex.route = route
            ex.preflight = requested
            return
    ex.route = ex.gateway.matcher.match(ex.host, ex.path, ex.method)


async def authenticate(ex: Exchange) -> None:
    """Establish the identity: public routes are anonymous; others need an accepted method.

    Runs every ``screen`` of the route's methods first, then tries the
    ``auth`` methods in order; a method with no authenticator installed
    counts as not responsible. When none vouches, raises
    :class:`UnauthenticatedError` (fail closed).
    """
    route = ex.route
    assert route is not None
    if route.public:
        ex.identity = ANONYMOUS
        return
    gateway = ex.gateway
    screens = gateway.screens
    if screens:
        for method in route.auth:
            screen = screens.get(method)
            if screen is not None:
                screen(ex)
    authenticators = gateway.authenticators
    for method in route.auth:
        authenticator = authenticators.get(method)
        if authenticator is None:
            continue
        identity = await authenticator(ex)
        if identity is not None:
            # RFC 8705: a certificate-bound token (cnf.x5t#S256) only with its certificate.
            check_binding(ex.scope, identity.claims)
            ex.identity = identity
            return
    raise UnauthenticatedError("This route requires authentication.")


async def authorize(ex: Exchange) -> None:
    """Check the identity may call this route and holds the scopes the method requires.

    Public routes pass. Raises :class:`~bastion.gateway.authz.RouteNotAllowedError`,
    :class:`~bastion.gateway.authz.InsufficientScopeError` or
    :class:`~bastion.gateway.authz.ForbiddenError` (403).
    """
    route = ex.route
    identity = ex.identity
    assert route is not None and identity is not None
    if route.public:
        return
    check_access(
        route.name,
        ex.method,
        ex.gateway.required_scopes.get(route.name),
        identity.scopes,
        identity.routes,
    )
    # Required claims / roles (403 claim_mismatch / missing_role), after scopes.
    required_claims = ex.gateway.required_claims.get(route.name)
    if required_claims is not None:
        required_claims.check(identity.claims)


async def proxy(ex: Exchange) -> None:
    """Forward the request to the route's upstream and stream the response back."""
    route = ex.route
    assert route is not None
    gateway = ex.gateway
    scope = ex.scope
    # The headers that carried the client's credential are for bastion, not the upstream.
    request = prepare_request(
        scope, trusted=_from_trusted_proxy(gateway, scope), drop=ex.credential_headers
    )
    target = route.upstream_path(ex.path).encode("ascii")
    query = scope.get("query_string")
    if query:
        target += b"?" + query
    shedder = gateway.shedder
    client = gateway.client
    # Load shedding (ratelimit/adaptive.py): the slot spans the upstream exchange, whose
    # latency adapts the route's concurrency limit; a full route answers 503 overloaded.
    admission = _NOT_SHED if shedder is None else shedder.admit(route.name)
    try:
        async with admission:
            await client.forward(
                route.upstream,
                ex.method,
                target,
                request,
                ex.receive,
                ex.send,
                time_limit=route.timeout,
                targets=route.targets,
                connect_timeout=route.connect_timeout,
                read_timeout=route.read_timeout,
                response_edits=ex.response_edits,
            )
    except UpstreamFailureError as exc:
        # The one log line of an upstream failure (rate-limited per target; no traceback).
        client.failures.failed(route.name, exc)
        raise


# THE pipeline, in order. Steps still to come, and the issue that brings each:
#   ("audit", fail="open")        one queued event per decision: audit issue
# ("audit" after "proxy", run for denials as well; the adaptive throttle joins "limit"
#  with its issue.) Roles / claims join "authorize" with their issue; the signed identity assertion
# joins "mutate". CORS and WebSockets arrive with their own issue. "proxy" strips the
# headers that carried the consumed credential (Exchange.credential_headers).
STEPS: tuple[Step, ...] = (
    # Header limits, body framing, method-override headers dropped (gateway/hygiene.py).
    Step("framing", framing, fail="closed"),
    Step("match", match, fail="closed"),
    # Before authentication, cheap and credential-free: IP rules, CORS (a preflight
    # is answered here and the pipeline stops), the route's body size limit.
    Step("ip", ip_access, fail="closed"),
    Step("cors", cors, fail="closed"),
    Step("body", body, fail="closed"),
    Step("authenticate", authenticate, fail="closed"),
    Step("authorize", authorize, fail="closed"),
    # Closed: a broken limiter must not let floods through (its Redis outage is handled
    # inside the step, per limit, by each limit's ``fail`` setting).
    Step("limit", limit, fail="closed"),
    Step("mutate", mutate, fail="closed"),
    Step("proxy", proxy, fail="closed"),
)


# The steps a forward-auth decision runs after reading the original request: the table up
# to (not including) "mutate", without "cors" (the proxy or the application answers CORS)
# and "body" (the proxy does not send the body).
_NOT_DECIDING = frozenset({"cors", "body"})
_DECISION_END = "mutate"


def decision_steps(steps: Iterable[Step]) -> tuple[Step, ...]:
    """The rows of ``steps`` that decide a request without proxying it (forward-auth)."""
    out: list[Step] = []
    for step in steps:
        if step.name == _DECISION_END:
            break
        if step.name not in _NOT_DECIDING:
            out.append(step)
    return tuple(out)


async def _websocket_match(ex: Exchange) -> None:
    """``match``, then refuse a route that does not accept WebSockets (before any credential)."""
    from bastion.gateway.websocket import websocket_allowed  # imports this module

    await match(ex)
    websocket_allowed(ex)


async def _websocket_relay(ex: Exchange) -> None:
    from bastion.gateway.websocket import websocket_proxy  # imports this module

    await websocket_proxy(ex)


def websocket_steps(steps: Iterable[Step]) -> tuple[Step, ...]:
    """The table for a WebSocket upgrade: ``match`` also checks the route accepts
    WebSockets, and the connection is relayed in place of ``proxy``."""
    out: list[Step] = []
    for step in steps:
        if step.name == "match":
            step = Step("match", _websocket_match, fail=step.fail)
        elif step.name == "proxy":
            step = Step("proxy", _websocket_relay, fail=step.fail)
        out.append(step)
    return tuple(out)


class Gateway:
    """The gateway data plane as an ASGI application.

    Runs :data:`STEPS` for every HTTP request. Errors are raised, not
    rendered: the HTTP layer's error middleware turns a
    :class:`~bastion.gateway.errors.GatewayError` into problem+json (and must
    let :class:`~bastion.gateway.errors.UpstreamAbortedError` abort the
    connection). Constructing raises :class:`GatewayConfigError` for invalid
    routes (including an invalid ``scopes`` setting) and ``ValueError`` for an
    invalid trusted-proxy entry.

    ``api_keys`` (an :class:`~bastion.apikeys.ApiKeyService`) installs the
    ``api_key`` method (:class:`~bastion.gateway.authn.ApiKeyAuthenticator`)
    unless ``authenticators`` already names one. The ``jwt`` method is
    installed through ``authenticators`` (a
    :class:`~bastion.gateway.authn.jwt.JwtAuthenticator`).

    ``identity_headers`` configures the ``mutate`` step (default:
    :class:`~bastion.gateway.mutate.IdentityHeaders` with its default list).

    ``limiter`` enforces the routes' ``limits`` in the ``limit`` step (default:
    an in-process :class:`~bastion.ratelimit.MemoryLimiter`; pass a
    :class:`~bastion.ratelimit.RedisLimiter` to share limits across nodes).
    An invalid limit raises :class:`GatewayConfigError`.

    ``metrics`` (a :class:`~bastion.audit.metrics.Metrics`) counts every request
    by route and outcome, with its duration.
    ``request_limits`` (a ``bastion.settings.RequestLimitSettings``; None: its
    defaults) bounds header fields, header bytes and the default body size; the
    routes' ``cors``, ``ip`` and ``max_body`` are compiled into :attr:`edge`.
    ``auditor`` (an :class:`~bastion.audit.events.Auditor`) receives a
    ``gateway.denied`` event for every denial and counts allowed requests.
    """

    def __init__(
        self,
        routes: Iterable[RouteLike],
        *,
        trusted_proxies: Iterable[ProxyEntry] = (),
        node_id: str = "",
        client: UpstreamClient | None = None,
        authenticators: Mapping[str, Authenticator] | None = None,
        api_keys: ApiKeyVerifier | None = None,
        identity_headers: IdentityHeaders | None = None,
        limiter: Limiter | None = None,
        steps: tuple[Step, ...] = STEPS,
        metrics: Metrics | None = None,
        request_limits: Any = None,
        auditor: Auditor | None = None,
        tracer: GatewayTracer | None = None,
    ) -> None:
        # Every constructor argument but the routes, to rebuild the route tables on reload.
        options = {k: v for k, v in locals().items() if k not in ("self", "routes")}
        self.matcher = RouteMatcher(routes)
        # CORS, IP rules and size limits per route (``request_limits``: a
        # bastion.settings.RequestLimitSettings; None: the defaults).
        self.edge: EdgePolicies = compile_edge(self.matcher.routes, request_limits)
        self.trusted_proxies = TrustedProxies(trusted_proxies)
        self.node_id = node_id
        self.client = client if client is not None else UpstreamClient()
        if client is None:
            # The proxy's own body bound must not cut a body a route allows ("body" enforces it).
            self.client.max_body_size = max(self.client.max_body_size, self.edge.largest_body)
        table: dict[str, Authenticator] = dict(authenticators or {})
        if api_keys is not None and "api_key" not in table:
            table["api_key"] = ApiKeyAuthenticator(api_keys)
        self.authenticators: Mapping[str, Authenticator] = table
        self.screens: Mapping[str, Screen] = {
            method: screen
            for method, authenticator in table.items()
            if (screen := getattr(authenticator, "screen", None)) is not None
        }
        scopes: dict[str, RequiredScopes] = {}
        for route in self.matcher.routes:
            try:
                scopes[route.name] = compile_scopes(getattr(route.settings, "scopes", None))
            except ValueError as exc:
                raise GatewayConfigError(f"routes[{route.name}].scopes: {exc}") from None
        self.required_scopes: Mapping[str, RequiredScopes] = scopes
        self.required_claims: Mapping[str, RequiredClaims] = {
            route.name: claims
            for route in self.matcher.routes
            if (claims := compile_claims(route.settings)) is not None
        }
        self.identity_headers = (
            identity_headers if identity_headers is not None else IdentityHeaders()
        )
        self.route_limits: Mapping[str, tuple[RouteLimitRule, ...]] = {
            route.name: rules for route in self.matcher.routes if (rules := compile_limits(route))
        }
        self.limiter: Limiter = limiter if limiter is not None else MemoryLimiter()
        # Decides the limits that fail open while the shared limiter is unreachable
        # (this node alone: its share is the whole limit).
        self.fallback_limiter = MemoryLimiter()
        # Per-key limits (ratelimit/keys.py), the Redis outage bookkeeping and the live
        # node count dividing the fallback's limits: installed by the runtime.
        self.key_overrides: KeyLimitOverrides | None = None
        self.key_limits_fail: Literal["open", "closed"] = "closed"
        self.limiter_health: BackendHealth | None = None
        self.node_count: NodeCount | None = None
        # Adaptive load shedding per route upstream and risk-based tightening (ratelimit/).
        self.shedder: LoadShedder | None = None
        self.risk: RiskRegistry | None = None
        self.steps = steps
        self.decision_steps = decision_steps(steps)
        self.websocket_steps = websocket_steps(steps)
        self.metrics = metrics
        # The "audit" step (gateway/audit.py): denials recorded, allowed requests counted.
        self.auditor = auditor
        # OpenTelemetry spans per request (audit/tracing.py); None: tracing off, no cost.
        self.tracer = tracer
        self._options = options
        self._active: Gateway
        # The generation new requests run on: a snapshot of this object, replaced whole by
        # reload() so a request in flight keeps the tables it started with.
        object.__setattr__(self, "_active", copy.copy(self))

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        active = self.__dict__.get("_active")
        if active is not None and name != "_active":
            # Set after construction (e.g. by the runtime): the live generation sees it too.
            object.__setattr__(active, name, value)

    def reload(self, routes: Iterable[RouteLike]) -> None:
        """Swap in a new route table; requests in flight finish on the old one.

        Everything route-derived (matcher, scopes, limits, …) is compiled off to
        the side with this gateway's options; the upstream client (its pools and
        target health) and the limiter are kept. Raises
        :class:`GatewayConfigError` (and leaves the current routes in place)
        when a route is invalid.
        """
        options = {**self._options, "client": self.client, "limiter": self.limiter}
        fresh = Gateway(routes, **options)
        state = {k: v for k, v in vars(fresh).items() if k != "_active"}
        state["fallback_limiter"] = self.fallback_limiter  # its buckets (maybe the native store)
        for name, value in vars(self).items():
            state.setdefault(name, value)  # attributes set on this gateway after construction
        state.pop("_active", None)
        generation = object.__new__(Gateway)
        generation.__dict__.update(state)
        # No await between here and the end: the swap is atomic for the event loop.
        object.__setattr__(self, "_active", generation)
        self.__dict__.update(state)  # readers of this object see the new tables as well

    async def startup(self) -> None:
        """Prepare for traffic (nothing to warm yet: pools open lazily)."""

    async def shutdown(self) -> None:
        """Close the upstream connection pools."""
        await self.client.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            # The generation new requests run on (reload() swaps it; see there).
            active = self._active
            ex = Exchange(active, scope, receive, send)
            tracer = active.tracer
            if tracer is not None:
                await active.run(ex, active.steps)
                return
            await _measured(ex, active.steps)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # The same runner as HTTP requests: traced, counted and audited alike.
            active = self._active
            upgrade = Exchange(active, {**scope, "method": "GET"}, receive, send)
            upgrade.door = "websocket"
            await active.run(upgrade, active.websocket_steps)

    async def run(self, ex: Exchange, steps: tuple[Step, ...]) -> None:
        """The one runner of every HTTP door: ``steps`` traced, metered and audited.

        Raises the denying step's error (recorded as ``gateway.denied`` first).
        """
        tracer = self.tracer
        if tracer is None:
            await _measured(ex, steps)
            return

        async def measured(exchange: Exchange) -> None:
            await _measured(exchange, steps)

        await tracer.trace(ex, measured, trusted=_from_trusted_proxy(self, ex.scope))

    async def decide(self, scope: Scope, receive: Receive, send: Send, read: Step) -> Exchange:
        """Judge the request a forward-auth caller asks about, on the live generation.

        ``read`` is the step that turns the proxy's decision request into the original
        request (it checks the caller and rewrites ``exchange.scope`` / ``.method``); then
        :attr:`decision_steps` run — through :meth:`run`, so a decision is traced, counted
        and audited like a proxied request. Returns the allowed exchange (its identity
        and response edits); raises the denial.
        """
        active = self._active
        ex = Exchange(active, scope, receive, send)
        ex.door = "forward_auth"
        await active.run(ex, (read, *active.decision_steps))
        return ex

    async def handle(self, ex: Exchange, steps: tuple[Step, ...] | None = None) -> None:
        """Run ``steps`` (default: :attr:`steps`) for one request; raises the denial."""
        for step in self.steps if steps is None else steps:
            try:
                await step.run(ex)
            except ClientDisconnectedError:
                return  # nobody is left to answer
            except BastionError as exc:
                # The API key's refusals too (not GatewayErrors): a page reads its 401 as well.
                if ex.edge_headers and isinstance(exc, GatewayError | ApiKeyError):
                    _add_headers(exc, ex.edge_headers)
                if self.auditor is not None:
                    record_denial(self.auditor, ex, step.name, exc)
                raise  # a deliberate denial: it renders itself
            except Exception:
                if step.fail == "closed":
                    raise
                logger.exception("gateway step %s failed open", step.name)
            if ex.answered:
                return
        if self.auditor is not None:
            count_allowed(self.auditor, ex)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _measured(ex: Exchange, steps: tuple[Step, ...]) -> None:
    """Run ``steps`` for ``ex`` and count the request in the gateway's metrics (if any)."""
    gateway = ex.gateway
    metrics = gateway.metrics
    if metrics is None:
        await gateway.handle(ex, steps)
        return
    start = time.perf_counter()
    try:
        await gateway.handle(ex, steps)
    except BaseException as exc:
        name = ex.route.name if ex.route is not None else None
        metrics.gateway_request(name, exc, time.perf_counter() - start)
        raise
    name = ex.route.name if ex.route is not None else None
    metrics.gateway_request(name, None, time.perf_counter() - start)


def _from_trusted_proxy(gateway: Gateway, scope: Scope) -> bool:
    """Whether the direct peer of ``scope`` is one of the gateway's trusted proxies."""
    client = scope.get("client")
    return (
        bool(gateway.trusted_proxies)
        and client is not None
        and client[0] in gateway.trusted_proxies
    )


def _add_headers(error: GatewayError | ApiKeyError, headers: list[tuple[str, str]]) -> None:
    """Let ``error``'s problem response carry ``headers`` too (CORS, so a page can read it)."""
    own = getattr(error, "headers", None)
    error.headers = [*own, *headers] if isinstance(own, list | tuple) else list(headers)  # type: ignore[union-attr]
