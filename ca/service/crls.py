"""Making CRLs: entries, numbers, and the row that publishes them (takes a session, never
commits). CRL Numbers come from the issue time in microseconds, or the last number plus
one if that is larger: strictly increasing across restarts, several processes (the
authority's row is locked while a CRL is made) and a restored backup.

Why that holds after restoring an older backup (whose CRLs end before the ones gateways saw
last): a number runs ahead of its maker's clock only when one CA makes two CRLs within the
clock's unit. In milliseconds a burst of revocations could (a CRL takes well under a
millisecond to sign on a fast key), so a restore soon after it might number below what was
published; in microseconds it cannot (each CRL is signed, under the CA's row lock, after
the previous one committed: tens of microseconds at least), so every number ever published
is at most its maker's clock reading, and a restored deployment whose clock is not behind
the lost one's numbers above all of them. For a clock that is behind, the restore's replay
of the gateway's last CRL sets a floor (``raise_floor``): the next number is above it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from sqlalchemy import Executable, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ca import holds, serials
from ca.db.models import Authority, Certificate, Crl, Hold, ReplayedRevocation, Tenant
from ca.errors import CAError
from ca.profiles import CLOCK_SKEW, Urls
from ca.signer import Signer
from ca.x509 import crl as crl_builder

ROOT_CRL_VALIDITY = dt.timedelta(days=30)
# the session.info key naming the CAs whose certificates changed status in a transaction
DIRTY = "tegata_crl_dirty"
# the session.info key of the lowest CRL Number each CA may take next (a replayed CRL's + 1)
FLOOR = "tegata_crl_floor"
STREAM_BATCH = 10_000  # rows read at a time while a CRL is made


def mark_dirty(session: Session, authority_id: int) -> None:
    """The CA's CRL must be made again before this transaction commits."""
    session.info.setdefault(DIRTY, set()).add(authority_id)


def lock(session: Session, authority: Authority) -> None:
    """Hold the CA's row until the transaction ends: one CRL at a time per CA, on every
    database (a CRL committed meanwhile by another process is waited for, then read)."""
    session.execute(update(Authority).where(Authority.id == authority.id)
                    .values(key_id=Authority.key_id))


def mark_all_dirty(session: Session) -> None:
    """Every active CA's CRL must be made again before this transaction commits (a restore:
    each gets a number from this process's clock, above the backup's)."""
    for authority_id in session.scalars(select(Authority.id).where(
            Authority.kind.in_(("root", "issuing")), Authority.retired_at.is_(None))):
        mark_dirty(session, authority_id)


def raise_floor(session: Session, authority_id: int, number: int) -> None:
    """The CA's next CRL in this transaction is numbered ``number`` or above (a CRL seen
    published, that this database does not hold)."""
    floors: dict[int, int] = session.info.setdefault(FLOOR, {})
    floors[authority_id] = max(floors.get(authority_id, number), number)


def publish(session: Session, authority: Authority | None, *, now: dt.datetime, urls: Urls,
            signer_of: Callable[[Authority], Signer]) -> Crl:
    assert authority is not None
    lock(session, authority)
    last = latest(session, authority)
    number = max(next_number(now, last.number if last else None),
                 session.info.get(FLOOR, {}).get(authority.id, 0))
    this_update = (now - CLOCK_SKEW).replace(microsecond=0)
    url = crl_url(session, authority, urls)
    entries: Iterable[bytes]
    if authority.kind == "root":
        validity = ROOT_CRL_VALIDITY
        entries = _root_entries(session, authority)
    else:
        owner = session.get(Tenant, authority.tenant_id)
        assert owner is not None
        validity = dt.timedelta(seconds=owner.crl_validity_seconds)
        entries = _entries(session, authority.id, last.this_update if last else None)
    request = crl_builder.CrlRequest(
        number=number, this_update=this_update, next_update=this_update + validity,
        distribution_point=url, covers_ca_certificates=authority.kind == "root")
    der = crl_builder.build(request, x509.load_der_x509_certificate(authority.der),
                            signer_of(authority), entries)
    row = Crl(authority_id=authority.id, number=number, this_update=this_update,
              next_update=request.next_update, der=der, created_at=now)
    session.add(row)
    session.flush()
    return row


def next_number(now: dt.datetime, last: int | None) -> int:
    """The CRL Number after ``last`` (the CA's latest), made at ``now``."""
    micros = (now - _EPOCH) // dt.timedelta(microseconds=1)  # exact: no float rounding
    return max(micros, (last + 1) if last is not None else 1)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Renewal:
    """An issuing CA's next CRL, made and signed outside any write transaction: the crls
    row to insert, valid only while the CA's latest CRL is still number ``after``."""

    authority_id: int
    after: int | None
    row: dict[str, Any]

    @property
    def this_update(self) -> dt.datetime:
        return self.row["this_update"]  # type: ignore[no-any-return]

    @property
    def next_update(self) -> dt.datetime:
        return self.row["next_update"]  # type: ignore[no-any-return]


def prepare_renewals(session: Session, authority_ids: Collection[int], *, now: dt.datetime,
                     signer_of: Callable[[str, str | None], Signer]) -> list[Renewal]:
    """The next CRLs of those of ``authority_ids`` that are active issuing CAs with a CRL
    URL (the others are left to ``publish``), read in two statements for the whole set:
    each CA with its tenant's CRL validity and its latest CRL, then which of them list any
    certificate (only those read their entries). ``signer_of`` takes a key id and the label
    of the PKCS#11 token that holds it (None: a key file)."""
    newest = (select(Crl.authority_id, func.max(Crl.number).label("number"))
              .where(Crl.authority_id.in_(authority_ids)).group_by(Crl.authority_id)
              .subquery())
    cas = session.execute(
        select(Authority.id, Authority.der, Authority.key_id, Authority.key_store,
               Authority.key_token, Authority.crl_url,
               Tenant.crl_validity_seconds, Crl.number, Crl.this_update)
        .join(Tenant, Tenant.id == Authority.tenant_id)
        .outerjoin(newest, newest.c.authority_id == Authority.id)
        .outerjoin(Crl, (Crl.authority_id == Authority.id) & (Crl.number == newest.c.number))
        .where(Authority.id.in_(authority_ids), Authority.kind == "issuing",
               Authority.retired_at.is_(None), Authority.crl_url.is_not(None))).all()
    held = select(Hold.certificate_id).where(holds.unlifted_filter())
    listing = set(session.scalars(select(Certificate.authority_id).distinct().where(
        Certificate.authority_id.in_(authority_ids),
        Certificate.revoked_at.is_not(None) | Certificate.id.in_(held))))
    listing |= set(session.scalars(select(ReplayedRevocation.authority_id).distinct().where(
        ReplayedRevocation.authority_id.in_(authority_ids))))
    this_update = (now - CLOCK_SKEW).replace(microsecond=0)
    made = []
    for authority_id, issuer, key_id, store, token, url, validity, last, last_made in cas:
        assert url is not None  # selected so
        request = crl_builder.CrlRequest(
            number=next_number(now, last), this_update=this_update,
            next_update=this_update + dt.timedelta(seconds=validity),
            distribution_point=url, covers_ca_certificates=False)
        try:
            signer = signer_of(key_id, token if store == "pkcs11" else None)
        except CAError:  # an unusable key: left to ``publish``, which reports it for the CA
            continue
        issuer_cert = x509.load_der_x509_certificate(issuer)
        if signer.public_key() != issuer_cert.public_key():
            continue  # not the certificate's key: left to ``publish``, which refuses it
        entries = _entries(session, authority_id, last_made) if authority_id in listing else ()
        der = crl_builder.build(request, issuer_cert, signer,
                                entries)
        made.append(Renewal(authority_id, last, {
            "authority_id": authority_id, "number": request.number,
            "this_update": this_update, "next_update": request.next_update, "der": der,
            "created_at": now}))
    return made


def record_renewals(session: Session, renewals: Sequence[Renewal], *,
                    renew_at: Callable[[Renewal], dt.datetime]) -> set[int]:
    """Insert the prepared CRLs whose CA has published nothing since (its latest CRL is
    still the one each follows) and is active, with their CAs' next renewal times: a few
    Core statements in all. The CAs recorded; the caller decides about the others.

    Each CA's row is locked first, in id order (as a revocation's republishing locks them),
    so that no other publisher can slip a CRL in between the check and the insert: CRL
    Numbers stay strictly increasing per CA."""
    ids = sorted(r.authority_id for r in renewals)
    connection = session.connection()
    for authority_id in ids:
        connection.execute(update(Authority).where(Authority.id == authority_id)
                           .values(key_id=Authority.key_id))
    latest_now = dict(connection.execute(
        select(Authority.id, func.max(Crl.number))
        .outerjoin(Crl, Crl.authority_id == Authority.id)
        .where(Authority.id.in_(ids), Authority.retired_at.is_(None))
        .group_by(Authority.id)).all())
    fresh = [r for r in renewals
             if r.authority_id in latest_now and latest_now[r.authority_id] == r.after]
    if fresh:
        connection.execute(insert(Crl), [r.row for r in fresh])
        connection.execute(
            update(Authority).where(Authority.id == bindparam("renewed"))
            .values(crl_renew_at=bindparam("renew_at")),
            [{"renewed": r.authority_id,
              "renew_at": renew_at(r)}
             for r in fresh])
    return {r.authority_id for r in fresh}


def new_crl_url(urls: Urls, tenant: str | None, generation: int = 1) -> str:
    """The CRL URL of a CA made now: the root's (``tenant`` None) or a tenant's issuing CA's
    of that generation."""
    return urls.root_crl(generation) if tenant is None else urls.crl(tenant, generation)


def crl_url(session: Session, authority: Authority, urls: Urls) -> str:
    """The CA's CRL URL: the IDP of its CRLs and the CDP of every certificate it signs.

    Stored on the authority's row when the CA is made, and never taken from the settings of
    the process at hand after that: a CRL made by a process with another (or no)
    TEGATA_PUBLIC_BASE_URL still has the scope of the certificates it covers. A CA made
    before the column existed that had published nothing (migration 0009) gets it from
    ``urls`` here, in the caller's transaction; the first writer wins, and every later
    caller reads its value.
    """
    if authority.crl_url is not None:
        return authority.crl_url
    tenant = None
    if authority.kind != "root":
        owner = session.get(Tenant, authority.tenant_id)
        assert owner is not None
        tenant = owner.name
    session.execute(update(Authority)
                    .where(Authority.id == authority.id, Authority.crl_url.is_(None))
                    .values(crl_url=new_crl_url(urls, tenant, authority.generation)))
    session.refresh(authority, ["crl_url"])
    assert authority.crl_url is not None
    return authority.crl_url


def latest(session: Session, authority: Authority) -> Crl | None:
    return session.scalar(select(Crl).where(Crl.authority_id == authority.id)
                          .order_by(Crl.number.desc()).limit(1))


def entry_of(cert: Certificate) -> bytes:
    """The CRL entry of a revoked certificate, kept with it (``Certificate.crl_entry``) when
    it is revoked or its reason changes, so that no CRL encodes it again."""
    assert cert.revoked_at is not None and cert.revocation_reason is not None
    return crl_builder.entry_der(crl_builder.Entry(
        serial=serials.parse(cert.serial), revoked_at=cert.revoked_at,
        reason=cert.revocation_reason))


def _entries(session: Session, authority_id: int,
             last_made: dt.datetime | None) -> Iterator[bytes]:
    """Revoked and suspended certificates: their entries' DER, in pieces of one or more
    entries. An expired one stays until a CRL has listed it past its expiry (the previous
    CRL was made after notAfter).

    Streamed in batches (a server-side cursor on PostgreSQL), with no ORM object per row:
    a revoked certificate's entry is the DER kept when it was revoked, one made now only if
    none was kept. A hold is never kept: its entry (certificateHold, dated from the oldest
    unlifted hold) changes when one of several holds is lifted, and it goes when all are.
    """
    mine = Certificate.authority_id == authority_id
    if last_made is not None:  # the thisUpdate of the CA's latest CRL
        mine = mine & (Certificate.not_after >= last_made)
    # only a revoked certificate keeps an entry: read from ix_certificates_crl_entries alone,
    # a batch of kept entries at a time joined into one piece (no Python step per entry)
    kept = select(Certificate.crl_entry).where(mine, Certificate.crl_entry.is_not(None))
    yield from (b"".join(batch) for batch in _stream(session, kept, scalar=True))
    # revocations a restore replayed for certificates it does not hold (ca.service.replay)
    replayed = select(ReplayedRevocation.crl_entry).where(
        ReplayedRevocation.authority_id == authority_id)
    yield from (b"".join(batch) for batch in _stream(session, replayed, scalar=True))
    revoked = mine & Certificate.revoked_at.is_not(None)
    unkept = select(Certificate.serial, Certificate.revoked_at, Certificate.revocation_reason)
    for batch in _stream(session, unkept.where(revoked, Certificate.crl_entry.is_(None))):
        yield from (crl_builder.entry_der(crl_builder.Entry(
            serial=serials.parse(serial), revoked_at=revoked_at, reason=reason))
            for serial, revoked_at, reason in batch)
    held = (select(Hold.certificate_id, func.min(Hold.placed_at).label("since"))
            .where(holds.unlifted_filter()).group_by(Hold.certificate_id).subquery())
    suspended = (select(Certificate.serial, held.c.since)
                 .join(held, held.c.certificate_id == Certificate.id)
                 .where(mine, Certificate.revoked_at.is_(None)))
    for batch in _stream(session, suspended):
        yield from (crl_builder.entry_der(crl_builder.Entry(
            serial=serials.parse(serial), revoked_at=since, reason="certificateHold"))
            for serial, since in batch)


def _stream(session: Session, query: Executable, *,
            scalar: bool = False) -> Iterator[Sequence[Any]]:
    """The rows in batches of ``STREAM_BATCH``: memory stays bounded whatever the count."""
    # Core rows on the session's connection (the ORM's per-row machinery is not needed),
    # after what the session holds pending: a revocation's kept entry is read back
    session.flush()
    result = session.connection().execute(query.execution_options(yield_per=STREAM_BATCH))
    try:
        yield from (result.scalars() if scalar else result).partitions()
    finally:
        result.close()


def _root_entries(session: Session, root: Authority) -> list[bytes]:
    retired = session.scalars(select(Authority).where(
        Authority.issuer_id == root.id, Authority.id != root.id,
        Authority.retired_at.is_not(None))).all()
    return [crl_builder.entry_der(crl_builder.Entry(
        serial=serials.parse(a.serial), revoked_at=a.retired_at, reason="cessationOfOperation"))
        for a in retired if a.retired_at is not None]
