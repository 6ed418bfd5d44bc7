"""One tenant's unusable CA key stops only that tenant: the lifecycle goes on with the others.

Three tenants (Japanese display names), two certificates each; the subscriptions end two days
after ``MOMENTS.start`` (grace 30 days), so at start+3 days every certificate is suspended
(a CRL each), at start+7 days (past half of the 7-day CRL validity) every CRL is renewed,
and at start+40 days every certificate is revoked. Tenant ``a``'s key file is overwritten with
garbage first (a new Service: keys load on first use, as after a restart). Time is a
FixedClock: nothing waits.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from ca.clock import FixedClock
from ca.db.models import Authority, Certificate, Crl, Tenant
from ca.errors import ConfigError
from ca.service import IssueRequest, Service, build_service
from ca.settings import Settings
from ca.signer import FileKeyStore, write_private_file
from tests.moments import MOMENTS

TENANTS = {"a": "株式会社あさひ", "b": "ぶどう商事", "c": "さくら銀行"}
LOGINS = ("yamada.taro", "suzuki.hanako")
GARBAGE = b"garbage"
UNAVAILABLE = "the service cannot complete this request now"


@pytest.fixture
def three(service: Service, settings: Settings) -> bytes:
    """The three tenants with certificates, one lifecycle pass done, subscriptions ending
    at start+2 days; ``a``'s key file holds garbage. Returns ``a``'s original key file."""
    for name, display in TENANTS.items():
        service.hierarchy.create_tenant(name, display_name=display, ca_key_type="ec-p256")
        for login in LOGINS:
            service.users.add(name, login, email=f"{login}@example.jp", allow=True)
        service.certificates.issue(IssueRequest(tenant=name, logins=LOGINS))
    service.lifecycle.run()
    for name in TENANTS:
        service.lifecycle.set_subscription(name, ends=(MOMENTS.start + dt.timedelta(days=2)).date(),
                                 zone="UTC", grace_days=30)
    path = key_path(service, "a")
    original = path.read_bytes()
    write_private_file_over(path, GARBAGE)
    return original


def key_path(service: Service, tenant: str) -> Path:
    with service.database.reading() as session:
        key_id = session.scalar(select(Authority.key_id).join(
            Tenant, Tenant.id == Authority.tenant_id).where(
            Tenant.name == tenant, Authority.kind == "issuing",
            Authority.retired_at.is_(None)))
    assert key_id is not None
    return service.keys.keystore.path_for(key_id)


def write_private_file_over(path: Path, content: bytes) -> None:
    path.unlink()
    write_private_file(path, content)


OPENED: list[Service] = []


@pytest.fixture(autouse=True)
def _dispose() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().engine.dispose()


def at(settings: Settings, days: int) -> Service:
    """A fresh Service (as after a restart: no key loaded yet) at start + ``days``."""
    service = build_service(settings, clock=FixedClock(MOMENTS.start + dt.timedelta(days=days)))
    OPENED.append(service)
    return service


def states(service: Service) -> dict[str, set[str]]:
    """Per tenant, the set of its certificates' states ("revoked", "held", "good")."""
    found: dict[str, set[str]] = {}
    with service.database.reading() as session:
        rows = session.execute(select(Tenant.name, Certificate).join(
            Tenant, Tenant.id == Certificate.tenant_id).where(
            Tenant.name.in_(TENANTS))).all()
        for name, cert in rows:
            held = any(h.lifted_at is None for h in cert.holds)
            state = "revoked" if cert.revoked_at is not None else "held" if held else "good"
            found.setdefault(name, set()).add(state)
    return found


def crls_of(service: Service) -> dict[str, int]:
    """Per tenant, how many CRLs its CAs have published."""
    with service.database.reading() as session:
        return {name: len(session.scalars(select(Crl.id).join(
            Authority, Authority.id == Crl.authority_id).join(
            Tenant, Tenant.id == Authority.tenant_id).where(Tenant.name == name)).all())
            for name in TENANTS}


def test_a_corrupt_key_stops_only_its_tenant_and_is_retried_until_restored(
        three: bytes, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="tegata.lifecycle")
    before = crls_of(at(settings, 0))

    # start+3 days: b and c suspended; a fails (its CRL cannot be signed), stays due
    report = at(settings, 3).lifecycle.run()
    assert (report.suspended, report.failed) == (4, 1)
    assert states(at(settings, 3)) == {"a": {"good"}, "b": {"held"}, "c": {"held"}}
    failures = [r.getMessage() for r in caplog.records]
    assert len(failures) == 1 and "tenant a (CA " in failures[0]
    assert "could not be read" in failures[0] and "passphrase" not in failures[0]

    assert crls_of(at(settings, 3)) == {"a": before["a"], "b": before["b"] + 1,
                                        "c": before["c"] + 1}

    # start+7 days: every CRL is past half its validity; b's and c's are renewed, a's
    # fails again (counted once for its tenant pass, once for its CRL)
    report = at(settings, 7).lifecycle.run()
    assert (report.suspended, report.failed) == (0, 2)
    assert crls_of(at(settings, 7)) == {"a": before["a"], "b": before["b"] + 2,
                                        "c": before["c"] + 2}

    # start+40 days: b and c revoked; a still failing
    report = at(settings, 40).lifecycle.run()
    assert (report.revoked, report.failed) == (4, 2)
    assert states(at(settings, 40)) == {"a": {"good"}, "b": {"revoked"}, "c": {"revoked"}}

    # the key restored: the next pass does what was missed. a's suspension is published
    # only now, so its users still get a whole grace period (lifecycle.grace_ends_at)
    write_private_file_over(key_path(at(settings, 40), "a"), three)
    report = at(settings, 41).lifecycle.run()
    assert (report.suspended, report.revoked, report.failed) == (2, 0, 0)
    assert states(at(settings, 41)) == {"a": {"held"}, "b": {"revoked"}, "c": {"revoked"}}
    assert crls_of(at(settings, 41))["a"] == before["a"] + 1


def test_a_corrupt_key_file_is_not_called_a_wrong_passphrase(
        three: bytes, settings: Settings) -> None:
    service = at(settings, 0)
    with pytest.raises(ConfigError) as raised:
        service.keys.signer(_authority(service, "a"))
    path = key_path(service, "a")
    assert raised.value.message == (f"CA key file {path} could not be read: it is not an "
                                    "encrypted PKCS#8 PEM key (damaged or replaced)")


def test_a_wrong_passphrase_on_an_intact_key_file_still_says_so(
        three: bytes, settings: Settings) -> None:
    service = at(settings, 0)
    path = key_path(service, "b")
    other = FileKeyStore(path.parent, b"another-long-passphrase",
                         passphrase_source="TEGATA_KEY_PASSPHRASE")
    with pytest.raises(ConfigError) as raised:
        other.load(path.name.removesuffix(".key.pem"))
    assert raised.value.message == (f"CA key file {path} could not be decrypted: wrong "
                                    "passphrase (TEGATA_KEY_PASSPHRASE), or the file is "
                                    "damaged")


def test_a_bulk_job_on_a_tenant_with_a_corrupt_key_fails_without_naming_the_file(
        three: bytes, settings: Settings) -> None:
    service = at(settings, 0)
    service.users.add("a", "tanaka.ichiro", email="tanaka@example.jp", allow=True)
    job = service.bulk_issue.start(IssueRequest(tenant="a", logins=("tanaka.ichiro",)))
    for thread in threading.enumerate():
        if thread.name == f"job-{job.id[:8]}":
            thread.join(timeout=120)
    done = service.jobs.get("a", job.id)
    assert (done.status, done.error) == ("failed", UNAVAILABLE)


def _authority(service: Service, tenant: str) -> Authority:
    with service.database.reading() as session:
        found = session.scalar(select(Authority).join(
            Tenant, Tenant.id == Authority.tenant_id).where(
            Tenant.name == tenant, Authority.kind == "issuing"))
    assert found is not None
    return found

