"""The one error tree of Tegata's core.

Every check in ``ca`` raises one of these; ``api`` maps them to RFC 9457 problem details
in one table and ``cli`` to a one-line message and an exit code.

    CAError                      (base; ``code`` is a stable slug, ``field`` the input at fault)
    ├── ConfigError              settings, key files, passphrases, the database URL
    ├── StorageError             the database cannot be reached or is not migrated
    ├── InvalidInput             a value the caller sent breaks a rule
    ├── NotFound                 a tenant, user, certificate ... absent (or not yours)
    ├── Conflict                 the object already exists, or its state forbids the change
    ├── NotPermitted             a rule forbids it (no secure access, subscription ended)
    ├── AuthenticationFailed     no token, unknown token, expired or revoked token
    └── Forbidden                a valid token whose role does not admit the action
"""

from __future__ import annotations


class CAError(Exception):
    """Base of every error Tegata's core raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class ConfigError(CAError):
    code = "configuration"


class StorageError(CAError):
    code = "storage"


class InvalidInput(CAError):
    code = "invalid-input"


class NotFound(CAError):
    code = "not-found"


class Conflict(CAError):
    code = "conflict"


class NotPermitted(CAError):
    code = "not-permitted"


class AuthenticationFailed(CAError):
    code = "unauthenticated"


class Forbidden(CAError):
    code = "forbidden"
