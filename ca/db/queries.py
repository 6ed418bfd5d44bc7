"""Queries shared by the use cases. Each takes a session and never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from cryptography import x509
from sqlalchemy import Row, ScalarSelect, bindparam, func, select
from sqlalchemy.orm import Session

from ca import renewal, serials, states, validate
from ca.db.models import Authority, Certificate, KeyMaterial, Tenant, User
from ca.errors import NotFound, NotInitialized
from ca.key_kept import key_kept_filter


def root(session: Session) -> Authority | None:
    """The root in service that signs: the newest generation not retired (after a root
    rollover the older root stays in service for the issuing CAs it certified)."""
    return session.scalar(select(Authority).where(
        Authority.kind == "root", Authority.retired_at.is_(None))
        .order_by(Authority.generation.desc(), Authority.id.desc()).limit(1))


def root_of_generation(session: Session, number: int) -> Authority:
    found = session.scalar(select(Authority).where(
        Authority.kind == "root", Authority.generation == number,
        Authority.retired_at.is_(None)))
    if found is None:
        raise NotFound(f"no root CA of generation {number}", field="generation")
    return found


def require_root(session: Session) -> Authority:
    found = root(session)
    if found is None:
        raise NotInitialized("Tegata is not initialised")
    return found


def tenant(session: Session, name: str) -> Tenant:
    # a name no tenant could have been given names none, and never reaches the database
    found = session.scalar(select(Tenant).where(Tenant.name == name)) \
        if validate.TENANT.fullmatch(name) else None
    if found is None:
        raise NotFound(f"no tenant {name[:64]!r}", field="tenant")
    return found


def _issuing_id(tenant_id: Any) -> ScalarSelect[int]:
    """SQL: the id of the tenant's issuing CA, the current one: its newest generation not
    retired (the older ones still sign CRLs and OCSP answers for what they issued)."""
    return select(Authority.id).where(
        Authority.tenant_id == tenant_id, Authority.kind == "issuing",
        Authority.retired_at.is_(None)).order_by(Authority.generation.desc(),
                                                 Authority.id.desc()).limit(1) \
        .correlate_except(Authority).scalar_subquery()  # its own authorities, not the outer's


# an issuance's statements, built once (building one costs more than SQLite running it)
_ISSUING = select(Authority).where(Authority.id == _issuing_id(bindparam("tenant_id")))
_TENANT_AND_ISSUING = select(Tenant, Authority).outerjoin(
    Authority, Authority.id == _issuing_id(Tenant.id)).where(Tenant.name == bindparam("name"))
_FRESH_TENANT = select(Tenant.id, Tenant.name, Tenant.subscription_ends_at,
                       Tenant.subscription_ends_on, _issuing_id(Tenant.id).label("issuing_id")
                       ).where(Tenant.id == bindparam("tenant_id")).with_for_update(
                           read=True, of=Tenant)
_USER = select(User).where(User.tenant_id == bindparam("tenant_id"),
                           User.login_key == bindparam("login_key"))


def issuing(session: Session, owner: Tenant) -> Authority:
    found = session.scalar(_ISSUING, {"tenant_id": owner.id})
    if found is None:
        raise NotFound(f"tenant {owner.name!r} has no issuing CA")
    return found


def generations(session: Session, owner: Tenant) -> list[Authority]:
    """Every issuing CA of the tenant not retired, the current one (newest) first: the CAs
    whose certificates gateways must still accept and whose CRLs they must still have."""
    return list(session.scalars(select(Authority).where(
        Authority.tenant_id == owner.id, Authority.kind == "issuing",
        Authority.retired_at.is_(None)).order_by(Authority.generation.desc(),
                                                 Authority.id.desc())))


def generation(session: Session, owner: Tenant, number: int) -> Authority:
    """The tenant's issuing CA of that generation, not retired."""
    found = session.scalar(select(Authority).where(
        Authority.tenant_id == owner.id, Authority.kind == "issuing",
        Authority.generation == number, Authority.retired_at.is_(None)))
    if found is None:
        raise NotFound(f"tenant {owner.name!r} has no issuing CA of generation {number}",
                       field="generation")
    return found


def tenant_and_issuing(session: Session, name: str) -> tuple[Tenant, Authority]:
    """A tenant by name with its issuing CA, in one statement (an issuance's read)."""
    found = session.execute(_TENANT_AND_ISSUING, {"name": name}).first() \
        if validate.TENANT.fullmatch(name) else None
    if found is None:
        raise NotFound(f"no tenant {name[:64]!r}", field="tenant")
    owner, authority = found
    if authority is None:
        raise NotFound(f"tenant {owner.name!r} has no issuing CA")
    return owner, authority


def fresh_tenant(session: Session, tenant_id: int) -> Row[int, str, dt.datetime | None,
                                                        dt.date | None, int | None]:
    """What an issuance's write checks again of a tenant, read afresh in one statement as
    columns (id, name, subscription_ends_at, subscription_ends_on) with ``issuing_id``, the
    id of its issuing CA now.

    The row is locked (PostgreSQL ``FOR SHARE``; SQLite's writer holds the whole database)
    until the write ends, first of all its locks (tenant, users, certificates, audit): a
    change of the subscription (``lock_tenant``) waits for the new certificates and then
    suspends them too, or is seen here and refuses them. Issuances of one tenant still
    write side by side."""
    return session.execute(_FRESH_TENANT, {"tenant_id": tenant_id}).one()


def lock_tenant(session: Session, owner: Tenant) -> None:
    """Lock the tenant's row (PostgreSQL ``FOR NO KEY UPDATE``: a certificate or user
    inserted meanwhile still only needs its key) and read it afresh, before any other lock
    of the transaction: a subscription change and an issuance's write (``fresh_tenant``)
    then happen one after the other."""
    session.execute(select(Tenant).where(Tenant.id == owner.id).with_for_update(
        key_share=True).execution_options(populate_existing=True))


def user_or_none(session: Session, owner: Tenant, login: str) -> User | None:
    # a login no user could have been given names none, and never reaches the database,
    # which may refuse it outright (PostgreSQL text holds no NUL)
    if not validate.LOGIN.fullmatch(login):
        return None
    return session.scalar(_USER, {"tenant_id": owner.id, "login_key": login.lower()})


def user(session: Session, owner: Tenant, login: str) -> User:
    found = user_or_none(session, owner, login)
    if found is None:
        raise NotFound(f"{owner.name}: no user {login[:64]!r}", field="login")
    return found


def certificate_or_none(session: Session, owner: Tenant, serial: str) -> Certificate | None:
    """A tenant's certificate by its canonical serial."""
    return session.scalar(select(Certificate).where(Certificate.tenant_id == owner.id,
                                                    Certificate.serial == serial))


def certificate(session: Session, owner: Tenant, serial: str) -> Certificate:
    found = certificate_or_none(session, owner, serial)
    if found is None:
        raise NotFound(f"no certificate with serial {serial}", field="serial")
    return found


def chain(session: Session, authority_id: int) -> tuple[Authority, Authority]:
    """An issuing CA and the root that signed it: the chain a bundle carries."""
    issuing = session.get(Authority, authority_id)
    assert issuing is not None and issuing.issuer_id is not None
    root = session.get(Authority, issuing.issuer_id)
    assert root is not None
    return issuing, root


def unused_serial(session: Session, authority: Authority) -> int:
    """A random serial (RFC 5280, 4.1.2.2: positive, at most 20 octets, 64+ bits of entropy)
    not yet used by this issuer."""
    while True:
        serial = x509.random_serial_number()
        taken = session.scalar(select(func.count()).select_from(Certificate).where(
            Certificate.authority_id == authority.id,
            Certificate.serial == serials.to_text(serial)))
        if not taken:
            return serial


LOCK_BATCH = 1000  # ids per SELECT ... FOR UPDATE


def lock_users(session: Session, ids: list[int]) -> dict[int, User]:
    """Lock these users' rows until the transaction ends (PostgreSQL; SQLite's writer holds
    the whole database) and read them afresh, all in id order: the order every transaction
    takes user rows in, before any certificate row, so two never wait for each other.

    A change of a user's standing (deny, retire) and an issuance to that user then happen
    one after the other: the issuance sees the denial, or the denial sees the new
    certificate; never neither."""
    found: dict[int, User] = {}
    for batch in _id_batches(ids):
        found.update((user.id, user) for user in session.scalars(
            select(User).where(User.id.in_(batch)).order_by(User.id).with_for_update()
            .execution_options(populate_existing=True)))
    return found


def lock_standing(session: Session, ids: list[int]) -> dict[int, Row[int, str, str, bool]]:
    """``lock_users``, reading only what decides whether a user may have a certificate (id,
    login, status, secure_access) as rows, not ORM objects: an issuance's write."""
    found: dict[int, Row[int, str, str, bool]] = {}
    for batch in _id_batches(ids):
        found.update((row.id, row) for row in session.execute(_STANDING, {"ids": batch}))
    return found


_STANDING = select(User.id, User.login, User.status, User.secure_access).where(
    User.id.in_(bindparam("ids", expanding=True))).order_by(User.id).with_for_update()


def _id_batches(ids: list[int]) -> Iterator[list[int]]:
    """The ids in the order rows are locked (ascending), ``LOCK_BATCH`` at a time."""
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), LOCK_BATCH):
        yield ordered[start:start + LOCK_BATCH]


# What a lifecycle pass looks at, each by an index (migration 0012): the pass's work grows
# with what came due, not with the number of tenants or certificates.

def tenants_due(session: Session, *, now: dt.datetime) -> list[int]:
    """Tenants whose subscription reached an instant (its end, its grace end) by ``now``."""
    return list(session.scalars(select(Tenant.id).where(Tenant.lifecycle_due_at <= now)
                                .order_by(Tenant.lifecycle_due_at, Tenant.id)))


def tenants_with_expired_keys(session: Session, *, since: dt.datetime | None,
                              now: dt.datetime) -> set[int]:
    """Tenants with a certificate that expired in [``since``, ``now``) (every one before
    ``now`` when ``since`` is None) whose private key is still kept."""
    return set(session.scalars(select(Certificate.tenant_id).distinct().join(
        KeyMaterial, KeyMaterial.certificate_id == Certificate.id).where(
        *_expired_with_key(since, now))))


def expired_keys(session: Session, tenant_id: int, *, since: dt.datetime | None,
                 now: dt.datetime) -> list[Certificate]:
    """The tenant's certificates of ``tenants_with_expired_keys``."""
    return list(session.scalars(select(Certificate).join(
        KeyMaterial, KeyMaterial.certificate_id == Certificate.id).where(
        Certificate.tenant_id == tenant_id, *_expired_with_key(since, now))
        .order_by(Certificate.id)))


def _expired_with_key(since: dt.datetime | None, now: dt.datetime) -> list[Any]:
    found = [states.expired_filter(now=now), key_kept_filter()]
    return found if since is None else [*found, Certificate.not_after >= since]


def crls_due(session: Session, *, now: dt.datetime) -> list[int]:
    """The active CAs whose CRL is due for renewal (or that have none yet), earliest first."""
    return list(session.scalars(
        select(Authority.id).where(Authority.kind.in_(("root", "issuing")),
                                   Authority.retired_at.is_(None),
                                   renewal.due_filter(now=now))
        .order_by(Authority.crl_renew_at.is_not(None), Authority.crl_renew_at, Authority.id)))
