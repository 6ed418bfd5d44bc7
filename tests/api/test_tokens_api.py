"""Tokens over the API: an operator lists and revokes any token, a tenant's
admin only its tenant's, any token revokes itself; a token's text is never answered; every
revocation is one audit event naming who did it. And the OCSP validity, read and set."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ca.service import Service
from ca.tokens import display_prefix
from tests.moments import MOMENTS
from tests.support.http import bearer

TOKEN_KEYS = {"id", "name", "role", "tenant", "user", "prefix", "expires_at", "revoked_at",
              "last_used_at"}
WHOAMI = "/api/v1/whoami"
START = "2026-03-02T09:00:00Z"  # MOMENTS.start as the API writes it


@pytest.fixture
def made(service: Service) -> dict[str, tuple[str, int]]:
    """株式会社アクメ (acme) with 山田's user token, its admin and its gateway; default's admin;
    an operator. Each: (the token's text, its id)."""
    service.hierarchy.create_tenant("acme", display_name="株式会社アクメ")
    service.users.add("acme", "yamada", email="yamada@example.co.jp", display_name="山田 太郎",
                      allow=True)
    specs: dict[str, dict[str, Any]] = {
        "operator": {"role": "operator", "name": "運用担当"},
        "default-admin": {"role": "admin", "tenant": "default", "name": "既定の管理者"},
        "acme-admin": {"role": "admin", "tenant": "acme", "name": "アクメ helpdesk"},
        "yamada": {"role": "user", "tenant": "acme", "login": "yamada", "name": "山田 phone"},
        "acme-gateway": {"role": "gateway", "tenant": "acme", "name": "アクメ nginx"},
    }
    out = {}
    for key, spec in specs.items():
        text, view = service.tokens.create(**spec)
        out[key] = (text, view.id)
    return out


def revocations(service: Service) -> list[tuple[str, str, str | None, str, dict[str, Any]]]:
    return [(e.actor, e.target, e.tenant, e.outcome, e.details)
            for e in service.audit.events(action="token.revoke")]


def test_an_operator_lists_every_token_and_never_a_tokens_text(
        client: TestClient, service: Service, made: dict[str, tuple[str, int]]) -> None:
    r = client.get("/api/v1/tokens", headers=bearer(made["operator"][0]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert all(set(item) == TOKEN_KEYS for item in body)
    assert [(t["id"], t["name"], t["role"], t["tenant"], t["user"]) for t in body] == [
        (made["operator"][1], "運用担当", "operator", None, None),
        (made["default-admin"][1], "既定の管理者", "admin", "default", None),
        (made["acme-admin"][1], "アクメ helpdesk", "admin", "acme", None),
        (made["yamada"][1], "山田 phone", "user", "acme", "yamada"),
        (made["acme-gateway"][1], "アクメ nginx", "gateway", "acme", None)]
    for text, _ in made.values():
        assert text not in r.text
        assert text[len("tgt_"):] not in r.text  # not even the secret part alone
    # the operator's own request has just been recorded as its last use
    assert body[0]["last_used_at"] == START and body[0]["revoked_at"] is None


def test_a_tenant_admin_lists_only_its_tenants_tokens(
        client: TestClient, made: dict[str, tuple[str, int]]) -> None:
    acme = bearer(made["acme-admin"][0])
    r = client.get("/api/v1/tenants/acme/tokens", headers=acme)
    assert r.status_code == 200, r.text
    assert [(t["id"], t["name"]) for t in r.json()] == [
        (made["acme-admin"][1], "アクメ helpdesk"), (made["yamada"][1], "山田 phone"),
        (made["acme-gateway"][1], "アクメ nginx")]
    # another tenant's tokens: as if that tenant did not exist; every token: operators only
    r = client.get("/api/v1/tenants/default/tokens", headers=acme)
    assert (r.status_code, r.json()["detail"]) == (404, "no tenant 'default'")
    r = client.get("/api/v1/tokens", headers=acme)
    assert (r.status_code, r.json()["detail"]) == (403, "an admin token may not do this")
    for key, said in (("yamada", "a user token may not do this"),
                      ("acme-gateway", "a gateway token may not do this")):
        r = client.get("/api/v1/tenants/acme/tokens", headers=bearer(made[key][0]))
        assert (r.status_code, r.json()["detail"]) == (403, said), key
    # an operator sees any tenant's
    r = client.get("/api/v1/tenants/acme/tokens", headers=bearer(made["operator"][0]))
    assert [t["id"] for t in r.json()] == [made[k][1] for k in
                                           ("acme-admin", "yamada", "acme-gateway")]


def test_a_tenant_admin_revokes_a_leaked_token_of_its_tenant_audited(
        client: TestClient, service: Service, made: dict[str, tuple[str, int]]) -> None:
    leaked, leaked_id = made["yamada"]
    assert client.get(WHOAMI, headers=bearer(leaked)).status_code == 200
    r = client.post(f"/api/v1/tenants/acme/tokens/{leaked_id}/revoke",
                    headers=bearer(made["acme-admin"][0]))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": leaked_id, "name": "山田 phone", "role": "user", "tenant": "acme",
                        "user": "yamada", "prefix": display_prefix(leaked), "expires_at": None,
                        "revoked_at": START, "last_used_at": START}
    r401 = client.get(WHOAMI, headers=bearer(leaked))
    assert (r401.status_code, r401.json()["detail"]) == (401, "the token has been revoked")
    admin_id = made["acme-admin"][1]
    assert revocations(service) == [(f"token:{admin_id}:アクメ helpdesk", f"token:{leaked_id}",
                                     "acme", "success", {})]
    (event,) = service.audit.events(action="token.revoke")
    assert event.request_id == r.headers["x-request-id"]

    # again: it stays revoked, at the first time, and nothing more is recorded
    again = client.post(f"/api/v1/tenants/acme/tokens/{leaked_id}/revoke",
                        headers=bearer(made["acme-admin"][0]))
    assert (again.status_code, again.json()) == (200, r.json())
    assert len(revocations(service)) == 1


def test_a_tenant_admin_cannot_revoke_another_tenants_or_an_operators_token(
        client: TestClient, service: Service, made: dict[str, tuple[str, int]]) -> None:
    acme = bearer(made["acme-admin"][0])
    for key in ("default-admin", "operator"):
        token_id = made[key][1]
        r = client.post(f"/api/v1/tenants/acme/tokens/{token_id}/revoke", headers=acme)
        assert (r.status_code, r.json()) == (404, {
            "type": "urn:tegata:problem:not-found", "title": "Not found", "status": 404,
            "detail": f"no token {token_id}", "field": "token"}), key
    # nor through another tenant's path, nor the operators' route
    r = client.post(f"/api/v1/tenants/default/tokens/{made['default-admin'][1]}/revoke",
                    headers=acme)
    assert r.status_code == 404
    r = client.post(f"/api/v1/tokens/{made['yamada'][1]}/revoke", headers=acme)
    assert r.status_code == 403
    assert {t.revoked_at for t in service.tokens.list_tokens()} == {None}
    assert revocations(service) == []


def test_an_operator_revokes_any_token(client: TestClient, service: Service,
                                       made: dict[str, tuple[str, int]]) -> None:
    operator = bearer(made["operator"][0])
    op_id = made["operator"][1]
    for key in ("acme-gateway", "default-admin"):
        r = client.post(f"/api/v1/tokens/{made[key][1]}/revoke", headers=operator)
        assert (r.status_code, r.json()["revoked_at"]) == (200, START), key
        assert client.get(WHOAMI, headers=bearer(made[key][0])).status_code == 401
    r = client.post(f"/api/v1/tenants/acme/tokens/{made['yamada'][1]}/revoke", headers=operator)
    assert r.status_code == 200
    assert revocations(service) == [
        (f"token:{op_id}:運用担当", f"token:{made[k][1]}", tenant, "success", {})
        for k, tenant in (("acme-gateway", "acme"), ("default-admin", "default"),
                          ("yamada", "acme"))]
    assert client.get(WHOAMI, headers=operator).status_code == 200


@pytest.mark.parametrize("key", ["operator", "acme-admin", "yamada", "acme-gateway"])
def test_every_token_may_revoke_itself_and_is_refused_after(
        client: TestClient, service: Service, made: dict[str, tuple[str, int]],
        key: str) -> None:
    text, token_id = made[key]
    r = client.post("/api/v1/whoami/revoke", headers=bearer(text))
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["revoked_at"]) == (token_id, START)
    assert client.get(WHOAMI, headers=bearer(text)).status_code == 401
    assert client.post("/api/v1/whoami/revoke", headers=bearer(text)).status_code == 401
    name = next(t.name for t in service.tokens.list_tokens() if t.id == token_id)
    tenant = None if key == "operator" else "acme"
    assert revocations(service) == [(f"token:{token_id}:{name}", f"token:{token_id}", tenant,
                                     "success", {})]
    # only itself
    assert [t.id for t in service.tokens.list_tokens() if t.revoked_at] == [token_id]


# the last: a full-width digit one, which int() would take
@pytest.mark.parametrize("token_id", ["abc", "0", "-1", "1.5", "\uff11"])
def test_a_token_id_that_is_no_id_is_a_400_problem(
        client: TestClient, service: Service, made: dict[str, tuple[str, int]],
        token_id: str) -> None:
    for path in (f"/api/v1/tokens/{token_id}/revoke",
                 f"/api/v1/tenants/acme/tokens/{token_id}/revoke"):
        r = client.post(path, headers=bearer(made["operator"][0]))
        assert r.status_code == 400, (path, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert (r.json()["type"], r.json()["field"]) == ("urn:tegata:problem:invalid-input",
                                                         "path.token_id")
    assert revocations(service) == []


def test_an_unknown_token_is_a_404_problem(client: TestClient,
                                           made: dict[str, tuple[str, int]]) -> None:
    r = client.post("/api/v1/tokens/999999/revoke", headers=bearer(made["operator"][0]))
    assert (r.status_code, r.json()) == (404, {
        "type": "urn:tegata:problem:not-found", "title": "Not found", "status": 404,
        "detail": "no token 999999", "field": "token"})


# --- OCSP validity --------------------------------------------------------------------------

OCSP = "/api/v1/tenants/acme/settings/ocsp-validity"


def test_the_ocsp_validity_is_read_and_set_by_admins_and_audited(
        client: TestClient, service: Service, made: dict[str, tuple[str, int]]) -> None:
    admin = bearer(made["acme-admin"][0])
    r = client.get(OCSP, headers=admin)
    assert (r.status_code, r.json()) == (200, {"tenant": "acme", "ocsp_validity_seconds": 300})
    r = client.put(OCSP, json={"ocsp_validity_seconds": 120}, headers=admin)
    assert (r.status_code, r.json()) == (200, {"tenant": "acme", "ocsp_validity_seconds": 120})
    assert client.get(OCSP, headers=admin).json()["ocsp_validity_seconds"] == 120
    assert service.ocsp.get_validity("acme") == 120
    assert service.ocsp.get_validity("default") == 300
    # the same value again changes nothing and records nothing, as every tenant setting
    r = client.put(OCSP, json={"ocsp_validity_seconds": 120}, headers=admin)
    assert (r.status_code, r.json()) == (200, {"tenant": "acme", "ocsp_validity_seconds": 120})
    assert [(e.actor, e.target, e.tenant, e.details)
            for e in service.audit.events(action="tenant.update")] == [
        (f"token:{made['acme-admin'][1]}:アクメ helpdesk", "acme", "acme",
         {"ocsp_validity_seconds": 120, "previous_ocsp_validity_seconds": 300})]
    # the operator too; the bounds are inclusive
    for seconds in (60, 604800):
        r = client.put(OCSP, json={"ocsp_validity_seconds": seconds},
                       headers=bearer(made["operator"][0]))
        assert r.json()["ocsp_validity_seconds"] == seconds


def test_the_ocsp_validity_is_refused_to_other_roles_and_tenants(
        client: TestClient, service: Service, made: dict[str, tuple[str, int]]) -> None:
    body = {"ocsp_validity_seconds": 120}
    for key in ("yamada", "acme-gateway"):
        assert client.get(OCSP, headers=bearer(made[key][0])).status_code == 403
        assert client.put(OCSP, json=body, headers=bearer(made[key][0])).status_code == 403
    other = "/api/v1/tenants/default/settings/ocsp-validity"
    assert client.put(other, json=body, headers=bearer(made["acme-admin"][0])).status_code == 404
    assert service.ocsp.get_validity("default") == service.ocsp.get_validity("acme") == 300
    assert service.audit.events(action="tenant.update") == []


@pytest.mark.parametrize("body", [
    {"ocsp_validity_seconds": 59}, {"ocsp_validity_seconds": 604801},
    {"ocsp_validity_seconds": "120s"}, {"ocsp_validity_seconds": None}, {},
    {"ocsp_validity_seconds": 120, "extra": 1}, {"ocsp_validity_seconds": 2**70},
    # JSON integers only: lax parsing would take each of these as 120 (or 1)
    {"ocsp_validity_seconds": "120"}, {"ocsp_validity_seconds": 120.0},
    {"ocsp_validity_seconds": " 120 "}, {"ocsp_validity_seconds": "+120"},
    {"ocsp_validity_seconds": "1_20"}, {"ocsp_validity_seconds": True}],
    ids=["short", "long", "text", "null", "missing", "extra", "huge", "string", "float",
         "spaces", "plus", "underscore", "true"])
def test_a_bad_ocsp_validity_is_a_400_problem_and_changes_nothing(
        client: TestClient, service: Service, made: dict[str, tuple[str, int]],
        body: dict[str, Any]) -> None:
    r = client.put(OCSP, json=body, headers=bearer(made["acme-admin"][0]))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:tegata:problem:invalid-input"
    assert service.ocsp.get_validity("acme") == 300
    assert service.audit.events(action="tenant.update") == []


def test_moments_start_is_what_the_api_writes() -> None:
    assert MOMENTS.start.isoformat().replace("+00:00", "Z") == START


@pytest.mark.parametrize("raw", ["1.0", "%205", "+5", "05", "5_0", "0", "-5", "%EF%BC%95"],
                         ids=["decimal", "space", "plus", "leading-zero", "underscore", "zero",
                              "negative", "fullwidth"])
@pytest.mark.parametrize("where", ["/api/v1/tokens/{}/revoke",
                                   "/api/v1/tenants/acme/tokens/{}/revoke"])
def test_a_malformed_token_id_is_refused_and_revokes_nothing(
        client: TestClient, service: Service, made: dict[str, tuple[str, int]], raw: str,
        where: str) -> None:
    """int() would take " 5" or "5_0" (50) as another id than the one written: only plain
    ASCII digits without a leading zero name a token."""
    assert made["acme-gateway"][1] == 5
    r = client.post(where.format(raw), headers=bearer(made["operator"][0]))
    text = urllib.parse.unquote(raw)
    assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json")
    assert r.json()["detail"] == f"path.token_id: {text!r} is not a token id"
    assert [t.revoked_at for t in service.tokens.list_tokens()] == [None] * 5
    assert revocations(service) == []


@pytest.mark.parametrize("where", ["/api/v1/tokens/{}/revoke",
                                   "/api/v1/tenants/acme/tokens/{}/revoke"])
@pytest.mark.parametrize("token_id", [2**31, 10**22])
def test_a_well_formed_id_beyond_the_tables_range_is_not_found(
        client: TestClient, made: dict[str, tuple[str, int]], where: str,
        token_id: int) -> None:
    """One rule, the CLI's too: well-formed and naming no token is 404, however large."""
    r = client.post(where.format(token_id), headers=bearer(made["operator"][0]))
    assert (r.status_code, r.json()["detail"]) == (404, f"no token {token_id}")
