"""A CA's CRL URL is fixed when the CA is made: the IDP of every CRL it signs equals the CDP
of every certificate it signed, whatever process makes the CRL and whatever its
TEGATA_PUBLIC_BASE_URL. Before, a revocation from a shell with another (or no) base URL
published a CRL of a "different CRL scope" and locked every user of the tenant out of the
CRL gateways."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from sqlalchemy import select, update

from ca.clock import FixedClock
from ca.db import migrate
from ca.db.models import Authority, Tenant
from ca.service import IssueRequest, Service, build_service
from ca.service.views import CertificateView
from ca.settings import Settings, load_settings
from tests.moments import MOMENTS
from tests.support.databases import downgrade
from tests.support.environment import BASE_URL, PASSPHRASE, require_tool

ACME = "acme"
ACME_SHOWN = "株式会社アクメ"
TOKYO = "example-holdings-tokyo"
TOKYO_SHOWN = "Example Holdings International Corporation Japan Branch Tokyo"
OSAKA = "example-holdings-osaka"
OSAKA_SHOWN = "Example Holdings International Corporation Japan Branch Osaka"
NAGOYA = "nagoya"
NAGOYA_SHOWN = "株式会社アクメ 名古屋支店"
MOVED = "https://pki.example.jp/tegata"
DEFAULT_BASE = "http://127.0.0.1:8080"  # the default when TEGATA_PUBLIC_BASE_URL is unset
LOGINS = ("alice", "bob", "carol")
AT = str(int((MOMENTS.start + dt.timedelta(minutes=1)).timestamp()))


@contextlib.contextmanager
def other_process(settings: Settings, clock: FixedClock,
                  base_url: str | None) -> Iterator[Service]:
    """A service on the same database and key directory with another public base URL
    (``None``: the variable unset), as a shell of the operator's would be."""
    overrides = {} if base_url is None else {"public_base_url": base_url}
    other = build_service(load_settings(data_dir=settings.data_dir,
                                  database_url=settings.database_url,
                                  key_passphrase=PASSPHRASE, **overrides), clock=clock)
    try:
        yield other
    finally:
        other.engine.dispose()


def cdp(der: bytes) -> str:
    points = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.CRLDistributionPoints).value
    (point,) = points
    assert point.full_name is not None
    (name,) = point.full_name
    assert isinstance(name, x509.UniformResourceIdentifier)
    return name.value


def idp(der: bytes) -> str | None:
    point = x509.load_der_x509_crl(der).extensions.get_extension_for_class(
        x509.IssuingDistributionPoint).value
    if point.full_name is None:
        return None
    (name,) = point.full_name
    assert isinstance(name, x509.UniformResourceIdentifier)
    return name.value


def tenant_with_users(service: Service, name: str, shown: str) -> dict[str, CertificateView]:
    service.hierarchy.create_tenant(name, display_name=shown, ca_key_type="ec-p256")
    for login in LOGINS:
        service.users.add(name, login, email=f"{login}@example.com", allow=True)
    issued = service.certificates.issue(IssueRequest(tenant=name, logins=LOGINS))
    return {view.login: view for view in issued}


def crl_urls(service: Service) -> dict[str | None, str | None]:
    """Each CA's stored CRL URL, by tenant name (None: the root)."""
    with service.database.reading() as session:
        rows = session.execute(select(Tenant.name, Authority.crl_url)
                               .outerjoin(Tenant, Authority.tenant)
                               .where(Authority.kind.in_(("root", "issuing")))).all()
    return dict(rows)  # type: ignore[arg-type]


def openssl_verify(openssl: str, service: Service, tenant: str, leaf: CertificateView,
                   directory: Path) -> subprocess.CompletedProcess[str]:
    """``openssl verify -crl_check_all`` with the chain CRL a gateway installs."""
    directory.mkdir(parents=True, exist_ok=True)
    root, issuing = service.hierarchy.ca_certificates(tenant)
    files = {"root.pem": root.pem, "issuing.pem": issuing.pem, "leaf.pem": leaf.pem,
             "chain.crl.pem": service.crls.chain(tenant).pem}
    for name, pem in files.items():
        (directory / name).write_text(pem, encoding="ascii")
    return subprocess.run(
        [openssl, "verify", "-attime", AT, "-crl_check_all",
         "-CRLfile", str(directory / "chain.crl.pem"), "-CAfile", str(directory / "root.pem"),
         "-untrusted", str(directory / "issuing.pem"), str(directory / "leaf.pem")],
        capture_output=True, text=True, timeout=60, check=False)


def test_a_crl_made_by_a_process_with_another_base_url_covers_every_certificate(
        service: Service, settings: Settings, clock: FixedClock, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    acme = tenant_with_users(service, ACME, ACME_SHOWN)
    own = f"{BASE_URL}/crl/{ACME}.crl"
    assert {login: cdp(view.der) for login, view in acme.items()} == dict.fromkeys(LOGINS, own)

    with other_process(settings, clock, MOVED) as moved:
        moved.revocation.suspend(ACME, acme["bob"].serial)
        assert idp(moved.crls.current(ACME).der) == own
    with other_process(settings, clock, None) as unset:
        unset.revocation.revoke(ACME, acme["carol"].serial, reason="keyCompromise")
        assert idp(unset.crls.current(ACME).der) == own
        # a CA made afterwards by this process has this process's URL; the root's CDP in its
        # certificate is the root's stored one
        tokyo = tenant_with_users(unset, TOKYO, TOKYO_SHOWN)
        (_, tokyo_ca) = unset.hierarchy.ca_certificates(TOKYO)
        assert cdp(tokyo_ca.der) == f"{BASE_URL}/crl/root.crl"
        assert {cdp(view.der) for view in tokyo.values()} == {
            f"{DEFAULT_BASE}/crl/{TOKYO}.crl"}
    # ... which the first process keeps for it too
    service.revocation.revoke(TOKYO, tokyo["alice"].serial)
    assert idp(service.crls.current(TOKYO).der) == f"{DEFAULT_BASE}/crl/{TOKYO}.crl"
    assert crl_urls(service) == {None: f"{BASE_URL}/crl/root.crl", "default":
                                 f"{BASE_URL}/crl/default.crl", ACME: own,
                                 TOKYO: f"{DEFAULT_BASE}/crl/{TOKYO}.crl"}

    results = {login: openssl_verify(openssl, service, ACME, view, tmp_path / login)
               for login, view in acme.items()}
    assert {login: (r.returncode, r.stdout.strip()) for login, r in results.items()} == {
        "alice": (0, f"{tmp_path / 'alice' / 'leaf.pem'}: OK"),
        "bob": (2, ""), "carol": (2, "")}
    for login in ("bob", "carol"):
        assert "error 23 at 0 depth lookup: certificate revoked" in results[login].stderr, \
            results[login].stderr


def test_the_upgrade_keeps_the_crl_url_each_ca_published(
        service: Service, settings: Settings, clock: FixedClock) -> None:
    acme = tenant_with_users(service, ACME, ACME_SHOWN)
    tokyo = tenant_with_users(service, TOKYO, TOKYO_SHOWN)
    service.hierarchy.create_tenant(OSAKA, display_name=OSAKA_SHOWN, ca_key_type="ec-p256")
    service.hierarchy.create_tenant(NAGOYA, display_name=NAGOYA_SHOWN, ca_key_type="ec-p256")
    service.crls.publish(NAGOYA)  # a CRL and no certificate yet
    service.revocation.suspend(ACME, acme["bob"].serial)
    service.crls.publish(None)
    # TOKYO's newest CRL was made by a shell without TEGATA_PUBLIC_BASE_URL (the defect):
    # its IDP is on no certificate, and must not become the CA's URL
    with service.database.transaction() as session:
        session.execute(update(Authority).where(Authority.tenant_id == select(Tenant.id).where(
            Tenant.name == TOKYO).scalar_subquery()).values(crl_url=f"{DEFAULT_BASE}/x.crl"))
    service.crls.publish(TOKYO)
    assert idp(service.crls.current(TOKYO).der) == f"{DEFAULT_BASE}/x.crl"
    # "default" has no certificate and no CRL: nothing to take
    # back to 0008 (the model has the column, so no data could be made at 0008 through it)
    downgrade(service.engine, "0008")
    assert migrate.current_revision(service.engine) == "0008"

    service.database.upgrade()

    assert crl_urls(service) == {None: f"{BASE_URL}/crl/root.crl", "default": None,
                                 ACME: f"{BASE_URL}/crl/{ACME}.crl",
                                 TOKYO: f"{BASE_URL}/crl/{TOKYO}.crl", OSAKA: None,
                                 NAGOYA: f"{BASE_URL}/crl/{NAGOYA}.crl"}
    with other_process(settings, clock, MOVED) as moved:
        moved.revocation.revoke(ACME, acme["alice"].serial)
        moved.revocation.revoke(TOKYO, tokyo["alice"].serial)
        assert idp(moved.crls.current(ACME).der) == f"{BASE_URL}/crl/{ACME}.crl"
        assert idp(moved.crls.current(TOKYO).der) == f"{BASE_URL}/crl/{TOKYO}.crl"
        # a CA that had published nothing: the first process that needs the URL sets it
        # from its settings, and every later one keeps it
        (_, default_ca) = moved.hierarchy.ca_certificates("default")
        assert cdp(default_ca.der) == f"{BASE_URL}/crl/root.crl"
        moved.users.add(OSAKA, "alice", email="alice@example.com", allow=True)
        (osaka_alice,) = moved.certificates.issue(IssueRequest(tenant=OSAKA, logins=("alice",)))
        assert cdp(osaka_alice.der) == f"{MOVED}/crl/{OSAKA}.crl"
        assert idp(moved.crls.current("default").der) == f"{MOVED}/crl/default.crl"
    service.revocation.revoke(OSAKA, osaka_alice.serial)
    assert idp(service.crls.current(OSAKA).der) == f"{MOVED}/crl/{OSAKA}.crl"
    service.users.add("default", "dave", email="dave@example.com", allow=True)
    (dave,) = service.certificates.issue(IssueRequest(tenant="default", logins=("dave",)))
    assert cdp(dave.der) == f"{MOVED}/crl/default.crl"
    assert crl_urls(service) == {None: f"{BASE_URL}/crl/root.crl",
                                 "default": f"{MOVED}/crl/default.crl",
                                 ACME: f"{BASE_URL}/crl/{ACME}.crl",
                                 TOKYO: f"{BASE_URL}/crl/{TOKYO}.crl",
                                 OSAKA: f"{MOVED}/crl/{OSAKA}.crl",
                                 NAGOYA: f"{BASE_URL}/crl/{NAGOYA}.crl"}
