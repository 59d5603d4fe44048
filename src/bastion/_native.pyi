"""Type stubs for ``bastion._native``, the Rust data plane built from ``native/`` by maturin."""

from typing import Any, final

def version() -> str: ...
def risk_flag(kind: str, value: str, until: float) -> None: ...
def risk_clear(kind: str, value: str) -> None: ...
def risk_flagged(kind: str, value: str, now: float) -> bool: ...

class Front:
    """The native public listener (``native/src/server.rs``)."""

    def __init__(self, config_json: str) -> None: ...
    def start(self, fd: int) -> None:
        """Serve the bound, listening TCP socket ``fd`` (ownership passes to the front)."""
    def reload_tls(self) -> None:
        """Re-read the TLS files; ``ValueError`` (previous pair kept) when unusable."""
    def stop(self, graceful_timeout: float) -> bool:
        """Stop accepting, drain for up to ``graceful_timeout`` s; blocks (use a thread)."""

class RouteTable:
    """A loaded native route table (the JSON of ``bastion.gateway.compile.compile_table``)."""

    def __init__(self, json: str) -> None:
        """Load the table; raises ``ValueError`` for another version or an invalid table."""
    def route(self, host: str | None, method: str, target: str) -> tuple[int, str] | None:
        """``(route index, upstream path and query)`` when served natively, else ``None``."""
    def defer_reason(self, host: str | None, method: str, target: str) -> str | None:
        """Why the request goes to Python (a snake_case label); ``None`` when served natively."""
    def __len__(self) -> int: ...

# -- authn: native caches the control plane fills (gateway/native_push.py) --------
def authn_configure(
    issuer: str, leeway: float, max_lifetime: float | None, pepper: bytes | None
) -> None: ...
def api_key_put(digest: str, record_json: str, ttl: float) -> None: ...
def api_key_drop(key_id: str) -> None: ...
def api_keys_clear() -> None: ...
def api_key_cached(digest: str) -> bool: ...
def api_keys_used() -> list[tuple[str, float]]: ...
def api_key_limits_native(on: bool) -> None: ...
def signing_keys_set(jwks_json: str) -> int: ...
def signing_key_known(kid: str) -> bool: ...
def token_put(token: str, ttl: float) -> str | None: ...
def token_cached(token: str) -> bool: ...
def client_active(client_id: str, ttl: float) -> None: ...
def tokens_verify_misses(on: bool) -> None: ...
def token_revoke(jti: str, exp: float) -> None: ...
def tokens_forget_client(client_id: str) -> None: ...
def tokens_clear() -> None: ...
def tokens_following(following: bool) -> None: ...
def authn_decide(
    section_json: str,
    route_name: str,
    method: str,
    headers: list[tuple[str, str]],
    query: str | None = None,
    client: str | None = None,
) -> dict[str, object] | None: ...

# -- rate limits (native/src/limit) ------------------------------------------

@final
class LimitStore:
    """A GCRA store of TATs (µs), sharded; ``install()`` shares it with the native front."""

    def __init__(self) -> None: ...
    def install(self) -> None: ...
    def installed(self) -> bool: ...
    def take(
        self,
        keys: list[str],
        intervals: list[int],
        tolerances: list[int],
        cost: int,
        now: int | None = None,
    ) -> tuple[bool, int, list[int | None]]: ...
    def take_one(
        self, key: str, interval: int, tolerance: int, now: int | None = None
    ) -> tuple[bool, int, int | None]: ...
    def __len__(self) -> int: ...

def limit_now() -> int: ...
def key_limit_override_set(key_id: str, limits_json: str | None) -> None: ...
def key_limit_overrides_replace(overrides_json: str) -> None: ...
def limit_check(
    section_json: str,
    route: str,
    *,
    key_id: str | None = None,
    subject: str | None = None,
    client_id: str | None = None,
    client_ip: str | None = None,
    key_limits_json: str | None = None,
    now: int | None = None,
) -> tuple[bool, list[tuple[str, str]], int | None]: ...
def redis_limiter_configure(config_json: str | None) -> None: ...
def redis_gcra_script() -> str: ...
def redis_limit_check(
    section_json: str,
    route: str,
    *,
    key_id: str | None = None,
    subject: str | None = None,
    client_id: str | None = None,
    client_ip: str | None = None,
    key_limits_json: str | None = None,
) -> tuple[bool, list[tuple[str, str]], int | None]: ...

# -- audit (native/src/audit.rs) -----------------------------------------------

def audit_drain(
    max: int,
) -> tuple[list[dict[str, Any]], list[tuple[int, str, str, str | None, int]]]: ...
def audit_dropped() -> tuple[int, int]: ...
def audit_pending() -> int: ...
def audit_set_capacity(capacity: int) -> None: ...
def audit_record(
    allowed: bool,
    status: int,
    route: str | None,
    method: str,
    path: str,
    *,
    reason: str | None = None,
    step: str | None = None,
    door: str = "gateway",
    subject: str | None = None,
    client_id: str | None = None,
    key_id: str | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
    request_id: str | None = None,
    latency_us: int = 0,
    timestamp: float | None = None,
) -> None: ...

# -- metrics (native/src/metrics.rs) -------------------------------------------

def metrics_snapshot() -> list[
    tuple[str, list[tuple[str, int]], list[tuple[str, int]], list[int], float]
]: ...
def metrics_record(route: str | None, code: str | None, seconds: float) -> None: ...
def metrics_buckets() -> list[float]: ...
def routes_load(json: str) -> None:
    """Put a route table in force for the native front; ``ValueError`` keeps the previous one."""

def routes_route(host: str | None, method: str, target: str) -> tuple[int, str] | None:
    """Route on the table in force: ``(route index, upstream target)``, or ``None`` (deferred)."""

def log_drain(max: int) -> list[tuple[int, str, str]]:
    """Up to ``max`` queued log lines of the native path: ``(level, logger, message)``."""

def upstream_pools() -> list[tuple[str, int, int]]:
    """The native upstream pools: ``(scheme://host:port, idle, opened)``."""

def limiter_down(down: bool) -> None:
    """The shared limiter is down (the native path defers limited requests) or up again."""

def limiter_is_down() -> bool: ...
