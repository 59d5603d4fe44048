"""Load the configuration: model defaults < YAML file < ``BASTION_*`` environment variables.

The file is named by the ``config_path`` argument or ``BASTION_CONFIG``. Every
``BASTION_<KEY>`` variable overrides a top-level key, ``__`` nests
(``BASTION_LISTEN__PORT=9000``), and values are read as YAML scalars or flow
collections (``BASTION_TLS=off``, ``BASTION_TRUSTED_PROXIES=[10.0.0.0/8]``).
Any string ``env:NAME`` in the result is replaced by the variable ``NAME``.
Every problem found becomes one line of a single :class:`SettingsError`.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from bastion.settings._values import Loc, Problems, dotted, is_secret_key, kind, show
from bastion.settings.checks import production_problems
from bastion.settings.config import SHORTHANDS, Settings, expand_shorthand
from bastion.settings.errors import SettingsError

ENV_PREFIX = "BASTION_"
CONFIG_VAR = "BASTION_CONFIG"
_IGNORED_PREFIXES = ("BASTION_TEST_",)
_REFERENCE = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")
# Values this long that came from env: references are scrubbed from error lines:
# references exist to keep secrets out of files, so treat what they hold as secret.
_SCRUB_MIN = 8


def load_settings(
    config_path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate the configuration; return the frozen :class:`Settings`.

    ``environ`` defaults to ``os.environ``. With ``env: production`` the unsafe
    development defaults are refused (see :func:`production_problems`).

    Raises:
        SettingsError: with one line per problem — unreadable or malformed file,
            unknown ``BASTION_*`` variable, missing ``env:`` variable, invalid key
            or value, or a production refusal.
    """
    env = dict(os.environ if environ is None else environ)
    if config_path is None and env.get(CONFIG_VAR):
        config_path = env[CONFIG_VAR]
    tree = _read_file(Path(config_path)) if config_path is not None else {}

    problems: list[str] = []
    origins: dict[Loc, tuple[str, Loc]] = {}
    overrides, unknown = _env_overrides(env)
    for var, path, value in overrides:
        try:
            for target in _apply(tree, path, value, var):
                origins[target] = (var, path)
        except _BadOverride as exc:
            problems.append(str(exc))

    referenced: set[str] = set()
    _collect_references(tree, referenced)
    problems[:0] = [line for var, line in unknown if var not in referenced]

    secrets: set[str] = set()
    unresolved: list[str] = []
    tree = _resolve(tree, (), env, unresolved, secrets)
    if unresolved:
        # Validating now would only add noise about the unresolved "env:…" strings.
        raise SettingsError(_scrub(problems + unresolved, secrets))

    try:
        settings = Settings.model_validate(tree)
    except ValidationError as exc:
        _collect_secrets(tree, (), secrets)
        problems.extend(explain(exc, tree, origins))
    if problems:
        raise SettingsError(_scrub(problems, secrets))

    if settings.env == "production" and (refused := production_problems(settings)):
        raise SettingsError(refused)
    return settings


# ---------------------------------------------------------------------------
# the file


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys (the later one silently won)."""


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping in the file repeats a key."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, str | int | float | bool) and key in seen:
            mark = key_node.start_mark
            raise _DuplicateKeyError(None, None, f"key {key!r} appears twice — keep one", mark)
        if isinstance(key, str | int | float | bool):
            seen.add(key)
    return dict(loader.construct_pairs(node, deep=True))


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _read_file(path: Path) -> dict[str, Any]:
    where = f"config file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(
            f"{where}: not found — check the path (or BASTION_CONFIG), or omit it to run on "
            "development defaults"
        ) from None
    except IsADirectoryError:
        raise SettingsError(f"{where}: is a directory — give the YAML file itself") from None
    except PermissionError:
        raise SettingsError(f"{where}: not readable by this user — fix its permissions") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{where}: is not UTF-8 text — save it as UTF-8") from None
    except OSError as exc:
        raise SettingsError(f"{where}: cannot be read ({exc.strerror or exc})") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        # Built from the parts, not str(exc): PyYAML's own text quotes the offending
        # line, which may hold a secret.
        mark = exc.problem_mark or exc.context_mark
        at = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, _DuplicateKeyError):
            raise SettingsError(f"{where}{at}: {problem}") from None
        raise SettingsError(
            f"{where}{at}: {problem} — fix the YAML syntax there (quote values that contain "
            "': ' or start with a special character)"
        ) from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{where}: not valid YAML ({type(exc).__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(
            f"{where}: the top level must be a mapping of settings (key: value), not {kind(data)}"
        )
    return data


# ---------------------------------------------------------------------------
# BASTION_* environment variables


def _env_overrides(
    env: Mapping[str, str],
) -> tuple[list[tuple[str, Loc, Any]], list[tuple[str, str]]]:
    """Parse the ``BASTION_*`` variables into ``(var, path, value)``; list unknown ones."""
    fields = Settings.model_fields
    overrides: list[tuple[str, Loc, Any]] = []
    unknown: list[tuple[str, str]] = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == CONFIG_VAR:
            continue
        if var.startswith(_IGNORED_PREFIXES):
            continue
        path: Loc = tuple(part.lower() for part in var[len(ENV_PREFIX) :].split("__"))
        if not path or path[0] not in fields or any(not part for part in path):
            unknown.append((var, _unknown_variable(var, path)))
            continue
        overrides.append((var, path, _parse_env_value(env[var], path)))
    overrides.sort(key=lambda item: len(item[1]))  # sections before the keys inside them
    return overrides, unknown


def _unknown_variable(var: str, path: Loc) -> str:
    first = str(path[0]) if path else ""
    fields = list(Settings.model_fields)
    match = difflib.get_close_matches(first, fields, n=1, cutoff=0.6)
    if match:
        suggestion = "__".join([match[0], *(str(p) for p in path[1:])])
        return f"{var}: unknown setting — did you mean {ENV_PREFIX}{suggestion.upper()}?"
    if len(path) == 1:
        for section, field in Settings.model_fields.items():
            model = _model_of(field.annotation)
            if model is not None and first in model.model_fields:
                return (
                    f"{var}: unknown setting — did you mean "
                    f"{ENV_PREFIX}{section.upper()}__{first.upper()}?"
                )
    return (
        f"{var}: unknown setting — bastion reads {ENV_PREFIX}<KEY> for its top-level keys "
        f"({', '.join(fields)}) and {ENV_PREFIX}<KEY>__<SUBKEY> for nested ones; rename or "
        "unset it"
    )


def _parse_env_value(raw: str, path: Loc) -> Any:
    if raw == "":
        return None  # an empty variable means "not set": the key's default applies
    if _wants_text(_annotation_at(path)):
        # Text keys take the raw string: YAML would turn "0123" into 83 or "yes" into True.
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


class _BadOverride(Exception):
    """An environment variable that cannot be applied to the configuration tree."""


def _apply(tree: dict[str, Any], path: Loc, value: Any, var: str) -> list[Loc]:
    """Set ``value`` at ``path`` in ``tree``, merging into mappings.

    Returns the paths the variable now decides (for error lines that name it).
    """
    node = tree
    for depth, part in enumerate(path[:-1]):
        child = node.get(str(part))
        if child is None:
            child = {}
        elif not isinstance(child, dict) and depth == 0:
            child = expand_shorthand(str(part), child)
        if not isinstance(child, dict):
            raise _BadOverride(
                f"{var}: {dotted(path[: depth + 1])} is {kind(child)} in the configuration, "
                f"so it has no key {path[depth + 1]!r} — set "
                f"{ENV_PREFIX}{'__'.join(str(p).upper() for p in path[: depth + 1])} instead"
            )
        child = dict(child)
        node[str(part)] = child
        node = child
    last = str(path[-1])
    existing = node.get(last)
    if isinstance(existing, dict):
        expanded = expand_shorthand(last, value) if len(path) == 1 else value
        if isinstance(expanded, dict):
            node[last] = _merge(existing, expanded)
            return [(*path, *leaf) for leaf in _leaves(expanded)]
    if value is None and len(path) == 1 and last in SHORTHANDS:
        node.pop(last, None)
        return [path]
    node[last] = value
    return [path]


def _leaves(value: dict[str, Any]) -> list[Loc]:
    out: list[Loc] = []
    for key, item in value.items():
        if isinstance(item, dict) and item:
            out.extend((key, *leaf) for leaf in _leaves(item))
        else:
            out.append((key,))
    return out


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# ---------------------------------------------------------------------------
# env: references


def _collect_references(value: Any, names: set[str]) -> None:
    if isinstance(value, str):
        if match := _REFERENCE.fullmatch(value):
            names.add(match.group(1))
    elif isinstance(value, dict):
        for item in value.values():
            _collect_references(item, names)
    elif isinstance(value, list):
        for item in value:
            _collect_references(item, names)


def _resolve(
    value: Any, loc: Loc, env: Mapping[str, str], problems: list[str], secrets: set[str]
) -> Any:
    """Replace ``env:NAME`` strings; check that every key is text."""
    if isinstance(value, str):
        match = _REFERENCE.fullmatch(value)
        if match is None:
            return value
        name = match.group(1)
        resolved = env.get(name)
        if not resolved:
            state = "is not set" if resolved is None else "is empty"
            problems.append(
                f"{dotted(loc) or 'configuration'}: environment variable {name} {state} — "
                f"export it, or change the reference env:{name}"
            )
            return value
        if len(resolved) >= _SCRUB_MIN or is_secret_key(loc[-1] if loc else None):
            secrets.add(resolved)
        return resolved
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                where = dotted(loc) or "top level"
                problems.append(
                    f"{where}: key {show(key)} is not a name — keys are words like "
                    "'upstream' (quote it if YAML reads it as a number or true/false)"
                )
                continue
            out[key] = _resolve(item, (*loc, key), env, problems, secrets)
        return out
    if isinstance(value, list):
        return [_resolve(item, (*loc, i), env, problems, secrets) for i, item in enumerate(value)]
    return value


# ---------------------------------------------------------------------------
# explaining validation errors


def explain(
    exc: ValidationError, tree: Any, origins: Mapping[Loc, tuple[str, Loc]] | None = None
) -> list[str]:
    """One line per validation error: ``key: what is wrong — the fix``."""
    origins = origins or {}
    # Report in the order the top-level keys appear in the file (pydantic lists a
    # model's unknown keys after its field errors).
    order = {key: index for index, key in enumerate(tree)} if isinstance(tree, dict) else {}
    found: list[tuple[int, str]] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(
            part
            for part in error["loc"]
            if isinstance(part, int) or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part)
        )
        kind_ = error["type"]
        items: list[tuple[Loc, str]]
        if kind_ in ("value_error", "assertion_error"):
            cause = error.get("ctx", {}).get("error")
            if isinstance(cause, Problems):
                items = cause.items
            else:
                items = [((), str(cause) if cause is not None else error["msg"])]
        elif kind_ == "extra_forbidden":
            items = [((), _unknown_key(loc, origins))]
        else:
            items = [((), _builtin_message(error, loc))]
        for sub, message in items:
            full = (*loc, *sub)
            where = _where(full, tree, origins)
            line = f"{where}: {message}" if where else message
            if all(line != seen for _, seen in found):
                found.append((order.get(full[0], len(order)) if full else -1, line))
    return [line for _, line in sorted(found, key=lambda item: item[0])]


def _where(loc: Loc, tree: Any, origins: Mapping[Loc, tuple[str, Loc]]) -> str:
    for length in range(len(loc), 0, -1):
        origin = origins.get(loc[:length])
        if origin is not None:
            var, var_path = origin
            return var if var_path == loc else f"{var} ({dotted(loc)})"
    where = dotted(loc)
    if len(loc) == 2 and loc[0] == "routes" and isinstance(loc[1], int):
        routes = tree.get("routes") if isinstance(tree, dict) else None
        if isinstance(routes, list) and loc[1] < len(routes):
            route = routes[loc[1]]
            if isinstance(route, dict) and isinstance(route.get("name"), str):
                where += f" ({route['name']})"
    return where


def _unknown_key(loc: Loc, origins: Mapping[Loc, tuple[str, Loc]]) -> str:
    key = str(loc[-1])
    known = list(_fields_at(loc[:-1]))
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if origins.get(loc, ("", ()))[1] == loc:
        # Set by a variable of exactly this name: suggest the variable's right name.
        if match:
            var = "__".join(str(p).upper() for p in (*loc[:-1], match[0]))
            return f"unknown setting — did you mean {ENV_PREFIX}{var}?"
        return "unknown setting — rename or unset it"
    if match:
        return f"unknown key — did you mean {match[0]!r}?"
    return f"unknown key — remove it (keys here: {', '.join(known)})"


_MESSAGES = {
    "int_type": "{value} is not a whole number",
    "int_parsing": "{value} is not a whole number",
    "int_from_float": "{value} is not a whole number",
    "float_type": "{value} is not a number",
    "float_parsing": "{value} is not a number",
    "bool_type": "{value} is not true or false",
    "bool_parsing": "{value} is not true or false",
    "string_type": "expected text, got {kind}",
    "list_type": "expected a list, got {kind}",
    "model_type": "expected a mapping of keys, got {kind}",
    "model_attributes_type": "expected a mapping of keys, got {kind}",
    "dict_type": "expected a mapping of keys, got {kind}",
    "path_type": "expected a file path, got {kind}",
    "missing": "is required — add it",
    "literal_error": "{value} is not allowed — use {expected}",
    "greater_than": "{value} is too small — use a number greater than {gt}",
    "greater_than_equal": "{value} is too small — use a number of at least {ge}",
    "less_than": "{value} is too large — use a number less than {lt}",
    "less_than_equal": "{value} is too large — use a number of at most {le}",
}


def _builtin_message(error: Any, loc: Loc) -> str:
    template = _MESSAGES.get(error["type"])
    if template is None:
        return str(error["msg"])
    value = error.get("input")
    # A secret key's value is never shown, whatever is wrong with it.
    shown = "the value" if any(is_secret_key(part) for part in loc) else show(value)
    context = {"expected": "", **(error.get("ctx") or {})}
    return template.format(value=shown, kind=kind(value), **context)


# ---------------------------------------------------------------------------
# model introspection


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in _unwrap(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside ``Annotated``, ``X | None`` and ``list[X]``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType, list):
        return [t for arg in get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _annotation_at(path: Loc) -> Any:
    model: type[BaseModel] | None = Settings
    annotation: Any = None
    for part in path:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = _model_of(annotation)
    return annotation


def _fields_at(loc: Loc) -> list[str]:
    model: type[BaseModel] | None = Settings
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _wants_text(annotation: Any) -> bool:
    if annotation is None or get_origin(annotation) is list:
        return False
    concrete = [t for t in _unwrap(annotation) if t is not type(None)]
    if not concrete:
        return False
    for tp in concrete:
        if get_origin(tp) is Literal:
            if not all(isinstance(arg, str) for arg in get_args(tp)):
                return False
        elif tp not in (str, SecretStr, Path):
            return False
    return True


# ---------------------------------------------------------------------------
# secrets never reach an error line


def _collect_secrets(value: Any, loc: Loc, secrets: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _collect_secrets(item, (*loc, key), secrets)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _collect_secrets(item, (*loc, index), secrets)
    elif isinstance(value, str):
        if loc and is_secret_key(loc[-1]):
            secrets.add(value)
        elif "://" in value:
            _, _, rest = value.partition("://")
            userinfo, at, _ = rest.rpartition("@")
            if at and ":" in userinfo:
                secrets.add(userinfo.partition(":")[2])


def _scrub(lines: list[str], secrets: set[str]) -> list[str]:
    # Longest first, so a secret containing a shorter one is replaced whole.
    ordered = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)
    out = []
    for line in lines:
        for secret in ordered:
            line = line.replace(secret, "***")
        out.append(line)
    return out
