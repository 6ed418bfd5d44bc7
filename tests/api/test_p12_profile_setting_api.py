"""A tenant's default PKCS#12 profile over HTTP: ``PUT /api/v1/tenants/<t>/settings/p12-profile``,
shown by ``GET .../settings``, given at ``POST /api/v1/tenants``. The same use case as
`tegata tenant set --p12-profile` (tests/cli/test_p12_profile_cli.py). It was the third
level of ``ca.bundle_profile``'s rule that only SQL could change; here a certificate issued
without a choice downloads in the tenant's default, judged by the file's structure."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from ca.db.models import Tenant
from ca.errors import InvalidInput
from ca.service import Service
from tests.support.http import bearer
from tests.support.pkcs12_structure import what_it_is

SETTING = "/api/v1/tenants/default/settings/p12-profile"
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def stored(service: Service) -> dict[str, str]:
    with service.database.reading() as session:
        return {t.name: t.p12_profile for t in session.scalars(select(Tenant))}


def events(service: Service) -> list[tuple[str, str | None, dict[str, Any]]]:
    return [(e.actor, e.tenant, e.details)
            for e in service.audit.events(action="tenant.update")]


def token_name(service: Service, role: str) -> str:
    (name,) = [f"token:{t.id}:{t.name}" for t in service.tokens.list_tokens()
               if t.role == role and t.tenant == (None if role == "operator" else "default")]
    return name


@pytest.mark.parametrize("role", ["operator", "admin"])
def test_an_operator_or_the_tenants_admin_sets_the_default_and_settings_show_it(
        client: TestClient, tokens: dict[str, str], service: Service, role: str) -> None:
    h = bearer(tokens[role])
    modern = client.put(SETTING, json={"p12_profile": "modern"}, headers=h)
    again = client.put(SETTING, json={"p12_profile": "modern"}, headers=h)  # no change
    shown = client.get("/api/v1/tenants/default/settings", headers=h)
    back = client.put(SETTING, json={"p12_profile": "compat"}, headers=h)

    assert (modern.status_code, modern.json()) == (200, {"tenant": "default",
                                                         "p12_profile": "modern"})
    assert (again.status_code, again.json()) == (200, {"tenant": "default",
                                                       "p12_profile": "modern"})
    assert (shown.status_code, shown.json()) == (200, {
        "tenant": "default", "ocsp_validity_seconds": 300, "upn_suffix": None,
        "user_download": True, "p12_profile": "modern", "default_validity": "P1Y",
        "timezone": "UTC"})
    assert (back.status_code, back.json()) == (200, {"tenant": "default",
                                                     "p12_profile": "compat"})
    assert stored(service) == {"default": "compat", "acme": "compat"}
    name = token_name(service, role)
    assert events(service) == [
        (name, "default", {"p12_profile": "modern", "previous_p12_profile": "compat"}),
        (name, "default", {"p12_profile": "compat", "previous_p12_profile": "modern"}),
    ]


REFUSED = {
    "other-name": ({"p12_profile": "legacy"}, "p12_profile",
                   "p12_profile: Input should be 'compat' or 'modern'"),
    "upper-case": ({"p12_profile": "MODERN"}, "p12_profile",
                   "p12_profile: Input should be 'compat' or 'modern'"),
    "null": ({"p12_profile": None}, "p12_profile",
             "p12_profile: Input should be 'compat' or 'modern'"),
    "number": ({"p12_profile": 1}, "p12_profile",
               "p12_profile: Input should be 'compat' or 'modern'"),
    # a body that forgets the field changes nothing
    "missing": ({}, "p12_profile", "p12_profile: Field required"),
}


@SQLITE_ONLY
@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_profile_is_a_problem_naming_the_field_and_changes_nothing(
        client: TestClient, tokens: dict[str, str], service: Service,
        case: tuple[dict[str, Any], str, str]) -> None:
    body, field, detail = case
    assert client.put(SETTING, json={"p12_profile": "modern"},
                      headers=bearer(tokens["admin"])).status_code == 200
    before = (stored(service), events(service))

    r = client.put(SETTING, json=body, headers=bearer(tokens["admin"]))

    assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json")
    assert {k: r.json()[k] for k in ("type", "field", "detail")} == {
        "type": "urn:tegata:problem:invalid-input", "field": field, "detail": detail}
    assert (stored(service), events(service)) == before
    assert before[0] == {"default": "modern", "acme": "compat"}


@SQLITE_ONLY
def test_an_extra_field_is_refused(client: TestClient, tokens: dict[str, str],
                                   service: Service) -> None:
    r = client.put(SETTING, json={"p12_profile": "modern", "tenant": "acme"},
                   headers=bearer(tokens["admin"]))

    assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json")
    assert stored(service) == {"default": "compat", "acme": "compat"}
    assert events(service) == []


@SQLITE_ONLY
def test_another_tenants_admin_and_other_roles_cannot_set_it(
        client: TestClient, tokens: dict[str, str], service: Service) -> None:
    answers = {caller: client.put(SETTING, json={"p12_profile": "modern"},
                                  headers=bearer(tokens[caller])).status_code
               for caller in ("acme-admin", "user", "gateway")}

    assert answers == {"acme-admin": 404, "user": 403, "gateway": 403}
    assert stored(service) == {"default": "compat", "acme": "compat"}


def test_a_tenant_created_with_a_profile_has_it_and_the_creation_says_so(
        client: TestClient, tokens: dict[str, str], service: Service) -> None:
    h = bearer(tokens["operator"])
    made = client.post("/api/v1/tenants", json={"name": "sakura", "display_name": "さくら商事",
                                                "p12_profile": "modern"}, headers=h)
    plain = client.post("/api/v1/tenants", json={"name": "momiji",
                                                 "display_name": "もみじ銀行"}, headers=h)
    refused = client.post("/api/v1/tenants", json={"name": "kaede", "p12_profile": "rc2"},
                          headers=h)

    assert (made.status_code, plain.status_code) == (201, 201), (made.text, plain.text)
    assert made.json()["issuing_ca"]["subject"].startswith("CN=さくら商事 Issuing CA")
    assert client.get("/api/v1/tenants/sakura/settings", headers=h).json()["p12_profile"] == (
        "modern")
    assert client.get("/api/v1/tenants/momiji/settings", headers=h).json()["p12_profile"] == (
        "compat")
    assert (refused.status_code, refused.json()["field"], refused.json()["detail"]) == (
        400, "p12_profile", "p12_profile: Input should be 'compat' or 'modern'")
    assert stored(service) == {"default": "compat", "acme": "compat", "sakura": "modern",
                               "momiji": "compat"}
    created = {e.target: e.details for e in service.audit.events(action="tenant.create")}
    assert {k: created[k] for k in ("sakura", "momiji")} == {
        "sakura": {"p12_profile": "modern"}, "momiji": {}}


def test_a_certificate_issued_without_a_choice_downloads_in_the_tenants_new_default(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    certs = "/api/v1/tenants/default/certificates"
    chosen = client.post(certs, json={"login": "alice", "p12_profile": "compat"}, headers=h)
    plain = client.post(certs, json={"login": "alice"}, headers=h)
    assert (chosen.status_code, plain.status_code) == (201, 201), (chosen.text, plain.text)
    (own,) = chosen.json()["certificates"]
    (none,) = plain.json()["certificates"]

    def profile_of(serial: str) -> str:
        r = client.get(f"{certs}/{serial}/bundle", headers=h)
        assert r.status_code == 200, r.text
        with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
            return what_it_is(archive.read("alice.p12"),
                              archive.read("alice-password.txt").decode().strip())

    before = profile_of(none["serial"])
    assert client.put(SETTING, json={"p12_profile": "modern"}, headers=h).status_code == 200

    assert (before, profile_of(none["serial"]), profile_of(own["serial"])) == (
        "compat", "modern", "compat")


@SQLITE_ONLY
@pytest.mark.parametrize("value", ["legacy", "Modern", ""])
def test_the_use_case_itself_refuses_anything_but_the_two_names(
        tokens: dict[str, str], service: Service, value: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        service.links.set_p12_profile("default", value)

    assert (str(refused.value), refused.value.field) == (
        f"PKCS#12 profile {value!r} is not compat or modern", "p12_profile")
    assert stored(service) == {"default": "compat", "acme": "compat"}
    assert events(service) == []
