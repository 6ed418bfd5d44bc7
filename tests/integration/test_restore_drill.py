"""The restore drill: a backup taken while another thread writes, more issuances,
revocations and CRLs, a restore into a fresh empty deployment, the replay of the CRL taken
just before; on SQLite and PostgreSQL (and across them).

Every revocation is back, the CRL Numbers rise above every one published before (those
after the backup included), the restored service issues and answers OCSP, and openssl
judges a restored certificate against the new CRL.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import ocsp
from sqlalchemy import Connection, Table, func, select

from ca import backupfile
from ca.clock import FixedClock
from ca.db import migrate
from ca.db.models import AuditEvent, Authority, Certificate, Crl, KeyMaterial
from ca.service import Service, backups, build_service
from ca.service.backups import Contents
from ca.settings import load_settings
from tests.moments import MOMENTS
from tests.support.databases import Templates, downgrade
from tests.support.environment import BASE_URL, DATABASES, PASSPHRASE, require_tool
from tests.support.issuing import crl_reasons, issue_one, ocsp_request

KEY = backupfile.new_key()


@pytest.fixture(params=[f"to-{kind}" for kind in DATABASES])
def target_url(request: pytest.FixtureRequest, tmp_path: Path,
               templates: Templates) -> Iterator[str]:
    """An empty database for the restored deployment, of either kind whatever the kind of
    the one backed up (SQLite <-> PostgreSQL)."""
    if request.param == "to-sqlite":
        yield f"sqlite:///{tmp_path / 'restored.db'}"
    else:
        yield from templates.postgres_database(migrated=False)


def fresh(tmp_path: Path, url: str, clock: FixedClock) -> Service:
    """A new deployment: its own data and key directory, an empty database, the passphrase
    of the one backed up."""
    return build_service(load_settings(
        data_dir=tmp_path / "restored-data", database_url=url, key_passphrase=PASSPHRASE,
        public_base_url=BASE_URL), clock=clock)


def all_numbers(service: Service) -> set[tuple[int, int]]:
    """(CA, number) of every CRL the database holds."""
    with service.database.reading() as session:
        return {(ca, number) for ca, number in
                session.execute(select(Crl.authority_id, Crl.number))}


def above(made: set[tuple[int, int]], published: set[tuple[int, int]]) -> bool:
    """Every CRL in ``made`` is numbered above all its CA's CRLs in ``published``."""
    return all(number > max((n for a, n in published if a == ca), default=0)
               for ca, number in made)


def take(service: Service, path: Path) -> Contents:
    with path.open("wb") as out:
        return service.backups.take(out, KEY)


def writer(service: Service, stop: threading.Event, done: list[str]) -> None:
    """Issues and revokes until told to stop (the service's traffic during the backup)."""
    service.users.add("default", "busy", email="busy@example.com", allow=True)
    while not stop.is_set():
        view = issue_one(service, "busy")
        service.revocation.revoke("default", view.serial, reason="superseded")
        done.append(view.serial)


def openssl_verify(service: Service, leaf_pem: str, directory: Path) -> str:
    openssl = require_tool("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    root, issuing = service.hierarchy.ca_certificates("default")
    files = {"root.pem": root.pem, "issuing.pem": issuing.pem, "leaf.pem": leaf_pem,
             "crl.pem": service.crls.chain("default").pem}
    for name, pem in files.items():
        (directory / name).write_text(pem, encoding="ascii")
    at = str(int((service.clock.now() + dt.timedelta(minutes=1)).timestamp()))
    result = subprocess.run(
        [openssl, "verify", "-attime", at, "-crl_check_all", "-CRLfile",
         str(directory / "crl.pem"), "-CAfile", str(directory / "root.pem"),
         "-untrusted", str(directory / "issuing.pem"), str(directory / "leaf.pem")],
        capture_output=True, text=True, timeout=60, check=False)
    return result.stdout + result.stderr


def ocsp_status(service: Service, der: bytes) -> ocsp.OCSPCertStatus:
    leaf = x509.load_der_x509_certificate(der)
    answer = ocsp.load_der_ocsp_response(service.ocsp.respond(ocsp_request(service, leaf)).der)
    return answer.certificate_status


def test_the_restore_drill(service: Service, clock: FixedClock, tmp_path: Path,
                           target_url: str) -> None:
    for login in ("alice", "bob", "carol", "dave"):
        service.users.add("default", login, email=f"{login}@example.com", allow=True)
    alice, bob, carol = (issue_one(service, n) for n in ("alice", "bob", "carol"))
    service.revocation.revoke("default", alice.serial, reason="affiliationChanged")

    # the backup, while another thread issues and revokes
    stop, written = threading.Event(), []
    thread = threading.Thread(target=writer, args=(service, stop, written))
    thread.start()
    try:
        while len(written) < 2:
            stop.wait(0.01)
        backup = tmp_path / "nightly.tgbk"
        contents = take(service, backup)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert contents.rows["tenants"] == 1 and contents.rows["authorities"] == 2  # root, issuing
    assert contents.rows["certificates"] >= 3 + 2  # the busy thread's, two at least

    # after the backup: lost with the database, but published to the gateways
    clock.advance(dt.timedelta(hours=1))
    dave = issue_one(service, "dave")  # issued after the backup: unknown to it
    service.revocation.revoke("default", bob.serial, reason="keyCompromise")
    service.revocation.suspend("default", carol.serial)
    service.revocation.revoke("default", dave.serial, reason="keyCompromise")
    for _ in range(5):  # a burst at one instant: numbers run ahead of the clock
        service.crls.publish("default")
    gateways_crl = service.crls.current("default").der
    published = all_numbers(service)
    before = {s: r for s, r in crl_reasons(x509.load_der_x509_crl(gateways_crl)).items()}
    assert {bob.serial, carol.serial, dave.serial, alice.serial} <= set(before)

    # the restore: a fresh deployment whose clock is a second behind the lost one's
    later = FixedClock(clock.now() - dt.timedelta(seconds=1))
    restored = fresh(tmp_path, target_url, later)
    try:
        outcome = restored.backups.restore(backup, KEY,
                                           replay_files={"gateway.crl": gateways_crl})
        assert outcome.contents.taken_at == MOMENTS.start
        # the restore is the first event after the backup's, on the chain they started
        (restore_event,) = restored.audit.events(action="backup.restore")
        assert (restore_event.actor, restore_event.target, restore_event.details) == (
            "cli", backup.name, {"taken_at": MOMENTS.start.isoformat(),
                                 "revision": outcome.contents.revision})
        assert restored.audit.events()[-1].id == restore_event.id
        assert restored.audit.verify().broken is None
        from_backup = all_numbers(restored)
        (replayed,) = restored.replay.replay({"gateway.crl": gateways_crl}, everyone=True)
        assert all(e.applied for e in replayed.entries)
        applied = {e.serial: e.reason for e in replayed.entries if e.known}
        unknown = {e.serial for e in replayed.entries if not e.known}
        # the busy thread's certificates: in the snapshot and revoked after it (applied
        # again), or issued after it (unknown); its last may have been revoked in time
        busy = set(written)
        assert {s: r for s, r in applied.items() if s not in busy} == {
            bob.serial: "keyCompromise", carol.serial: "certificateHold"}
        assert {r for s, r in applied.items() if s in busy} <= {"superseded"}
        assert unknown - busy == {dave.serial}
        assert not set(applied) & unknown

        # every revocation is back, dated as published, that of a certificate issued after
        # the backup too
        after = x509.load_der_x509_crl(restored.crls.current("default").der)
        reasons = crl_reasons(after)
        assert reasons == before
        assert {s: reasons[s] for s in (alice.serial, bob.serial, carol.serial, dave.serial)} == {
            alice.serial: "affiliationChanged", bob.serial: "keyCompromise",
            carol.serial: "certificateHold", dave.serial: "keyCompromise"}
        old_dates = {e.serial_number: e.revocation_date_utc
                     for e in x509.load_der_x509_crl(gateways_crl)}
        assert all(old_dates[e.serial_number] == e.revocation_date_utc for e in after)

        # CRL Numbers still rise above every one published before, those after the backup too
        number = after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert number > max(n for _, n in published)
        assert above(all_numbers(restored) - from_backup, published)

        # the restored service issues and answers OCSP
        erin = issue_one(restored, "dave")
        assert ocsp_status(restored, erin.der) == ocsp.OCSPCertStatus.GOOD
        assert ocsp_status(restored, bob.der) == ocsp.OCSPCertStatus.REVOKED
        assert ocsp_status(restored, dave.der) == ocsp.OCSPCertStatus.REVOKED
        assert "certificate revoked" in openssl_verify(restored, dave.pem, tmp_path / "dave")

        # and the lifecycle's renewal (made outside the write, ca.service.crls.Renewal) keeps
        # listing the replayed revocation of a certificate the database does not hold
        later.advance(dt.timedelta(days=4))  # past half the CRL's 7 days
        restored.lifecycle.run()
        renewed = x509.load_der_x509_crl(restored.crls.current("default").der)
        assert renewed.last_update_utc > after.last_update_utc
        assert crl_reasons(renewed) == before

        # openssl judges restored certificates against the new CRL
        assert "OK" in openssl_verify(restored, erin.pem, tmp_path / "ok")
        assert "certificate revoked" in openssl_verify(restored, bob.pem, tmp_path / "bob")
    finally:
        restored.engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_number_after_a_restore_is_above_a_burst_published_after_the_backup(
        service: Service, clock: FixedClock, tmp_path: Path) -> None:
    """No replay: the restored deployment's clock alone (one millisecond after the burst)
    numbers its CRLs above a burst of CRLs made at one instant after the backup."""
    backup = tmp_path / "b.tgbk"
    take(service, backup)
    clock.advance(dt.timedelta(minutes=5))
    for _ in range(20):
        service.crls.publish("default")
    published = all_numbers(service)
    restored = fresh(tmp_path, f"sqlite:///{tmp_path / 'r.db'}",
                     FixedClock(clock.now() + dt.timedelta(milliseconds=1)))
    try:
        restored.backups.restore(backup, KEY)
        made_at_restore = all_numbers(restored) - published
        assert len(made_at_restore) == 2  # the root's and the tenant's
        assert above(made_at_restore, published)
        assert restored.crls.publish("default").number > max(n for _, n in published)
    finally:
        restored.engine.dispose()


def test_a_backup_is_one_snapshot_while_writes_commit_between_its_tables(
        service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An issuance commits after the backup read its first tables and before it read the
    rest: the backup holds none of it (not its certificate, not its audit event)."""
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    issue_one(service)
    with service.database.reading() as session:
        counted = {name: session.scalar(select(func.count()).select_from(table))
                   for name, table in (("certificates", Certificate.__table__),
                                       ("audit_events", AuditEvent.__table__),
                                       ("key_material", KeyMaterial.__table__))}
    original = backups._write_table
    sneaked: list[str] = []

    def write_table(conn: Connection, table: Table, writer: backupfile.Writer) -> int:
        if not sneaked:  # after the snapshot began, before any table is read
            sneaked.append(issue_one(service).serial)
        return original(conn, table, writer)

    monkeypatch.setattr(backups, "_write_table", write_table)
    contents = take(service, tmp_path / "b.tgbk")
    assert sneaked
    assert {name: contents.rows[name] for name in counted} == counted == {
        "certificates": 1, "audit_events": counted["audit_events"], "key_material": 1}


def test_an_older_backup_restores_into_a_migrated_empty_database_and_is_upgraded(
        service: Service, clock: FixedClock, tmp_path: Path) -> None:
    """A backup taken at revision 0012 (before CRL entries were kept), restored into a
    database already at this release's schema with no rows: made again at 0012, filled,
    then upgraded; the revoked certificate keeps its CRL entry through migration 0013."""
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    kept, gone = issue_one(service), issue_one(service)
    service.revocation.revoke("default", gone.serial, reason="keyCompromise")
    service.engine.dispose()
    downgrade(service.engine, "0012")
    contents = take(service, tmp_path / "old.tgbk")
    assert contents.revision == "0012"

    restored = fresh(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", clock)
    restored.database.upgrade()  # migrated, empty
    try:
        restored.backups.restore(tmp_path / "old.tgbk", KEY)
        assert restored.database.revisions()[0] == migrate.head_revision()
        crl = x509.load_der_x509_crl(restored.crls.current("default").der)
        assert crl_reasons(crl) == {gone.serial: "keyCompromise"}
        assert ocsp_status(restored, kept.der) == ocsp.OCSPCertStatus.GOOD
    finally:
        restored.engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_ca_whose_only_entry_is_replayed_keeps_it_through_renewals(
        service: Service, clock: FixedClock, tmp_path: Path) -> None:
    take(service, tmp_path / "b.tgbk")
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    lost = issue_one(service)
    service.revocation.revoke("default", lost.serial, reason="keyCompromise")
    gateways_crl = service.crls.current("default").der

    restored = fresh(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", clock)
    try:
        restored.backups.restore(tmp_path / "b.tgbk", KEY,
                                 replay_files={"gateway.crl": gateways_crl})
        restored.replay.replay({"gateway.crl": gateways_crl}, everyone=True)
        with restored.database.reading() as session:
            events = session.execute(select(AuditEvent.action, AuditEvent.target,
                                            AuditEvent.actor).where(
                AuditEvent.action == "cert.revoke.replayed")).all()
        assert [tuple(e) for e in events] == [
            ("cert.revoke.replayed", f"default/{lost.serial}", "restore")]
        clock.advance(dt.timedelta(days=4))  # past half the CRL's 7 days
        restored.lifecycle.run()
        renewed = x509.load_der_x509_crl(restored.crls.current("default").der)
        assert renewed.last_update_utc >= clock.now() - dt.timedelta(minutes=5)  # renewed
        assert crl_reasons(renewed) == {lost.serial: "keyCompromise"}
        # the schema of before has no place for it: a downgrade is refused, nothing changed
        with pytest.raises(RuntimeError, match="cannot downgrade below 0016: 1 revocation"):
            downgrade(restored.engine, "0015")
        assert migrate.current_revision(restored.engine) == migrate.head_revision()
        assert crl_reasons(x509.load_der_x509_crl(
            restored.crls.current("default").der)) == {lost.serial: "keyCompromise"}
    finally:
        restored.engine.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_row_naming_a_later_row_of_its_own_table_is_restored(
        service: Service, clock: FixedClock, tmp_path: Path, target_url: str) -> None:
    """Foreign keys are checked at each insert: a CA naming a CA made after it (a root
    rollover's link certificate may) is restored with the reference set afterwards."""
    with service.database.transaction() as session:
        root, issuing = session.scalars(select(Authority).order_by(Authority.id)).all()
        assert root.id < issuing.id
        root.issuer_id = issuing.id
    take(service, tmp_path / "b.tgbk")
    restored = fresh(tmp_path, target_url, clock)
    try:
        restored.backups.restore(tmp_path / "b.tgbk", KEY)
        with restored.database.reading() as session:
            assert [(a.id, a.issuer_id) for a in session.scalars(
                select(Authority).order_by(Authority.id))] == [
                (root.id, issuing.id), (issuing.id, root.id)]
    finally:
        restored.engine.dispose()


def test_a_stale_crl_does_not_put_back_a_hold_lifted_after_it(
        service: Service, clock: FixedClock, tmp_path: Path) -> None:
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    reinstated, held = issue_one(service), issue_one(service)
    take(service, tmp_path / "b.tgbk")  # at MOMENTS.start: both valid
    clock.set(MOMENTS.start + dt.timedelta(hours=1))
    service.revocation.suspend("default", reinstated.serial)
    service.revocation.suspend("default", held.serial)
    stale_crl = service.crls.current("default").der  # thisUpdate start + 1 h
    assert x509.load_der_x509_crl(stale_crl).last_update_utc <= clock.now()

    restored = fresh(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", clock)
    try:
        clock.set(MOMENTS.start + dt.timedelta(hours=2))
        restored.backups.restore(tmp_path / "b.tgbk", KEY)
        clock.set(MOMENTS.start + dt.timedelta(hours=3))  # the operator, after the CRL:
        restored.revocation.suspend("default", reinstated.serial)
        clock.set(MOMENTS.start + dt.timedelta(hours=4))
        restored.revocation.reinstate("default", reinstated.serial)
        clock.set(MOMENTS.start + dt.timedelta(hours=5))
        (replayed,) = restored.replay.replay({"stale.crl": stale_crl})
        assert {(e.serial, e.applied, e.changed_after) for e in replayed.entries} == {
            (reinstated.serial, False, True), (held.serial, True, False)}
        states = {c.serial: c.state.value for c in
                  restored.certificates.list_certificates("default")}
        assert states == {reinstated.serial: "valid", held.serial: "suspended"}
        published = x509.load_der_x509_crl(restored.crls.current("default").der)
        assert set(crl_reasons(published)) == {held.serial}
    finally:
        restored.engine.dispose()


def test_a_revocation_after_a_hold_in_the_backup_is_replayed_however_close_they_are(
        service: Service, clock: FixedClock, tmp_path: Path) -> None:
    """A certificate held before the backup and revoked (keyCompromise) after it, seconds
    apart: the CRL's thisUpdate is set back by the clock skew, before the hold, and the
    revocation it lists is applied all the same (a revocation is for good; only a hold
    gives way to what came after the CRL)."""
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    leaked = issue_one(service)
    clock.set(MOMENTS.start + dt.timedelta(hours=1))
    service.revocation.suspend("default", leaked.serial)
    clock.advance(dt.timedelta(seconds=10))
    take(service, tmp_path / "b.tgbk")  # holds the hold
    clock.advance(dt.timedelta(seconds=10))
    service.revocation.revoke("default", leaked.serial, reason="keyCompromise")
    gateways = service.crls.current("default").der
    assert x509.load_der_x509_crl(gateways).last_update_utc < clock.now() - dt.timedelta(
        seconds=20)  # set back before the hold was placed

    restored = fresh(tmp_path, f"sqlite:///{tmp_path / 'r.db'}", clock)
    try:
        clock.advance(dt.timedelta(minutes=1))
        restored.backups.restore(tmp_path / "b.tgbk", KEY,
                                 replay_files={"gateway.crl": gateways})
        (replayed,) = restored.replay.replay({"gateway.crl": gateways}, everyone=True)
        assert [(e.serial, e.reason, e.applied, e.changed_after)
                for e in replayed.entries] == [(leaked.serial, "keyCompromise", True, False)]
        (shown,) = restored.certificates.list_certificates("default")
        assert (shown.state.value, shown.revocation_reason) == ("revoked", "keyCompromise")
    finally:
        restored.engine.dispose()
