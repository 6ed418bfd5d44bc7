"""Status changes at the same moment, against a running ``tegata serve`` on both databases.

Two clients change the same certificate at once (threads released together by a barrier);
whatever the interleaving, the outcome is the one of some order of the two: keyCompromise
is never lost to a concurrent superseded and the first revocation date stays, two suspends
make one hold, two reinstates lift it once. Judged in the database, in the CRL and the OCSP
answers the server publishes (parsed here), and in the audit log.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import select

from ca.db.models import Certificate, Hold
from ca.service import CertificateView, IssueRequest, Service
from ca.settings import Settings
from ca.states import State
from tests.served import Server, live_service, serving

TENANT = "acme"
DISPLAY = "株式会社アクメ"
RACES = 20  # certificates raced for revocation; a quarter as many for each other race


@pytest.fixture
def live(settings: Settings) -> Iterator[Service]:
    """A CA on the system clock, as the server it shares the database with."""
    with live_service(settings, TENANT, DISPLAY) as service:
        yield service


def issue_many(service: Service, prefix: str, count: int) -> list[CertificateView]:
    logins = tuple(f"{prefix}{n:02d}" for n in range(count))
    for login in logins:
        service.users.add(TENANT, login, email=f"{login}@example.com", allow=True)
    return service.certificates.issue(IssueRequest(tenant=TENANT, logins=logins))


def at_once(server: Server, token: str, calls: list[tuple[str, str, dict[str, object] | None]]
            ) -> list[httpx.Response]:
    """POST every (group, path, body) of ``calls``; the calls of one group (two changes of
    one certificate) leave together (a barrier per group), every group at the same time."""
    barriers: dict[str, threading.Barrier] = {}
    for group, _, _ in calls:
        barriers[group] = threading.Barrier(sum(1 for g, _, _ in calls if g == group))

    def send(client: httpx.Client, group: str, path: str,
             body: dict[str, object] | None) -> httpx.Response:
        barriers[group].wait(timeout=30)
        return client.post(f"{server.url}/api/v1/tenants/{TENANT}/{path}", json=body,
                           timeout=60)

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=headers, limits=httpx.Limits(max_connections=len(calls))
                      ) as client, ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(send, client, g, p, b) for g, p, b in calls]
        return [f.result() for f in futures]


def crl_reasons(server: Server) -> dict[str, tuple[str | None, dt.datetime]]:
    """serial -> (reasonCode, revocation date) of the CRL the server publishes."""
    crl = x509.load_der_x509_crl(httpx.get(f"{server.url}/crl/{TENANT}.crl", timeout=30).content)
    found = {}
    for entry in crl:
        try:
            reason: str | None = entry.extensions.get_extension_for_class(
                x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = None
        found[format(entry.serial_number, "X")] = (reason, entry.revocation_date_utc)
    return found


def ocsp_answer(server: Server, view: CertificateView, issuer: x509.Certificate
                ) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_der_x509_certificate(view.der), issuer, hashes.SHA1()).build()
    answer = httpx.post(f"{server.url}/ocsp", timeout=30,
                        content=request.public_bytes(serialization.Encoding.DER),
                        headers={"Content-Type": "application/ocsp-request"})
    assert answer.status_code == 200
    return ocsp.load_der_ocsp_response(answer.content)


def events(service: Service, action: str) -> dict[str, list[tuple[dt.datetime, str]]]:
    """serial -> [(at, reason or cause)] of ``action``, in the chain's order."""
    found: dict[str, list[tuple[dt.datetime, str]]] = {}
    for event in service.audit.events(tenant=TENANT, action=action, limit=10_000):
        detail = event.details.get("reason") or event.details.get("cause")
        found.setdefault(event.target.rsplit("/", 1)[1], []).append((event.at, str(detail)))
    return found


def test_status_changes_at_the_same_moment_apply_one_after_the_other(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    raced = issue_many(live, "kc", RACES)
    retired = issue_many(live, "leaver", RACES // 4)
    reissued = issue_many(live, "renewed", RACES // 4)
    held = issue_many(live, "hold", RACES // 4)
    lifted = issue_many(live, "lift", RACES // 4)
    for view in lifted:
        live.revocation.suspend(TENANT, view.serial)
    token = live.tokens.create(role="admin", tenant=TENANT)[0]
    issuer = x509.load_der_x509_certificate(live.hierarchy.ca_certificates(TENANT)[1].der)
    compromised: dict[str, object] = {"reason": "keyCompromise"}
    calls: list[tuple[str, str, dict[str, object] | None]] = []
    # keyCompromise against each other revocation: by hand (superseded), a leaver
    # (affiliationChanged), a reissue that revokes (superseded)
    other = {}
    for view in raced:
        calls += [(view.serial, f"certificates/{view.serial}/revoke", compromised),
                  (view.serial, f"certificates/{view.serial}/revoke", {"reason": "superseded"})]
        other[view.serial] = "superseded"
    for view in retired:
        calls += [(view.serial, f"certificates/{view.serial}/revoke", compromised),
                  (view.serial, f"users/{view.login}/retire", None)]
        other[view.serial] = "affiliationChanged"
    for view in reissued:
        calls += [(view.serial, f"certificates/{view.serial}/revoke", compromised),
                  (view.serial, "certificates", {"login": view.login, "reissue": "revoke"})]
        other[view.serial] = "superseded"
    for view in held:
        calls += [(view.serial, f"certificates/{view.serial}/suspend", None)] * 2
    for view in lifted:
        calls += [(view.serial, f"certificates/{view.serial}/reinstate", None)] * 2

    with serving(settings, tmp_path / "serve.log") as server:
        answers = at_once(server, token, calls)
        assert [a.status_code for a in answers] == [
            201 if path == "certificates" else 200 for _, path, _ in calls], [
            a.text for a in answers if a.status_code >= 300]
        published = crl_reasons(server)
        answered = {view.serial: ocsp_answer(server, view, issuer)
                    for view in raced + retired + reissued + held + lifted}

    revokes = events(live, "cert.revoke")
    serials = [view.serial for view in raced + retired + reissued]
    stored = {s: live.certificates.get(s, tenant=TENANT) for s in serials}
    assert {s: (v.state, v.revocation_reason) for s, v in stored.items()} == {
        s: (State.REVOKED, "keyCompromise") for s in serials}
    # the other revocation first and then the upgrade, or keyCompromise alone (the other
    # after it changes nothing); the date is the first revocation's, everywhere
    assert {s: [reason for _, reason in revokes[s]] in (
        ["keyCompromise"], [other[s], "keyCompromise"]) for s in serials} == {
        s: True for s in serials}, revokes
    first = {s: revokes[s][0][0] for s in serials}
    assert {s: v.revoked_at for s, v in stored.items()} == first
    assert {s: published[s] for s in serials} == {
        s: ("keyCompromise", first[s].replace(microsecond=0)) for s in serials}
    assert {s: (answered[s].certificate_status, answered[s].revocation_reason,
                answered[s].revocation_time_utc) for s in serials} == {
        s: (ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags.key_compromise,
            first[s].replace(microsecond=0)) for s in serials}

    with live.database.reading() as session:
        holds = session.execute(select(Certificate.serial, Hold.cause, Hold.lifted_at).join(
            Hold, Hold.certificate_id == Certificate.id)).all()
    by_serial: dict[str, list[tuple[str, bool]]] = {}
    for serial, cause, lifted_at in holds:
        by_serial.setdefault(serial, []).append((cause, lifted_at is not None))
    assert by_serial == {**{v.serial: [("manual", False)] for v in held},
                         **{v.serial: [("manual", True)] for v in lifted}}
    suspends = events(live, "cert.suspend")
    reinstates = events(live, "cert.reinstate")
    assert {s: [r for _, r in e] for s, e in suspends.items()} == {
        v.serial: ["manual"] for v in held + lifted}
    assert {s: [r for _, r in e] for s, e in reinstates.items()} == {
        v.serial: ["manual"] for v in lifted}
    renewals = {v.login for v in live.certificates.list_certificates(TENANT, state="valid")}
    assert renewals == {v.login for v in reissued + lifted}
    assert set(published) == {v.serial for v in raced + retired + reissued + held}
    for view in held:
        assert published[view.serial][0] == "certificateHold"
        assert answered[view.serial].certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert answered[view.serial].revocation_reason == x509.ReasonFlags.certificate_hold
    for view in lifted:
        assert answered[view.serial].certificate_status == ocsp.OCSPCertStatus.GOOD
    assert live.audit.verify().broken is None
