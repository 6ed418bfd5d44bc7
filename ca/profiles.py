"""Certificate profiles as data (pure): what goes into a root, an issuing CA and a client cert."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, get_args

# notBefore is backdated so that a device whose clock runs a little slow accepts a fresh
# certificate (RFC 5280 leaves this to the CA; five minutes covers ordinary NTP drift).
CLOCK_SKEW = dt.timedelta(minutes=5)

ROOT_VALIDITY_YEARS = 25
ISSUING_VALIDITY_YEARS = 20

# the key types a CA and a client certificate may have: the types both shells declare, and
# the same lists as values, which the core checks against
CaKeyType = Literal["ec-p384", "ec-p256", "rsa-3072", "rsa-4096"]
ClientKeyType = Literal["ec-p256", "rsa-2048", "rsa-3072"]
CA_KEY_TYPES: tuple[str, ...] = get_args(CaKeyType)
CLIENT_KEY_TYPES: tuple[str, ...] = get_args(ClientKeyType)


@dataclass(frozen=True, kw_only=True)
class Urls:
    """Where relying parties fetch status and issuer certificates, from the public base URL.

    ``crl`` and ``root_crl`` give the CRL URL of a CA made now only: it is stored with the CA
    (``authorities.crl_url``) and every certificate and CRL the CA signs takes it from there,
    never from the base URL of the process at hand (ca.service.crls.crl_url)."""

    base: str

    def crl(self, tenant: str, generation: int = 1) -> str:
        """A tenant's issuing CA's CRL URL; each later generation (a rollover) has its own,
        ``<tenant>.g<n>.crl``, so that each CRL's IDP is the CDP of the certificates it
        covers. A dot cannot be in a tenant's name: no tenant's URL is another's."""
        return f"{self.base}/crl/{tenant}.crl" if generation == 1 else \
            f"{self.base}/crl/{tenant}.g{generation}.crl"

    def root_crl(self, generation: int = 1) -> str:
        return f"{self.base}/crl/root.crl" if generation == 1 else \
            f"{self.base}/crl/root.g{generation}.crl"

    def ocsp(self) -> str:
        return f"{self.base}/ocsp"

    def ca_cert(self, tenant: str, generation: int = 1) -> str:
        """A tenant's issuing CA certificate (caIssuers), each generation at its own URL as
        its CRL is."""
        return f"{self.base}/ca/{tenant}.crt" if generation == 1 else \
            f"{self.base}/ca/{tenant}.g{generation}.crt"

    def root_cert(self, generation: int = 1) -> str:
        return f"{self.base}/ca/root.crt" if generation == 1 else \
            f"{self.base}/ca/root.g{generation}.crt"


@dataclass(frozen=True, kw_only=True)
class CAProfile:
    """A CA certificate: path length and validity. Key usage is keyCertSign + cRLSign."""

    path_length: int | None
    validity_years: int


ROOT = CAProfile(path_length=None, validity_years=ROOT_VALIDITY_YEARS)
# pathLenConstraint 0: an issuing CA signs end-entity certificates only (RFC 5280, 4.2.1.9)
ISSUING = CAProfile(path_length=0, validity_years=ISSUING_VALIDITY_YEARS)


def add_years(moment: dt.datetime, years: int) -> dt.datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)
