"""The CLI's side of the error tree: the exit code of each error, and the advice a terminal
user gets that an API client does not (``tegata init``, ``--allow-past``).

Exit codes follow sysexits(3) where one fits; the most specific class in an error's MRO
decides, and an error no row names exits 1.

    0   done
    1   refused by a rule (not found, conflict, not permitted, forbidden)
    2   bad input (arguments, a value that breaks a rule, a CRL that fails crl-sync's checks)
    69  EX_UNAVAILABLE: the database, the mail server, or for crl-sync Tegata or the gateway,
        cannot be reached or failed to answer (a timeout, a dropped connection, 429, 5xx)
    70  EX_SOFTWARE: an internal error (a bug: the message shows only its type)
    75  EX_TEMPFAIL: crl-sync wrote the CRL but the gateway did not take it (the reload
        command failed, nginx kept its configuration, HAProxy refused it); the next run
        applies it again
    78  EX_CONFIG: settings, key files, passphrases, a database schema behind this release,
        a reload command that cannot be run
    130 interrupted
"""

from __future__ import annotations

from ca import errors

INTERNAL = 70  # EX_SOFTWARE

EXIT: dict[type[errors.CAError], int] = {
    errors.InvalidInput: 2,
    errors.ConfigError: 78,  # EX_CONFIG
    errors.StorageError: 69,  # EX_UNAVAILABLE
    # a schema behind this release is the deployment's to fix, not an outage
    errors.SchemaNotCurrent: 78,  # EX_CONFIG
    errors.Unavailable: 69,  # EX_UNAVAILABLE: the mail server, crl-sync's source or gateway
    errors.GatewayRefused: 75,  # EX_TEMPFAIL: written, not taken; the next run retries
}


def exit_code(exc: errors.CAError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT:
            return EXIT[cls]
    return 1


def flag(parameter: str) -> str:
    """The command-line option of a request parameter (``allow_past`` -> ``--allow-past``)."""
    return "--" + parameter.replace("_", "-")


def message(exc: errors.CAError) -> str:
    """The line a terminal user reads: the domain's message and, for some errors, what to
    type next."""
    if isinstance(exc, errors.NotInitialized):
        return f"{exc.message}: run `tegata init` first"
    if isinstance(exc, errors.SchemaNotCurrent):
        return (f"{exc.message}: run `tegata db upgrade` (or start with "
                "TEGATA_MIGRATE_ON_START=true)")
    if isinstance(exc, errors.NeedsConfirmation):
        return f"{exc.message}. Check it, or confirm with {flag(exc.confirm)}"
    if isinstance(exc, errors.MailNotConfigured):
        return f"{exc.message}; create the link without --send and pass it on yourself"
    return exc.message
