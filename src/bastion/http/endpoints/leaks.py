"""The leak-report endpoint: ``POST /api-keys/leaks`` — found keys are verified and revoked.

Modelled on what GitHub's secret scanning partner program expects of a
provider: a scanner that finds strings matching bastion's key format
(``bastion.crypto.apikeys.API_KEY_REGEX``) posts them here; every one that is
a bastion key is revoked at once on every node, and the answer labels each
report ``true_positive`` or ``false_positive`` (GitHub's token-revocation
feedback format).

Request::

    POST /api-keys/leaks
    Content-Type: application/json
    X-Bastion-Signature: t=<unix time>,sha256=<hex HMAC-SHA256 of "<t>." + raw body>

(the HMAC key is ``api_keys.leak_report_secret``; :func:`sign_leak_report`.)

    [{"token": "bst_…", "type": "bastion_api_key", "url": "https://…", "source": "content"}, …]

Response (200, same order)::

    [{"token_hash": "<sha256 hex of the token>", "token_type": "bastion_api_key",
      "label": "true_positive"}, …]

Rules: the signature is checked (constant time) before the body is parsed; its
timestamp must be within :data:`SIGNATURE_TOLERANCE` (5 minutes) of the
server's clock, and a signature is accepted once (remembered in the shared
state for twice that window), so a captured request cannot be replayed;
the body is at most :data:`MAX_REPORT_BYTES` (1 MiB) and holds at most
:data:`MAX_REPORT_KEYS` (1000) reports; a reported key is never echoed — not in
the response, not in an error, not in a log line (only its SHA-256, its
display prefix and its id). Without ``api_keys.leak_report_secret`` in the
settings the endpoint does not exist (404, like any unknown bastion path).
Reports are idempotent (a key reported twice stays revoked): a scanner retrying
a report signs it anew.

The path ``/api-keys/leaks`` is one of bastion's reserved prefixes
(:data:`bastion.http.app.RESERVED_PREFIXES`): it never reaches the gateway.
Only that exact path is reserved, so gateway routes under ``/api-keys/…``
keep working.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Annotated, Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.apikeys import ApiKeyService
from bastion.audit.events import Event
from bastion.audit.lifecycle import api_key_leaked
from bastion.crypto.digests import constant_time_equals, hmac_sha256_hex, sha256_hex
from bastion.errors import BastionError, ServiceUnavailableError
from bastion.gateway.forwarded import request_client_ip
from bastion.http.body import read_bounded, validation_problems
from bastion.http.errors import InvalidRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from bastion.http.middleware.request_id import get_request_id
from bastion.http.runtime import AdminPlane, ready_service
from bastion.storage.errors import SharedStateUnavailableError
from bastion.storage.shared import SharedState

__all__ = [
    "LEAKS_PATH",
    "MAX_REPORT_BYTES",
    "MAX_REPORT_KEYS",
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE",
    "InvalidLeakReportError",
    "LeakReportEndpoint",
    "LeakReportError",
    "LeakReportMediaTypeError",
    "LeakReportSignatureError",
    "LeakReportTooLargeError",
    "leak_routes",
    "sign_leak_report",
]

log = logging.getLogger("bastion.http.leaks")

LEAKS_PATH: Final = "/api-keys/leaks"
#: The header carrying ``t=<unix time>,sha256=<hex HMAC-SHA256 of "<t>." + body>``.
SIGNATURE_HEADER: Final = "X-Bastion-Signature"
#: Seconds a signature's timestamp may differ from the server's clock.
SIGNATURE_TOLERANCE: Final = 300
#: Largest report body read.
MAX_REPORT_BYTES: Final = 1024 * 1024
#: Most keys in one report.
MAX_REPORT_KEYS: Final = 1000

_SIGNATURE: Final = re.compile(r"t=([0-9]{1,12}),\s*sha256=([0-9a-f]{64})")
_SEEN_PREFIX: Final = "leaks:seen:"
_SIGN_HOW: Final = (
    f"sign each report when sending it: {SIGNATURE_HEADER}: t=<unix time>,sha256=<hex "
    'HMAC-SHA256 of "<t>." followed by the raw body, under the shared leak-report secret>'
)
_TRUE_POSITIVE: Final = frozenset({"revoked", "already_revoked"})
_NO_STORE: Final = {"cache-control": "no-store"}


class LeakReportError(BastionError):
    """Root of the leak-report endpoint's errors."""

    code = "leak_report_error"
    status = 500
    title = "Leak report error"


class LeakReportSignatureError(LeakReportError):
    """The report's signature is missing or wrong; ``reason`` (for the log) says which."""

    code = "invalid_signature"
    status = 401
    title = "Invalid signature"
    # RFC 9110 §15.5.2: a 401 names how to authenticate.
    www_authenticate = 'HMAC-SHA256 realm="bastion", header="X-Bastion-Signature"'

    def __init__(self, reason: str, detail: str = _SIGN_HOW) -> None:
        super().__init__(detail)
        self.reason = reason


# The body errors are the HTTP face's (the admin API answers the same ones).


class LeakReportTooLargeError(PayloadTooLargeError, LeakReportError):
    """The report body exceeds :data:`MAX_REPORT_BYTES`."""


class LeakReportMediaTypeError(UnsupportedMediaTypeError, LeakReportError):
    """The report is not ``application/json``."""


class InvalidLeakReportError(InvalidRequestError, LeakReportError):
    """The report is not a JSON array of ``{"token": …}`` objects, or holds too many."""


class _Report(BaseModel):
    # Scanners add members over time; unknown ones are ignored, not refused.
    model_config = ConfigDict(extra="ignore", strict=True)

    token: Annotated[str, Field(min_length=1, max_length=4096)]
    type: Annotated[str, Field(max_length=256)] | None = None
    url: Annotated[str, Field(max_length=4096)] | None = None
    source: Annotated[str, Field(max_length=256)] | None = None


_REPORTS: Final = TypeAdapter(list[_Report])


def sign_leak_report(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``X-Bastion-Signature`` value of ``body`` under ``secret`` (for reporters and tests).

    ``t=<timestamp>,sha256=<hex HMAC-SHA256 of "<timestamp>." + body>``; the
    timestamp defaults to now (whole seconds since the epoch).
    """
    when = int(time.time()) if timestamp is None else timestamp
    return f"t={when},sha256={_mac(body, secret, str(when))}"


def _mac(body: bytes, secret: str, timestamp: str) -> str:
    return hmac_sha256_hex(secret, timestamp.encode("ascii") + b"." + body)


async def _read_body(request: Request) -> bytes:
    return await read_bounded(
        request,
        MAX_REPORT_BYTES,
        lambda: LeakReportTooLargeError(f"a report may hold at most {MAX_REPORT_BYTES} bytes"),
        invalid=InvalidLeakReportError,
    )


def _check_signature(request: Request, body: bytes, secret: str, now: float) -> str:
    """Return the verified signature (hex); raises LeakReportSignatureError.

    The MAC is checked before the timestamp, so only a holder of the secret
    learns that a signature was stale.
    """
    values = request.headers.getlist(SIGNATURE_HEADER.lower())
    if not values:
        raise LeakReportSignatureError("missing_signature")
    if len(values) > 1:
        raise LeakReportSignatureError("several_signatures")
    match = _SIGNATURE.fullmatch(values[0].strip().lower())
    if match is None:
        raise LeakReportSignatureError("malformed_signature")
    timestamp, given = match[1], match[2]
    if not constant_time_equals(_mac(body, secret, timestamp), given):
        raise LeakReportSignatureError("bad_signature")
    if abs(now - int(timestamp)) > SIGNATURE_TOLERANCE:
        raise LeakReportSignatureError(
            "expired_signature",
            f"the signature's timestamp t={timestamp} is more than {SIGNATURE_TOLERANCE} s "
            f"away from the server's clock; {_SIGN_HOW}",
        )
    return given


async def _refuse_replay(shared: SharedState, signature: str) -> None:
    # Remembered for twice the tolerance: a timestamp may be that far ahead or behind.
    try:
        first = await shared.add(_SEEN_PREFIX + signature, b"1", ttl=2 * SIGNATURE_TOLERANCE)
    except SharedStateUnavailableError as exc:
        log.warning("leak report refused: shared state unavailable for replay check: %s", exc)
        raise ServiceUnavailableError(
            "the leak-report replay check is unavailable; retry shortly"
        ) from None
    if not first:
        raise LeakReportSignatureError(
            "replayed_signature", f"this signed report was already received; {_SIGN_HOW}"
        )


def _parse(request: Request, body: bytes) -> list[_Report]:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise LeakReportMediaTypeError("send the report as Content-Type: application/json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidLeakReportError("the body is not JSON") from None
    if not isinstance(data, list):
        raise InvalidLeakReportError('the body must be a JSON array of {"token": ...} objects')
    if len(data) > MAX_REPORT_KEYS:
        raise InvalidLeakReportError(f"report at most {MAX_REPORT_KEYS} keys per request")
    try:
        return _REPORTS.validate_python(data)
    except ValidationError as error:
        # validation_problems never echoes the input: a bad member could be (part of) a key.
        detail, problems = validation_problems(error)
        raise InvalidLeakReportError(detail, errors=problems) from None


async def _report(
    service: ApiKeyService, reports: Sequence[_Report], record: Callable[[Event], None]
) -> list[dict[str, Any]]:
    # One call per reporting source, so the service's log names where each key was found.
    by_source: dict[str | None, list[int]] = {}
    for index, report in enumerate(reports):
        by_source.setdefault(report.source, []).append(index)
    statuses: list[str] = [""] * len(reports)
    for source, indexes in by_source.items():
        results = await service.report_leaks([reports[i].token for i in indexes], source=source)
        for index, result in zip(indexes, results, strict=True):
            statuses[index] = str(result.get("status", ""))
            if statuses[index] in _TRUE_POSITIVE and result.get("id"):
                # The key id and display prefix only: the reported key never reaches the log.
                record(
                    api_key_leaked(
                        str(result["id"]), result.get("prefix"), statuses[index], source=source
                    )
                )
    return [
        {
            "token_hash": sha256_hex(report.token.encode("utf-8", "surrogatepass")),
            "token_type": report.type,
            "label": "true_positive" if status in _TRUE_POSITIVE else "false_positive",
        }
        for report, status in zip(reports, statuses, strict=True)
    ]


class LeakReportEndpoint:
    """``POST /api-keys/leaks`` over the runtime's ``api_keys`` service (one over its stores
    when the runtime has none), recording on its ``auditor`` (when it has one)."""

    def __init__(self, runtime: AdminPlane, secret: str) -> None:
        self._runtime = runtime
        self._secret = secret
        self._service = ready_service(runtime, lambda plane: plane.api_keys, ApiKeyService)

    async def report(self, request: Request) -> Response:
        body = await _read_body(request)
        try:
            signature = _check_signature(request, body, self._secret, time.time())
            await _refuse_replay(self._runtime.shared, signature)
        except LeakReportSignatureError as error:
            log.warning("leak report refused: %s", error.reason)
            raise
        reports = _parse(request, body)
        results = await _report(self._service(), reports, self._recorder(request))
        found = sum(1 for result in results if result["label"] == "true_positive")
        log.warning(
            "leak report: %d key(s) reported, %d were bastion keys and are revoked",
            len(results),
            found,
        )
        return Response(
            orjson.dumps(results),
            status_code=200,
            media_type="application/json",
            headers=_NO_STORE,
        )

    def _recorder(self, request: Request) -> Callable[[Event], None]:
        # The request's context on every event: its id and the client's address.
        request_id = get_request_id(request.scope)

        def record(event: Event) -> None:
            auditor = self._runtime.auditor
            if auditor is not None:
                auditor.emit(
                    replace(
                        event,
                        request_id=None if request_id == "-" else request_id,
                        ip=request_client_ip(request.scope),
                    )
                )

        return record


def leak_routes(runtime: AdminPlane) -> list[Route]:
    """The leak-report route, or none when ``api_keys.leak_report_secret`` is not set."""
    configured = runtime.settings.api_keys.leak_report_secret
    if configured is None:
        return []
    endpoint = LeakReportEndpoint(runtime, configured.get_secret_value())
    return [Route(LEAKS_PATH, endpoint.report, methods=["POST"], name="api_key_leaks")]
