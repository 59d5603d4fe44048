"""The field types and value validators the settings sections share.

Ports, file paths, IP networks, durations (``90d``, ``250ms``), byte sizes
(``10MB``), absolute http(s) URLs, header names and readable files: each is
checked here once, with a message that shows the bad value (secrets redacted)
and the fix. :func:`parse_duration` is also what the CLI parses durations with.
"""

from __future__ import annotations

import ipaddress
import math
import re
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Final
from urllib.parse import SplitResult, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator

from bastion.settings._values import show

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _not_bool(value: object) -> object:
    # YAML turns yes/no/on/off into booleans; pydantic would then accept them as 1/0.
    if isinstance(value, bool):
        raise ValueError(f"{show(value)} is not a number")
    return value


def _port(value: object) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"{show(value)} is not a valid port — use a number from 1 to 65535")
    return value


def _path(value: object) -> object:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("is empty — give a file system path")
        return Path(value).expanduser()
    return value


def _network(value: object) -> IPv4Network | IPv6Network:
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return ipaddress.ip_network(value.strip())
        except ValueError:
            try:
                network = ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                pass
            else:
                raise ValueError(
                    f"{show(value)} has host bits set — did you mean {network}?"
                ) from None
    raise ValueError(
        f"{show(value)} is not an IP address or network — use e.g. 10.0.0.0/8 or 192.0.2.10"
    )


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _absolute_http_url(value: str, example: str) -> SplitResult:
    """The parts of an absolute http(s) URL with a host and a valid port, else ValueError."""
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(f"{show(value)} is not an absolute http(s) URL — use e.g. {example}")
    return parts


def _http_url(value: str, example: str) -> str:
    """Check an absolute http(s) URL without query, fragment or user info; strip a final "/"."""
    parts = _absolute_http_url(value, example)
    if "@" in parts.netloc:
        raise ValueError(
            f"{show(value)} contains a user name or password — remove it (e.g. {example})"
        )
    if "?" in value or "#" in value:
        raise ValueError(
            f"{show(value)} has a query or fragment — remove everything from '?' or '#'"
        )
    return value[:-1] if parts.path.endswith("/") else value


_DURATION = re.compile(r"^\s*([0-9]{1,30}(?:\.[0-9]{1,9})?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}

MAX_DURATION: Final = 100 * 365 * 86400.0
"""The longest duration bastion accepts anywhere (100 years): a moment that far away
is still a representable date, and a bigger number is a typo, never a policy."""


class DurationError(ValueError):
    """A value that is not a usable duration.

    ``reason`` is the message without the value ("too long — …"); ``too_long``
    tells a duration over :data:`MAX_DURATION` from one that is not a duration at all.
    """

    def __init__(self, value: object, reason: str, *, too_long: bool = False) -> None:
        self.reason = reason
        self.too_long = too_long
        super().__init__(f"{show(value)} is {reason}")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "90d", "12h", "15m", "30s", "250ms", "2w".

    The one home of duration parsing (configuration keys and CLI flags alike).
    Raises :class:`DurationError` (a ValueError) quoting the value and the
    expected form: not a duration, negative, not finite, or longer than
    :data:`MAX_DURATION`.
    """
    value = _not_bool(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise DurationError(value, "not a duration — use seconds or e.g. 30s, 15m, 12h, 90d")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    elif isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise DurationError(value, "not a duration — give a number of seconds >= 0")
    else:
        raise DurationError(value, "not a duration — use seconds or e.g. 30s, 15m, 12h, 90d")
    if seconds > MAX_DURATION:
        raise DurationError(value, "too long — at most 100 years (36500d)", too_long=True)
    return seconds


def _duration(value: object) -> object:
    """Accept seconds as a number, or a string like "90d", "12h", "15m", "30s", "250ms"."""
    if value is None or not isinstance(value, str | int | float):
        return value  # None where optional; other types get pydantic's own message
    return parse_duration(value)


Port = Annotated[int, PlainValidator(_port)]
FilePath = Annotated[Path, BeforeValidator(_path)]
Network = Annotated[IPv4Network | IPv6Network, PlainValidator(_network)]
Seconds = Annotated[float, BeforeValidator(_not_bool), Field(gt=0)]
Count = Annotated[int, BeforeValidator(_not_bool), Field(ge=1)]
Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]

_BYTE_SIZE = re.compile(r"^\s*([0-9]+)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.IGNORECASE)
_BYTE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def _byte_size(value: object) -> int:
    """Accept bytes, or a string like "512KB", "10MB", "1MiB" (KB = 1000, KiB = 1024)."""
    value = _not_bool(value)
    if isinstance(value, str):
        match = _BYTE_SIZE.match(value)
        if match is None:
            raise ValueError(
                f"{show(value)} is not a size — use bytes or e.g. 512KB, 10MB, 1MiB, 1GB"
            )
        value = int(match.group(1)) * _BYTE_UNITS[(match.group(2) or "b").lower()]
    if not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{show(value)} is not a size — use a positive number of bytes or e.g. 10MB"
        )
    return value


ByteSize = Annotated[int, PlainValidator(_byte_size)]


class _Section(BaseModel):
    # Every section: unknown keys refused (a typo is an error, not a default), frozen once
    # loaded.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be opened for reading (with the fix), or None when it can."""
    try:
        with path.open("rb"):
            return None
    except FileNotFoundError:
        return f"file {path} does not exist — check the path"
    except IsADirectoryError:
        return f"{path} is a directory — give the file itself"
    except PermissionError:
        return f"file {path} is not readable by this user — fix its permissions"
    except OSError as exc:
        return f"file {path} cannot be read ({exc.strerror or exc}) — check the path"


# RFC 9110 token characters, restricted to what header names use in practice.
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "cookie",
        "forwarded",
        "x-real-ip",
        "x-request-id",
    }
)
