"""Rules for the names people type (pure). Each check raises ``InvalidInput`` naming the rule.

Logins and tenant names end up in file names, zip entries, URLs and certificate subjects, so
they are limited at creation to characters that are safe in all of them.
"""

from __future__ import annotations

import re
import unicodedata

import idna

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


TOKEN_LABEL_BYTES = 32  # CK_TOKEN_INFO's label: 32 bytes of UTF-8, blank-padded


def token_label(value: str) -> str:
    """A PKCS#11 token label: CK_TOKEN_INFO holds 32 bytes of UTF-8, blank-padded; 1-32
    bytes here, no control character, no blank at either end (the padding would swallow
    it)."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate
        size = 0
    if not 1 <= size <= TOKEN_LABEL_BYTES or value != value.strip(" ") or any(
            unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise InvalidInput(f"token label {_shown(value)} must be 1-32 bytes of UTF-8 "
                           "without control characters, not starting or ending with a "
                           "space", field="pkcs11_token")
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


# a DNS name in text, ASCII (A-label) form: RFC 1035's 255 octets on the wire (2.3.4)
UPN_SUFFIX_LIMIT = 253


def upn_suffix(value: str) -> str:
    """The DNS domain after the '@' of a Windows UPN (``login@example.co.jp``), in the form
    stored and written into certificates: IDNA 2008 with the UTS #46 mapping (lowercase; a
    full-width letter or dot is the ASCII one). A suffix typed in Unicode stays Unicode and
    one typed in ASCII (A-labels included) stays ASCII, as Active Directory keeps the suffix
    as it was entered."""
    rule = f"UPN suffix {_shown(value)} must be a DNS domain name such as example.co.jp: "
    if not value:
        raise InvalidInput("the UPN suffix is empty; clear the setting to have no UPN",
                           field="upn_suffix")
    if any(c.isspace() or c == "@" for c in value):
        raise InvalidInput(rule + "no spaces and no '@' (only the part after the '@')",
                           field="upn_suffix")
    if len(value) > UPN_SUFFIX_LIMIT:
        raise InvalidInput(rule + f"at most {UPN_SUFFIX_LIMIT} characters",
                           field="upn_suffix")
    try:
        encoded = idna.encode(value, uts46=True).decode("ascii")
    except idna.IDNAError as exc:  # its message quotes the value unescaped and uncut
        if str(exc) == "Domain too long":
            raise InvalidInput(rule + f"at most {UPN_SUFFIX_LIMIT} characters in its IDNA "
                               "(xn--) form", field="upn_suffix") from None
        raise InvalidInput(rule + "labels of letters, digits and hyphens (IDNA 2008), 1-63 "
                           "characters each, no hyphen first or last", field="upn_suffix"
                           ) from None
    if encoded.endswith("."):
        raise InvalidInput(rule + "no final '.'", field="upn_suffix")
    labels = encoded.split(".")
    if len(labels) < 2:
        raise InvalidInput(rule + "at least two labels", field="upn_suffix")
    if labels[-1].isdigit():
        raise InvalidInput(rule + "not an IP address", field="upn_suffix")
    return encoded if value.isascii() else idna.decode(encoded)
