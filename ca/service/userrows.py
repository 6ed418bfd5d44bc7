"""Users written as sets (a CSV import): one INSERT of many rows per table, not a flush per
user. Query helpers: they take a session and never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ca.db.models import Group, Tenant, User, user_groups

ROWS = 2000  # rows per INSERT statement: well inside every database's limit on parameters


def groups_by_key(session: Session, owner: Tenant, names: Iterable[str], *,
                  now: dt.datetime) -> dict[str, Group]:
    """The tenant's groups by key, those named here created first (each as first written,
    in one INSERT): every group an import needs, for one query and one write."""
    wanted: dict[str, str] = {}
    for name in names:
        wanted.setdefault(name.casefold(), name)
    existing = set(session.scalars(select(Group.name_key).where(Group.tenant_id == owner.id)))
    missing = [{"tenant_id": owner.id, "name": name, "name_key": key, "created_at": now}
               for key, name in wanted.items() if key not in existing]
    _insert(session, Group.__table__, missing)
    return {g.name_key: g for g in session.scalars(
        select(Group).where(Group.tenant_id == owner.id))}


def insert_users(session: Session, owner: Tenant, rows: Sequence[dict[str, object]],
                 groups: Sequence[Sequence[Group]], *, now: dt.datetime) -> None:
    """New users (``rows``: login, email, display_name, kind, secure_access) and each one's
    groups: one executemany per table, then one read of the new ids by login."""
    values = [{"tenant_id": owner.id, "login_key": str(row["login"]).lower(),
               "status": "active", "created_at": now, "updated_at": now, **row}
              for row in rows]
    _insert(session, User.__table__, values)
    ids: dict[str, int] = {key: uid for key, uid in session.execute(
        select(User.login_key, User.id).where(User.tenant_id == owner.id))}
    _insert(session, user_groups, [{"user_id": ids[str(row["login_key"])], "group_id": g.id}
                                   for row, mine in zip(values, groups, strict=True)
                                   for g in mine])


def _insert(session: Session, table: object, rows: list[dict[str, object]]) -> None:
    """Core INSERTs of many rows (no ORM bookkeeping), a bounded number a statement. With
    RETURNING, SQLAlchemy sends each batch as one multi-row INSERT rather than psycopg's
    executemany, whose pipeline, when a row breaks a unique constraint, also logs "error
    ignored terminating pipeline" to stderr beside the error itself."""
    first = next(iter(table.primary_key.columns))  # type: ignore[attr-defined]
    for start in range(0, len(rows), ROWS):
        session.execute(insert(table).returning(first),  # type: ignore[arg-type]
                        rows[start:start + ROWS])
