"""NSS and Tegata's CRLs, judged by NSS's own tools.

Tegata marks each CRL's Issuing Distribution Point critical, as RFC 5280 (5.2.5) requires.
NSS does not know that extension, so it refuses the whole CRL: ``crlutil -I`` into a
``certutil -N`` database fails with SEC_ERROR_CRL_UNKNOWN_CRITICAL_EXTENSION, for the tenant's
CRL and for the root's. The same CRL re-made with only that flag cleared (same entries, same
extensions, signed by the same CA key) imports: the critical IDP is the cause. The README says
so where CRLs are documented, and that an NSS-based gateway checks by OCSP instead (NSS's OCSP
check is tested in tests/interop/test_ocsp_openssl.py).

NSS judges a CRL at the machine's clock (crlutil has no -attime), so this module's CA lives at
the real time, fixed once.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ca.clock import FixedClock
from ca.db import queries
from ca.service import IssueRequest, Service
from tests.support.environment import require_tool
from tests.support.tools import run, write_pem

pytestmark = pytest.mark.interop

REFUSAL = "SEC_ERROR_CRL_UNKNOWN_CRITICAL_EXTENSION"
# whose CRL: the tenant's issuing CA, or the root (None), and its nickname in the NSS database
WHOSE = {"tenant": ("default", "issuing"), "root": (None, "root")}


@pytest.fixture
def clock() -> FixedClock:
    """The real time, fixed: NSS compares the CRL and the CA certificates with it."""
    return FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def revoked(service: Service) -> str:
    """alice's certificate, revoked: the tenant's CRL holds one entry."""
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    (leaf,) = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))
    service.revocation.revoke("default", leaf.serial, reason="keyCompromise")
    return leaf.serial


@pytest.fixture
def nss_db(service: Service, tmp_path: Path) -> Path:
    """An empty NSS database holding the root (trusted) and the tenant's issuing CA."""
    certutil = require_tool("certutil")
    root, issuing = service.hierarchy.ca_certificates("default")
    directory = tmp_path / "nss"
    directory.mkdir()
    for argv in ([certutil, "-N", "-d", f"sql:{directory}", "--empty-password"],
                 [certutil, "-A", "-d", f"sql:{directory}", "-n", "root", "-t", "CT,C,C",
                  "-a", "-i", str(write_pem(tmp_path / "root.pem", root.pem))],
                 [certutil, "-A", "-d", f"sql:{directory}", "-n", "issuing", "-t", ",,",
                  "-a", "-i", str(write_pem(tmp_path / "issuing.pem", issuing.pem))]):
        result = run(*argv)
        assert result.returncode == 0, result.stderr
    return directory


def import_crl(nss_db: Path, crl: x509.CertificateRevocationList, path: Path) -> str:
    """``crlutil -I``'s verdict: "" when imported, else its one-line error."""
    path.write_bytes(crl.public_bytes(Encoding.DER))
    result = run(require_tool("crlutil"), "-I", "-d", f"sql:{nss_db}", "-t", "1",
                 "-i", str(path))
    assert (result.returncode == 0) == (result.stderr == ""), result.stderr
    return result.stderr.strip()


def crls_held(nss_db: Path) -> list[str]:
    """The CRLs in the database, by their CA's nickname."""
    result = run(require_tool("crlutil"), "-L", "-d", f"sql:{nss_db}")
    assert result.returncode == 0, result.stderr
    return re.findall(r"^(\S+)\s+CRL\s*$", result.stdout, flags=re.MULTILINE)


def serials_held(nss_db: Path, nickname: str) -> set[str]:
    """The serial numbers NSS read out of the CA's CRL, as uppercase hex."""
    result = run(require_tool("crlutil"), "-L", "-d", f"sql:{nss_db}", "-n", nickname)
    assert result.returncode == 0, result.stderr
    blocks = re.findall(r"Serial Number:\s*\n((?:\s+[0-9a-f:]+\n)+)", result.stdout)
    return {re.sub(r"[\s:]", "", block).upper().lstrip("0") for block in blocks}


def entries(crl: x509.CertificateRevocationList) -> list[tuple[object, ...]]:
    return [(r.serial_number, r.revocation_date_utc,
             [(e.oid, e.critical, e.value) for e in r.extensions]) for r in crl]


def idp_made_non_critical(crl: x509.CertificateRevocationList, service: Service,
                          tenant: str | None) -> x509.CertificateRevocationList:
    """The same CRL, signed again by the same CA key, with the IDP's critical flag cleared."""
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=crl.issuer, last_update=crl.last_update_utc,
        next_update=crl.next_update_utc, revoked_certificates=list(crl))
    for extension in crl.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical and not (
            isinstance(extension.value, x509.IssuingDistributionPoint)))
    with service.database.reading() as session:
        authority = (queries.require_root(session) if tenant is None else
                     queries.issuing(session, queries.tenant(session, tenant)))
        signer = service.keys.signer(authority)
    return signer.sign_crl(builder)


@pytest.mark.parametrize("whose", WHOSE.values(), ids=WHOSE.keys())
def test_nss_refuses_tegatas_crl_for_its_critical_idp_and_takes_it_without(
        service: Service, revoked: str, nss_db: Path, tmp_path: Path,
        whose: tuple[str | None, str]) -> None:
    tenant, nickname = whose
    ours = x509.load_der_x509_crl(service.crls.current(tenant).der)
    remade = idp_made_non_critical(ours, service, tenant)
    # the control: the two differ in that one flag only
    flags = {(e.oid.dotted_string, e.critical) for e in ours.extensions}
    assert flags - {(e.oid.dotted_string, e.critical) for e in remade.extensions} == {
        ("2.5.29.28", True)}  # issuingDistributionPoint
    assert entries(ours) == entries(remade) and ours.issuer == remade.issuer

    refused = import_crl(nss_db, ours, tmp_path / "ours.crl")
    held_after_refusal = crls_held(nss_db)
    taken = import_crl(nss_db, remade, tmp_path / "remade.crl")

    assert refused.startswith(f"crlutil: unable to import CRL: {REFUSAL}:"), refused
    assert held_after_refusal == []
    assert taken == ""
    assert crls_held(nss_db) == [nickname]
    assert serials_held(nss_db, nickname) == ({revoked} if tenant is not None else set())


def test_the_readme_says_so_where_it_documents_crls() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    crl = re.search(r"^- \*\*CRL\*\*: (.*?)^- \*\*OCSP\*\*", readme, re.MULTILINE | re.DOTALL)
    assert crl is not None
    said = " ".join(crl.group(1).split())

    assert f"NSS refuses these CRLs (`crlutil -I`: `{REFUSAL}`)" in said
    assert "should check by OCSP, which NSS does (`tests/interop/test_crl_nss.py`" in said
