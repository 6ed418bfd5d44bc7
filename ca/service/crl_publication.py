"""The CRLs as use cases: a tenant's current CRL (made when due), its chain with the root's,
their ages, and a publication on demand.

CRL Numbers come from the issue time in milliseconds, or the last number plus one if that is
larger: strictly increasing across restarts, several processes (the authority's row is
locked while a CRL is made) and a restored backup, without shared state outside the
database (``crls.next_number``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ca import renewal
from ca.clock import Clock
from ca.db import queries
from ca.db.models import Authority, Crl, Tenant
from ca.service import crls
from ca.service.plumbing import CrlPublisher, Database
from ca.x509 import crl as crl_builder


@dataclass(frozen=True, kw_only=True)
class CrlView:
    number: int
    this_update: dt.datetime  # backdated by the clock-skew allowance
    next_update: dt.datetime
    der: bytes
    made_at: dt.datetime  # when it was really made: HTTP's Last-Modified

    @property
    def pem(self) -> str:
        return crl_builder.pem(self.der)


@dataclass(frozen=True, kw_only=True)
class CrlChain:
    """A tenant's CRLs and the root's together: nginx and HAProxy need a CRL for every CA of
    the chain, in one file. ``own`` is the current issuing CA's; ``older`` those of its
    earlier generations still in service (newest first), whose certificates the gateway
    still accepts."""

    own: CrlView
    root: CrlView
    older: tuple[CrlView, ...] = ()

    @property
    def views(self) -> tuple[CrlView, ...]:
        return (self.own, *self.older, self.root)

    @property
    def pem(self) -> str:
        return "".join(view.pem for view in self.views)

    @property
    def first_to_expire(self) -> CrlView:
        return min(self.views, key=lambda view: view.next_update)

    @property
    def made_at(self) -> dt.datetime:
        """When the bundle last changed: when the newest of its CRLs was made."""
        return max(view.made_at for view in self.views)


class Crls:
    """The published CRLs of the root and the tenants' issuing CAs."""

    def __init__(self, *, database: Database, clock: Clock, publisher: CrlPublisher) -> None:
        self.database = database
        self.clock = clock
        self.publisher = publisher

    def current(self, tenant: str | None, generation: int | None = None) -> CrlView:
        """The newest CRL of a tenant's issuing CA (``None``: the root's; ``generation``:
        that one of the tenant's CAs, else the current one), made now if there is none yet
        or if the newest is past half its validity.

        A read first: a gateway's fetch takes the write lock (SQLite's one writer) only on the
        rare fetch that has to make a CRL, never behind a bulk job's write.
        """
        now = self.clock.now()
        with self.database.reading() as session:
            latest = crls.latest(session, self._crl_authority(session, tenant, generation))
            if latest is not None and not renewal.stale(latest, now=now):
                return _crl_view(latest)
        with self.database.transaction() as session:
            authority = self._crl_authority(session, tenant, generation)
            # locked before the second look: a replica making it at the same moment is
            # waited for and its CRL served, rather than a second one made after it
            crls.lock(session, authority)
            latest = crls.latest(session, authority)  # another writer may have made it
            if latest is None or renewal.stale(latest, now=now):
                latest = self.publisher.publish(session, authority, now=now)
            return _crl_view(latest)

    @staticmethod
    def _crl_authority(session: Session, tenant: str | None,
                       generation: int | None = None) -> Authority:
        if tenant is None:
            return (queries.require_root(session) if generation is None
                    else queries.root_of_generation(session, generation))
        owner = queries.tenant(session, tenant)
        return (queries.issuing(session, owner) if generation is None
                else queries.generation(session, owner, generation))

    def _members(self, tenant: str) -> tuple[list[int], list[int]]:
        """The generations of the tenant's issuing CAs in service (the current one first)
        and of the roots that certified them (the current issuing CA's first)."""
        with self.database.reading() as session:
            issuing = queries.generations(session, queries.tenant(session, tenant))
            roots: list[int] = []
            for row in issuing:
                root = session.get(Authority, row.issuer_id)
                assert root is not None
                if root.generation not in roots:
                    roots.append(root.generation)
            return [row.generation for row in issuing], roots

    def ages(self) -> list[tuple[str, float, float]]:
        """Per tenant: seconds since its newest CRL was made, and until its nextUpdate."""
        now = self.clock.now()
        with self.database.reading() as session:
            newest = (select(Crl.authority_id, func.max(Crl.number).label("number"))
                      .group_by(Crl.authority_id).subquery())
            rows = session.execute(
                select(Tenant.name, Crl.this_update, Crl.next_update)
                .join(Authority, Authority.tenant_id == Tenant.id)
                .join(Crl, Crl.authority_id == Authority.id)
                .join(newest, (newest.c.authority_id == Crl.authority_id)
                      & (newest.c.number == Crl.number))
                .where(Authority.kind == "issuing", Authority.retired_at.is_(None))).all()
        # a tenant with several generations in service: its oldest CRL, the one to watch
        worst: dict[str, tuple[float, float]] = {}
        for name, this, nxt in rows:
            age, left = (now - this).total_seconds(), (nxt - now).total_seconds()
            if name in worst:
                age, left = max(age, worst[name][0]), min(left, worst[name][1])
            worst[name] = (age, left)
        return [(name, age, left) for name, (age, left) in worst.items()]

    def chain(self, tenant: str, *, fresh: bool = False) -> CrlChain:
        """The tenant's CRLs (the current issuing CA's, then its older generations') and
        the root's (roots', after a root rollover); ``fresh`` makes the tenant's anew
        first."""
        issuing, roots = self._members(tenant)
        own = self.publish(tenant) if fresh else self.current(tenant)
        older = tuple(self.publish(tenant, number) if fresh else self.current(tenant, number)
                      for number in issuing[1:])
        # the CRL of every root in the tenant's bundle (ca_certificates): the current issuing
        # CA's root as ``root``, an older root's (a root rollover's) with the older ones
        older += tuple(self.current(None, number) for number in roots[1:])
        return CrlChain(own=own, older=older, root=self.current(None, roots[0]))

    def publish(self, tenant: str | None, generation: int | None = None) -> CrlView:
        """Make a new CRL now."""
        now = self.clock.now()
        with self.database.transaction() as session:
            return _crl_view(self.publisher.publish(
                session, self._crl_authority(session, tenant, generation), now=now))


def _crl_view(crl: Crl) -> CrlView:
    return CrlView(number=crl.number, this_update=crl.this_update,
                   next_update=crl.next_update, der=crl.der, made_at=crl.created_at)
