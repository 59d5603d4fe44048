"""The root of bastion's error classes.

Every error bastion raises on purpose derives from :class:`BastionError`. Each
package has one root below it (``SettingsError``, ``StorageError``,
``CryptoError`` …). An error carries a stable machine ``code`` (what clients
and the audit log see), an HTTP ``status`` and a human ``detail``; the HTTP
layer renders it as RFC 9457 problem+json, the CLI as one line.
"""

from __future__ import annotations

from typing import Any


class BastionError(Exception):
    """Base class of every deliberate bastion error.

    Subclasses set ``code``, ``status`` and ``title``; instances add a
    ``detail`` sentence (what went wrong and, where possible, the fix) and
    optional JSON-serialisable ``extra`` members for the problem document.
    """

    code: str = "internal_error"
    status: int = 500
    title: str = "Internal error"
    #: Whether the HTTP layer logs a 5xx of this class with its traceback. False for
    #: expected operational failures (an upstream down) that their raiser logs itself,
    #: in one line: a traceback per request would bury the cause.
    log_traceback: bool = True

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)

    def to_problem(self) -> dict[str, Any]:
        """The RFC 9457 members of this error (without ``instance``/request id).

        ``type`` is a non-dereferenceable URN naming the stable ``code`` (RFC 9457
        §3.1.1 allows a URI that is only an identifier); ``reason`` repeats the
        code for clients that read one member.
        """
        body: dict[str, Any] = {
            "type": f"urn:bastion:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "reason": self.code,
        }
        body.update(self.extra)
        return body


class ServiceUnavailableError(BastionError):
    """A dependency (database, shared state) cannot be reached right now."""

    code = "service_unavailable"
    status = 503
    title = "Service unavailable"
