"""Rules for the names people type (pure). Each check raises ``InvalidInput`` naming the rule.

Logins and tenant names end up in file names, zip entries, URLs and certificate subjects, so
they are limited at creation to characters that are safe in all of them.
"""

from __future__ import annotations

import re
import unicodedata

from ca.errors import InvalidInput

LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TENANT = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
RESERVED_TENANTS = {"root", "api", "ca", "crl", "ocsp", "static"}


def _shown(value: str) -> str:
    """A value fit for an error message: short, control characters made visible."""
    return repr(value[:64] + ("…" if len(value) > 64 else ""))


def login(value: str) -> str:
    # a login becomes <login>.zip, <login>.p12 and <login>-password.txt: no "..", and no
    # final "." (Windows drops it, and "alice." + ".p12" would hold "..")
    if not LOGIN.fullmatch(value) or ".." in value or value.endswith("."):
        raise InvalidInput(f"login {_shown(value)} must be 1-64 characters of A-Z a-z 0-9 . _ - "
                           "starting with a letter or digit, with no '..' and not ending in "
                           "'.'", field="login")
    return value


def tenant_name(value: str) -> str:
    if not TENANT.fullmatch(value):
        raise InvalidInput(f"tenant name {_shown(value)} must be 1-63 characters of a-z 0-9 - "
                           "starting with a letter or digit", field="name")
    if value in RESERVED_TENANTS or value.endswith("-chain"):
        # "-chain" would clash with the CRL bundle's URL, /crl/<tenant>-chain.pem
        raise InvalidInput(f"tenant name {value!r} is reserved", field="name")
    return value


def email(value: str) -> str:
    if len(value) > 254 or not EMAIL.fullmatch(value):
        raise InvalidInput(f"e-mail {_shown(value)} is not an address of the form "
                           "name@domain.example", field="email")
    return value


def group_name(value: str) -> str:
    """A group name: free text as a display name, at most 100 characters, no separator."""
    cleaned = display_text(value, field="group", limit=100)
    if not cleaned:
        raise InvalidInput("a group needs a name", field="group")
    if ";" in cleaned:
        raise InvalidInput(f"group {_shown(cleaned)} must not contain ';' (it separates groups "
                           "in CSV files)", field="group")
    return cleaned


def display_text(value: str, *, field: str, limit: int = 200) -> str:
    """Free text such as a display name: no control or bidirectional-override characters."""
    value = unicodedata.normalize("NFC", value.strip())
    if len(value) > limit:
        raise InvalidInput(f"{field} is longer than {limit} characters", field=field)
    for ch in value:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):
            raise InvalidInput(f"{field} {_shown(value)} contains the control or formatting "
                               f"character U+{ord(ch):04X}", field=field)
    return value
