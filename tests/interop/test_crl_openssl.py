"""OpenSSL and pkilint judge Tegata's CRLs: the chain bundle a gateway installs makes
``openssl verify -crl_check_all`` pass a good certificate and refuse a revoked or suspended
one, and pkilint finds nothing to say about the CRL or the root's ARL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import build_app
from ca.db.models import Authority, Tenant
from ca.service import IssueRequest, Service
from tests.moments import MOMENTS
from tests.support.tools import Chain, pkilint_tool, run, run_all, write_chain, write_pem

pytestmark = pytest.mark.interop

# the CRLs' thisUpdate is the clock less five minutes, the certificates' notBefore too:
# judge a minute after the FixedClock's now
AT = str(int((MOMENTS.start + dt.timedelta(minutes=1)).timestamp()))
REVOKED = "error 23 at 0 depth lookup: certificate revoked"
REASONS = ["keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation",
           "privilegeWithdrawn", "unspecified"]


@pytest.fixture
def lint_crl() -> str:
    return pkilint_tool("lint_crl")


def chain_crls(service: Service, directory: Path, tenant: str = "default") -> Path:
    """The bundle a gateway installs: the issuing CA's CRL, then the root's."""
    directory.mkdir(parents=True, exist_ok=True)
    return write_pem(directory / f"{tenant}-chain.crl.pem",
                     service.crls.current(tenant).pem + service.crls.current(None).pem)


def verify(openssl: str, chain: Chain, crls: Path, *options: str):  # type: ignore[no-untyped-def]
    return run(openssl, "verify", "-attime", AT, "-crl_check_all", *options, "-CRLfile",
               str(crls), "-CAfile", str(chain.root), "-untrusted", str(chain.issuing),
               str(chain.leaf))


def serial_of(service: Service, chain: Chain) -> str:
    (view,) = [v for v in service.certificates.list_certificates("default")
               if v.pem == chain.leaf.read_text()]
    return view.serial


def test_openssl_passes_a_good_certificate_with_the_chains_crls(
        openssl: str, service: Service, chain: Chain, tmp_path: Path) -> None:
    result = verify(openssl, chain, chain_crls(service, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{chain.leaf}: OK"


@pytest.mark.parametrize("reason", ["keyCompromise", "unspecified"])
def test_openssl_refuses_a_revoked_certificate_as_revoked(
        openssl: str, service: Service, chain: Chain, tmp_path: Path, reason: str) -> None:
    service.revocation.revoke("default", serial_of(service, chain), reason=reason)
    result = verify(openssl, chain, chain_crls(service, tmp_path))
    assert result.returncode != 0
    assert REVOKED in result.stdout + result.stderr


def test_openssl_refuses_a_suspended_certificate_and_passes_it_once_reinstated(
        openssl: str, service: Service, chain: Chain, tmp_path: Path) -> None:
    serial = serial_of(service, chain)
    service.revocation.suspend("default", serial)
    held = verify(openssl, chain, chain_crls(service, tmp_path / "held"))
    assert held.returncode != 0
    assert REVOKED in held.stdout + held.stderr

    service.revocation.reinstate("default", serial)
    again = verify(openssl, chain, chain_crls(service, tmp_path / "reinstated"))
    assert again.returncode == 0, again.stdout + again.stderr


def test_the_chain_bundle_served_over_http_refuses_a_revoked_certificate(
        openssl: str, service: Service, chain: Chain, tmp_path: Path) -> None:
    client = TestClient(build_app(service.settings, service=service))
    good = write_pem(tmp_path / "good.pem", client.get("/crl/default-chain.pem").text)
    assert verify(openssl, chain, good).returncode == 0

    service.revocation.revoke("default", serial_of(service, chain), reason="keyCompromise")
    fetched = client.get("/crl/default-chain.pem")
    bad = write_pem(tmp_path / "bad.pem", fetched.text)
    result = verify(openssl, chain, bad)
    assert REVOKED in result.stdout + result.stderr


def test_openssl_wants_the_roots_crl_as_well(openssl: str, service: Service, chain: Chain,
                                             tmp_path: Path) -> None:
    # the control for the bundle: with the issuing CA's CRL alone, -crl_check_all cannot
    # check the issuing CA itself
    alone = write_pem(tmp_path / "alone.pem", service.crls.current("default").pem)
    result = verify(openssl, chain, alone)
    assert result.returncode != 0
    assert "unable to get certificate CRL" in result.stdout + result.stderr


def test_openssl_checks_the_crls_signature_and_reads_its_extensions(
        openssl: str, service: Service, chain: Chain, tmp_path: Path) -> None:
    service.revocation.revoke("default", serial_of(service, chain), reason="keyCompromise")
    crl = write_pem(tmp_path / "default.crl.pem", service.crls.current("default").pem)
    checked = run(openssl, "crl", "-in", str(crl), "-CAfile", str(chain.issuing), "-noout")
    assert checked.returncode == 0 and "verify OK" in checked.stdout + checked.stderr
    text = run(openssl, "crl", "-in", str(crl), "-noout", "-text").stdout
    assert "X509v3 Authority Key Identifier" in text
    assert "X509v3 CRL Number" in text
    assert "X509v3 Issuing Distribution Point: critical" in text
    assert "URI:http://tegata.test/crl/default.crl" in text
    assert "Only User Certificates" in text
    assert "Key Compromise" in text
    root_text = run(openssl, "crl", "-in", str(write_pem(
        tmp_path / "root.crl.pem", service.crls.current(None).pem)), "-noout", "-text").stdout
    assert "Only CA Certificates" in root_text


def findings(result) -> str:  # type: ignore[no-untyped-def]
    return (result.stdout + result.stderr).strip()


def test_pkilint_finds_nothing_in_a_crl_with_every_kind_of_entry(
        lint_crl: str, service: Service, tmp_path: Path) -> None:
    for reason in REASONS:
        login = f"u-{reason.lower()}"
        service.users.add("default", login, email=f"{login}@example.com", allow=True)
        (view,) = service.certificates.issue(IssueRequest(tenant="default", logins=(login,)))
        service.revocation.revoke("default", view.serial, reason=reason)
    service.users.add("default", "held", email="held@example.com", allow=True)
    (held,) = service.certificates.issue(IssueRequest(tenant="default", logins=("held",)))
    service.revocation.suspend("default", held.serial)
    files = {"crl": tmp_path / "default.crl", "arl": tmp_path / "root.crl"}
    files["crl"].write_bytes(service.crls.current("default").der)
    files["arl"].write_bytes(service.crls.current(None).der)
    results = run_all([[lint_crl, "lint", "-t", kind, "-p", "PKIX", "-s", "WARNING", str(path)]
                       for kind, path in (("CRL", files["crl"]), ("ARL", files["arl"]))])
    report = {name: (r.returncode, findings(r)) for name, r in zip(files, results, strict=True)}
    assert report == {"crl": (0, ""), "arl": (0, "")}


def test_pkilint_and_openssl_accept_an_arl_listing_a_retired_issuing_ca(
        openssl: str, lint_crl: str, service: Service, tmp_path: Path) -> None:
    service.hierarchy.create_tenant("acme", ca_key_type="ec-p256")
    chain = write_chain(service, tmp_path / "acme", tenant="acme", login="dave")
    acme_crl = service.crls.current("acme").pem  # published while acme's CA was in service
    # no command retires an issuing CA yet: mark the row as a retirement would
    with service.database.transaction() as session:
        issuing = session.scalar(select(Authority).join(
            Tenant, Authority.tenant_id == Tenant.id).where(
            Tenant.name == "acme", Authority.kind == "issuing"))
        issuing.retired_at = MOMENTS.start
    arl = service.crls.publish(None)
    path = tmp_path / "root.crl"
    path.write_bytes(arl.der)

    result = run(lint_crl, "lint", "-t", "ARL", "-p", "PKIX", "-s", "WARNING", str(path))
    assert (result.returncode, findings(result)) == (0, "")
    bundle = write_pem(tmp_path / "acme-chain.crl.pem", acme_crl + arl.pem)
    verdict = verify(openssl, chain, bundle)
    assert "error 23 at 1 depth lookup: certificate revoked" in verdict.stdout + verdict.stderr
