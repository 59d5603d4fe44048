"""Type stubs for ``bastion._native``, the Rust data plane built from ``native/`` by maturin."""

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
