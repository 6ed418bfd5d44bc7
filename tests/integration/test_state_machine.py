"""Whatever the sequence of issue, suspend, reinstate, revoke, permission changes,
subscription end, renewal and grace end, the database, the CRL and OCSP say the same thing.

A hypothesis state machine drives a real Service (SQLite, FixedClock) and keeps a model of
what each certificate must be; after every step it asks the database
(``get_certificate``), the CRL (parsed DER) and OCSP (``ocsp_respond``, SHA-1 and SHA-256
CertIDs) and compares them with the model. Time moves only in fixed steps of the clock.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ca.clock import FixedClock
from ca.errors import NotPermitted
from ca.service import IssueRequest, Service, build_service
from ca.settings import load_settings
from ca.states import State
from tests.moments import MOMENTS
from tests.support.environment import BASE_URL, PASSPHRASE

pytestmark = pytest.mark.stateful

LOGINS = ("alice", "bob")
REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "privilegeWithdrawn")
STEPS = (dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(days=1),
         dt.timedelta(days=10))
GRACE = dt.timedelta(days=30)
# every certificate lives a year from issuance: stop well before the first could expire, so
# that every certificate stays on the CRL while it is revoked or held
HORIZON = MOMENTS.start + dt.timedelta(days=330)
MAX_CERTIFICATES = 6
HASHES = (hashes.SHA1(), hashes.SHA256())
# no shrinking: a failure is reported with its sequence as found (at most 20 steps) in
# seconds, instead of minutes spent minimising it; add Phase.shrink locally to minimise
MACHINE_SETTINGS = settings(max_examples=50, stateful_step_count=20, deadline=None,
                            phases=(Phase.explicit, Phase.reuse, Phase.generate),
                            suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """SQLite only: what is checked is agreement, not the database engine."""
    yield f"sqlite:///{tmp_path / 'tegata.db'}"


@dataclass
class Expected:
    """What one certificate must be."""

    serial: str
    login: str
    cert: x509.Certificate
    revoked_at: dt.datetime | None = None
    reason: str | None = None
    holds: dict[str, dt.datetime] = field(default_factory=dict)  # cause -> placed at

    def state(self, now: dt.datetime) -> State:
        if self.revoked_at is not None:
            return State.REVOKED
        if self.holds:
            return State.SUSPENDED
        return State.EXPIRED if self.cert.not_valid_after_utc < now else State.VALID

    def live(self, now: dt.datetime) -> bool:
        return self.revoked_at is None and self.cert.not_valid_after_utc >= now

    def listed(self) -> tuple[str | None, dt.datetime] | None:
        """The CRL entry (reasonCode, revocationDate), or None: not listed."""
        if self.revoked_at is not None:
            return (None if self.reason == "unspecified" else self.reason, self.revoked_at)
        if self.holds:
            return ("certificateHold", min(self.holds.values()))
        return None


def _midnight_after(day: dt.date) -> dt.datetime:
    """When a subscription through ``day`` (UTC) ends."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=dt.UTC)


def _copy_sqlite(source: Path, target: Path) -> None:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


class Agreement(RuleBasedStateMachine):
    template: Path  # a migrated, initialised database and key directory to start from
    fresh_crl: bool  # judge a CRL made at the check, or the one gateways would fetch

    def __init__(self) -> None:
        super().__init__()
        self.home = Path(tempfile.mkdtemp(prefix="tegata-sm-"))
        shutil.copytree(self.template / "data", self.home / "data")
        _copy_sqlite(self.template / "tegata.db", self.home / "tegata.db")
        self.clock = FixedClock(MOMENTS.start)
        self.service = build_service(load_settings(
            data_dir=self.home / "data", database_url=f"sqlite:///{self.home / 'tegata.db'}",
            key_passphrase=PASSPHRASE, public_base_url=BASE_URL), clock=self.clock)
        _root, issuing = self.service.hierarchy.ca_certificates("default")
        self.issuer = x509.load_der_x509_certificate(issuing.der)
        self.certs: list[Expected] = []
        self.allowed = dict.fromkeys(LOGINS, True)
        self.ends_at: dt.datetime | None = None
        self.suspended_at: dt.datetime | None = None  # when the subscription hold went out
        self.ever_revoked: set[str] = set()

    def teardown(self) -> None:
        self.service.engine.dispose()
        shutil.rmtree(self.home, ignore_errors=True)

    # --- the model's own rules --------------------------------------------------------------

    @property
    def now(self) -> dt.datetime:
        return self.clock.now()

    def subscription(self) -> str:
        if self.ends_at is None or self.now < self.ends_at:
            return "active"
        # never revoked sooner than a full grace period after the suspension was published
        return "grace" if self.now < self.grace_end() else "ended"

    def grace_end(self) -> dt.datetime:
        assert self.ends_at is not None
        return max(self.ends_at, self.suspended_at or self.now) + GRACE

    def apply_subscription(self) -> None:
        state = self.subscription()
        if state == "grace" and self.suspended_at is None:
            self.suspended_at = self.now
        elif state == "active":
            self.suspended_at = None
        for cert in self.certs:
            if not cert.live(self.now):
                continue
            if state == "grace":
                cert.holds.setdefault("subscription", self.now)
            elif state == "ended":
                cert.revoked_at, cert.reason = self.now, "cessationOfOperation"
            else:
                cert.holds.pop("subscription", None)

    def pick(self, index: int) -> Expected:
        return self.certs[index % len(self.certs)]

    # --- rules ------------------------------------------------------------------------------

    @initialize(logins=st.lists(st.sampled_from(LOGINS), min_size=1, max_size=3))
    def first_certificates(self, logins: list[str]) -> None:
        for login in logins:
            self.issue(login)

    @precondition(lambda self: len(self.certs) < MAX_CERTIFICATES)
    @rule(login=st.sampled_from(LOGINS))
    def issue(self, login: str) -> None:
        may = self.allowed[login] and (self.ends_at is None or self.now < self.ends_at)
        request = IssueRequest(tenant="default", logins=(login,))
        if not may:
            with pytest.raises(NotPermitted):
                self.service.certificates.issue(request)
            return
        (view,) = self.service.certificates.issue(request)
        self.certs.append(Expected(serial=view.serial, login=login,
                                   cert=x509.load_der_x509_certificate(view.der)))

    @precondition(lambda self: self.certs)
    @rule(index=st.integers(0, MAX_CERTIFICATES - 1))
    def suspend(self, index: int) -> None:
        cert = self.pick(index)
        if cert.revoked_at is not None:
            with pytest.raises(NotPermitted, match="revoked"):
                self.service.revocation.suspend("default", cert.serial)
            return
        self.service.revocation.suspend("default", cert.serial)
        cert.holds.setdefault("manual", self.now)

    @precondition(lambda self: self.certs)
    @rule(index=st.integers(0, MAX_CERTIFICATES - 1))
    def reinstate(self, index: int) -> None:
        cert = self.pick(index)
        if cert.revoked_at is not None:
            with pytest.raises(NotPermitted, match="revoked"):
                self.service.revocation.reinstate("default", cert.serial)
            return
        view = self.service.revocation.reinstate("default", cert.serial)
        cert.holds.pop("manual", None)
        # reinstating for one cause never lifts another cause's hold
        assert (view.state is State.SUSPENDED) == bool(cert.holds), (view.state, cert.holds)

    @precondition(lambda self: self.certs)
    @rule(index=st.integers(0, MAX_CERTIFICATES - 1), reason=st.sampled_from(REASONS))
    def revoke(self, index: int, reason: str) -> None:
        cert = self.pick(index)
        view = self.service.revocation.revoke("default", cert.serial, reason=reason)
        if cert.revoked_at is None:
            cert.revoked_at, cert.reason = self.now, reason
        elif reason == "keyCompromise":
            cert.reason = reason  # the only upgrade; the first date stays
        assert (view.revoked_at, view.revocation_reason) == (cert.revoked_at, cert.reason)

    @rule(login=st.sampled_from(LOGINS), allow=st.booleans())
    def permission(self, login: str, allow: bool) -> None:
        self.service.users.set_permission("default", (login,), allow=allow)
        if self.allowed[login] == allow:
            return
        self.allowed[login] = allow
        for cert in self.certs:
            if cert.login == login and cert.live(self.now):
                if allow:
                    cert.holds.pop("permission", None)
                else:
                    cert.holds.setdefault("permission", self.now)

    @precondition(lambda self: self.subscription() == "active")
    @rule()
    def subscription_ends(self) -> None:
        last_day = self.now.date() - dt.timedelta(days=1)
        self.service.lifecycle.set_subscription("default", ends=last_day, zone="UTC",
                                                allow_past=True)
        self.ends_at = _midnight_after(last_day)
        self.apply_subscription()
        self.run_lifecycle()

    @rule()
    def renewal(self) -> None:
        if self.subscription() == "ended":
            # the grace period is over whether or not the lifecycle job ran since: a renewal
            # now brings nothing back (SPEC: "revoked for good")
            self.apply_subscription()
        last_day = self.now.date() + dt.timedelta(days=90)
        self.service.lifecycle.set_subscription("default", ends=last_day, zone="UTC")
        self.ends_at = _midnight_after(last_day)
        self.apply_subscription()

    @precondition(lambda self: self.subscription() == "grace" and self.ends_at is not None
                  and self.grace_end() + STEPS[0] < HORIZON)
    @rule()
    def grace_ends(self) -> None:
        self.clock.set(self.grace_end() + STEPS[0])
        self.run_lifecycle()

    @rule(step=st.sampled_from(STEPS))
    def advance(self, step: dt.timedelta) -> None:
        if self.now + step < HORIZON:
            self.clock.advance(step)

    @rule()
    def run_lifecycle(self) -> None:
        self.service.lifecycle.run()
        self.apply_subscription()

    # --- what must always hold --------------------------------------------------------------

    @invariant()
    def the_database_agrees(self) -> None:
        for cert in self.certs:
            view = self.service.certificates.get(cert.serial)
            assert view.state is cert.state(self.now), cert.serial
            assert (view.revoked_at, view.revocation_reason) == (cert.revoked_at, cert.reason)
        # a revoked certificate never comes back
        revoked = {c.serial for c in self.certs if c.revoked_at is not None}
        assert self.ever_revoked <= revoked
        self.ever_revoked |= revoked

    @invariant()
    def the_crl_agrees(self) -> None:
        made = (self.service.crls.publish("default") if self.fresh_crl
                else self.service.crls.current("default"))
        crl = x509.load_der_x509_crl(made.der)
        assert crl.is_signature_valid(self.issuer.public_key())  # type: ignore[arg-type]
        assert crl.last_update_utc <= self.now < crl.next_update_utc  # type: ignore[operator]
        found = {}
        for entry in crl:
            try:
                reason = entry.extensions.get_extension_for_class(
                    x509.CRLReason).value.reason.value
            except x509.ExtensionNotFound:
                reason = None
            found[format(entry.serial_number, "X")] = (reason, entry.revocation_date_utc)
        expected = {c.serial: c.listed() for c in self.certs if c.listed() is not None}
        assert found == expected

    @invariant()
    def ocsp_agrees(self) -> None:
        for cert in self.certs:
            for algorithm in HASHES:
                request = ocsp.OCSPRequestBuilder().add_certificate(
                    cert.cert, self.issuer, algorithm).build()
                answer = ocsp.load_der_ocsp_response(self.service.ocsp.respond(
                    request.public_bytes(serialization.Encoding.DER)).der)
                assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
                assert answer.hash_algorithm.name == algorithm.name
                assert answer.serial_number == cert.cert.serial_number
                assert answer.this_update_utc <= self.now < answer.next_update_utc  # type: ignore[operator]
                listed = cert.listed()
                if listed is None:  # valid (or expired): good
                    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD, cert.serial
                    continue
                reason, since = listed
                assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED, cert.serial
                assert answer.revocation_time_utc == since
                assert answer.revocation_reason == (
                    x509.ReasonFlags(reason) if reason else None)

    @invariant()
    def ocsp_is_never_good_for_a_stranger(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        stranger = (x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
                    .issuer_name(self.issuer.subject).public_key(key.public_key())
                    .serial_number(0x1234).not_valid_before(MOMENTS.start)
                    .not_valid_after(HORIZON).sign(key, hashes.SHA256()))
        request = ocsp.OCSPRequestBuilder().add_certificate(
            stranger, self.issuer, hashes.SHA1()).build()
        answer = ocsp.load_der_ocsp_response(self.service.ocsp.respond(
            request.public_bytes(serialization.Encoding.DER)).der)
        assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


@pytest.fixture
def template(service: Service, tmp_path: Path) -> Path:
    """The ``service`` fixture's CA with alice and bob allowed, copied once per example."""
    for login in LOGINS:
        service.users.add("default", login, email=f"{login}@example.com", allow=True)
    service.engine.dispose()
    home = tmp_path / "template"
    home.mkdir()
    shutil.copytree(service.settings.data_dir, home / "data")
    url = service.settings.database_url
    assert url is not None
    _copy_sqlite(Path(url.removeprefix("sqlite:///")), home / "tegata.db")
    return home


def _machine(template: Path, fresh: bool) -> type[Agreement]:
    return type("AgreementMachine", (Agreement,), {"template": template, "fresh_crl": fresh})


def test_the_published_crl_ocsp_and_the_database_agree_whatever_the_sequence(
        template: Path) -> None:
    """The CRL a gateway fetches (``current_crl``) after each step."""
    run_state_machine_as_test(_machine(template, fresh=False), settings=MACHINE_SETTINGS)


def test_a_crl_made_now_ocsp_and_the_database_agree_whatever_the_sequence(
        template: Path) -> None:
    """A CRL made at each check: the entries' logic, apart from when CRLs are republished."""
    run_state_machine_as_test(_machine(template, fresh=True), settings=MACHINE_SETTINGS)
