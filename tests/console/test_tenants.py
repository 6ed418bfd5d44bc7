"""The operator's tenants page: every tenant's name, display name, subscription state and
active users, each linked to its users page; an admin is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient

from ca.service import Service
from tests.console.conftest import Console
from tests.console.dom import Node, parse

# the pages over the use cases: their PostgreSQL behaviour is the use cases' own tests'
# (tests/integration), and the console's sessions and walk run on both databases
pytestmark = [pytest.mark.usefixtures("db_url"),
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

PAGE = "/console/tenants"


@pytest.fixture
def tenants(service: Service, tenant: str) -> None:
    """tohoku under contract (two active users, one retired), kansai in the grace period of
    an ended trial (one user), hokkaido ended for good (no grace), and ``default``."""
    service.hierarchy.create_tenant("kansai", display_name="関西<script>alert(1)</script>")
    service.hierarchy.create_tenant("hokkaido", display_name="北海道商事")
    for login, name in (("yamada", "山田太郎"), ("suzuki", "鈴木花子"), ("tanaka", "田中一郎")):
        service.users.add(tenant, login, email=f"{login}@example.jp", display_name=name)
    service.users.retire(tenant, "tanaka")
    service.users.add("kansai", "sato", email="sato@example.jp", display_name="佐藤次郎")
    service.lifecycle.set_subscription(tenant, ends=dt.date(2026, 12, 31), zone="Asia/Tokyo",
                                       grace_days=30, kind="contract")
    service.lifecycle.set_subscription("kansai", ends=dt.date(2026, 3, 1), zone="UTC",
                                       grace_days=30, kind="trial", allow_past=True)
    service.lifecycle.set_subscription("hokkaido", ends=dt.date(2026, 2, 1), zone="UTC",
                                       grace_days=0, kind="contract", allow_past=True)


@pytest.fixture
def operator(app_client: TestClient, operator_token: str, tenants: None) -> Console:
    console = Console(app_client)
    assert console.sign_in(operator_token).status_code == 303  # type: ignore[attr-defined]
    return console


def table(doc: Node) -> dict[str, tuple[str, str, str, str, str]]:
    return {r.attrs["data-tenant"]: (
        r.one(class_="display-name").text, r.one(class_="badge").attrs["data-state"],
        r.one(class_="subscription").text, r.one(class_="ends").text, r.one(class_="users").text)
        for r in doc.by_id("tenants").one("tbody").all("tr")}


def test_every_tenant_with_its_state_and_users(operator: Console) -> None:
    page = operator.get(PAGE)
    assert page.status_code == 200  # type: ignore[attr-defined]
    doc = parse(page.text)  # type: ignore[attr-defined]
    assert table(doc) == {
        "default": ("Default", "active", "有効 期限なし", "—", "0"),
        "hokkaido": ("北海道商事", "ended", "終了 契約", "2026-02-02 00:00 UTC", "0"),
        "kansai": ("関西<script>alert(1)</script>", "grace", "猶予期間中 試用",
                   "2026-03-02 00:00 UTC", "1"),
        "tohoku": ("東北電機株式会社", "active", "有効 契約", "2026-12-31 15:00 UTC", "2"),
    }
    assert [r.attrs["data-tenant"] for r in doc.by_id("tenants").all("tr", data_tenant=None)] \
        == ["default", "hokkaido", "kansai", "tohoku"]
    assert {a.attrs["href"] for a in doc.all("a", class_="tenant-link")} == {
        f"/console/t/{name}/users" for name in ("default", "hokkaido", "kansai", "tohoku")}
    assert doc.by_id("tenant-count").text == "4"
    assert "<script>alert(1)</script>" not in page.text  # type: ignore[attr-defined]
    assert "関西&lt;script&gt;alert(1)&lt;/script&gt;" in page.text  # type: ignore[attr-defined]


def test_english_and_the_viewer_zone(operator: Console) -> None:
    operator.client.cookies.set("tegata_zone", "Asia/Tokyo")
    doc = parse(operator.get(PAGE + "?lang=en").text)  # type: ignore[attr-defined]
    assert doc.one("h1").text == "Tenants"
    assert [th.text for th in doc.by_id("tenants").all("th")] == [
        "Tenant", "Display name", "Subscription", "Subscription ends", "Users"]
    assert table(doc)["tohoku"] == ("東北電機株式会社", "active", "Active Contract",
                                    "2027-01-01 00:00 JST", "2")


def test_an_admin_is_refused(service: Service, admin: Console) -> None:
    answer = admin.get(PAGE)
    assert answer.status_code == 403  # type: ignore[attr-defined]
    assert not parse(answer.text).all(id="tenants")  # type: ignore[attr-defined]
