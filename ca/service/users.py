"""Users and groups of a tenant: create, update, retire, permission, list, CSV."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from ca import audit, csvio, validate
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db import queries
from ca.db.models import Group, Tenant, User
from ca.errors import CAError, Conflict, InvalidInput
from ca.holds import HoldCause
from ca.service import transitions, userrows
from ca.service.plumbing import Database
from ca.service.selection import Selection, search_text, select_users, user_status
from ca.service.tokens import revoke_user_tokens

KINDS = ("person", "service")
IN_BATCH = 500  # values in one SQL IN list
PAGE = 50  # users on a page of the admin's list
MAX_PAGE = 1000
MAX_OFFSET = 2**63 - 1  # the largest OFFSET the databases take (a signed 64-bit integer)
IMPORT_ATTEMPTS = 3  # one, then a fresh read after each of two conflicts with another import


@dataclass(frozen=True, kw_only=True)
class UserSpec:
    """Values for a new user, or the changes to an existing one (None: leave as it is)."""

    login: str
    email: str | None = None
    display_name: str | None = None
    groups: tuple[str, ...] | None = None
    secure_access: bool | None = None
    kind: str | None = None

    def __post_init__(self) -> None:
        validate.login(self.login)
        if self.email is not None:
            validate.email(self.email)
        if self.display_name is not None:
            object.__setattr__(self, "display_name",
                               validate.display_text(self.display_name, field="name"))
        if self.groups is not None:
            object.__setattr__(self, "groups", tuple(
                validate.group_name(g) for g in dict.fromkeys(self.groups)))
        if self.kind is not None and self.kind not in KINDS:
            raise InvalidInput(f"user kind {self.kind[:16]!r} is not person or service",
                               field="kind")


@dataclass(frozen=True, kw_only=True)
class UserView:
    tenant: str
    login: str
    email: str
    display_name: str
    kind: str
    status: str
    secure_access: bool
    groups: tuple[str, ...]
    certificate_status: str


@dataclass(kw_only=True)
class ImportReport:
    """What an import did, or would do in a dry run."""

    dry_run: bool
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # line, login, reason
    # each good row: its line, its login and what it does (or, in a dry run or an import
    # refused for a bad row, would do): created, updated or unchanged
    rows: list[tuple[int, str, str]] = field(default_factory=list)


class Users:
    """A tenant's users, their groups and their permission to hold a certificate."""

    def __init__(self, *, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    # --- one user --------------------------------------------------------------------------

    def add(self, tenant: str, login: str, *, email: str, display_name: str = "",
                 allow: bool = False, kind: str = "person", groups: tuple[str, ...] = (),
                 actor: Actor = audit.CLI_ACTOR) -> UserView:
        spec = UserSpec(login=login, email=email, display_name=display_name, groups=groups,
                        secure_access=allow, kind=kind)
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            if queries.user_or_none(session, owner, spec.login) is not None:
                raise Conflict(f"{owner.name}: user {spec.login!r} already exists",
                               field="login")
            user = self._create(session, owner, spec, actor, now=now)
            return self._view(session, owner, user, now=now)

    def update(self, tenant: str, spec: UserSpec, *,
                    actor: Actor = audit.CLI_ACTOR) -> UserView:
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            user = queries.user(session, owner, spec.login)
            self._update(session, owner, user, spec, actor, now=now)
            return self._view(session, owner, user, now=now)

    def retire(self, tenant: str, login: str, *,
                    actor: Actor = audit.CLI_ACTOR) -> UserView:
        """The user leaves: retired, every certificate revoked (affiliationChanged) and every
        API token revoked. Retiring again revokes what an older release left in force."""
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            user = queries.user(session, owner, login)
            queries.lock_users(session, [user.id])  # read afresh, locked
            if user.status != "retired":
                user.status = "retired"
                user.retired_at = now
                user.updated_at = now
                for cert in transitions.live_certificates(session, user, now=now):
                    transitions.revoke(session, cert, "affiliationChanged", actor,
                                       tenant=owner.name,
                                       login=user.login, now=now)
                audit.record(session, actor, Event(action="user.retire",
                                                   target=f"{owner.name}/{user.login}",
                                                   tenant_id=owner.id), now=now)
            revoke_user_tokens(session, user, actor, cause="user.retire", now=now)
            return self._view(session, owner, user, now=now)

    def set_permission(self, tenant: str, logins: tuple[str, ...], *, allow: bool,
                       actor: Actor = audit.CLI_ACTOR) -> list[UserView]:
        """Grant or withdraw secure access for several users at once (all or none)."""
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            users = [queries.user(session, owner, login) for login in logins]
            queries.lock_users(session, [user.id for user in users])  # read afresh, locked
            for user in users:
                self._permission(session, owner, user, allow, actor, now=now)
            return [self._view(session, owner, u, now=now) for u in users]

    def get(self, tenant: str, login: str) -> UserView:
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            return self._view(session, owner, queries.user(session, owner, login),
                              now=self.clock.now())

    def list_users(self, tenant: str, selection: Selection | None = None) -> list[UserView]:
        """The seeds' admin screen: users by group / unaffiliated / all, and certificate
        status (unissued, valid, expired, suspended, revoked)."""
        now = self.clock.now()
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            query = select_users(owner, selection or Selection(everyone=True), now=now)
            rows = session.execute(query.options(selectinload(User.groups))).all()
            return [_view(owner, user, state) for user, state in rows]

    def page(self, tenant: str, selection: Selection | None = None, *,
             search: str | None = None, offset: int = 0,
             limit: int = PAGE) -> tuple[list[UserView], int]:
        """One page of ``list_users`` (by login, ``limit`` from ``offset``), optionally only
        the users whose login, display name or e-mail holds ``search``, and how many there
        are in all: a count and a page (and the page's groups), whatever the tenant's size."""
        if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
            raise InvalidInput(f"a page is 1..{MAX_PAGE} users from offset 0..{MAX_OFFSET}",
                               field="page")
        wanted = search_text(search)
        now = self.clock.now()
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            query = select_users(owner, selection or Selection(everyone=True), now=now,
                                 search=wanted)
            total = session.scalar(select(func.count()).select_from(
                query.with_only_columns(User.id).order_by(None).subquery()))
            rows = session.execute(query.options(selectinload(User.groups))
                                   .limit(limit).offset(offset)).all()
            return [_view(owner, user, state) for user, state in rows], int(total or 0)

    # --- groups ----------------------------------------------------------------------------

    def list_groups(self, tenant: str) -> list[tuple[str, int]]:
        """Each group's name and member count."""
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            groups = session.scalars(select(Group).where(Group.tenant_id == owner.id)
                                     .options(selectinload(Group.users))
                                     .order_by(Group.name_key)).all()
            return [(g.name, len(g.users)) for g in groups]

    # --- CSV -------------------------------------------------------------------------------

    def import_users(self, tenant: str, data: bytes, *, dry_run: bool = False,
                     best_effort: bool = False,
                     actor: Actor = audit.CLI_ACTOR) -> ImportReport:
        """Create or update users from CSV. Every bad row is reported with its line; nothing
        is written if any row is bad, unless ``best_effort`` (then the good rows land).

        Every check that needs no database (the CSV, each value, repeated logins) runs
        before any transaction; the write then reads the tenant's users and groups in a few
        queries, decides each row and writes them together, holding the write lock briefly.
        A dry run decides in a read and writes nothing."""
        checked = ImportReport(dry_run=dry_run)
        specs = _checked_rows(csvio.read(data), checked)
        for _attempt in range(IMPORT_ATTEMPTS - 1):
            try:
                return self._import(tenant, specs, checked, dry_run=dry_run,
                                    best_effort=best_effort, actor=actor)
            except Conflict:
                # another import created one of these users or groups since this one read
                # (the unique constraint decides): decide again from a fresh read, as if
                # this import had come after it; the rows' own checks still hold
                pass
        return self._import(tenant, specs, checked, dry_run=dry_run, best_effort=best_effort,
                            actor=actor)

    def _import(self, tenant: str, specs: list[tuple[int, UserSpec]], checked: ImportReport,
                *, dry_run: bool, best_effort: bool, actor: Actor) -> ImportReport:
        """One attempt at an import's transaction: read, decide each row, write."""
        report = ImportReport(dry_run=dry_run, errors=list(checked.errors))
        now = self.clock.now()
        with self.database.reading() if dry_run else self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            users = _users_by_key(session, owner, [spec.login.lower() for _, spec in specs])
            decided: list[tuple[str, UserSpec, User | None]] = []
            for line, spec in specs:
                user = users.get(spec.login.lower())
                try:
                    outcome = _outcome(user, spec)
                except CAError as exc:
                    report.errors.append((line, spec.login, exc.message))
                else:
                    decided.append((outcome, spec, user))
                    report.rows.append((line, spec.login, outcome))
            report.errors.sort(key=lambda error: error[0])
            if dry_run or (report.errors and not best_effort):
                if not dry_run:  # nothing is written: say so, rows and all
                    return report
                for outcome, spec, _ in decided:
                    getattr(report, outcome).append(spec.login)
                return report
            # the rows this import changes, locked in id order before any certificate's
            changed = [(spec, user) for outcome, spec, user in decided
                       if outcome == "updated" and user is not None]
            queries.lock_users(session, [user.id for _, user in changed])
            created = [spec for _, spec, user in decided if user is None]
            known = userrows.groups_by_key(
                session, owner, (name for _, spec, _ in decided for name in spec.groups or ()),
                now=now)
            userrows.insert_users(session, owner, [_new_row(spec) for spec in created], [
                [known[key] for key in dict.fromkeys(g.casefold() for g in spec.groups or ())]
                for spec in created], now=now)
            for spec, user in changed:  # one event each (ca.audit), as a single update
                self._update(session, owner, user, spec, actor, now=now, known=known)
            for outcome, spec, _ in decided:
                getattr(report, outcome).append(spec.login)
            # the users created are named in the batch's one event, not one event each
            audit.record(session, actor, Event(
                action="user.import", target=owner.name, tenant_id=owner.id,
                details={"created": len(report.created), "updated": len(report.updated),
                         "errors": len(report.errors),
                         "created_logins": [spec.login for spec in created],
                         "allowed": [spec.login for spec in created if spec.secure_access]}),
                now=now)
        return report

    def export_users(self, tenant: str, selection: Selection | None = None) -> Iterator[str]:
        """The users as CSV in the import's columns (plus status), safe for spreadsheets.
        They are read now, so that an unknown tenant is an error before the first line (a
        streamed HTTP answer cannot turn into one once it has begun)."""
        views = self.list_users(tenant, selection)
        return csvio.write([
            (*csvio.COLUMNS, "status", "certificate_status"),
            *((v.login, v.email, v.display_name, csvio.GROUP_SEPARATOR.join(v.groups),
               "yes" if v.secure_access else "no", v.kind, v.status, v.certificate_status)
              for v in views)])

    # --- the steps -------------------------------------------------------------------------

    def _create(self, session: Session, owner: Tenant, spec: UserSpec, actor: Actor, *,
                now: dt.datetime) -> User:
        """A new user (the caller knows there is none by that login)."""
        assert spec.email is not None
        user = User(tenant_id=owner.id, login=spec.login, login_key=spec.login.lower(),
                    email=spec.email, display_name=spec.display_name or "",
                    kind=spec.kind or "person", status="active",
                    secure_access=bool(spec.secure_access), created_at=now, updated_at=now,
                    groups=self._groups(session, owner, spec.groups or (), now=now))
        session.add(user)
        audit.record(session, actor, Event(
            action="user.create", target=f"{owner.name}/{spec.login}", tenant_id=owner.id,
            details={"secure_access": user.secure_access}), now=now)
        return user

    def _update(self, session: Session, owner: Tenant, user: User, spec: UserSpec,
                actor: Actor, *, now: dt.datetime,
                known: dict[str, Group] | None = None) -> bool:
        changes: dict[str, object] = {}
        for name, value in (("email", spec.email), ("display_name", spec.display_name),
                            ("kind", spec.kind)):
            if value is not None and getattr(user, name) != value:
                setattr(user, name, value)
                changes[name] = value
        if spec.groups is not None and _group_keys(spec.groups) != {
                g.name_key for g in user.groups}:
            wanted = self._groups(session, owner, spec.groups, now=now, known=known)
            user.groups = wanted
            changes["groups"] = [g.name for g in wanted]
        if spec.secure_access is not None and spec.secure_access != user.secure_access:
            self._permission(session, owner, user, spec.secure_access, actor, now=now)
            changes["secure_access"] = spec.secure_access
        if changes:
            user.updated_at = now
            audit.record(session, actor, Event(
                action="user.update", target=f"{owner.name}/{user.login}", tenant_id=owner.id,
                details={"changed": sorted(changes)}), now=now)
        return bool(changes)

    def _permission(self, session: Session, owner: Tenant, user: User, allow: bool,
                    actor: Actor, *, now: dt.datetime) -> None:
        """Withdrawing suspends the user's certificates (hold cause ``permission``); granting
        lifts those holds only, never a manual or subscription hold."""
        if user.secure_access == allow:
            return
        user.secure_access = allow
        user.updated_at = now
        for cert in transitions.live_certificates(session, user, now=now):
            change = transitions.lift_hold if allow else transitions.place_hold
            change(session, cert, HoldCause.PERMISSION, actor, tenant=owner.name,
                   login=user.login, now=now)
        audit.record(session, actor, Event(
            action="user.allow" if allow else "user.deny", target=f"{owner.name}/{user.login}",
            tenant_id=owner.id), now=now)

    def _groups(self, session: Session, owner: Tenant, names: tuple[str, ...], *,
                now: dt.datetime, known: dict[str, Group] | None = None) -> list[Group]:
        """The named groups, created on first mention; ``known``: the tenant's groups by
        key, read once (an import, which created every group it names), else each is looked
        up."""
        found: dict[str, Group] = {}
        for name in names:
            key = name.casefold()
            group = known.get(key) if known is not None else session.scalar(
                select(Group).where(Group.tenant_id == owner.id, Group.name_key == key))
            if group is None:
                group = Group(tenant_id=owner.id, name=name, name_key=key, created_at=now)
                session.add(group)
            found.setdefault(key, group)
        return list(found.values())

    def _view(self, session: Session, owner: Tenant, user: User, *,
              now: dt.datetime) -> UserView:
        session.flush()
        return _view(owner, user, user_status(session, user, now=now))


def _view(owner: Tenant, user: User, certificate_status: str) -> UserView:
    return UserView(tenant=owner.name, login=user.login, email=user.email,
                    display_name=user.display_name, kind=user.kind, status=user.status,
                    secure_access=user.secure_access,
                    groups=tuple(sorted(g.name for g in user.groups)),
                    certificate_status=certificate_status)


def _checked_rows(rows: list[csvio.Row], report: ImportReport) -> list[tuple[int, UserSpec]]:
    """Each good row's line and values; each bad row (its cells, a login repeated) goes to
    ``report.errors``. No database needed."""
    seen: dict[str, int] = {}
    specs = []
    for row in rows:
        login = row.cells.get("login", "").strip()
        try:
            first = seen.setdefault(login.lower(), row.line)
            if row.problem is not None:
                raise InvalidInput(row.problem)
            if first != row.line:
                raise InvalidInput(f"login {login!r} is already on line {first}")
            specs.append((row.line, _spec_from_row(row)))
        except CAError as exc:
            report.errors.append((row.line, login[:64], exc.message))
    return specs


def _users_by_key(session: Session, owner: Tenant, keys: list[str]) -> dict[str, User]:
    """The tenant's users of these login keys, with their groups, a few queries in all."""
    found: dict[str, User] = {}
    for start in range(0, len(keys), IN_BATCH):
        found.update((u.login_key, u) for u in session.scalars(
            select(User).where(User.tenant_id == owner.id,
                               User.login_key.in_(keys[start:start + IN_BATCH]))
            .options(selectinload(User.groups))))
    return found


def _new_row(spec: UserSpec) -> dict[str, object]:
    """A new user's values from its row (``_outcome`` checked that it has an e-mail)."""
    return {"login": spec.login, "email": spec.email, "display_name": spec.display_name or "",
            "kind": spec.kind or "person", "secure_access": bool(spec.secure_access)}


def _outcome(user: User | None, spec: UserSpec) -> str:
    """What a row does to its user: created, updated or unchanged (as ``_update`` decides)."""
    if user is None:
        if not spec.email:
            raise InvalidInput("a new user needs an e-mail", field="email")
        return "created"
    changed = any(value is not None and getattr(user, name) != value for name, value in (
        ("email", spec.email), ("display_name", spec.display_name), ("kind", spec.kind),
        ("secure_access", spec.secure_access)))
    if spec.groups is not None and _group_keys(spec.groups) != {g.name_key
                                                                 for g in user.groups}:
        changed = True
    return "updated" if changed else "unchanged"


def _group_keys(names: tuple[str, ...]) -> set[str]:
    return {name.casefold() for name in names}


def _spec_from_row(row: csvio.Row) -> UserSpec:
    cells = row.cells

    def cell(name: str) -> str | None:
        return cells[name].strip() if name in cells else None

    email = cell("email")
    kind = cell("kind")
    return UserSpec(
        login=cell("login") or "",
        email=email or None,
        display_name=cells.get("name"),
        groups=csvio.split_groups(cells["groups"]) if "groups" in cells else None,
        secure_access=csvio.parse_bool(cells["secure_access"], line=row.line)
        if "secure_access" in cells else None,
        kind=kind.lower() if kind else None)
