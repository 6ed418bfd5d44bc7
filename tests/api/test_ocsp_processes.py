"""Every process's kept OCSP answers follow a status change made by any process.

Two real ``tegata serve`` processes on one database (an SQLite file, PostgreSQL): both
answer from memory; a suspension, a reinstatement and a revocation made through one reach
the other's answers, and a revocation by the CLI (a third process) reaches a server's. The
waits are generous deadlines: the tests are about what is answered, bench/ocsp.py measures
how soon (the change feed is read every 0.2 s).
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ca.service import CertificateView, IssueRequest, Service
from ca.settings import Settings
from tests.served import ROOT, Server, live_service, server_env, serving

TENANT = "kansai"
DISPLAY = "関西支社"
DEADLINE = 60.0  # seconds: far beyond the feed's pace, for a loaded machine


@pytest.fixture
def live(settings: Settings) -> Iterator[Service]:
    with live_service(settings, TENANT, DISPLAY) as service:
        yield service


def issue_one(service: Service, login: str) -> CertificateView:
    service.users.add(TENANT, login, email=f"{login}@example.jp", allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant=TENANT, logins=(login,)))
    return view


def get_url(service: Service, server: Server, view: CertificateView) -> str:
    leaf = x509.load_der_x509_certificate(view.der)
    issuer = x509.load_der_x509_certificate(service.hierarchy.ca_certificates(TENANT)[1].der)
    der = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build(
    ).public_bytes(serialization.Encoding.DER)
    return f"{server.url}/ocsp/{base64.b64encode(der).decode()}"


def answered(url: str) -> tuple[ocsp.OCSPCertStatus, x509.ReasonFlags | None]:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    parsed = ocsp.load_der_ocsp_response(response.content)
    assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return parsed.certificate_status, parsed.revocation_reason


def answered_in_time(url: str, expected: tuple[ocsp.OCSPCertStatus, x509.ReasonFlags | None]
                     ) -> tuple[ocsp.OCSPCertStatus, x509.ReasonFlags | None]:
    """What ``url`` answers once it answers ``expected``, or at the deadline."""
    deadline = time.monotonic() + DEADLINE
    while (found := answered(url)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def replica(settings: Settings, tmp_path: Path, name: str) -> contextlib.AbstractContextManager[
        Server]:
    """One of two servers on the database: a data directory of its own, the keys shared."""
    return serving(settings, tmp_path / f"{name}.log", TEGATA_DATA_DIR=str(tmp_path / name),
                   TEGATA_KEY_DIR=str(settings.effective_key_dir))


GOOD = (ocsp.OCSPCertStatus.GOOD, None)
HELD = (ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags.certificate_hold)
COMPROMISED = (ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags.key_compromise)


def test_a_change_through_one_server_reaches_the_other_servers_kept_answers(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    view = issue_one(live, "yamada")
    token = live.tokens.create(role="admin", tenant=TENANT)[0]
    headers = {"Authorization": f"Bearer {token}"}
    base = f"/api/v1/tenants/{TENANT}/certificates/{view.serial}"
    with replica(settings, tmp_path, "a") as a, replica(settings, tmp_path, "b") as b:
        urls = {a.url: get_url(live, a, view), b.url: get_url(live, b, view)}
        for url in urls.values():  # each keeps "good" in its memory
            assert answered(url) == GOOD
            assert answered(url) == GOOD
        steps = [(a, b, "suspend", None, HELD), (a, b, "reinstate", None, GOOD),
                 (b, a, "revoke", {"reason": "keyCompromise"}, COMPROMISED)]
        for through, other, action, body, expected in steps:
            assert answered(urls[other.url]) != expected
            done = httpx.post(f"{through.url}{base}/{action}", json=body, headers=headers,
                              timeout=30)
            assert done.status_code == 200, done.text
            assert answered_in_time(urls[other.url], expected) == expected, action
            assert answered(urls[through.url]) == expected, action


def test_a_revocation_by_the_cli_reaches_a_running_servers_answers(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    view = issue_one(live, "suzuki")
    with serving(settings, tmp_path / "serve.log") as server:
        url = get_url(live, server, view)
        assert answered(url) == GOOD
        assert answered(url) == GOOD
        subprocess.run([sys.executable, "-m", "cli.main", "cert", "revoke", view.serial,
                        "--tenant", TENANT, "--reason", "keyCompromise"], cwd=ROOT,
                       env=server_env(settings), check=True, capture_output=True, timeout=120)
        assert answered_in_time(url, COMPROMISED) == COMPROMISED


def test_a_certificate_issued_by_another_process_is_answered_at_once(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    early = issue_one(live, "tanaka")
    with serving(settings, tmp_path / "serve.log") as server:
        assert answered(get_url(live, server, early)) == GOOD  # memory warm
        later = issue_one(live, "sato")
        assert answered(get_url(live, server, later)) == GOOD


def test_an_etag_from_one_process_gets_a_304_or_a_valid_answer_from_another(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    """With several workers (or servers) each signs its own answer: a cache's ETag from one
    is answered by another with 304 when their answers are the same bytes, else with 200
    and that one's own valid, current answer, never with an error or a stale status."""
    view = issue_one(live, "kobayashi")
    with replica(settings, tmp_path, "a") as a, replica(settings, tmp_path, "b") as b:
        first = httpx.get(get_url(live, a, view), timeout=30)
        assert first.status_code == 200
        etag = first.headers["etag"]
        again = httpx.get(get_url(live, b, view), headers={"If-None-Match": etag}, timeout=30)
        assert again.status_code in (200, 304)
        if again.status_code == 304:
            assert again.content == b""
        else:
            parsed = ocsp.load_der_ocsp_response(again.content)
            assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
            assert parsed.serial_number == int(view.serial, 16)
            assert (parsed.certificate_status, parsed.revocation_reason) == GOOD
            assert again.headers["etag"] != etag
