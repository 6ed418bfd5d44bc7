"""Every path that bundles a key makes its PKCS#12 file in the profile one rule chooses
(``ca.bundle_profile``): the one the download asks for, else the certificate's own, else the
tenant's default. The bulk zip once made every bundle in the tenant's default, so that a
certificate issued ``modern`` came out ``compat``; here each path's files are judged by what
they are (the MAC's digest and the bags' encryption, read from the PKCS#12 structure), not
by any label of ours."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pytest
from sqlalchemy import update

from ca.db.models import Tenant
from ca.service import IssueRequest, Selection, Service
from tests.support.pkcs12_structure import opened, what_it_is

TENANT = "default"
# who was issued in what (None: no choice, the tenant's default applies), and by which path
ISSUED = {"sato": "modern", "suzuki": "compat", "takahashi": None}


@pytest.fixture(params=["compat", "modern"], ids=["tenant-compat", "tenant-modern"])
def issued(request: pytest.FixtureRequest, service: Service) -> dict[str, str]:
    """ISSUED's certificates, sato's by the bulk issue's path (``issue_bulk``, what the
    API's job runs), the others' by ``issue``, under a tenant whose default is the param;
    {login: serial}."""
    with service.database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.name == TENANT)
                        .values(p12_profile=request.param))
    serials = {}
    for login, profile in ISSUED.items():
        service.users.add(TENANT, login, email=f"{login}@example.jp", display_name="利用者",
                          allow=True)
        asked = IssueRequest(tenant=TENANT, logins=(login,), p12_profile=profile)
        made = (service.certificates.issue_bulk(asked).issued if login == "sato"
                else service.certificates.issue(asked))
        serials[login] = made[0].serial
    return serials


def expected(service: Service, asked: str | None) -> dict[str, str]:
    with service.database.reading() as session:
        default = session.query(Tenant.p12_profile).filter(Tenant.name == TENANT).scalar()
    return {login: asked or profile or default for login, profile in ISSUED.items()}


ASKED = [None, "modern", "compat"]
ASKED_IDS = ["as-issued", "asked-modern", "asked-compat"]


@pytest.mark.parametrize("asked", ASKED, ids=ASKED_IDS)
def test_the_bulk_zip_makes_each_bundle_in_its_certificates_profile_unless_asked(
        service: Service, issued: dict[str, str], asked: str | None) -> None:
    archive = b"".join(service.downloads.bulk(TENANT, Selection(everyone=True),
                                              profile=asked).chunks)
    with zipfile.ZipFile(io.BytesIO(archive)) as outer:
        found = {login: opened(outer.read(f"{login}.zip"), login) for login in ISSUED}
    assert found == expected(service, asked)


Download = Callable[[Service, str, str, "str | None"], bytes]
PATHS: dict[str, Download] = {
    "single-download": lambda s, login, serial, asked: s.certificates.bundle(
        serial, tenant=TENANT, profile=asked).content,
    "my-bundle": lambda s, login, serial, asked: s.links.my_bundle(
        TENANT, login, serial, profile=asked).content,
}


@pytest.mark.parametrize("asked", ASKED, ids=ASKED_IDS)
@pytest.mark.parametrize("path", list(PATHS), ids=list(PATHS))
def test_a_single_bundle_is_made_in_the_same_profile_as_in_the_bulk_zip(
        service: Service, issued: dict[str, str], path: str, asked: str | None) -> None:
    found = {login: opened(PATHS[path](service, login, serial, asked), login)
             for login, serial in issued.items()}
    assert found == expected(service, asked)


def test_a_link_hands_out_each_bundle_in_its_certificates_profile(
        service: Service, issued: dict[str, str]) -> None:
    found = {}
    for login in issued:
        link = service.links.create(TENANT, login)
        got = service.links.redeem(link.token, source_ip="192.0.2.7")
        found[login] = what_it_is(got.p12, got.password)
    assert found == expected(service, None)
