"""The one error tree of Tegata.

Every check in ``ca`` raises one of these; ``api`` maps each class to an RFC 9457 problem in
one table (``api.problems.TABLE``), ``cli`` to a one-line message and an exit code
(``cli.errors``). A message says what is wrong, naming the object and the rule; it never
says which command, flag or request field would fix it: that advice is the shell's, added
where it maps the error (a terminal user is told ``tegata init``, an API client is not). A
subclass made only so that a shell can add its advice keeps its parent's ``code`` (the
problem type API clients already know).

    CAError                      (base; ``code`` is a stable slug, ``field`` the input at fault)
    ├── ConfigError              settings, key files, passphrases, the database URL
    ├── StorageError             the database cannot be reached or is not migrated
    │   └── SchemaNotCurrent     the schema is behind this release
    ├── Unavailable              an outside service failed: worth a retry
    │   ├── MailError            the SMTP server did not take the mail
    │   ├── Unreachable          (crl-sync) Tegata or the gateway cannot be reached
    │   └── GatewayRefused       (crl-sync) the gateway was reached but did not take the CRL
    ├── InvalidInput             a value the caller sent breaks a rule
    │   └── NeedsConfirmation    legal but likely a mistake: repeat it with ``confirm`` set
    ├── NotFound                 a tenant, user, certificate ... absent (or not yours)
    ├── Conflict                 the object already exists, or its state forbids the change
    │   └── LeaseLost            a lifecycle run outlived its lease and stopped
    ├── NotPermitted             a rule forbids it (no secure access, subscription ended)
    │   ├── NotInitialized       there is no CA yet
    │   ├── MailNotConfigured    sending was asked for and no mail server is configured
    │   └── LinkGone             a download link used, expired, withdrawn or with nothing left
    ├── AuthenticationFailed     no token, unknown token, expired or revoked token
    └── Forbidden                a valid token whose role does not admit the action
        └── SelfDownloadOff      the tenant does not let users download their own certificate
"""

from __future__ import annotations


class CAError(Exception):
    """Base of every error Tegata raises on purpose."""

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


class SchemaNotCurrent(StorageError):
    """The database's schema is behind this release (``tegata db upgrade`` brings it up)."""



class Unavailable(CAError):
    """An outside service (a mail server, a gateway, a URL) cannot be reached or failed to
    answer: nothing of Tegata's own is wrong, and a retry may succeed."""

    code = "unavailable"


class MailError(Unavailable):
    """The mail could not be handed to the SMTP server."""

    code = "mail"


class Unreachable(Unavailable):
    """crl-sync: Tegata (the CRL's source) or the gateway cannot be reached, or the source
    failed to answer (a timeout, a dropped connection, 429 or 5xx)."""

    code = "unreachable"


class GatewayRefused(Unavailable):
    """crl-sync: the gateway was reached but did not take the CRL (HAProxy answered with an
    error or holds another CRL, the reload command failed, nginx kept its configuration).
    The file is written and not recorded as applied: the next run applies it again."""

    code = "gateway-refused"


class InvalidInput(CAError):
    code = "invalid-input"


class NeedsConfirmation(InvalidInput):
    """A value that is legal but likely a mistake (a subscription end already past):
    refused unless the caller confirms it with the parameter named ``confirm``."""


    def __init__(self, message: str, *, field: str | None = None, confirm: str) -> None:
        super().__init__(message, field=field)
        self.confirm = confirm


class NotFound(CAError):
    code = "not-found"


class Conflict(CAError):
    code = "conflict"


class LeaseLost(Conflict):
    """The run's lease lapsed: the run stops (not one tenant's failure to step over)."""



class NotPermitted(CAError):
    code = "not-permitted"


class NotInitialized(NotPermitted):
    """There is no CA yet: nothing can be issued, listed or served."""



class MailNotConfigured(NotPermitted):
    """Sending a mail was asked for, and no mail server is configured."""



class LinkGone(NotPermitted):
    """A known link that no longer works, and why (``reason``, one of ``REASONS``): used,
    expired (or withdrawn), replaced by a newer link, its user retired, or nothing left to
    download. The link page explains each in the reader's language."""

    code = "link-gone"
    REASONS = ("used", "expired", "replaced", "retired", "nothing")

    def __init__(self, message: str, *, reason: str, field: str | None = None) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"link refusal reason {reason!r} is not one of {self.REASONS}")
        super().__init__(message, field=field)
        self.reason = reason


class AuthenticationFailed(CAError):
    code = "unauthenticated"


class Forbidden(CAError):
    code = "forbidden"


class SelfDownloadOff(Forbidden):
    """The tenant does not let users download their own certificates (admins still can)."""

    code = "self-download-off"
