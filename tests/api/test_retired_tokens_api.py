"""Tokens do not outlive their owner, over real HTTP requests: retiring a
user revokes their tokens at once (audited), and authentication refuses a token whose user
is retired even if it was somehow left in force."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from ca.db.models import User
from ca.errors import NotPermitted
from ca.service import Service
from tests.moments import MOMENTS
from tests.support.http import bearer

WHOAMI = "/api/v1/whoami"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: what is tested is the HTTP path, not storage (a status and a
    timestamp both databases hold alike)."""
    return f"sqlite:///{tmp_path / 'tegata.db'}"


def refused(detail: str) -> dict[str, object]:
    return {"type": "urn:tegata:problem:unauthenticated", "title": "Authentication required",
            "status": 401, "detail": detail}


@pytest.fixture
def yamada(service: Service) -> dict[str, str]:
    """山田 in 株式会社アクメ with two user tokens (a phone and a laptop), bob with one, and the
    tenant's admin."""
    service.hierarchy.create_tenant("acme", display_name="株式会社アクメ")
    service.users.add("acme", "yamada", email="yamada@example.co.jp", display_name="山田 太郎",
                     allow=True)
    service.users.add("acme", "bob", email="bob@example.co.jp", allow=True)
    return {
        "phone": service.tokens.create(role="user", tenant="acme", login="yamada",
                                      name="山田 phone")[0],
        "laptop": service.tokens.create(role="user", tenant="acme", login="yamada",
                                       name="山田 laptop")[0],
        "bob": service.tokens.create(role="user", tenant="acme", login="bob")[0],
        "admin": service.tokens.create(role="admin", tenant="acme", name="acme helpdesk")[0],
    }


def test_retiring_a_user_over_http_revokes_their_tokens_at_once_and_audits_it(
        client: TestClient, service: Service, yamada: dict[str, str]) -> None:
    for name in yamada:
        assert client.get(WHOAMI, headers=bearer(yamada[name])).status_code == 200, name

    r = client.post("/api/v1/tenants/acme/users/yamada/retire",
                    headers=bearer(yamada["admin"]))
    assert r.status_code == 200, r.text

    for name in ("phone", "laptop"):
        r = client.get(WHOAMI, headers=bearer(yamada[name]))
        assert (r.status_code, r.json()) == (401, refused("the token has been revoked")), name
    for name in ("bob", "admin"):
        assert client.get(WHOAMI, headers=bearer(yamada[name])).status_code == 200, name
    assert {(t.name, t.login, t.revoked_at) for t in service.tokens.list_tokens(tenant="acme")} == {
        ("山田 phone", "yamada", MOMENTS.start), ("山田 laptop", "yamada", MOMENTS.start),
        ("user token", "bob", None), ("acme helpdesk", None, None)}
    ids = {t.name: t.id for t in service.tokens.list_tokens(tenant="acme")}
    assert {(e.actor, e.target, e.tenant, tuple(e.details.items()))
            for e in service.audit.events(action="token.revoke")} == {
        (f"token:{ids['acme helpdesk']}:acme helpdesk", f"token:{ids[name]}", "acme",
         (("cause", "user.retire"),)) for name in ("山田 phone", "山田 laptop")}


def test_a_token_left_in_force_for_a_retired_user_is_refused(
        client: TestClient, service: Service, yamada: dict[str, str]) -> None:
    # a user retired by an older release, which left their tokens in force
    with service.database.transaction() as session:
        session.execute(update(User).where(User.login == "yamada").values(
            status="retired", retired_at=MOMENTS.start))

    for name in ("phone", "laptop"):
        r = client.get(WHOAMI, headers=bearer(yamada[name]))
        assert (r.status_code, r.json()) == (401, refused("the token's user has been retired"))
    assert client.get(WHOAMI, headers=bearer(yamada["bob"])).status_code == 200
    assert {t.revoked_at for t in service.tokens.list_tokens(tenant="acme")} == {None}

    # retiring again revokes what was left
    client.post("/api/v1/tenants/acme/users/yamada/retire", headers=bearer(yamada["admin"]))
    assert {t.name for t in service.tokens.list_tokens(tenant="acme") if t.revoked_at} == {
        "山田 phone", "山田 laptop"}


def test_no_token_is_made_for_a_retired_user(service: Service,
                                             yamada: dict[str, str]) -> None:
    service.users.retire("acme", "yamada")
    before = service.tokens.list_tokens()
    with pytest.raises(NotPermitted) as refusal:
        service.tokens.create(role="user", tenant="acme", login="yamada")
    assert (refusal.value.message, refusal.value.field) == (
        "acme/yamada is retired: a retired user gets no token", "user")
    assert service.tokens.list_tokens() == before
