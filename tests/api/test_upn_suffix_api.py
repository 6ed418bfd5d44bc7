"""A tenant's UPN suffix over HTTP: ``PUT /api/v1/tenants/<t>/settings/upn-suffix``.
The same use case as `tegata tenant set --upn-suffix`; the certificate's
own content is judged by OpenSSL and pkilint in tests/cli/test_upn_suffix_cli.py."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import select

from ca.db.models import Tenant
from ca.service import Service
from ca.x509.certificate import UPN_OID
from tests.support.http import bearer

SETTING = "/api/v1/tenants/default/settings/upn-suffix"
CERTS = "/api/v1/tenants/default/certificates"
# the database matters only for storing the value (Unicode in a VARCHAR(253)): the refusals
# and the roles run on SQLite alone
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def sans_of_new_certificate(client: TestClient, token: str) -> list[x509.GeneralName]:
    r = client.post(CERTS, json={"login": "alice"}, headers=bearer(token))
    assert r.status_code == 201, r.text
    (made,) = r.json()["certificates"]
    cert = x509.load_pem_x509_certificate(made["pem"].encode())
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def upn(value: str) -> x509.OtherName:
    data = value.encode()
    return x509.OtherName(UPN_OID, bytes([0x0C, len(data)]) + data)


def stored(service: Service) -> dict[str, str | None]:
    with service.database.reading() as session:
        return {t.name: t.upn_suffix for t in session.scalars(select(Tenant))}


def events(service: Service) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [(e.actor, e.tenant, e.details)
            for e in service.audit.events(action="tenant.update")]


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_an_operator_or_the_tenants_admin_sets_and_clears_the_suffix(
        client: TestClient, tokens: dict[str, str], service: Service, role: str) -> None:
    token = tokens[role]
    (name,) = [f"token:{t.id}:{t.name}" for t in service.tokens.list_tokens()
               if t.role == role and t.tenant == (None if role == "operator" else "default")]

    set_ = client.put(SETTING, json={"upn_suffix": "株式会社アクメ\uff0eJP"}, headers=bearer(token))
    with_upn = sans_of_new_certificate(client, token)
    cleared = client.put(SETTING, json={"upn_suffix": None}, headers=bearer(token))
    without = sans_of_new_certificate(client, token)

    assert (set_.status_code, set_.json()) == (
        200, {"tenant": "default", "upn_suffix": "株式会社アクメ.jp"})
    assert (cleared.status_code, cleared.json()) == (200, {"tenant": "default",
                                                           "upn_suffix": None})
    assert with_upn == [x509.RFC822Name("alice@example.com"), upn("alice@株式会社アクメ.jp")]
    assert without == [x509.RFC822Name("alice@example.com")]
    assert events(service) == [
        (name, "default", {"upn_suffix": "株式会社アクメ.jp", "previous_upn_suffix": None}),
        (name, "default", {"upn_suffix": None, "previous_upn_suffix": "株式会社アクメ.jp"}),
    ]


REFUSED = {
    "with-login": ({"upn_suffix": "alice@example.co.jp"}, "upn_suffix",
                   "UPN suffix 'alice@example.co.jp' must be a DNS domain name such as "
                   "example.co.jp: no spaces and no '@' (only the part after the '@')"),
    "final-dot": ({"upn_suffix": "example.co.jp."}, "upn_suffix",
                  "UPN suffix 'example.co.jp.' must be a DNS domain name such as "
                  "example.co.jp: no final '.'"),
    "empty": ({"upn_suffix": ""}, "upn_suffix",
              "the UPN suffix is empty; clear the setting to have no UPN"),
    "ip-address": ({"upn_suffix": "192.0.2.1"}, "upn_suffix",
                   "UPN suffix '192.0.2.1' must be a DNS domain name such as example.co.jp: "
                   "not an IP address"),
    # a body that forgets the field never clears the setting
    "missing": ({}, "upn_suffix", "upn_suffix: Field required"),
    "too-long": ({"upn_suffix": "a" * 254 + ".jp"}, "upn_suffix",
                 "upn_suffix: String should have at most 253 characters"),
}


@SQLITE_ONLY
@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_suffix_is_a_problem_naming_the_field_and_changes_nothing(
        client: TestClient, tokens: dict[str, str], service: Service,
        case: tuple[dict[str, Any], str, str]) -> None:
    body, field, detail = case
    assert client.put(SETTING, json={"upn_suffix": "corp.example"},
                      headers=bearer(tokens["admin"])).status_code == 200
    before = (stored(service), events(service))

    r = client.put(SETTING, json=body, headers=bearer(tokens["admin"]))

    assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json")
    assert {k: r.json()[k] for k in ("type", "field", "detail")} == {
        "type": "urn:tegata:problem:invalid-input", "field": field, "detail": detail}
    assert (stored(service), events(service)) == before
    assert before[0] == {"default": "corp.example", "acme": None}


@SQLITE_ONLY
def test_another_tenants_admin_and_other_roles_cannot_set_it(
        client: TestClient, tokens: dict[str, str], service: Service) -> None:
    answers = {caller: client.put(SETTING, json={"upn_suffix": "evil.example"},
                                  headers=bearer(tokens[caller])).status_code
               for caller in ("acme-admin", "user", "gateway")}

    assert answers == {"acme-admin": 404, "user": 403, "gateway": 403}
    assert stored(service) == {"default": None, "acme": None}


def test_the_settings_route_shows_the_suffix_and_the_user_download_setting(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    settings = "/api/v1/tenants/default/settings"
    before = client.get(settings, headers=h)
    client.put(SETTING, json={"upn_suffix": "例え.jp"}, headers=h)
    off = client.put("/api/v1/tenants/default/settings/user-download",
                     json={"allowed": False}, headers=h)
    client.put("/api/v1/tenants/default/settings/ocsp-validity",
               json={"ocsp_validity_seconds": 120}, headers=h)
    after = client.get(settings, headers=h)
    acme = client.get("/api/v1/tenants/acme/settings", headers=bearer(tokens["operator"]))
    others = {caller: client.get(settings, headers=bearer(tokens[caller])).status_code
              for caller in ("acme-admin", "user", "gateway")}

    assert (before.status_code, before.json()) == (200, {
        "tenant": "default", "ocsp_validity_seconds": 300, "upn_suffix": None,
        "user_download": True, "p12_profile": "compat", "default_validity": "P1Y",
        "timezone": "UTC"})
    assert off.status_code == 200, off.text
    assert (after.status_code, after.json()) == (200, {
        "tenant": "default", "ocsp_validity_seconds": 120, "upn_suffix": "例え.jp",
        "user_download": False, "p12_profile": "compat", "default_validity": "P1Y",
        "timezone": "UTC"})
    assert acme.json() == {"tenant": "acme", "ocsp_validity_seconds": 300,
                           "upn_suffix": None, "user_download": True,
                           "p12_profile": "compat", "default_validity": "P1Y",
                           "timezone": "UTC"}
    assert others == {"acme-admin": 404, "user": 403, "gateway": 403}
