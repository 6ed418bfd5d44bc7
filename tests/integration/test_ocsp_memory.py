"""OCSP answers from memory, and memory that hostile requests cannot bloat or make work.

The feed's pace (``Memory.ticks``) is frozen right after a read of the change feed, so that
no read falls due during a test: a count of zero queries is exact, not a matter of speed.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from ca.clock import FixedClock
from ca.errors import StorageError
from ca.service import CertificateView, IssueRequest, Service, build_service, ocsp_feed, ocsp_memory
from ca.service import ocsp as responder
from ca.x509 import ocsp as ocsp_x509
from tests.support.issuing import issue_one

TENANT = "tokyo"
HASHES = [hashes.SHA1(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()]


@pytest.fixture
def tokyo(service: Service) -> Service:
    service.hierarchy.create_tenant(TENANT, display_name="東京本社", ca_key_type="ec-p256")
    frozen = time.monotonic()
    service.ocsp.memory.ticks = lambda: frozen  # no read of the feed falls due
    service.ocsp.catch_up()
    return service


@pytest.fixture
def queries(tokyo: Service) -> Iterator[list[str]]:
    """Every SQL statement the service runs from here on."""
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)
    event.listen(tokyo.engine, "before_cursor_execute", count)
    yield seen
    event.remove(tokyo.engine, "before_cursor_execute", count)


def user_with_certificate(service: Service, login: str) -> CertificateView:
    service.users.add(TENANT, login, email=f"{login}@example.jp", allow=True)
    return issue_one(service, login, TENANT)

def issuing(service: Service) -> x509.Certificate:
    return x509.load_der_x509_certificate(service.hierarchy.ca_certificates(TENANT)[1].der)


def request(service: Service, serial: int, algorithm: hashes.HashAlgorithm = hashes.SHA1(),
            *, nonce: bytes | None = None) -> bytes:
    name_hash, key_hash = ocsp_x509.issuer_keys(issuing(service)).by_algorithm[algorithm.name]
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(name_hash, key_hash, serial,
                                                                algorithm)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def stranger_request(serial: int) -> bytes:
    """A request naming an issuer no tenant has."""
    return ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        secrets.token_bytes(20), secrets.token_bytes(20), serial, hashes.SHA1()
    ).build().public_bytes(serialization.Encoding.DER)


def status(der: bytes) -> ocsp.OCSPCertStatus:
    return ocsp.load_der_ocsp_response(der).certificate_status


def test_a_kept_answer_is_served_from_memory_with_no_query(tokyo: Service,
                                                           queries: list[str]) -> None:
    view = user_with_certificate(tokyo, "yamada")
    data = request(tokyo, int(view.serial, 16))
    first = tokyo.ocsp.respond(data)
    queries.clear()
    for _ in range(3):
        kept = tokyo.ocsp.from_memory(data)
        assert kept is not None and kept.der == first.der
    assert queries == []


def test_memory_alone_never_reads_or_signs(tokyo: Service, queries: list[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # the event loop's half: a new certificate (responder not made yet), or a nonce, is
    # left to ocsp_respond in a thread
    built: list[object] = []
    monkeypatch.setattr(ocsp_x509, "build_response", lambda *a, **k: built.append(a))
    view = user_with_certificate(tokyo, "sato")
    serial = int(view.serial, 16)
    asked = [request(tokyo, serial), request(tokyo, serial, nonce=b"0123456789abcdef")]
    queries.clear()
    assert [tokyo.ocsp.from_memory(data) for data in asked] == [None, None]
    assert (queries, built) == ([], [])


def test_kept_answers_stay_within_the_cap_whatever_is_asked(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocsp_memory, "CAPACITY", 4)
    service.hierarchy.create_tenant(TENANT, display_name="東京本社", ca_key_type="ec-p256")
    views = [user_with_certificate(service, f"user{n}") for n in range(3)]
    memory = service.ocsp.memory
    for view in views:
        for algorithm in HASHES:
            data = request(service, int(view.serial, 16), algorithm)
            assert status(service.ocsp.respond(data).der) is ocsp.OCSPCertStatus.GOOD
            assert len(memory.entries) <= 4 and len(memory.raw) <= 4
    assert (len(memory.entries), len(memory.raw)) == (4, 4)
    # the most recently asked are the ones kept
    last = int(views[-1].serial, 16)
    assert set(memory.entries) == {(memory.issuer(_issuer_key(service, a)), last, a.name)
                                   for a in HASHES}


def _issuer_key(service: Service, algorithm: hashes.HashAlgorithm) -> ocsp_memory.IssuerKey:
    name_hash, key_hash = ocsp_x509.issuer_keys(issuing(service)).by_algorithm[algorithm.name]
    return (algorithm.name, name_hash, key_hash)


def test_nothing_is_kept_for_an_unknown_serial_or_an_unknown_issuer(tokyo: Service) -> None:
    # a tenant with a certificate: not an empty memory by accident
    user_with_certificate(tokyo, "suzuki")
    for _ in range(50):
        serial = x509.random_serial_number()
        unknown = tokyo.ocsp.respond(request(tokyo, serial))
        assert status(unknown.der) is ocsp.OCSPCertStatus.UNKNOWN
        assert tokyo.ocsp.respond(stranger_request(serial)).der == responder.UNAUTHORIZED.der
    assert (dict(tokyo.ocsp.memory.entries), dict(tokyo.ocsp.memory.raw)) == ({}, {})


@pytest.mark.parametrize("serial", [1 << 160, (1 << 8000) - 1], ids=["21-octets", "1000-octets"])
def test_a_serial_longer_than_20_octets_is_malformed_at_once(
        tokyo: Service, queries: list[str], monkeypatch: pytest.MonkeyPatch,
        serial: int) -> None:
    built: list[object] = []
    monkeypatch.setattr(ocsp_x509, "build_response", lambda *a, **k: built.append(a))
    data = request(tokyo, serial)
    queries.clear()
    assert tokyo.ocsp.from_memory(data) == responder.MALFORMED
    assert tokyo.ocsp.respond(data) == responder.MALFORMED
    assert (queries, built) == ([], [])
    assert dict(tokyo.ocsp.memory.entries) == {}


def test_an_unknown_issuer_flood_costs_no_query(tokyo: Service, queries: list[str]) -> None:
    known = dict(tokyo.ocsp.memory.issuers)
    for n in range(1, 501):
        data = stranger_request(n)
        assert tokyo.ocsp.from_memory(data) == responder.UNAUTHORIZED
        assert tokyo.ocsp.respond(data) == responder.UNAUTHORIZED
    assert queries == []
    assert tokyo.ocsp.memory.issuers == known


def test_a_new_tenant_is_answered_by_every_process_after_a_feed_read(tokyo: Service) -> None:
    other = build_service(tokyo.settings, clock=tokyo.clock)
    try:
        other.hierarchy.create_tenant("osaka", display_name="大阪支社", ca_key_type="ec-p256")
        other.users.add("osaka", "kimura", email="kimura@example.jp", allow=True)
        (view,) = other.certificates.issue(IssueRequest(tenant="osaka", logins=("kimura",)))
        issuer = x509.load_der_x509_certificate(other.hierarchy.ca_certificates("osaka")[1].der)
    finally:
        other.engine.dispose()
    data = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_der_x509_certificate(view.der), issuer, hashes.SHA256()).build(
    ).public_bytes(serialization.Encoding.DER)
    tokyo.ocsp.catch_up()
    assert status(tokyo.ocsp.respond(data).der) is ocsp.OCSPCertStatus.GOOD


def test_an_answer_read_before_a_change_arrived_is_not_kept(
        tokyo: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    view = user_with_certificate(tokyo, "kato")
    memory = tokyo.ocsp.memory
    read = tokyo.ocsp._status

    def read_then_a_change_arrives(authority_id: int, serial: int):  # type: ignore[no-untyped-def]
        found = read(authority_id, serial)
        memory.forget([(authority_id, view.serial)])  # the feed, meanwhile
        return found
    monkeypatch.setattr(tokyo.ocsp, "_status", read_then_a_change_arrives)
    tokyo.ocsp.respond(request(tokyo, int(view.serial, 16)))
    assert dict(memory.entries) == {}


def test_a_change_in_this_process_is_forgotten_at_its_commit(tokyo: Service) -> None:
    view = user_with_certificate(tokyo, "ito")
    data = request(tokyo, int(view.serial, 16))
    tokyo.ocsp.respond(data)
    tokyo.revocation.suspend(TENANT, view.serial)
    assert tokyo.ocsp.from_memory(data) is None  # forgotten: made afresh in a thread
    assert status(tokyo.ocsp.respond(data).der) is ocsp.OCSPCertStatus.REVOKED


def test_a_reader_that_fell_behind_the_kept_batches_forgets_everything(
        tokyo: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ocsp_feed, "KEEP_BATCHES", 2)
    views = [user_with_certificate(tokyo, f"user{n}") for n in range(4)]
    kept = request(tokyo, int(views[0].serial, 16))
    tokyo.ocsp.respond(kept)
    other = build_service(tokyo.settings, clock=tokyo.clock)
    try:
        for view in views[1:]:  # three batches; only the newest two stay in the table
            other.revocation.suspend(TENANT, view.serial)
    finally:
        other.engine.dispose()
    tokyo.ocsp.catch_up()
    assert dict(tokyo.ocsp.memory.entries) == {}


def test_a_kept_answer_past_a_third_of_its_life_is_made_afresh_in_the_background(
        tokyo: Service, clock: FixedClock) -> None:
    view = user_with_certificate(tokyo, "kobayashi")
    data = request(tokyo, int(view.serial, 16))
    first = tokyo.ocsp.respond(data)
    assert first.made_at is not None and first.next_update is not None
    clock.set(first.made_at + (first.next_update - first.made_at) / 3)
    served = tokyo.ocsp.from_memory(data)  # still good to serve, and queued to be renewed
    assert served is not None and served.der == first.der
    deadline = time.monotonic() + 60
    while (tokyo.ocsp.memory.busy or tokyo.ocsp.memory.to_refresh) and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    renewed = tokyo.ocsp.from_memory(data)
    assert renewed is not None and renewed.made_at == clock.now()


def test_an_internal_failure_is_an_ocsp_internal_error(
        tokyo: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    view = user_with_certificate(tokyo, "watanabe")
    data = request(tokyo, int(view.serial, 16))

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("planted")
    monkeypatch.setattr(tokyo.ocsp, "_load_or_make_responder", broken)
    assert tokyo.ocsp.respond(data) == responder.INTERNAL_ERROR

    def unreachable(*_args: object, **_kwargs: object) -> None:
        raise StorageError("database error: OperationalError")
    monkeypatch.setattr(tokyo.ocsp, "_load_or_make_responder", unreachable)
    assert tokyo.ocsp.respond(data) == responder.TRY_LATER
    statuses = {ocsp.load_der_ocsp_response(a.der).response_status
                for a in (responder.INTERNAL_ERROR, responder.TRY_LATER)}
    assert statuses == {ocsp.OCSPResponseStatus.INTERNAL_ERROR, ocsp.OCSPResponseStatus.TRY_LATER}


def test_a_broken_database_is_try_later_and_logged_once_not_per_request(
        tokyo: Service, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(responder, "_logged", {})
    serials = [x509.random_serial_number() for _ in range(20)]
    asked = [request(tokyo, serial) for serial in serials]

    def unreachable(*_args: object) -> None:
        raise OperationalError("SELECT", {}, Exception("unable to open database file"))
    monkeypatch.setattr(tokyo.ocsp, "_status", unreachable)
    with caplog.at_level(logging.ERROR, logger="tegata.ocsp"):
        answers = {tokyo.ocsp.respond(data) for data in asked}
    assert answers == {responder.TRY_LATER}
    assert [r.getMessage() for r in caplog.records] == [
        "OCSP: the database failed; answered tryLater"]
