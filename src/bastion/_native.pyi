"""Type stubs for ``bastion._native``, the Rust data plane built from ``native/`` by maturin."""

from typing import Any, final

def version() -> str: ...
def risk_flag(kind: str, value: str, until: float) -> None: ...
def risk_clear(kind: str, value: str) -> None: ...
def risk_flagged(kind: str, value: str, now: float) -> bool: ...

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
