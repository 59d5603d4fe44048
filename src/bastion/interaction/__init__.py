"""bastion.interaction: what a browser goes through — login (then MFA and consent, later),
and the server-side session it ends with.

:class:`SessionManager` starts, finds and ends browser sessions (``__Host-`` cookie,
rotated at login, idle and absolute timeouts, ended with the user); :class:`CsrfTokens`
protects every form; :func:`check_return_to` keeps the post-login redirect on this site.
"""

from bastion.interaction.csrf import CSRF_COOKIE, CSRF_FIELD, CsrfError, CsrfTokens
from bastion.interaction.return_to import (
    DEFAULT_RETURN_TO,
    UnsafeReturnToError,
    check_return_to,
)
from bastion.interaction.sessions import (
    SESSION_COOKIE,
    ActiveSession,
    EndReason,
    SessionManager,
    StartedSession,
)

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "DEFAULT_RETURN_TO",
    "SESSION_COOKIE",
    "ActiveSession",
    "CsrfError",
    "CsrfTokens",
    "EndReason",
    "SessionManager",
    "StartedSession",
    "UnsafeReturnToError",
    "check_return_to",
]
