"""Admin bulk download: one zip of per-user zips and a manifest, streamed.

Only currently valid certificates with key material go in, the newest per user. The
archive is produced a batch of users at a time, the PKCS#12 files built in the process's one
pool (ca.parallel) a few batches ahead of the writing and streamed into the zip as they come
out, so memory stays flat at any number of users and a client that goes stops the building;
the zip module switches to ZIP64 by itself when the archive needs it.

A certificate suspended or revoked while the archive streams is left out: its state is read
again with its sealed key, and once more just before its entry is written (after the batch's
PKCS#12 files are built, with no pause for the client between that read and the writing).
The manifest lists exactly the entries written. ``cert.download`` is recorded before the
first byte with every serial selected; ``cert.download.end`` when the stream stops, with the
serials that left, those withheld, and how many bundles were built.
"""

from __future__ import annotations

import datetime as dt
import logging
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from itertools import islice

from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import audit, bundle_profile, csvio, parallel
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db import queries
from ca.db.models import Certificate, KeyMaterial, Tenant, User
from ca.errors import CAError, InvalidInput, NotPermitted
from ca.key_kept import key_kept_filter
from ca.service.plumbing import Database, Keys
from ca.service.selection import Selection, select_users
from ca.states import State, state_filter
from ca.x509 import bundle, pkcs12
from ca.x509.bundle import Entry

log = logging.getLogger("tegata.downloads")
BATCH = 64  # users read (and unsealed) together, and checked again before they are written
AHEAD = 3  # batches in the pool's hands at once: the cores stay busy, no more is built
END = "cert.download.end"
# below this many users a process pool costs more than it saves
PARALLEL_FROM = 64


@dataclass(frozen=True, kw_only=True)
class _Where:
    """The tenant a download is for: its name and id."""

    tenant: str
    tenant_id: int


@dataclass(frozen=True, kw_only=True)
class BulkDownload:
    filename: str
    count: int
    chunks: Iterator[bytes]


class _Sink:
    """A write-only, unseekable file that hands over what was written."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._written = 0

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class Downloads:
    """The bulk zip of a selection's newest certificates."""

    def __init__(self, *, database: Database, keys: Keys, clock: Clock) -> None:
        self.database = database
        self.keys = keys
        self.clock = clock

    def bulk(self, tenant: str, selection: Selection | None = None, *,
             serials: tuple[str, ...] | None = None, profile: str | None = None,
             actor: Actor = audit.CLI_ACTOR) -> BulkDownload:
        """The zip of zips for the selected users, each bundle in the profile asked for, else
        its certificate's own (``ca.bundle_profile``, as every path that bundles). The download is
        audited with every serial selected before the first byte leaves, and again when the
        stream stops with the serials that left (a certificate no longer valid when its turn
        comes is withheld). ``serials`` instead of a selection takes exactly those
        certificates (a bulk job's own), each only while it is valid with its key."""
        if (selection is None) == (serials is None):
            raise InvalidInput("download by a selection of users or by serials, one way",
                               field="selection")
        now = self.clock.now()
        asked = pkcs12.Profile.parse(profile) if profile is not None else None
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            picks = (_newest_valid(session, owner, selection, now=now) if selection is not None
                     else _serials_valid(session, owner, serials or (), now=now))
            if not picks:
                raise NotPermitted(f"{tenant}: no selected user has a valid certificate with "
                                   "key material to download")
            audit.record(session, actor, Event(
                action="cert.download", target=f"{owner.name}/bulk", tenant_id=owner.id,
                details={"serials": [serial for _, serial in picks],
                         "profile": asked.value if asked else "as issued",
                         **({"not_valid": [s for s in serials
                                           if s not in {p for _, p in picks}]}
                            if serials is not None else {})}), now=now)
            where = _Where(tenant=owner.name, tenant_id=owner.id)
        filename = bundle.safe_name(f"{where.tenant}-certificates-{now:%Y%m%d-%H%M%S}.zip")
        return BulkDownload(filename=filename, count=len(picks),
                            chunks=self._stream(where, picks, asked, actor, now=now))

    def _stream(self, where: _Where, picks: list[tuple[int, str]],
                asked: pkcs12.Profile | None, actor: Actor, *, now: dt.datetime
                ) -> Iterator[bytes]:
        sink = _Sink()
        left: list[str] = []  # serials whose entry was handed to the client
        tally = parallel.Tally()
        complete = False
        ids = iter([cid for cid, _ in picks])
        # each batch's entries are read (and unsealed) only when the pool has room for it
        batches = (self._entries(where, batch, asked, now=now)
                   for batch in iter(lambda: list(islice(ids, BATCH)), []))
        pool = parallel.pool(len(picks), threshold=PARALLEL_FROM)
        built: Generator[list[tuple[int, Entry, bytes]], None, None] = parallel.stream(
            bundle.entry_zips, batches, pool, ahead=AHEAD, tally=tally)
        try:
            with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
                manifest = [("login", "serial", "not_after", "sha256_fingerprint")]
                for done in built:
                    # the state once more, just before the entries are written: no key of a
                    # certificate suspended or revoked while the files were built leaves
                    valid = self._still_valid([cid for cid, _, _ in done])
                    for cid, entry, content in done:
                        if cid not in valid:
                            continue
                        info = zipfile.ZipInfo(bundle.zip_name(entry.login),
                                               date_time=now.timetuple()[:6])
                        archive.writestr(info, content, compress_type=zipfile.ZIP_STORED)
                        manifest.append((entry.login, entry.serial,
                                         entry.not_after.isoformat(), entry.fingerprint))
                        left.append(entry.serial)  # gone once handed over, even if not read
                    if chunk := sink.take():
                        yield chunk
                info = zipfile.ZipInfo("manifest.csv", date_time=now.timetuple()[:6])
                archive.writestr(info, "".join(csvio.write(manifest)),
                                 compress_type=zipfile.ZIP_DEFLATED)
            yield sink.take()
            complete = True
        finally:
            built.close()  # nothing more is built for a client that has gone
            self._audit_end(where, picks, left, tally.built, actor, complete=complete)

    def _audit_end(self, where: _Where, picks: list[tuple[int, str]], left: list[str],
                   built: int, actor: Actor, *, complete: bool) -> None:
        """``cert.download.end``: the serials whose key left, those withheld (no longer
        valid when their turn came, or not reached when the stream broke off), and how many
        bundles were built (a stream broken off stops building)."""
        gone = set(left)
        try:
            with self.database.transaction() as session:
                audit.record(session, actor, Event(
                    action=END, target=f"{where.tenant}/bulk", tenant_id=where.tenant_id,
                    outcome="success" if complete else "failure",
                    details={"serials": left, "complete": complete, "built": built,
                             "withheld": [s for _, s in picks if s not in gone]}),
                    now=self.clock.now())
        except CAError:  # the stream's own failure, if any, is the one to report
            log.exception("could not record the end of a bulk download")

    def _still_valid(self, ids: list[int]) -> set[int]:
        """Which of these certificates are valid now and still have their key."""
        if not ids:
            return set()
        with self.database.reading() as session:
            return set(session.scalars(
                select(Certificate.id)
                .join(KeyMaterial, KeyMaterial.certificate_id == Certificate.id)
                .where(Certificate.id.in_(ids), key_kept_filter(),
                       state_filter(State.VALID.value, now=self.clock.now()))))

    def _entries(self, where: _Where, ids: list[int], asked: pkcs12.Profile | None, *,
                 now: dt.datetime) -> list[tuple[int, Entry]]:
        """The batch's entries, unsealed in the read that finds them still valid (a
        certificate suspended, revoked or purged since the selection is left out)."""
        with self.database.reading() as session:
            rows = session.execute(
                select(Certificate, User.login, KeyMaterial, bundle_profile.chosen_column(asked))
                .join(User, Certificate.user_id == User.id)
                .join(Tenant, Certificate.tenant_id == Tenant.id)
                .join(KeyMaterial, KeyMaterial.certificate_id == Certificate.id)
                .where(Certificate.id.in_(ids), key_kept_filter(),
                       KeyMaterial.sealed_password.is_not(None),
                       state_filter(State.VALID.value, now=self.clock.now()))
                .order_by(User.login_key)).all()
            chains: dict[int, tuple[bytes, ...]] = {}
            entries = []
            for cert, login, material, profile in rows:
                assert material.sealed_key is not None and material.sealed_password is not None
                if cert.authority_id not in chains:
                    issuing, root = queries.chain(session, cert.authority_id)
                    chains[cert.authority_id] = (issuing.der, root.der)
                key_der, password = self.keys.sealer.open_key_material(
                    material.sealed_key, material.sealed_password, serial=cert.serial)
                entries.append((cert.id, Entry(
                    login=login, serial=cert.serial, not_after=cert.not_after,
                    fingerprint=cert.fingerprint_sha256, cert_der=cert.der,
                    key_der=key_der, password=password, chain_der=chains[cert.authority_id],
                    friendly_name=f"{login} ({where.tenant})",
                    profile=pkcs12.Profile.parse(profile).value,
                    when=now)))
            return entries


def _newest_valid(session: Session, owner: Tenant, selection: Selection, *,
                  now: dt.datetime) -> list[tuple[int, str]]:
    """(certificate id, serial) of each selected user's newest valid certificate that still
    has its key material."""
    tenant_id = owner.id
    users = select_users(owner, selection, now=now).with_only_columns(User.id).order_by(
        None).subquery()
    rows = session.execute(
        select(Certificate.user_id, Certificate.id, Certificate.serial)
        .join(KeyMaterial, KeyMaterial.certificate_id == Certificate.id)
        .where(Certificate.tenant_id == tenant_id, Certificate.user_id.in_(select(users.c.id)),
               key_kept_filter(), state_filter(State.VALID.value, now=now))
        .order_by(Certificate.user_id, Certificate.id.desc())).all()
    newest: dict[int, tuple[int, str]] = {}
    for user_id, cert_id, serial in rows:
        newest.setdefault(user_id, (cert_id, serial))
    return list(newest.values())


def _serials_valid(session: Session, owner: Tenant, serials: tuple[str, ...], *,
                   now: dt.datetime) -> list[tuple[int, str]]:
    """(certificate id, serial) of exactly these certificates of the tenant that are valid
    now and still have their key material; any other serial is left out."""
    if not serials:
        return []
    rows = session.execute(
        select(Certificate.id, Certificate.serial)
        .join(KeyMaterial, KeyMaterial.certificate_id == Certificate.id)
        .where(Certificate.tenant_id == owner.id, Certificate.serial.in_(serials),
               key_kept_filter(), state_filter(State.VALID.value, now=now))
        .order_by(Certificate.id)).all()
    return [(cert_id, serial) for cert_id, serial in rows]
