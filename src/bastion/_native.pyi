"""Type stubs for ``bastion._native``, the Rust data plane built from ``native/`` by maturin."""

def version() -> str: ...
def risk_flag(kind: str, value: str, until: float) -> None: ...
def risk_clear(kind: str, value: str) -> None: ...
def risk_flagged(kind: str, value: str, now: float) -> bool: ...

class RouteTable:
    """A loaded native route table (the JSON of ``bastion.gateway.compile.compile_table``)."""

    def __init__(self, json: str) -> None:
        """Load the table; raises ``ValueError`` for another version or an invalid table."""
    def route(self, host: str | None, method: str, target: str) -> tuple[int, str] | None:
        """``(route index, upstream path and query)`` when served natively, else ``None``."""
    def defer_reason(self, host: str | None, method: str, target: str) -> str | None:
        """Why the request goes to Python (a snake_case label); ``None`` when served natively."""
    def __len__(self) -> int: ...

def routes_load(json: str) -> None:
    """Put a compiled route table in force (one swap); ``ValueError`` keeps the old one."""

def routes_route(host: str | None, method: str, target: str) -> tuple[int, str] | None:
    """``RouteTable.route`` on the table in force."""
