"""A CSV import writes its users as a set: one audit event for the batch (naming every user
it created) plus one per existing user it changed, the tenant's chain still verifying on
SQLite and PostgreSQL; groups are made once however many rows name them."""

from __future__ import annotations

import json

from sqlalchemy import select

from ca.db.models import AuditEvent
from ca.service import Selection, Service

TENANT = "default"


def events(service: Service) -> list[tuple[str, str, dict[str, object]]]:
    with service.database.reading() as session:
        rows = session.execute(select(AuditEvent.action, AuditEvent.target, AuditEvent.details)
                               .where(AuditEvent.action.like("user.%"))
                               .order_by(AuditEvent.id)).all()
    return [(action, target, json.loads(details)) for action, target, details in rows]


def test_an_import_records_one_event_for_the_batch_and_one_per_user_changed(
        service: Service) -> None:
    service.users.add(TENANT, "suzuki", email="suzuki@example.jp", display_name="鈴木")
    service.users.add(TENANT, "tanaka", email="tanaka@example.jp", display_name="田中")
    before = len(events(service))
    report = service.users.import_users(TENANT, (
        "login,email,name,groups,secure_access\n"
        "suzuki,suzuki@example.jp,鈴木 一郎,営業部,no\n"       # changed: name and group
        "tanaka,tanaka@example.jp,田中,,no\n"                  # unchanged
        "sato,sato@example.jp,佐藤,営業部;東京,yes\n"          # created
        "kato,kato@example.jp,加藤,東京,no\n").encode())       # created
    assert (report.created, report.updated, report.unchanged) == (
        ["sato", "kato"], ["suzuki"], ["tanaka"])
    assert events(service)[before:] == [
        ("user.update", "default/suzuki", {"changed": ["display_name", "groups"]}),
        ("user.import", "default", {"created": 2, "updated": 1, "errors": 0,
                                    "created_logins": ["sato", "kato"],
                                    "allowed": ["sato"]}),
    ]
    assert [c.broken for c in service.audit.verify().chains] == [None, None]


def test_the_users_an_import_creates_have_their_values_and_groups(service: Service) -> None:
    rows = "".join(f"user{n:03d},user{n:03d}@example.jp,利用者 {n},"
                   f"部署{n % 3};拠点{n % 2},{'yes' if n % 2 else 'no'}\n" for n in range(30))
    service.users.import_users(TENANT, ("login,email,name,groups,secure_access\n" + rows).encode())
    views = {v.login: v for v in service.users.list_users(TENANT, Selection(everyone=True))}
    assert sorted(views) == [f"user{n:03d}" for n in range(30)]
    assert {(v.email, v.display_name, v.groups, v.secure_access, v.kind, v.status,
             v.certificate_status) for v in [views["user007"]]} == {
        ("user007@example.jp", "利用者 7", ("拠点1", "部署1"), True, "person", "active",
         "unissued")}
    assert dict(service.users.list_groups(TENANT)) == {
        "部署0": 10, "部署1": 10, "部署2": 10, "拠点0": 15, "拠点1": 15}
    assert [c.broken for c in service.audit.verify().chains] == [None, None]


def test_an_import_that_names_an_existing_group_in_another_case_joins_it(
        service: Service) -> None:
    service.users.add(TENANT, "suzuki", email="suzuki@example.jp", groups=("Sales",))
    service.users.import_users(TENANT, b"login,email,groups\nsato,sato@example.jp,SALES;Tokyo\n")
    assert dict(service.users.list_groups(TENANT)) == {"Sales": 2, "Tokyo": 1}
