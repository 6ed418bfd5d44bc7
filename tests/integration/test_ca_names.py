"""Issuing-CA names: unique across the deployment whatever the display
names, now and for every later CA of a tenant; a CA named like another tenant's is refused;
a name two old CAs already share is never pinned by a gateway. And names that do not fit
X.509's 64 bytes (Japanese display names) are cut, not crashed on.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from ca.db.models import AuditEvent, Tenant
from ca.errors import Conflict
from ca.service import IssueRequest, Service, hierarchy
from ca.x509.names import openssl_rfc2253
from tests.legacy import legacy_request
from tests.moments import MOMENTS

# display names that used to give two tenants one issuing-CA name (cut to 53 characters)
LONG = {
    "tokyo": "Example Holdings International Corporation Japan Branch Tokyo",
    "osaka": "Example Holdings International Corporation Japan Branch Osaka",
    "jp-tokyo": "株式会社アクメ" * 8 + "東京",
    "jp-osaka": "株式会社アクメ" * 8 + "大阪",
    "acme-jp": "株式会社アクメ",
}


def issuing_subject(service: Service, tenant: str) -> x509.Name:
    return x509.load_der_x509_certificate(service.hierarchy.ca_certificates(tenant)[1].der).subject


def test_every_issuing_ca_has_a_name_of_its_own_whatever_the_display_names(
        service: Service) -> None:
    for tenant, display_name in LONG.items():
        service.hierarchy.create_tenant(tenant, display_name=display_name, ca_key_type="ec-p256")

    subjects = {tenant: issuing_subject(service, tenant).rfc4514_string()
                for tenant in ["default", *LONG]}

    bran = "Example Holdings International Corporation Japan Bran"  # 53 characters
    acme = "株式会社アクメ" * 2 + "株式会"  # 51 bytes: 53 are left after the suffix
    assert subjects == {
        "default": "CN=Default Issuing CA,OU=default,O=Tegata",
        "tokyo": f"CN={bran} Issuing CA,OU=tokyo,O=Tegata",
        "osaka": f"CN={bran} Issuing CA,OU=osaka,O=Tegata",
        "jp-tokyo": f"CN={acme} Issuing CA,OU=jp-tokyo,O=Tegata",
        "jp-osaka": f"CN={acme} Issuing CA,OU=jp-osaka,O=Tegata",
        "acme-jp": "CN=株式会社アクメ Issuing CA,OU=acme-jp,O=Tegata",
    }
    # and in the form a gateway pins (nginx's $ssl_client_i_dn)
    pins = {tenant: service.hierarchy.gateway_issuer_dn(tenant) for tenant in subjects}
    assert len(set(pins.values())) == len(pins)
    assert pins["acme-jp"] == ("CN=\\E6\\A0\\AA\\E5\\BC\\8F\\E4\\BC\\9A\\E7\\A4\\BE\\E3\\82"
                               "\\A2\\E3\\82\\AF\\E3\\83\\A1 Issuing CA,OU=acme-jp,O=Tegata")


def test_a_later_ca_of_a_tenant_keeps_its_name_and_no_other_tenant_can_take_it(
        service: Service) -> None:
    # the one naming rule, applied as a rollover would apply it: same tenant, same subject
    # (the gateway's pin survives); same display name, another tenant: another subject
    root = x509.load_der_x509_certificate(service.hierarchy.ca_certificates()[0].der)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()

    def name(tenant: str, display_name: str, now: dt.datetime) -> x509.Name:
        return hierarchy.issuing_request(tenant, display_name, root, key, now=now).subject()

    assert name("tokyo", LONG["tokyo"], MOMENTS.start) == name(
        "tokyo", LONG["tokyo"], MOMENTS.start + dt.timedelta(days=3650))
    assert name("tokyo", LONG["tokyo"], MOMENTS.start) != name(
        "osaka", LONG["tokyo"], MOMENTS.start)


def test_a_ca_named_like_another_tenants_ca_is_refused_and_nothing_is_left(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hierarchy, "issuing_request", legacy_request)
    service.hierarchy.create_tenant("tokyo", display_name=LONG["tokyo"], ca_key_type="ec-p256")
    keys = sorted(service.settings.effective_key_dir.iterdir())
    with service.database.reading() as session:
        events = session.scalar(select(func.count()).select_from(AuditEvent))

    with pytest.raises(Conflict) as refused:
        service.hierarchy.create_tenant("osaka", display_name=LONG["osaka"], ca_key_type="ec-p256")

    assert str(refused.value) == (
        "an issuing CA named 'CN=Example Holdings International Corporation Japan Bran "
        "Issuing CA,O=Tegata' exists already (tenant 'tokyo'): CA names must be unique")
    assert service.hierarchy.list_tenants() == ["default", "tokyo"]
    assert sorted(service.settings.effective_key_dir.iterdir()) == keys
    with service.database.reading() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
        assert session.scalar(select(func.count()).select_from(Tenant)) == 2


def test_a_gateway_pin_on_a_name_two_old_cas_share_is_refused(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    # two CAs made before the rule (and before the check): they keep their names
    with monkeypatch.context() as old:
        old.setattr(hierarchy, "issuing_request", legacy_request)
        old.setattr(hierarchy, "_require_unique_subject", lambda *args: None)
        service.hierarchy.create_tenant("tokyo", display_name=LONG["tokyo"], ca_key_type="ec-p256")
        service.hierarchy.create_tenant("osaka", display_name=LONG["osaka"], ca_key_type="ec-p256")
    service.hierarchy.create_tenant("kyoto", display_name=LONG["tokyo"], ca_key_type="ec-p256")

    with pytest.raises(Conflict) as refused:
        service.hierarchy.gateway_issuer_dn("tokyo")

    assert str(refused.value) == (
        "tenant 'tokyo': its issuing CA has the same name as the CA of tenant 'osaka', so a "
        "gateway cannot tell their certificates apart by issuer; use the auth variant "
        "(Tegata checks the serial in this tenant)")
    # a CA made now cannot share it: it has the tenant's name in it
    assert service.hierarchy.gateway_issuer_dn("kyoto") == (
        "CN=Example Holdings International Corporation Japan Bran Issuing CA,OU=kyoto,"
        "O=Tegata")


def test_a_long_japanese_display_name_makes_a_tenant_and_certificates(
        service: Service) -> None:
    # cryptography counts 64 bytes, not characters: 58 Japanese characters are 174 bytes
    service.hierarchy.create_tenant("jp-tokyo", display_name=LONG["jp-tokyo"],
                                    ca_key_type="ec-p256")
    service.users.add("jp-tokyo", "taro", email="taro@example.com", allow=True)

    (view,) = service.certificates.issue(IssueRequest(tenant="jp-tokyo", logins=("taro",)))

    subject = x509.load_der_x509_certificate(view.der).subject
    organization = subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert organization == "株式会社アクメ" * 3  # 63 bytes: cut before the 64th
    assert openssl_rfc2253(subject).startswith("CN=taro,O=\\E6\\A0\\AA")
