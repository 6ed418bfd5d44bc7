"""Each rule that runs both in Python and inside SQL gives one answer: its two forms, side by
side in the rule's module, are evaluated on the same rows of a real database (SQLite and
PostgreSQL) at named moments, the boundaries among them (revoked at ``now``, ``not_after ==
now``, a hold lifted at ``now``, a CRL due at ``now``), and must agree on every row at every
moment. Each test also pins the rule's answer at its boundaries, so that the two forms
cannot drift together either."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from ca import bundle_profile, holds, renewal
from ca.db import queries
from ca.db.models import Authority, Certificate, Hold, KeyMaterial, Tenant
from ca.holds import HoldCause
from ca.key_kept import key_kept, key_kept_filter
from ca.service import Service
from ca.states import (
    State,
    expired_filter,
    has_expired,
    is_live,
    live_filter,
    state_filter,
    state_of,
)
from ca.x509.pkcs12 import Profile
from tests.moments import MOMENTS

NOW = MOMENTS.start
TICK = dt.timedelta(microseconds=1)  # the finest step both databases keep
HOUR = dt.timedelta(hours=1)
# the moments every row is judged at: the boundaries the rows are placed on, and either side
AT = {"an-hour-before": NOW - HOUR, "a-tick-before": NOW - TICK, "now": NOW,
      "a-tick-after": NOW + TICK, "an-hour-after": NOW + HOUR}
TENANT = "default"
OTHER = "osaka"  # a second tenant, whose default profile is the other one


@dataclass(frozen=True, kw_only=True)
class Row:
    """A certificate's record as offsets from NOW: its revocation, its expiry and its holds
    (cause, placed, lifted or None)."""

    revoked: dt.timedelta | None = None
    not_after: dt.timedelta = dt.timedelta(days=365)
    holds: tuple[tuple[HoldCause, dt.timedelta, dt.timedelta | None], ...] = ()
    profile: str | None = None
    tenant: str = TENANT


MANUAL, SUBSCRIPTION, PERMISSION = HoldCause.MANUAL, HoldCause.SUBSCRIPTION, HoldCause.PERMISSION
ROWS = {
    "valid": Row(),
    "not-after-now": Row(not_after=dt.timedelta(0)),
    "not-after-a-tick-ago": Row(not_after=-TICK),
    "not-after-a-tick-ahead": Row(not_after=TICK),
    "revoked-an-hour-ago": Row(revoked=-HOUR),
    "revoked-now": Row(revoked=dt.timedelta(0)),
    # a revocation dated after the moment asked (a clock stepped back): still revoked, as the
    # CRL and OCSP publish it from the moment it is recorded
    "revoked-a-tick-ahead": Row(revoked=TICK),
    "revoked-and-expired": Row(revoked=-HOUR, not_after=-TICK),
    "revoked-and-held": Row(revoked=-TICK, holds=((MANUAL, -HOUR, None),)),
    "held": Row(holds=((MANUAL, -HOUR, None),)),
    "held-from-now": Row(holds=((SUBSCRIPTION, dt.timedelta(0), None),)),
    "hold-lifted-now": Row(holds=((MANUAL, -HOUR, dt.timedelta(0)),)),
    "hold-lifted-a-tick-ahead": Row(holds=((PERMISSION, -HOUR, TICK),)),
    "one-of-two-holds-lifted": Row(holds=((MANUAL, -HOUR, -TICK), (PERMISSION, -TICK, None))),
    "both-holds-lifted": Row(holds=((MANUAL, -HOUR, -TICK), (PERMISSION, -HOUR, dt.timedelta(0)))),
    "held-and-expired": Row(not_after=-TICK, holds=((SUBSCRIPTION, -HOUR, None),)),
    "held-twice": Row(holds=((SUBSCRIPTION, -HOUR, None), (PERMISSION, -TICK, None))),
    "issued-modern": Row(profile="modern"),
    "issued-compat": Row(profile="compat"),
    "issued-modern-elsewhere": Row(profile="modern", tenant=OTHER),
    "issued-compat-elsewhere": Row(profile="compat", tenant=OTHER),
    "issued-without-a-choice-elsewhere": Row(tenant=OTHER),
}
# what the rule says at NOW, written out: the two forms agreeing is not enough
STATE_AT_NOW = {
    "valid": State.VALID, "not-after-now": State.VALID, "not-after-a-tick-ago": State.EXPIRED,
    "not-after-a-tick-ahead": State.VALID, "revoked-an-hour-ago": State.REVOKED,
    "revoked-now": State.REVOKED, "revoked-a-tick-ahead": State.REVOKED,
    "revoked-and-expired": State.REVOKED, "revoked-and-held": State.REVOKED,
    "held": State.SUSPENDED, "held-from-now": State.SUSPENDED,
    "hold-lifted-now": State.VALID, "hold-lifted-a-tick-ahead": State.VALID,
    "one-of-two-holds-lifted": State.SUSPENDED, "both-holds-lifted": State.VALID,
    "held-and-expired": State.SUSPENDED, "held-twice": State.SUSPENDED,
    "issued-modern": State.VALID, "issued-compat": State.VALID,
    "issued-modern-elsewhere": State.VALID, "issued-compat-elsewhere": State.VALID,
    "issued-without-a-choice-elsewhere": State.VALID,
}


def plant(service: Service) -> dict[int, str]:
    """The rows, written as they are, under one user per tenant; {certificate id: name}."""
    service.hierarchy.create_tenant(OTHER, display_name="大阪支社", ca_key_type="ec-p256")
    with service.database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.name == OTHER).values(p12_profile="modern"))
    for tenant in (TENANT, OTHER):
        service.users.add(tenant, "sato", email="sato@example.jp", display_name="佐藤 花子",
                          allow=True)
    names = {}
    with service.database.transaction() as session:
        for name, row in ROWS.items():
            owner = queries.tenant(session, row.tenant)
            user = queries.user(session, owner, "sato")
            serial = hashlib.sha256(name.encode()).hexdigest()[:30].upper().lstrip("0")
            cert = Certificate(
                tenant_id=owner.id, authority_id=queries.issuing(session, owner).id,
                user_id=user.id, serial=serial,
                fingerprint_sha256=hashlib.sha256(serial.encode()).hexdigest().upper(),
                subject=f"CN=sato,O={owner.display_name}", der=b"\x30\x00",
                key_type="ec-p256", source="server", p12_profile=row.profile,
                not_before=NOW - dt.timedelta(days=30), not_after=NOW + row.not_after,
                expiry_date=(NOW + row.not_after).date(), expiry_zone="Asia/Tokyo",
                created_at=NOW - dt.timedelta(days=30),
                revoked_at=None if row.revoked is None else NOW + row.revoked,
                revocation_reason=None if row.revoked is None else "keyCompromise")
            session.add(cert)
            session.flush()
            for cause, placed, lifted in row.holds:
                session.add(Hold(certificate_id=cert.id, cause=cause.value, placed_at=NOW + placed,
                                 lifted_at=None if lifted is None else NOW + lifted))
            names[cert.id] = name
    return names


def loaded(service: Service) -> list[Certificate]:
    with service.database.reading() as session:
        return list(session.scalars(select(Certificate).options(
            selectinload(Certificate.holds)).order_by(Certificate.id)))


@pytest.mark.parametrize("moment", list(AT), ids=list(AT))
def test_a_certificates_state_is_the_same_in_python_and_in_sql(service: Service,
                                                               moment: str) -> None:
    names = plant(service)
    now = AT[moment]
    in_python = {names[c.id]: state_of(c, now=now) for c in loaded(service)}
    in_sql: dict[str, list[State]] = {}
    with service.database.reading() as session:
        for state in State:
            for cid in session.scalars(select(Certificate.id).where(
                    state_filter(state.value, now=now))):
                in_sql.setdefault(names[cid], []).append(state)
    # every row in exactly one state in SQL too, and the same one
    assert in_sql == {name: [state] for name, state in in_python.items()}
    if moment == "now":
        assert in_python == STATE_AT_NOW


@pytest.mark.parametrize("moment", list(AT), ids=list(AT))
def test_live_is_the_same_in_python_and_in_sql(service: Service, moment: str) -> None:
    names = plant(service)
    now = AT[moment]
    in_python = {names[c.id] for c in loaded(service) if is_live(c, now=now)}
    with service.database.reading() as session:
        in_sql = {names[cid] for cid in session.scalars(
            select(Certificate.id).where(live_filter(now=now)))}
    assert in_sql == in_python
    if moment == "now":  # live: valid or on hold, never revoked, never expired
        assert in_python == {name for name, state in STATE_AT_NOW.items()
                             if state is State.VALID} | {"held", "held-from-now",
                                                         "one-of-two-holds-lifted",
                                                         "held-twice"}


@pytest.mark.parametrize("moment", list(AT), ids=list(AT))
def test_past_expiry_is_the_same_in_python_and_in_sql(service: Service, moment: str) -> None:
    names = plant(service)
    now = AT[moment]
    in_python = {names[c.id] for c in loaded(service) if has_expired(c, now=now)}
    with service.database.reading() as session:
        in_sql = {names[cid] for cid in session.scalars(
            select(Certificate.id).where(expired_filter(now=now)))}
    assert in_sql == in_python
    if moment == "now":  # valid through not_after itself (RFC 5280, 4.1.2.5)
        assert in_python == {"not-after-a-tick-ago", "revoked-and-expired", "held-and-expired"}


@pytest.mark.parametrize("cause", [None, *HoldCause], ids=["any", *HoldCause])
def test_an_unlifted_hold_is_the_same_in_python_and_in_sql(service: Service,
                                                           cause: HoldCause | None) -> None:
    names = plant(service)
    certs = loaded(service)
    in_python = {names[c.id] for c in certs if holds.on_hold(c, cause)}
    since_python = {names[c.id]: holds.held_since(c) for c in certs}
    with service.database.reading() as session:
        in_sql = {names[cid] for cid in session.scalars(
            select(Certificate.id).where(holds.hold_filter(cause)))}
        since_sql = {names[cid]: since for cid, since in session.execute(
            select(Certificate.id, holds.held_since_column()))}
        unlifted_sql = set(session.scalars(select(Hold.id).where(holds.unlifted_filter(cause))))
        unlifted_python = {h.id for c in certs for h in c.holds if holds.unlifted(h, cause)}
    assert in_sql == in_python
    assert since_sql == since_python
    assert unlifted_sql == unlifted_python
    held = {"revoked-and-held", "held", "held-from-now", "one-of-two-holds-lifted",
            "held-and-expired", "held-twice"}  # a hold lifted at any instant holds no more
    by_cause = {None: held, MANUAL: {"revoked-and-held", "held"},
                SUBSCRIPTION: {"held-from-now", "held-and-expired", "held-twice"},
                PERMISSION: {"one-of-two-holds-lifted", "held-twice"}}
    assert in_python == by_cause[cause]
    assert since_python["held-twice"] == NOW - HOUR  # the oldest unlifted hold
    assert since_python["one-of-two-holds-lifted"] == NOW - TICK


RENEWALS = {"none-yet": None, "an-hour-ago": NOW - HOUR, "a-tick-ago": NOW - TICK,
            "now": NOW, "a-tick-ahead": NOW + TICK}


@pytest.mark.parametrize("moment", list(AT), ids=list(AT))
def test_a_crl_is_due_the_same_in_python_and_in_sql(service: Service, moment: str) -> None:
    now = AT[moment]
    with service.database.transaction() as session:
        authorities = list(session.scalars(select(Authority.id).where(
            Authority.kind.in_(("root", "issuing"))).order_by(Authority.id)))
    for renew in RENEWALS.values():
        for authority_id in authorities:
            with service.database.transaction() as session:
                session.execute(update(Authority).where(Authority.id == authority_id)
                                .values(crl_renew_at=renew))
            with service.database.reading() as session:
                in_sql = authority_id in set(session.scalars(
                    select(Authority.id).where(renewal.due_filter(now=now))))
                in_lifecycle = authority_id in queries.crls_due(session, now=now)
            assert in_sql == in_lifecycle == renewal.due(renew, now=now), (renew, now)
    if moment == "now":
        assert [renewal.due(r, now=NOW) for r in RENEWALS.values()] == [
            True, True, True, True, False]


def test_a_published_crl_is_stale_in_python_exactly_when_sql_finds_its_ca_due(
        service: Service) -> None:
    made = service.crls.publish(TENANT)
    with service.database.reading() as session:
        authority = queries.issuing(session, queries.tenant(session, TENANT))
        assert authority.crl_renew_at == renewal.renew_at(made)
        renew, authority_id = authority.crl_renew_at, authority.id
    assert renew == made.this_update + (made.next_update - made.this_update) / 2
    for now in (renew - HOUR, renew - TICK, renew, renew + TICK):
        with service.database.reading() as session:
            in_sql = authority_id in queries.crls_due(session, now=now)
        assert in_sql == renewal.stale(made, now=now) == (now >= renew), now


@pytest.mark.parametrize("asked", [None, *Profile], ids=["as-issued", *Profile])
def test_a_bundles_profile_is_the_same_in_python_and_in_sql(service: Service,
                                                            asked: Profile | None) -> None:
    names = plant(service)
    with service.database.reading() as session:
        rows = session.execute(
            select(Certificate.id, Certificate.p12_profile, Tenant.p12_profile,
                   bundle_profile.chosen_column(asked))
            .join(Tenant, Certificate.tenant_id == Tenant.id)).all()
    in_python = {names[cid]: bundle_profile.chosen(asked, issued=issued, tenant=default)
                 for cid, issued, default, _ in rows}
    in_sql = {names[cid]: Profile(chosen) for cid, _, _, chosen in rows}
    assert in_sql == in_python
    # asked > the certificate's own > the tenant's default (compat here, modern at OTHER)
    expected = {"issued-modern": Profile.MODERN, "issued-compat": Profile.COMPAT,
                "issued-modern-elsewhere": Profile.MODERN,
                "issued-compat-elsewhere": Profile.COMPAT,
                "issued-without-a-choice-elsewhere": Profile.MODERN, "valid": Profile.COMPAT}
    assert {name: in_python[name] for name in expected} == (
        expected if asked is None else dict.fromkeys(expected, asked))



def test_a_kept_key_is_the_same_in_python_and_in_sql(service: Service) -> None:
    names = plant(service)
    ids = {name: cid for cid, name in names.items()}
    # a key kept, a key purged (as a revocation leaves it), and no key at all (a CSR's)
    with service.database.transaction() as session:
        session.add(KeyMaterial(certificate_id=ids["valid"], sealed_key=b"k",
                                sealed_password=b"p", created_at=NOW, purged_at=None))
        session.add(KeyMaterial(certificate_id=ids["revoked-now"], sealed_key=None,
                                sealed_password=None, created_at=NOW - HOUR, purged_at=NOW))
    with service.database.reading() as session:
        in_python = {names[cert.id]: key_kept(session.get(KeyMaterial, cert.id))
                     for cert in session.scalars(select(Certificate))}
        in_sql = {names[cid]: kept for cid, kept in session.execute(
            select(Certificate.id, key_kept_filter())
            .outerjoin(KeyMaterial, KeyMaterial.certificate_id == Certificate.id))}
    assert {name: bool(kept) for name, kept in in_sql.items()} == in_python
    assert {name for name, kept in in_python.items() if kept} == {"valid"}
