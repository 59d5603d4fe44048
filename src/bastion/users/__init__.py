"""bastion.users: user accounts, their passwords and the password policy.

:class:`UserService` stores users and checks a username and password
(argon2id, one verify whatever the outcome); :class:`UserOperations` is what
``bastion users`` and ``/admin/api/v1/users`` run: each change audited and
announced on the change feed. :class:`PasswordPolicy` is OWASP ASVS 5.0's.
"""

from bastion.users.errors import (
    INVALID_CREDENTIALS_DETAIL,
    InvalidCredentialsError,
    UserError,
    UserSpecError,
    WeakPasswordError,
)
from bastion.users.operations import UserOperations, UserStateChange
from bastion.users.policy import PasswordPolicy, common_passwords
from bastion.users.service import UserService
from bastion.users.spec import UserSpec
from bastion.users.views import user_view

__all__ = [
    "INVALID_CREDENTIALS_DETAIL",
    "InvalidCredentialsError",
    "PasswordPolicy",
    "UserError",
    "UserOperations",
    "UserService",
    "UserSpec",
    "UserSpecError",
    "UserStateChange",
    "WeakPasswordError",
    "common_passwords",
    "user_view",
]
