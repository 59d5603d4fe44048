"""The checks every credential's metadata shares: names, string lists, scopes, JSON, grace.

A credential type makes one :class:`SpecChecks` with its own error class (the
``invalid_…_metadata`` error naming the field and the fix) and the few words
its messages have always used; what is specific to it (an API key's CIDRs and
rate limits, a client's redirect URIs) stays with it and uses :meth:`SpecChecks.fail`.

Everything here refuses what a database driver would choke on (NUL, lone
surrogates, control characters in names and ids) with a 400 that names the
field, never a 500.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Final, NoReturn

import orjson

from bastion.errors import BastionError
from bastion.protocol.rfc6749.scope import is_scope_token

__all__ = [
    "MAX_GRACE",
    "MAX_ITEMS",
    "MAX_METADATA_BYTES",
    "MAX_NAME",
    "MAX_SCOPE_TOKEN",
    "SpecChecks",
    "SpecError",
    "is_scope_token",
    "no_controls",
    "storable",
]

#: Longest name, owner id or client id.
MAX_NAME: Final = 255
#: Most entries of one list member (scopes, routes, URIs …).
MAX_ITEMS: Final = 100
#: Longest scope token, route name or audience of an API key.
MAX_SCOPE_TOKEN: Final = 256
#: Largest metadata object, serialised.
MAX_METADATA_BYTES: Final = 16 * 1024
#: Longest grace period of a rotation, in seconds (10 years).
MAX_GRACE: Final = 10 * 365 * 86400.0
_MAX_METADATA_DEPTH: Final = 16
#: The largest integer every JSON consumer reads exactly (IEEE 754 double).
_MAX_JSON_INT: Final = 2**53


class SpecError(BastionError):
    """A credential's metadata is invalid; ``field`` names the member, the detail says the fix.

    Each credential has its own (``ApiKeySpecError``, ``ClientSpecError``), with its code.
    """

    code = "invalid_metadata"
    status = 400
    title = "Invalid metadata"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}", field=field)
        self.field = field


def no_controls(value: str) -> bool:
    """Whether ``value`` holds no C0 control character and no DEL."""
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(value: str) -> bool:
    """Whether ``value`` can be stored as text: UTF-8 encodable (no lone surrogate), no controls."""
    return _encodable(value) and no_controls(value)


class SpecChecks:
    """The shared checks of one credential type, raising its ``error(field, detail)``.

    ``noun`` names the credential in messages ("give the key a non-empty
    name"); ``name_rule`` and ``scope_rule`` end the messages of a too-long name
    and of a bad scope token; ``text_rule`` is the message of a JSON string
    that cannot be stored. They keep each type's answers as they were.
    """

    def __init__(
        self,
        error: type[SpecError],
        *,
        noun: str,
        name_rule: str,
        scope_rule: str,
        text_rule: str,
    ) -> None:
        self._error = error
        self._noun = noun
        self._name_rule = name_rule
        self._scope_rule = scope_rule
        self._text_rule = text_rule

    def error(self, field: str, detail: str) -> SpecError:
        """The credential's error naming ``field``, with ``detail`` (the fix)."""
        return self._error(field, detail)

    def fail(self, field: str, detail: str) -> NoReturn:
        """Raise :meth:`error`."""
        raise self._error(field, detail)

    def name(self, value: object) -> str:
        """A non-empty name, stripped, of at most :data:`MAX_NAME` storable characters."""
        if not isinstance(value, str) or not value.strip():
            self.fail("name", f"give the {self._noun} a non-empty name")
        name = value.strip()
        if len(name) > MAX_NAME or not storable(name):
            self.fail("name", self._name_rule)
        return name

    def string_list(self, field: str, values: object) -> tuple[str, ...]:
        """At most :data:`MAX_ITEMS` strings, duplicates dropped, first-seen order kept."""
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            self.fail(field, "must be a list of strings")
        items = list(values)
        if len(items) > MAX_ITEMS:
            self.fail(field, f"at most {MAX_ITEMS} entries are allowed")
        out: list[str] = []
        for item in items:
            if not isinstance(item, str):
                self.fail(field, "must be a list of strings")
            if item not in out:
                out.append(item)
        return tuple(out)

    def scopes(self, values: object) -> tuple[str, ...]:
        """A list of RFC 6749 §3.3 scope tokens of at most :data:`MAX_SCOPE_TOKEN` characters."""
        scopes = self.string_list("scopes", values)
        for scope in scopes:
            if len(scope) > MAX_SCOPE_TOKEN or not is_scope_token(scope):
                self.fail(
                    "scopes",
                    f"{scope[:60]!r} is not a scope token (RFC 6749 §3.3: printable ASCII "
                    f"without spaces, '\"' or '\\\\'{self._scope_rule})",
                )
        return scopes

    def json_value(self, field: str, value: object, depth: int = 0) -> None:
        """Return when ``value`` is plain JSON every consumer reads alike, else raise.

        Objects with string keys, lists, storable strings without NUL, booleans,
        null, integers within ±2^53, finite numbers; at most 16 levels deep.
        """
        if depth > _MAX_METADATA_DEPTH:
            self.fail(field, f"nest at most {_MAX_METADATA_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    self.fail(field, "object keys must be strings")
                self.json_value(field, key, depth + 1)
                self.json_value(field, item, depth + 1)
        elif isinstance(value, list | tuple):
            for item in value:
                self.json_value(field, item, depth + 1)
        elif isinstance(value, str):
            if "\x00" in value or not _encodable(value):
                self.fail(field, self._text_rule)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, int):
            if abs(value) > _MAX_JSON_INT:
                self.fail(field, f"integers must lie within ±2^53, not {value}")
        elif isinstance(value, float):
            if not math.isfinite(value):
                self.fail(field, "numbers must be finite")
        else:
            self.fail(field, f"a {type(value).__name__} is not a JSON value")

    def metadata(self, value: object) -> dict[str, Any]:
        """A JSON object (see :meth:`json_value`) of at most :data:`MAX_METADATA_BYTES`."""
        if not isinstance(value, Mapping):
            self.fail("metadata", "must be a JSON object")
        metadata = dict(value)
        self.json_value("metadata", metadata)
        if len(orjson.dumps(metadata)) > MAX_METADATA_BYTES:
            self.fail("metadata", f"must serialise to at most {MAX_METADATA_BYTES} bytes")
        return metadata

    def grace(self, value: object) -> float:
        """A grace period: a finite number of seconds from 0 to :data:`MAX_GRACE`."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail("grace", "must be a number of seconds")
        if not math.isfinite(value) or not 0 <= value <= MAX_GRACE:
            self.fail("grace", "must be between 0 and 10 years, in seconds")
        return float(value)
