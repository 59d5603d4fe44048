"""OAuth 2.0 request parameters — RFC 6749 §3.1 and Appendix B
(https://www.rfc-editor.org/rfc/rfc6749#section-3.1).

Token, introspection and revocation requests carry their parameters in an
``application/x-www-form-urlencoded`` body encoded as UTF-8 (RFC 6749
Appendix B). The rules applied here:

- only that media type is accepted (a ``charset`` parameter other than UTF-8 is refused);
- the body is at most :data:`MAX_FORM_BYTES` (64 KiB) with at most
  :data:`MAX_FORM_FIELDS` parameters;
- "Parameters sent without a value MUST be treated as if they were omitted"
  (§3.1): empty values are dropped;
- "Request and response parameters MUST NOT be included more than once" (§3.1):
  a repeated parameter is ``invalid_request`` — except the parameters that
  their own specification makes repeatable (:data:`REPEATABLE_PARAMETERS`:
  RFC 8707 ``resource``, RFC 8693 ``audience``), which :class:`OAuthRequest`
  keeps with all their values.

Every violation raises :class:`~bastion.protocol.rfc6749.errors.InvalidRequestError`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from bastion.protocol.rfc6749.errors import InvalidRequestError

__all__ = [
    "FORM_CONTENT_TYPE",
    "MAX_FORM_BYTES",
    "MAX_FORM_FIELDS",
    "REPEATABLE_PARAMETERS",
    "OAuthRequest",
    "check_form_content_type",
    "parse_form",
    "parse_form_values",
    "parse_urlencoded",
]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

#: Largest accepted form body (a token request is a few hundred bytes; assertions a few KiB).
MAX_FORM_BYTES = 64 * 1024

#: Most parameters accepted in one form body.
MAX_FORM_FIELDS = 64

#: Parameters a specification allows more than once (RFC 8707 §2, RFC 8693 §2.1).
REPEATABLE_PARAMETERS: frozenset[str] = frozenset({"resource", "audience"})

# Parameter names echoed in error descriptions are cut to this length.
_MAX_NAME_ECHO = 40


def check_form_content_type(content_type: str | None) -> None:
    """Return when ``content_type`` is ``application/x-www-form-urlencoded`` in UTF-8.

    Raises:
        InvalidRequestError: another media type, none, or another charset.
    """
    if not content_type:
        raise InvalidRequestError(f"the request body must be {FORM_CONTENT_TYPE}")
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != FORM_CONTENT_TYPE:
        raise InvalidRequestError(f"the request body must be {FORM_CONTENT_TYPE}")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in {"utf-8", "utf8"}:
                raise InvalidRequestError("the request body must be encoded as UTF-8")


def parse_form_values(
    body: bytes,
    content_type: str | None,
    *,
    repeatable: Collection[str] = REPEATABLE_PARAMETERS,
) -> dict[str, tuple[str, ...]]:
    """Every parameter of a form body with all its (non-empty) values, in order.

    Names in ``repeatable`` may occur several times; any other name occurring
    more than once raises.

    Raises:
        InvalidRequestError: wrong media type or charset, body over 64 KiB, more
            than 64 parameters, not UTF-8, or a non-repeatable parameter repeated.
    """
    check_form_content_type(content_type)
    values: dict[str, list[str]] = {}
    for name, value in parse_urlencoded(body):
        seen = values.setdefault(name, [])
        if seen and name not in repeatable:
            raise InvalidRequestError(f"parameter '{name[:_MAX_NAME_ECHO]}' repeated")
        seen.append(value)
    return {name: tuple(found) for name, found in values.items()}


def parse_urlencoded(data: bytes, *, source: str = "request body") -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of urlencoded ``data`` (a form body or a query), in
    order, without the pairs whose value is empty (RFC 6749 §3.1: omitted).

    ``source`` names the data in error descriptions.

    Raises:
        InvalidRequestError: over 64 KiB, more than 64 parameters, or not UTF-8.
    """
    if len(data) > MAX_FORM_BYTES:
        raise InvalidRequestError(f"the {source} exceeds {MAX_FORM_BYTES} bytes")
    try:
        text = data.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
            separator="&",
        )
    except UnicodeDecodeError:
        raise InvalidRequestError(f"the {source} is not valid UTF-8") from None
    except ValueError:
        # parse_qsl raises ValueError only for max_num_fields.
        raise InvalidRequestError(
            f"the {source} has more than {MAX_FORM_FIELDS} parameters"
        ) from None
    # RFC 6749 §3.1: a parameter without a value counts as omitted.
    return [(name, value) for name, value in pairs if value]


def parse_form(body: bytes, content_type: str | None) -> dict[str, str]:
    """The parameters of a form body, each exactly once (RFC 6749 §3.1).

    Raises:
        InvalidRequestError: as :func:`parse_form_values`, and for any repeated
            parameter (here even ``resource``).
    """
    return {
        name: found[0]
        for name, found in parse_form_values(body, content_type, repeatable=()).items()
    }


def _header_map(headers: Iterable[tuple[str | bytes, str | bytes]]) -> dict[str, tuple[str, ...]]:
    collected: dict[str, list[str]] = {}
    for raw_name, raw_value in headers:
        # HTTP header bytes are ISO-8859-1 (RFC 9110 §5.5); latin-1 never fails.
        name = raw_name.decode("latin-1") if isinstance(raw_name, bytes) else raw_name
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        collected.setdefault(name.lower(), []).append(value)
    return {name: tuple(found) for name, found in collected.items()}


@dataclass(frozen=True, slots=True)
class OAuthRequest:
    """One request to an OAuth endpoint, free of any HTTP framework.

    ``headers`` maps lower-case names to every value received; ``form`` holds
    each body parameter's value (the first one for a repeatable parameter);
    ``form_values`` every value of repeatable parameters; ``query`` the raw query
    string (never read for parameters: RFC 6749 §3.2 puts them in the body).
    """

    method: str
    headers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    form: Mapping[str, str] = field(default_factory=dict)
    query: str = ""
    form_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_http(
        cls,
        method: str,
        headers: Iterable[tuple[str | bytes, str | bytes]],
        body: bytes = b"",
        query: str | bytes = b"",
    ) -> OAuthRequest:
        """Build a request from raw HTTP parts (ASGI header pairs are fine).

        A POST body is parsed as a form; other methods carry no parameters.

        Raises:
            InvalidRequestError: the POST body is not an acceptable form (see
                :func:`parse_form_values`), or Content-Type is sent twice.
        """
        header_map = _header_map(headers)
        query_text = query.decode("latin-1") if isinstance(query, bytes) else query
        if method.upper() != "POST":
            return cls(method=method.upper(), headers=header_map, query=query_text)
        content_types = header_map.get("content-type", ())
        if len(content_types) > 1:
            raise InvalidRequestError("header 'Content-Type' repeated")
        values = parse_form_values(body, content_types[0] if content_types else None)
        return cls(
            method="POST",
            headers=header_map,
            form={name: found[0] for name, found in values.items()},
            query=query_text,
            form_values={name: found for name, found in values.items() if len(found) > 1},
        )

    def header(self, name: str) -> str | None:
        """The single value of header ``name`` (any case), or ``None`` when absent.

        Raises:
            InvalidRequestError: the header was sent more than once.
        """
        found = self.headers.get(name.lower(), ())
        if len(found) > 1:
            raise InvalidRequestError(f"header '{name}' repeated")
        return found[0] if found else None

    def values(self, name: str) -> tuple[str, ...]:
        """Every value of body parameter ``name`` (empty when absent)."""
        if name in self.form_values:
            return self.form_values[name]
        value = self.form.get(name)
        return (value,) if value is not None else ()
