"""Subscriptions and the time-driven transitions: subscription end, grace end, expiry.

``run_lifecycle`` is idempotent and safe to crash and rerun: each tenant's changes are one
transaction, and every step looks at the state it finds rather than remembering what it did.
It visits only what came due, found by indexed due times (a tenant's ``lifecycle_due_at``, a
CA's ``crl_renew_at``, certificates that expired since the lease's ``done_until``), so a pass
with nothing to do costs a handful of queries whatever the number of tenants. A due time is
set in the transaction that changes what it derives from, so a crash leaves it due.
The server runs it every minute, and ``tegata lifecycle run`` runs it once. One run at a
time, across processes and replicas: a run holds the ``lifecycle`` lease (ca.service.leases),
renewed at each tenant and each CRL; another run meanwhile is refused at once (``Conflict``),
and the lease of a run whose process died lapses after ``LIFECYCLE_TTL``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ca import audit, expiry, renewal
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db import queries
from ca.db.models import Authority, Certificate, Tenant, User
from ca.errors import CAError, Conflict, InvalidInput, LeaseLost, NeedsConfirmation
from ca.holds import HoldCause
from ca.service import crls, jobs, leases, transitions
from ca.service.auditlog import Audit
from ca.service.plumbing import CrlPublisher, Database, Keys
from ca.states import live_filter

LIFECYCLE_ACTOR = Actor(name="lifecycle")
LIFECYCLE_LEASE = "lifecycle"
RENEWAL_SET = 50  # CAs whose CRLs are made together, then recorded in one transaction
LIFECYCLE_TTL = dt.timedelta(minutes=5)  # renewed at every tenant; a dead run's lapses
# the latest instant a grace period can end: an end near 9999 plus its grace is clamped here
LATEST_INSTANT = dt.datetime.max.replace(microsecond=0, tzinfo=dt.UTC)
log = logging.getLogger("tegata.lifecycle")


KINDS = ("none", "trial", "contract")


@dataclass(frozen=True, kw_only=True)
class SubscriptionView:
    tenant: str
    kind: str
    ends_on: dt.date | None
    zone: str | None
    ends_at: dt.datetime | None
    grace_days: int
    grace_ends_at: dt.datetime | None
    suspended_at: dt.datetime | None  # when the subscription hold was published
    state: str  # active | grace | ended


@dataclass(frozen=True, kw_only=True)
class TenantSummary:
    """A tenant as the operator's list shows it: names, subscription, active users."""

    name: str
    display_name: str
    kind: str  # none | trial | contract
    ends_at: dt.datetime | None
    state: str  # active | grace | ended
    users: int  # active users (retired ones aside)


@dataclass(frozen=True, kw_only=True)
class LifecycleReport:
    suspended: int = 0
    reinstated: int = 0
    revoked: int = 0
    purged: int = 0
    crls: int = 0
    audit_pruned: int = 0
    failed: int = 0  # tenants and CAs whose step failed (logged); retried next pass


def grace_ends_at(tenant: Tenant, *, now: dt.datetime) -> dt.datetime | None:
    """When the certificates are revoked for good: one full grace period after the end, and
    never sooner than one full grace period after the suspension was published (a mistyped
    end date, or a server that was down over the end, still leaves users the whole grace
    period to be renewed in). A suspension not published yet is published ``now`` at the
    earliest. Without a grace period the end revokes at once."""
    ends_at = tenant.subscription_ends_at
    if ends_at is None:
        return None
    grace = dt.timedelta(days=tenant.grace_days)
    published = tenant.subscription_suspended_at
    if published is None and grace and ends_at <= now:
        published = now
    start = max(ends_at, published or ends_at)
    if grace >= LATEST_INSTANT - start:
        return LATEST_INSTANT  # an end near year 9999: the grace period runs to the end of time
    return start + grace


def next_due(tenant: Tenant, *, now: dt.datetime) -> dt.datetime | None:
    """The next instant the lifecycle must look at the tenant's subscription, as the state
    found ``now`` has been applied: its end, then its grace end; none once it ended (every
    certificate is revoked, and no new one is issued) or when it never ends."""
    state = subscription_state(tenant, now=now)
    if state == "active":
        return tenant.subscription_ends_at
    if state == "grace":
        return grace_ends_at(tenant, now=now)
    return None


def subscription_state(tenant: Tenant, *, now: dt.datetime) -> str:
    if tenant.subscription_ends_at is None or now < tenant.subscription_ends_at:
        return "active"
    grace_end = grace_ends_at(tenant, now=now)
    if grace_end is not None and now < grace_end:
        return "grace"
    return "ended"


class Lifecycle:
    """Subscriptions, and the periodic run: what came due, CRL renewals, audit pruning."""

    def __init__(self, *, database: Database, keys: Keys, clock: Clock, publisher: CrlPublisher,
                 audit: Audit) -> None:
        self.database = database
        self.keys = keys
        self.clock = clock
        self.publisher = publisher
        self.audit = audit

    def set_subscription(self, tenant: str, *, ends: dt.date | None, zone: str | None = None,
                         grace_days: int | None = None, kind: str = "contract",
                         allow_past: bool = False,
                         actor: Actor = audit.CLI_ACTOR) -> SubscriptionView:
        """The trial or contract works through ``ends`` in ``zone`` (the tenant's by
        default); ``None`` makes it open-ended. A renewal inside the grace period brings
        the suspended certificates back at once.

        An end already past suspends every certificate at once (with a grace period of 0
        days: revokes every one and purges its key), so it is refused (nothing changed)
        unless ``allow_past`` says it is meant: a mistyped year must not take a tenant
        down. Even then, revocation waits a full grace period (``grace_ends_at``)."""
        if kind not in KINDS:
            raise InvalidInput(f"subscription kind {kind[:16]!r} is not one of "
                               f"{', '.join(KINDS)}", field="kind")
        if grace_days is not None and not 0 <= grace_days <= 3650:
            raise InvalidInput("grace days must be 0 to 3650", field="grace_days")
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            # first what the old dates already decided (a grace period that ended while no
            # lifecycle run came by revokes for good; a renewal cannot undo that)
            self._apply_subscription(session, owner, actor, now=now)
            zone_name = zone or owner.timezone or "UTC"
            ends_at = None
            if ends is not None:
                _check_end_range(ends)
                ends_at = expiry.not_after(ends, expiry.zone(zone_name)) + expiry.ONE_SECOND
            # an end already in force is no news; a new one in the past must be confirmed
            past = ends_at is not None and ends_at <= now
            if past and not allow_past and ends_at != owner.subscription_ends_at:
                grace = owner.grace_days if grace_days is None else grace_days
                # the shells say how to confirm (--allow-past, allow_past: true)
                raise NeedsConfirmation(
                    f"{owner.name}: subscription end {ends} in {zone_name} is already past; "
                    f"confirming it would {_what_past_end_does(grace)}", field="ends",
                    confirm="allow_past")
            owner.subscription_ends_at = ends_at
            owner.subscription_ends_on = ends
            owner.subscription_zone = zone_name if ends else None
            owner.subscription_kind = kind if ends else "none"
            if grace_days is not None:
                owner.grace_days = grace_days
            audit.record(session, actor, Event(
                action="tenant.subscription", target=owner.name, tenant_id=owner.id,
                details={"ends_on": ends.isoformat() if ends else None, "zone": zone_name,
                         "grace_days": owner.grace_days,
                         **({"allow_past": True} if past and allow_past else {})}), now=now)
            self._apply_subscription(session, owner, actor, now=now)
            return _subscription_view(owner, now=now)

    def summaries(self) -> list[TenantSummary]:
        """Every tenant with its subscription state and user count, by name: two queries,
        whatever the number of tenants."""
        now = self.clock.now()
        with self.database.reading() as session:
            users = {tenant_id: int(n) for tenant_id, n in session.execute(
                select(User.tenant_id, func.count()).where(User.status == "active")
                .group_by(User.tenant_id))}
            return [TenantSummary(name=t.name, display_name=t.display_name,
                                  kind=t.subscription_kind, ends_at=t.subscription_ends_at,
                                  state=subscription_state(t, now=now),
                                  users=users.get(t.id, 0))
                    for t in session.scalars(select(Tenant).order_by(Tenant.name))]

    def get_subscription(self, tenant: str) -> SubscriptionView:
        with self.database.reading() as session:
            return _subscription_view(queries.tenant(session, tenant), now=self.clock.now())

    def run(self) -> LifecycleReport:
        """Apply every transition whose instant has come; one transaction per tenant. One
        run at a time: while another holds the lease, this one does nothing and says so."""
        holder = leases.new_holder()
        with self.database.transaction() as session:
            if not leases.take(session, LIFECYCLE_LEASE, holder, now=self.clock.now(),
                               ttl=LIFECYCLE_TTL):
                lease = leases.held(session, LIFECYCLE_LEASE)
                until = lease.expires_at if lease is not None else None
                raise Conflict("another lifecycle run is in progress"
                               + (f" (until {until:%Y-%m-%d %H:%M:%S} UTC at the latest)"
                                  if until is not None else "") + ": this one did nothing")
        try:
            return self._run_lifecycle(holder)
        finally:
            try:
                with self.database.transaction() as session:
                    leases.release(session, LIFECYCLE_LEASE, holder)
            except CAError:  # it lapses by itself; the run's own outcome is the one to report
                log.exception("could not release the lifecycle lease")

    def _run_lifecycle(self, holder: str) -> LifecycleReport:
        """Only what came due since the last run, each found by an index (migration
        0012): a pass with nothing to do is a handful of queries, whatever the number of
        tenants. Each tenant's changes are one transaction, each CRL renewal another."""
        now = self.clock.now()
        with self.database.transaction() as session:
            jobs.fail_lapsed(session, now=now)  # a job whose process died reads failed
        with self.database.reading() as session:
            since = leases.done_until(session, LIFECYCLE_LEASE)
            tenants = set(queries.tenants_due(session, now=now))
            tenants |= queries.tenants_with_expired_keys(session, since=since, now=now)
        totals = LifecycleReport()
        for tenant_id in sorted(tenants):
            # one tenant's failure (its CA key unusable, say) is logged and counted, and the
            # others go on; its transaction rolled back, so it stays due for the next pass
            try:
                with self.database.transaction() as session:
                    self._keep_lease(session, holder)
                    done = self._tenant_pass(session, tenant_id, since, now=now)
                totals = _sum(totals, done)  # counted once committed
            except LeaseLost:
                raise
            except Exception as exc:
                self._log_failure(exc, tenant_id=tenant_id)
                totals = _sum(totals, LifecycleReport(failed=1))
        with self.database.transaction() as session:
            self._keep_lease(session, holder)
            if not totals.failed:  # else the failed tenants' expired keys are looked at again
                leases.mark_done(session, LIFECYCLE_LEASE, holder, until=now)
        with self.database.transaction() as session:
            self._keep_lease(session, holder)
            _retire_ended_generations(session, now=now)
        totals = _sum(totals, self._renew_crls(holder, now=now))
        pruned = self.audit.prune(actor=LIFECYCLE_ACTOR)
        return LifecycleReport(**{**totals.__dict__, "audit_pruned": pruned})

    def _tenant_pass(self, session: Session, tenant_id: int, since: dt.datetime | None, *,
                     now: dt.datetime) -> LifecycleReport:
        """What came due for one tenant: its subscription's instant, its expired keys."""
        owner = session.get(Tenant, tenant_id, populate_existing=True)
        report = LifecycleReport()
        if owner is None:  # gone since the pass looked
            return report
        if owner.lifecycle_due_at is not None and owner.lifecycle_due_at <= now:
            report = self._apply_subscription(session, owner, LIFECYCLE_ACTOR, now=now)
        purged = queries.expired_keys(session, tenant_id, since=since, now=now)
        for cert in purged:
            transitions.purge_key_material(session, cert, now=now)
        return _sum(report, LifecycleReport(purged=len(purged)))

    def _renew_crls(self, holder: str, *, now: dt.datetime) -> LifecycleReport:
        """Renew every CRL past half its validity, earliest due first, a set of CAs at a
        time: their data read together, their CRLs built and signed outside any write
        transaction, then recorded in one short one (a few Core statements). The writers
        waiting meanwhile take their turns in between (ca.db.engine.writer_turn), so
        renewing thousands never stalls the service. A CA that published meanwhile (a
        revocation), is not an issuing CA with a CRL URL, or whose key failed to load goes
        the one-by-one way, each in its own transaction: one CA's failure is logged and
        counted, and stays due for the next pass."""
        with self.database.reading() as session:
            due = queries.crls_due(session, now=now)
        renewed = failed = 0
        for start in range(0, len(due), RENEWAL_SET):
            ids = due[start:start + RENEWAL_SET]
            with self.database.reading() as session:
                made = crls.prepare_renewals(session, ids, now=self.clock.now(),
                                             signer_of=self.keys.signer_by_id)
            with self.database.transaction() as session:
                self._keep_lease(session, holder)
                recorded = crls.record_renewals(session, made, renew_at=renewal.renew_at)
            renewed += len(recorded)
            for authority_id in (i for i in ids if i not in recorded):
                try:
                    with self.database.transaction() as session:
                        self._keep_lease(session, holder)
                        one = self._renew_one(session, authority_id, now=now)
                    renewed += one  # counted once committed
                except LeaseLost:
                    raise
                except Exception as exc:
                    self._log_failure(exc, authority_id=authority_id)
                    failed += 1
        return LifecycleReport(crls=renewed, failed=failed)

    def _log_failure(self, exc: Exception, *, tenant_id: int | None = None,
                     authority_id: int | None = None) -> None:
        """Say which tenant and CA a lifecycle step failed for. The message may name a key
        file (the log is the operator's); it never reaches an API answer."""
        try:
            with self.database.reading() as session:
                tenant, cas = _who(session, tenant_id=tenant_id, authority_id=authority_id)
        except CAError:
            tenant, cas = f"#{tenant_id}" if tenant_id is not None else "?", []
        detail = exc.message if isinstance(exc, CAError) else type(exc).__name__
        log.error("lifecycle: tenant %s (CA %s) failed, retried next pass: %s", tenant,
                  ", ".join(map(str, cas)) or authority_id, detail,
                  exc_info=not isinstance(exc, CAError))

    def _renew_one(self, session: Session, authority_id: int, *, now: dt.datetime) -> int:
        authority = session.get(Authority, authority_id, populate_existing=True)
        # renewed meanwhile (a revocation republished it), or retired: nothing to do
        if authority is None or authority.retired_at is not None or not renewal.due(
                authority.crl_renew_at, now=now):
            return 0
        self.publisher.publish(session, authority, now=self.clock.now())
        return 1

    def _keep_lease(self, session: Session, holder: str) -> None:
        if not leases.renew(session, LIFECYCLE_LEASE, holder, now=self.clock.now(),
                            ttl=LIFECYCLE_TTL):
            raise LeaseLost("the lifecycle run lost its lease (a step took longer than "
                           f"{LIFECYCLE_TTL.total_seconds() / 60:.0f} minutes); another "
                           "run goes on")

    def _apply_subscription(self, session: Session, owner: Tenant, actor: Actor, *,
                            now: dt.datetime) -> LifecycleReport:
        # the tenant's row first: an issuance writing now finishes before (its certificates
        # are seen below) or sees the new state and refuses (``queries.fresh_tenant``)
        queries.lock_tenant(session, owner)
        state = subscription_state(owner, now=now)
        if state == "grace" and owner.subscription_suspended_at is None:
            owner.subscription_suspended_at = now  # published with this transaction's CRL
        elif state == "active":
            owner.subscription_suspended_at = None
        suspended = reinstated = revoked = 0
        rows = session.execute(select(Certificate, User.login).join(
            User, Certificate.user_id == User.id).where(
            Certificate.tenant_id == owner.id, live_filter(now=now))).all()
        for cert, login in rows:
            if state == "grace":
                suspended += transitions.place_hold(session, cert, HoldCause.SUBSCRIPTION, actor,
                                                    tenant=owner.name, login=login, now=now)
            elif state == "ended":
                revoked += transitions.revoke(session, cert, "cessationOfOperation", actor,
                                              tenant=owner.name, login=login, now=now)
            else:
                reinstated += transitions.lift_hold(session, cert, HoldCause.SUBSCRIPTION, actor,
                                                    tenant=owner.name, login=login, now=now)
        owner.lifecycle_due_at = next_due(owner, now=now)
        # a change republishes the CRL when the transaction commits (ca.service.crls)
        made = 1 if suspended or reinstated or revoked else 0
        return LifecycleReport(suspended=suspended, reinstated=reinstated, revoked=revoked,
                               crls=made)


def _what_past_end_does(grace_days: int) -> str:
    """What confirming an end already past does to a tenant with this grace period."""
    if grace_days == 0:
        return ("revoke every certificate (cessationOfOperation) and purge its key now, "
                "with no grace period")
    days = "1 day" if grace_days == 1 else f"{grace_days} days"
    return (f"suspend every certificate now and revoke it {days} later unless the end is "
            "corrected by then")


def _check_end_range(ends: dt.date) -> None:
    """The range certificates take (``expiry.check_range``), in words about the end."""
    if ends < expiry.EARLIEST_DATE:
        raise InvalidInput(f"subscription end {ends} is before the earliest allowed, "
                           f"{expiry.EARLIEST_DATE}", field="ends")
    if ends > expiry.LATEST_DATE:
        raise InvalidInput(f"subscription end {ends} is after the latest allowed, "
                           f"{expiry.LATEST_DATE}", field="ends")


def _who(session: Session, *, tenant_id: int | None,
         authority_id: int | None) -> tuple[str, list[int]]:
    """The tenant's name and its active CAs' ids (just ``authority_id``'s when given)."""
    if authority_id is not None:
        authority = session.get(Authority, authority_id)
        tenant_id = authority.tenant_id if authority is not None else None
    owner = session.get(Tenant, tenant_id) if tenant_id is not None else None
    if authority_id is not None:
        return (owner.name if owner is not None else "(root)"), [authority_id]
    cas = list(session.scalars(select(Authority.id).where(
        Authority.tenant_id == tenant_id, Authority.retired_at.is_(None))
        .order_by(Authority.id)))
    return (owner.name if owner is not None else f"#{tenant_id}"), cas


def _sum(a: LifecycleReport, b: LifecycleReport) -> LifecycleReport:
    return LifecycleReport(**{name: getattr(a, name) + getattr(b, name)
                              for name in a.__dataclass_fields__})


def _subscription_view(owner: Tenant, *, now: dt.datetime) -> SubscriptionView:
    return SubscriptionView(
        tenant=owner.name, kind=owner.subscription_kind, ends_on=owner.subscription_ends_on,
        zone=owner.subscription_zone, ends_at=owner.subscription_ends_at,
        grace_days=owner.grace_days, grace_ends_at=grace_ends_at(owner, now=now),
        suspended_at=owner.subscription_suspended_at, state=subscription_state(owner, now=now))


def _retire_ended_generations(session: Session, *, now: dt.datetime) -> int:
    """Retire every issuing CA that a later generation of its tenant has replaced, once it
    is past its own notAfter and none of its certificates is unexpired: no more CRLs for
    it, no responder certificate, and gateways' bundles and CRL chains leave it out (a CA
    that can still have an unexpired certificate stays in all of them)."""
    newer = select(Authority.id).where(
        Authority.kind == "issuing", Authority.retired_at.is_(None)).correlate(None)
    ended = list(session.scalars(select(Authority).where(
        Authority.kind == "issuing", Authority.retired_at.is_(None),
        Authority.not_after <= now)))
    retired = 0
    for ca in ended:
        later = session.scalar(newer.where(Authority.tenant_id == ca.tenant_id,
                                           Authority.generation > ca.generation).limit(1))
        alive = session.scalar(select(Certificate.id).where(
            Certificate.authority_id == ca.id, Certificate.not_after > now).limit(1))
        if later is not None and alive is None:
            ca.retired_at = now
            retired += 1
            owner = session.get(Tenant, ca.tenant_id)
            assert owner is not None
            audit.record(session, LIFECYCLE_ACTOR, Event(
                action="ca.retire", target=owner.name, tenant_id=owner.id,
                details={"generation": ca.generation, "serial": ca.serial}), now=now)
    if retired:
        log.info("lifecycle: retired %d issuing CA(s) of an earlier generation, past their "
                 "end", retired)
    return retired
