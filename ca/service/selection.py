"""Which users an admin means: listed logins, a group, the unaffiliated, or everyone, and
optionally only those whose certificate status is one of unissued, valid, expired,
suspended, revoked (the seeds' filter: the status of the most recent certificate, or valid
when any certificate is valid)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal, get_args

from sqlalchemy import ColumnElement, Select, case, exists, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from ca import validate
from ca.db.models import Certificate, Group, Tenant, User, user_groups
from ca.errors import InvalidInput
from ca.states import State, state_filter

# a user's certificate status (SPEC, "Concepts"): the type the API declares, and its values
UserStatus = Literal["unissued", "valid", "expired", "suspended", "revoked"]
STATUSES: tuple[str, ...] = get_args(UserStatus)


@dataclass(frozen=True, kw_only=True)
class Selection:
    logins: tuple[str, ...] | None = None
    group: str | None = None
    unaffiliated: bool = False
    everyone: bool = False
    status: str | None = None
    include_retired: bool = False

    def __post_init__(self) -> None:
        ways = sum((self.logins is not None, self.group is not None, self.unaffiliated,
                    self.everyone))
        if ways != 1:
            raise InvalidInput("select users one way: logins, a group, the unaffiliated, or "
                               "all", field="selection")
        if self.logins is not None:
            if not self.logins:
                raise InvalidInput("name at least one user", field="logins")
            for login in self.logins:
                validate.login(login)
        if self.group is not None:  # compared as stored: trimmed, NFC, casefolded
            object.__setattr__(self, "group", validate.group_name(self.group))
        if self.status is not None and self.status not in STATUSES:
            raise InvalidInput(f"status {self.status[:16]!r} is not one of "
                               f"{', '.join(STATUSES)}", field="status")

    @classmethod
    def of(cls, *, logins: list[str] | tuple[str, ...] | None = None, group: str | None = None,
           unaffiliated: bool = False, everyone: bool = False, status: str | None = None,
           default_everyone: bool) -> Selection:
        """From filters as both shells take them. Naming nobody means everyone only where
        ``default_everyone`` (listing, export); taking key material out needs "all" said."""
        if default_everyone and not (logins or group is not None or unaffiliated):
            everyone = True
        return cls(logins=tuple(logins) if logins else None, group=group,
                   unaffiliated=unaffiliated, everyone=everyone, status=status)


def status_expression(now: dt.datetime) -> ColumnElement[str]:
    """SQL for a user's certificate status, correlated to ``User``."""
    any_cert = aliased(Certificate)
    valid = exists().where(any_cert.user_id == User.id,
                           state_filter(State.VALID.value, now=now, certificate=any_cert))
    latest_id = (select(func.max(Certificate.id)).where(Certificate.user_id == User.id)
                 .correlate(User).scalar_subquery())
    latest = aliased(Certificate)
    latest_revoked = exists().where(
        latest.id == latest_id, state_filter(State.REVOKED.value, now=now, certificate=latest))
    latest_held = exists().where(
        latest.id == latest_id, state_filter(State.SUSPENDED.value, now=now, certificate=latest))
    return case(
        (valid, literal("valid")),
        (latest_id.is_(None), literal("unissued")),
        (latest_revoked, literal("revoked")),
        (latest_held, literal("suspended")),
        else_=literal("expired"),
    )


SEARCH_LIMIT = 200  # characters of a search: as long as the longest display name


def search_text(text: str | None) -> str | None:
    """A search as typed (login, display name or e-mail), trimmed and NFC-normalised as
    stored names are; None or blank: no search."""
    if text is None:
        return None
    cleaned = validate.display_text(text, field="q", limit=SEARCH_LIMIT)
    return cleaned or None


def search_filter(text: str) -> ColumnElement[bool]:
    """SQL: ``text`` inside the login, display name or e-mail, ignoring case, with ``%`` and
    ``_`` taken literally. (SQLite folds the case of ASCII letters only; PostgreSQL of
    every letter. Kana and kanji have no case.)"""
    return or_(User.login_key.contains(text.lower(), autoescape=True),
               User.display_name.icontains(text, autoescape=True),
               User.email.icontains(text, autoescape=True))


def select_users(owner: Tenant, selection: Selection, *, now: dt.datetime,
                 search: str | None = None) -> Select[User, str]:
    """The selected users, by login, with each one's certificate status; ``search``
    (``search_text``) keeps those it matches."""
    state = status_expression(now).label("certificate_status")
    query = select(User, state).where(User.tenant_id == owner.id)
    if not selection.include_retired and selection.logins is None:
        query = query.where(User.status == "active")
    if selection.logins is not None:
        query = query.where(User.login_key.in_([login.lower() for login in selection.logins]))
    elif selection.group is not None:
        query = query.where(exists().where(
            user_groups.c.user_id == User.id, user_groups.c.group_id == Group.id,
            Group.tenant_id == owner.id, Group.name_key == selection.group.casefold()))
    elif selection.unaffiliated:
        query = query.where(~exists().where(user_groups.c.user_id == User.id))
    if selection.status is not None:
        query = query.where(status_expression(now) == selection.status)
    if search is not None:
        query = query.where(search_filter(search))
    return query.order_by(User.login_key)


def user_status(session: Session, user: User, *, now: dt.datetime) -> str:
    found = session.scalar(select(status_expression(now)).where(User.id == user.id))
    return str(found)
