"""``transitions.lock`` reads the certificate and its holds afresh (mutation pass:
the holds re-read under the lock could be pointed at other rows, or the holds collection
left as first read, unnoticed). On PostgreSQL a change committed between a use case's first
read and its lock must be seen: a hold lifted meanwhile is not lifted twice (even while the
hold read before is still referenced), a hold placed meanwhile is not placed twice, a
revocation made meanwhile is not followed by a hold, nor made again (its first date stays),
and a suspension asked for while it is being made is refused as for a revoked certificate.

PostgreSQL only: on SQLite a write transaction holds the database's write lock from its
start (tests/integration/test_concurrent_writes.py), so nothing can commit meanwhile."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import audit
from ca.db import queries
from ca.db.models import Certificate, Hold, Tenant
from ca.errors import NotPermitted
from ca.holds import HoldCause
from ca.service import Service, transitions
from tests.support.auditing import actions
from tests.support.issuing import one_sakura_certificate

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
LATER = dt.timedelta(minutes=10)


@pytest.fixture
def serial(service: Service) -> str:
    return one_sakura_certificate(service)


def read_with_holds(session: object, serial: str) -> Certificate:
    owner = queries.tenant(session, "sakura")  # type: ignore[arg-type]
    cert = queries.certificate(session, owner, serial)  # type: ignore[arg-type]
    assert cert.holds is not None  # the holds as they are now, in this session
    return cert


def test_a_hold_lifted_meanwhile_is_not_lifted_again(service: Service, serial: str) -> None:
    service.revocation.suspend("sakura", serial)
    with service.database.transaction() as session:
        cert = read_with_holds(session, serial)
        seen = list(cert.holds)  # a caller still holding the hold it read first
        assert [h.lifted_at for h in seen] == [None]
        service.revocation.reinstate("sakura", serial)  # another transaction, committed

        lifted = transitions.lift_hold(session, cert, HoldCause.MANUAL, audit.CLI_ACTOR,
                                       tenant="sakura", login="tanaka",
                                       now=service.clock.now() + LATER)

        assert [h.lifted_at for h in seen] == [service.clock.now()]  # read afresh

    assert lifted is False
    assert actions(service).count("cert.reinstate") == 1
    with service.database.reading() as session:
        (lifted_at,) = session.scalars(select(Hold.lifted_at))
    assert lifted_at == service.clock.now()  # the first reinstatement's time stays


def test_a_hold_placed_meanwhile_is_not_placed_again(service: Service, serial: str) -> None:
    with service.database.transaction() as session:
        cert = read_with_holds(session, serial)
        assert cert.holds == []
        service.revocation.suspend("sakura", serial)  # another transaction, committed

        placed = transitions.place_hold(session, cert, HoldCause.MANUAL, audit.CLI_ACTOR,
                                        tenant="sakura", login="tanaka",
                                        now=service.clock.now() + LATER)

    assert placed is False
    assert actions(service).count("cert.suspend") == 1
    with service.database.reading() as session:
        assert list(session.scalars(select(Hold.placed_at))) == [service.clock.now()]


def test_no_hold_follows_a_revocation_made_meanwhile(service: Service, serial: str) -> None:
    with service.database.transaction() as session:
        cert = read_with_holds(session, serial)
        service.revocation.revoke("sakura", serial, reason="keyCompromise")

        placed = transitions.place_hold(session, cert, HoldCause.MANUAL, audit.CLI_ACTOR,
                                        tenant="sakura", login="tanaka",
                                        now=service.clock.now() + LATER)

    assert placed is False
    assert "cert.suspend" not in actions(service)
    with service.database.reading() as session:
        assert list(session.scalars(select(Hold))) == []


def test_a_revocation_made_meanwhile_is_not_made_again(service: Service, serial: str) -> None:
    first = service.clock.now()
    with service.database.transaction() as session:
        cert = read_with_holds(session, serial)
        service.revocation.revoke("sakura", serial, reason="superseded")

        again = transitions.revoke(session, cert, "superseded", audit.CLI_ACTOR,
                                   tenant="sakura", login="tanaka", now=first + LATER)
        upgraded = transitions.revoke(session, cert, "keyCompromise", audit.CLI_ACTOR,
                                      tenant="sakura", login="tanaka", now=first + LATER)

    assert (again, upgraded) == (False, True)
    assert actions(service).count("cert.revoke") == 2  # superseded, then keyCompromise
    with service.database.reading() as session:
        (row,) = session.execute(select(Certificate.revoked_at, Certificate.revocation_reason))
    assert row == (first, "keyCompromise")


def test_a_suspension_read_before_a_revocation_is_refused_as_final(
        service: Service, serial: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Revocation.suspend`` reads the certificate, and another transaction revokes it and
    commits before the suspension takes the lock: the suspension still says "final"."""
    real = queries.certificate
    meanwhile: list[str] = []

    def certificate(session: Session, owner: Tenant, wanted: str) -> Certificate:
        found = real(session, owner, wanted)
        if not meanwhile:
            meanwhile.append(wanted)
            service.revocation.revoke("sakura", wanted, reason="keyCompromise")
        return found

    monkeypatch.setattr(queries, "certificate", certificate)
    with pytest.raises(NotPermitted, match="is revoked: that is final"):
        service.revocation.suspend("sakura", serial)

    assert meanwhile == [serial]
    assert "cert.suspend" not in actions(service)
