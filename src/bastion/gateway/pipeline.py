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
``authenticate`` and ``authorize`` must fail closed; the table is checked
at import.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import quote

from bastion.errors import BastionError
from bastion.gateway.errors import UnauthenticatedError
from bastion.gateway.matcher import CompiledRoute, RouteLike, RouteMatcher
from bastion.gateway.paths import normalize_path
from bastion.gateway.proxy import (
    ClientDisconnectedError,
    ProxyEntry,
    Receive,
    Send,
    TrustedProxies,
    UpstreamClient,
    prepare_request,
)

__all__ = [
    "ANONYMOUS",
    "STEPS",
    "Authenticator",
    "Exchange",
    "Gateway",
    "Identity",
    "Step",
]

logger = logging.getLogger("bastion.gateway")

Scope = MutableMapping[str, Any]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request acts for, as established by the ``authenticate`` step.

    ``method`` names the authenticator that vouched (``"public"`` for the
    anonymous identity of a public route); ``subject`` is ``None`` only then.
    """

    method: str
    subject: str | None = None
    scopes: frozenset[str] = frozenset()
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return self.subject is None


ANONYMOUS = Identity(method="public")


class Exchange:
    """The state of one gateway request as it moves through the steps."""

    __slots__ = (
        "gateway",
        "host",
        "identity",
        "method",
        "path",
        "receive",
        "route",
        "scope",
        "send",
    )

    def __init__(self, gateway: Gateway, scope: Scope, receive: Receive, send: Send) -> None:
        self.gateway = gateway
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.host = ""
        self.path = ""  # normalised, set by "match"
        self.route: CompiledRoute | None = None
        self.identity: Identity | None = None


class Authenticator(Protocol):
    """One authentication method (``api_key``, ``jwt``, … — added by a later issue).

    Returns an :class:`Identity` (allow), ``None`` (not responsible: the
    request carries no credential of this kind) or raises (deny: a credential
    of this kind is present but invalid).
    """

    async def __call__(self, exchange: Exchange, /) -> Identity | None: ...


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


_MUST_FAIL_CLOSED = frozenset({"match", "authenticate", "authorize"})


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
    ex.route = ex.gateway.matcher.match(ex.host, ex.path, ex.method)


async def authenticate(ex: Exchange) -> None:
    """Establish the identity: public routes are anonymous; others need an accepted method.

    Tries the route's ``auth`` methods in order; a method with no
    authenticator installed counts as not responsible. When none vouches,
    raises :class:`UnauthenticatedError` (fail closed).
    """
    route = ex.route
    assert route is not None
    if route.public:
        ex.identity = ANONYMOUS
        return
    authenticators = ex.gateway.authenticators
    for method in route.auth:
        authenticator = authenticators.get(method)
        if authenticator is None:
            continue
        identity = await authenticator(ex)
        if identity is not None:
            ex.identity = identity
            return
    raise UnauthenticatedError("This route requires authentication.")


async def proxy(ex: Exchange) -> None:
    """Forward the request to the route's upstream and stream the response back."""
    route = ex.route
    assert route is not None
    gateway = ex.gateway
    scope = ex.scope
    client = scope.get("client")
    trusted = (
        bool(gateway.trusted_proxies)
        and client is not None
        and (client[0] in gateway.trusted_proxies)
    )
    request = prepare_request(scope, trusted=trusted)
    target = route.upstream_path(ex.path).encode("ascii")
    query = scope.get("query_string")
    if query:
        target += b"?" + query
    await gateway.client.forward(
        route.upstream,
        ex.method,
        target,
        request,
        ex.receive,
        ex.send,
        time_limit=route.timeout,
    )


# THE pipeline, in order. Steps still to come, and the issue that brings each:
#   ("authorize", fail="closed")  scopes / roles / claims per route+method: gateway authz issue
#   ("limit", fail="closed")      GCRA rate limits + adaptive throttle: rate-limit issue
#   ("mutate", fail="closed")     strip client identity headers, add bastion's: identity issue
#   ("audit", fail="open")        one queued event per decision: audit issue
# ("authorize" and "limit" go between "authenticate" and "proxy"; "mutate" right before "proxy";
#  "audit" after it, run for denials as well.) CORS and WebSockets arrive with their own issue.
STEPS: tuple[Step, ...] = (
    Step("match", match, fail="closed"),
    Step("authenticate", authenticate, fail="closed"),
    Step("proxy", proxy, fail="closed"),
)


class Gateway:
    """The gateway data plane as an ASGI application.

    Runs :data:`STEPS` for every HTTP request. Errors are raised, not
    rendered: the HTTP layer's error middleware turns a
    :class:`~bastion.gateway.errors.GatewayError` into problem+json (and must
    let :class:`~bastion.gateway.errors.UpstreamAbortedError` abort the
    connection). Constructing raises :class:`GatewayConfigError` for invalid
    routes and ``ValueError`` for an invalid trusted-proxy entry.
    """

    def __init__(
        self,
        routes: Iterable[RouteLike],
        *,
        trusted_proxies: Iterable[ProxyEntry] = (),
        node_id: str = "",
        client: UpstreamClient | None = None,
        authenticators: Mapping[str, Authenticator] | None = None,
        steps: tuple[Step, ...] = STEPS,
    ) -> None:
        self.matcher = RouteMatcher(routes)
        self.trusted_proxies = TrustedProxies(trusted_proxies)
        self.node_id = node_id
        self.client = client if client is not None else UpstreamClient()
        self.authenticators: Mapping[str, Authenticator] = dict(authenticators or {})
        self.steps = steps

    async def startup(self) -> None:
        """Prepare for traffic (nothing to warm yet: pools open lazily)."""

    async def shutdown(self) -> None:
        """Close the upstream connection pools."""
        await self.client.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle(Exchange(self, scope, receive, send))
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # WebSockets through the gateway arrive with their own issue; refuse for now.
            await send({"type": "websocket.close", "code": 1008})

    async def handle(self, ex: Exchange) -> None:
        """Run the steps for one request; raises the denying step's error."""
        for step in self.steps:
            try:
                await step.run(ex)
            except ClientDisconnectedError:
                return  # nobody is left to answer
            except BastionError:
                raise  # a deliberate denial: it renders itself
            except Exception:
                if step.fail == "closed":
                    raise
                logger.exception("gateway step %s failed open", step.name)

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
