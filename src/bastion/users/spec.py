"""What a new user is made of, checked before anything is stored.

A username is what people type to log in: 1 to 255 characters, no spaces or
control characters; it is unique case-insensitively (``storage/models.py``:
``normalize_username``). The email address is optional and only checked for
shape. Roles are tokens of the scope grammar (what routes' ``roles`` rules
compare with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bastion.credentials.validation import MAX_NAME, SpecChecks, is_scope_token, storable
from bastion.storage.models import normalize_username
from bastion.users.errors import UserSpecError

__all__ = ["MAX_EMAIL", "UserSpec", "check_spec"]

#: Longest email address (RFC 5321: 64 + 1 + 255).
MAX_EMAIL: Final = 320

_NAME_RULE: Final = f"use at most {MAX_NAME} characters and no control characters"
CHECKS: Final = SpecChecks(
    UserSpecError,
    noun="user",
    name_rule=_NAME_RULE,
    scope_rule=", at most 256 characters",
    text_rule="strings must not contain NUL characters",
)


@dataclass(frozen=True, slots=True)
class UserSpec:
    """A user to create (the password is given separately and never kept here)."""

    username: str
    email: str | None = None
    display_name: str = ""
    roles: tuple[str, ...] = ()


def _username(value: str) -> str:
    # The lookup key (NFKC, case-folded) can be longer than the name ("ﬃ" is "ffi"): both fit.
    if not value or len(value) > MAX_NAME or len(normalize_username(value)) > MAX_NAME:
        CHECKS.fail("username", f"use 1 to {MAX_NAME} characters")
    if not storable(value) or any(ch.isspace() for ch in value):
        CHECKS.fail("username", "use no spaces or control characters")
    return value


def _email(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    local, at, domain = value.rpartition("@")
    if (
        len(value) > MAX_EMAIL
        or not at
        or not local
        or "." not in domain.strip(".")
        or not storable(value)
        or any(ch.isspace() for ch in value)
    ):
        CHECKS.fail("email", "give an address like name@example.com")
    return value


def _roles(values: tuple[str, ...]) -> tuple[str, ...]:
    roles = CHECKS.string_list("roles", values)
    for role in roles:
        if len(role) > 256 or not is_scope_token(role):
            CHECKS.fail(
                "roles",
                f"{role[:60]!r} is not a role: printable ASCII without spaces, '\"' or '\\\\'",
            )
    return roles


#: What an update may change (the username is the login name: it stays).
UPDATABLE: tuple[str, ...] = ("email", "email_verified", "display_name", "roles")


def check_changes(changes: dict[str, object]) -> dict[str, object]:
    """``changes`` (members of :data:`UPDATABLE`) checked; a new email is unverified unless
    ``email_verified`` is set with it.

    Raises:
        UserSpecError: an unknown member, or a bad value (naming the fix).
    """
    checked: dict[str, object] = {}
    for name, value in changes.items():
        if name == "email":
            checked[name] = _email(value if isinstance(value, str) or value is None else "?")
        elif name == "display_name":
            text = value.strip() if isinstance(value, str) else None
            if text is None or len(text) > MAX_NAME or not storable(text):
                CHECKS.fail("display_name", _NAME_RULE)
            checked[name] = text
        elif name == "roles":
            checked[name] = _roles(value)  # type: ignore[arg-type]
        elif name == "email_verified":
            if not isinstance(value, bool):
                CHECKS.fail("email_verified", "true or false")
            checked[name] = value
        else:
            CHECKS.fail(name, f"cannot be changed; one of: {', '.join(UPDATABLE)}")
    if "email" in checked and "email_verified" not in checked:
        checked["email_verified"] = False
    return checked


def check_spec(spec: UserSpec) -> UserSpec:
    """``spec`` with its members checked (duplicate roles dropped).

    Raises:
        UserSpecError: naming the first bad member and the fix.
    """
    display_name = spec.display_name.strip()
    if len(display_name) > MAX_NAME or not storable(display_name):
        CHECKS.fail("display_name", _NAME_RULE)
    return UserSpec(
        username=_username(spec.username),
        email=_email(spec.email),
        display_name=display_name,
        roles=_roles(spec.roles),
    )
