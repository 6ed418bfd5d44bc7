"""Writers at once, on SQLite and PostgreSQL, with real threads against one service (as
``tegata serve`` runs its requests): the audit chain never forks, and one tenant's bulk work
(issuance, CSV import, bulk download) never holds up another tenant's revocation.

The orderings do not depend on the machine's speed: the revocation starts once the bulk
work has reported progress and must be done while that work is still going on (a
revocation that waited for the work ends after it); no time is compared with a fixed
number of milliseconds.
"""

from __future__ import annotations

import io
import sqlite3
import threading
import time
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import func, select

from ca.db.models import AuditEvent, Certificate
from ca.errors import NotPermitted
from ca.service import IssueRequest, Selection, Service
from ca.states import State

BUNDLES = 16  # concurrent downloads of key material (8 forked the chain once)
WAIT = 120.0  # seconds: the bound of every wait, never reached when things work


def events(service: Service) -> int:
    with service.database.reading() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``count`` threads released together; each one's result or exception."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait(timeout=WAIT)
        try:
            results[i] = work(i)
        except Exception as exc:  # the test asserts on it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not any(t.is_alive() for t in threads)
    return results


def test_concurrent_bundle_downloads_keep_the_audit_chain_whole(service: Service) -> None:
    service.hierarchy.create_tenant("acme", display_name="株式会社アクメ")
    logins = [f"user{i:02}" for i in range(BUNDLES)]
    for login in logins:
        service.users.add("acme", login, email=f"{login}@example.com", allow=True)
    serials = [v.serial for v in service.certificates.issue(IssueRequest(tenant="acme",
                                                            logins=tuple(logins)))]
    before = events(service)

    bundles = at_once(BUNDLES, lambda i: service.certificates.bundle(serials[i], tenant="acme"))

    assert [b.serial for b in bundles] == serials  # every download answered, none refused
    check = service.audit.verify()
    assert check.broken is None
    assert check.events == events(service) == before + BUNDLES
    downloads = service.audit.events(tenant="acme", action="cert.download")
    assert sorted(e.details["serials"][0] for e in downloads) == sorted(serials)


# --- one tenant's bulk work never holds up another's revocation ---------

ACME = "株式会社アクメ"
BETA = "Example Holdings International Corporation Japan Branch Osaka"
BULK_USERS = 1500  # enough that the job lasts many times a revocation; its write is brief
IMPORT_ROWS = 2500
SLOW_CLIENT = 8.0  # seconds the bulk download's client stops reading, half-way
DOWNLOAD_USERS = 60  # under the download's process-pool threshold: quick to start


def csv_of(logins: list[str], *, allow: bool = True) -> bytes:
    lines = ["login,email,name,groups,secure_access"]
    lines += [f"{login},{login}@example.com,{login},営業部;Sales,{'yes' if allow else 'no'}"
              for login in logins]
    return ("\n".join(lines) + "\n").encode()


def two_tenants(service: Service, acme_users: int) -> str:
    """acme with ``acme_users`` allowed users, beta with one valid certificate: its serial."""
    service.hierarchy.create_tenant("acme", display_name=ACME)
    service.hierarchy.create_tenant("beta", display_name=BETA)
    if acme_users:
        report = service.users.import_users("acme", csv_of([f"u{i:05}" for i in range(acme_users)]))
        assert len(report.created) == acme_users and not report.errors
    service.users.add("beta", "alice", email="alice@example.com", allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant="beta", logins=("alice",)))
    return view.serial


class Background:
    """Bulk work in a thread: when it started and ended, what it returned or raised."""

    def __init__(self, work: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = self.ended = 0.0
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,))

    def _run(self, work: Callable[[], Any]) -> None:
        self.started = time.monotonic()
        try:
            self.result = work()
        except BaseException as exc:  # the test asserts on it
            self.error = exc
        finally:
            self.ended = time.monotonic()
            self.done.set()

    def start(self) -> Background:
        self._thread.start()
        return self

    def join(self) -> Any:
        self._thread.join(timeout=WAIT)
        assert self.done.is_set(), "the bulk work did not end"
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def revoke_meanwhile(service: Service, serial: str, work: Background) -> float:
    """Revoke beta's certificate now, while ``work`` runs: its latency in seconds, once the
    revocation is recorded, in beta's CRL, and the work was still running when it ended."""
    began = time.monotonic()
    view = service.revocation.revoke("beta", serial, reason="keyCompromise")
    latency = time.monotonic() - began
    still_running = not work.done.is_set()
    assert view.state is State.REVOKED and view.revocation_reason == "keyCompromise"
    crl = x509.load_der_x509_crl(service.crls.current("beta").der)
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert still_running, (f"the revocation took {latency:.2f} s and ended after the bulk "
                           "work: it waited for it")
    return latency


def halfway(total: int) -> tuple[threading.Event, Callable[[int, int], None]]:
    reached = threading.Event()

    def progress(done: int, _total: int) -> None:
        if done >= total // 2:
            reached.set()
    return reached, progress


def test_a_revocation_goes_through_while_another_tenant_bulk_issues(
        service: Service) -> None:
    serial = two_tenants(service, BULK_USERS)
    reached, progress = halfway(BULK_USERS)
    job = Background(lambda: service.certificates.issue_bulk(
        IssueRequest(tenant="acme", selection=Selection(everyone=True)),
        progress=progress)).start()
    assert reached.wait(WAIT) or job.done.is_set()

    latency = revoke_meanwhile(service, serial, job)

    result = job.join()
    assert len(result.issued) == BULK_USERS and result.failures == []
    # the guarantee is the ordering checked in revoke_meanwhile (the revocation ends while the
    # work still runs); how long it took against the work is the machine's business: a busy
    # machine's scheduler once gave it half of a short job
    assert 0 < latency < job.seconds, (latency, job.seconds)
    check = service.audit.verify()
    assert check.broken is None
    assert {c.tenant: c.events for c in check.chains}["acme"] == (
        1 + 1 + BULK_USERS)  # tenant, the import (naming the users it made), certificates


def test_a_revocation_goes_through_while_another_tenant_imports_users(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    from ca.service import users

    serial = two_tenants(service, 0)
    data = csv_of([f"n{i:05}" for i in range(IMPORT_ROWS)])
    reached = threading.Event()
    checked = users._spec_from_row
    rows = iter(range(1, IMPORT_ROWS + 1))

    def spec_from_row(row: Any) -> Any:  # observes the import's progress, changes nothing
        if next(rows) == IMPORT_ROWS // 2:
            reached.set()
        return checked(row)

    monkeypatch.setattr(users, "_spec_from_row", spec_from_row)
    job = Background(lambda: service.users.import_users("acme", data)).start()
    assert reached.wait(WAIT) or job.done.is_set()

    latency = revoke_meanwhile(service, serial, job)

    report = job.join()
    assert len(report.created) == IMPORT_ROWS and report.errors == []
    # the guarantee is the ordering checked in revoke_meanwhile (the revocation ends while the
    # work still runs); how long it took against the work is the machine's business: a busy
    # machine's scheduler once gave it half of a short job
    assert 0 < latency < job.seconds, (latency, job.seconds)
    assert service.audit.verify().broken is None


def test_a_revocation_goes_through_while_another_tenant_downloads_in_bulk(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bulk download streams outside any transaction: with the stream stopped half-way
    (a slow client), another tenant's revocation goes through at once."""
    from ca.service import downloads

    # a chunk per batch: small batches, so that half-way is a chunk boundary
    monkeypatch.setattr(downloads, "BATCH", DOWNLOAD_USERS // 6)
    serial = two_tenants(service, DOWNLOAD_USERS)
    service.certificates.issue(IssueRequest(tenant="acme", selection=Selection(everyone=True)))
    reached, revoked = threading.Event(), threading.Event()

    def download() -> list[str]:
        archive = service.downloads.bulk("acme", Selection(everyone=True))
        content = bytearray()
        for i, chunk in enumerate(archive.chunks):
            content += chunk
            if i == 2:  # three of the six batches handed over: half-way
                reached.set()
                revoked.wait(SLOW_CLIENT)
        return sorted(zipfile.ZipFile(io.BytesIO(bytes(content))).namelist())

    job = Background(download).start()
    assert reached.wait(WAIT), "the download never reached half-way"

    latency = revoke_meanwhile(service, serial, job)
    revoked.set()

    assert job.join() == sorted([f"u{i:05}.zip" for i in range(DOWNLOAD_USERS)]
                                + ["manifest.csv"])
    assert latency < SLOW_CLIENT / 4, latency


# --- what makes it so ---------------------------------------------------------------------

def test_a_bundle_made_while_its_certificate_is_revoked_is_refused(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """The zip is made outside the write; the write checks the certificate again, so no key
    leaves for a certificate revoked in the meantime, and no download is recorded."""
    from ca.x509 import pkcs12

    service.users.add("default", "alice", email="alice@example.com", allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))
    build = pkcs12.build

    def revoked_meanwhile(**kwargs: Any) -> bytes:
        made = build(**kwargs)
        Background(lambda: service.revocation.revoke("default", view.serial)).start().join()
        return made

    monkeypatch.setattr(pkcs12, "build", revoked_meanwhile)
    with pytest.raises(NotPermitted, match=f"certificate {view.serial} is revoked"):
        service.certificates.bundle(view.serial, tenant="default")
    assert service.audit.events(action="cert.download") == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL locks as it goes
def test_on_sqlite_a_write_transaction_holds_the_write_lock_from_its_start(
        service: Service) -> None:
    """BEGIN IMMEDIATE: a transaction that has only read already keeps other writers out
    (so what it read cannot change before it writes); a read never takes the lock."""
    database = service.engine.url.database
    assert database is not None

    def other_writer() -> str:
        conn = sqlite3.connect(database, timeout=0.05, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return "began"
        except sqlite3.OperationalError as exc:
            return str(exc)
        finally:
            conn.close()

    with service.database.transaction() as session:
        session.scalar(select(func.count()).select_from(AuditEvent))
        assert other_writer() == "database is locked"
    with service.database.reading() as session:
        session.scalar(select(func.count()).select_from(AuditEvent))
        assert other_writer() == "began"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL has no such lock
def test_a_fresh_crl_is_served_while_another_writer_holds_the_write_lock(
        service: Service) -> None:
    """What a gateway fetches is read, not written: a bulk job's write does not hold up a
    CRL download (the CRL is made anew only when it is past half its validity)."""
    service.hierarchy.create_tenant("acme", display_name="株式会社アクメ")
    made = {name: service.crls.current(name) for name in ("acme", None)}
    database = service.engine.url.database
    assert database is not None
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        fetch = Background(lambda: {name: service.crls.current(name)
                                    for name in ("acme", None)}).start()
        # far above a read, far below the 10 s busy timeout a write would wait
        finished_under_the_lock = fetch.done.wait(timeout=5)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert finished_under_the_lock
    assert {name: crl.number for name, crl in fetch.join().items()} == {
        name: crl.number for name, crl in made.items()}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has no row locks
def test_a_bulk_reissue_locks_every_superseded_row_before_it_takes_the_chains_lock(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lock order, row before chain, as a single revocation takes them: when the bulk write
    records its first event, every certificate it will supersede is already locked, so a
    revocation of the last of them at that moment waits instead of deadlocking with it."""
    from sqlalchemy import create_engine, text

    from ca import audit as audit_module
    from ca.service import transitions as status_module

    service.hierarchy.create_tenant("acme", display_name="株式会社アクメ")
    logins = [f"shain{i:02d}" for i in range(6)]
    for i, login in enumerate(logins):
        service.users.add("acme", login, email=f"{login}@example.jp",
                         display_name=f"社員 {i:02d}", allow=True)
    old = service.certificates.issue(IssueRequest(tenant="acme", logins=tuple(logins)))
    with service.database.reading() as session:  # the row the bulk write reaches last
        last_id = session.scalar(select(func.max(Certificate.id)).where(
            Certificate.serial.in_([view.serial for view in old])))
    probe = create_engine(service.engine.url)
    seen: list[str] = []
    real_record = audit_module.record

    def record(session: Any, actor: Any, event: Any, **kwargs: Any) -> Any:
        if not seen:  # the first event of the bulk write: is the last row locked yet?
            with probe.connect() as conn:
                try:
                    conn.execute(text("SELECT id FROM certificates WHERE id = :id "
                                      "FOR UPDATE NOWAIT"), {"id": last_id})
                    seen.append("free")
                except Exception:
                    seen.append("locked")
                conn.rollback()
        return real_record(session, actor, event, **kwargs)

    monkeypatch.setattr(status_module.audit, "record", record)
    try:
        service.certificates.issue(IssueRequest(tenant="acme", logins=tuple(logins),
                                                reissue="revoke"))
    finally:
        probe.dispose()
    assert seen == ["locked"]


class Ticking:
    """A clock one second further at each reading (thread-safe): revocations made at once
    still carry different times, so a later one moving ``revoked_at`` would show."""

    def __init__(self, start: Any) -> None:
        self._next = start
        self._lock = threading.Lock()

    def now(self) -> Any:
        import datetime as dt

        with self._lock:
            self._next += dt.timedelta(seconds=1)
            return self._next


REVOKERS = 8


def test_revocations_of_one_token_at_once_record_one_event_and_keep_the_first_time(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every revoker answers as for an already revoked token (no error); exactly one
    ``token.revoke`` event, and ``revoked_at`` is the time that event records."""
    _, view = service.tokens.create(role="gateway", tenant="default", name="本社 nginx")
    monkeypatch.setattr(service.tokens, "clock", Ticking(service.clock.now()))
    results = at_once(REVOKERS, lambda i: service.tokens.revoke(view.id, tenant="default"))
    assert results == [None] * REVOKERS
    revoked = service.audit.events(action="token.revoke")
    assert [(e.target, e.tenant) for e in revoked] == [(f"token:{view.id}", "default")]
    assert service.tokens.get(view.id).revoked_at == revoked[0].at
