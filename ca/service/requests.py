"""What the use cases take: frozen requests, checked when made."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from ca import validate
from ca.errors import InvalidInput
from ca.profiles import CA_KEY_TYPES, CLIENT_KEY_TYPES, ROOT
from ca.service.selection import Selection
from ca.x509.pkcs12 import Profile

MAX_LOGINS_PER_REQUEST = 1000
Reissue = Literal["keep", "revoke"]


@dataclass(frozen=True, kw_only=True)
class InitRequest:
    root_name: str = "Tegata Root CA"
    organization: str = "Tegata"
    key_type: str = "ec-p384"
    validity_years: int = ROOT.validity_years
    pkcs11_token: str | None = None  # the root's key in this token, not a key file

    def __post_init__(self) -> None:
        if self.pkcs11_token is not None:
            validate.token_label(self.pkcs11_token)
        if self.key_type not in CA_KEY_TYPES:
            raise InvalidInput(f"CA key type {self.key_type!r} is not one of "
                               f"{', '.join(CA_KEY_TYPES)}", field="key_type")
        if not 1 <= self.validity_years <= 50:
            raise InvalidInput(f"root validity {self.validity_years} years is outside 1..50",
                               field="validity_years")
        validate.display_text(self.root_name, field="root_name", limit=64)
        validate.display_text(self.organization, field="organization", limit=64)
        if not self.root_name.strip():
            raise InvalidInput("the root CA needs a name", field="root_name")


@dataclass(frozen=True, kw_only=True)
class IssueRequest:
    """Issue to one or more users of a tenant, with the same options for all.

    ``csr`` (PEM or DER) issues to a key made on the user's device; it needs exactly one
    login, and no key material is kept. Otherwise a key of ``key_type`` (default: the
    tenant's) is made here and sealed with a generated bundle password.
    """

    tenant: str
    logins: tuple[str, ...] | None = None
    selection: Selection | None = None
    best_effort: bool = False
    expires: dt.date | None = None
    timezone: str | None = None
    reissue: Reissue = "keep"
    key_type: str | None = None
    csr: bytes | None = None
    p12_profile: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.logins, str):
            object.__setattr__(self, "logins", (self.logins,))
        if (self.logins is None) == (self.selection is None):
            raise InvalidInput("name the users, or select them, not both", field="logins")
        if self.logins is not None:
            if not self.logins:
                raise InvalidInput("name at least one user", field="logins")
            if len(self.logins) > MAX_LOGINS_PER_REQUEST:
                raise InvalidInput(f"at most {MAX_LOGINS_PER_REQUEST} users by name per "
                                   "request; select a group or all for more", field="logins")
            if len({login.lower() for login in self.logins}) != len(self.logins):
                raise InvalidInput("a user is named twice", field="logins")
        if self.reissue not in ("keep", "revoke"):
            raise InvalidInput(f"reissue {str(self.reissue)[:16]!r} is not keep or revoke",
                               field="reissue")
        if self.key_type is not None and self.key_type not in CLIENT_KEY_TYPES:
            raise InvalidInput(f"key type {self.key_type[:16]!r} is not one of "
                               f"{', '.join(CLIENT_KEY_TYPES)}", field="key_type")
        if self.csr is not None:
            if self.logins is None or len(self.logins) != 1:
                raise InvalidInput("a CSR is for exactly one user", field="csr")
            if self.key_type is not None:
                raise InvalidInput("give a CSR or a key type, not both", field="key_type")
        if self.p12_profile is not None:
            Profile.parse(self.p12_profile)
