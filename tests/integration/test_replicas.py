"""Two replicas on one database behave as one service: a bounded stress test.

Two real ``tegata serve`` processes, each with its own data directory (metrics, lifecycle
lock file) and port, share the database, the key directory (CA keys and data-protection
key) and the passphrase, as replicas on two hosts would. Client threads drive both at once:
issuing, reissuing with ``revoke`` (twice at the same moment, once through each replica,
then once more), revoking, suspending and reinstating; a poller fetches every CA's CRL from
either replica in turn; both replicas run the lifecycle every second and are asked to run
it by hand, and every CRL is stale five seconds after it is made, so CRLs are published by
both replicas at once all along. Then, judged in the database and in what both replicas
serve:

- no serial twice per CA, and every request answered as it should (2xx);
- no lost revocation: right after a revocation, suspension or reinstatement is answered
  2xx, the CRL each replica serves says so (with its reason), and at the end the newest
  CRL of each CA from both replicas lists exactly what it should, as both replicas' OCSP do;
- a user reissued with ``revoke`` has exactly one live certificate, the last one issued
  (checked also between the simultaneous pair and the third reissue);
- CRL Numbers strictly increase per CA in the rows, and a fetch from either replica that
  began after another was answered never gets an older CRL;
- after every change, no OCSP question sent to either replica more than ``AGREE_WITHIN``
  after the change was answered gets the old status (each replica polled in turn until it
  agrees; the time to the first agreeing answer is printed too, the loaded replica's time
  to answer included);
- each CA has one OCSP responder certificate in force.

On PostgreSQL this is the proof that replicas work. It also runs on SQLite: two processes
on one host sharing one database file is a legal deployment (``tegata serve --workers 2``
is exactly that), the same invariants must hold there, and it costs little; SQLite is never
shared between hosts (README, "Replicas").
"""

from __future__ import annotations

import base64
import itertools
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import func, select, update

from ca.db.models import Authority, Certificate, Crl, Tenant, User
from ca.service import IssueRequest, Service
from ca.settings import Settings
from ca.states import live_filter
from ca.x509 import ocsp as ocsp_builder
from tests.processes import free_port
from tests.served import ROOT, Server, live_service, server_env, serving
from tests.support.issuing import crl_reasons

TENANTS = {"kanto": "関東電機株式会社", "kinki": "近畿商事"}
FRESH = 8  # users per tenant issued their first certificate during the run
REISSUED = 4  # users per tenant reissued with revoke: twice at once, then once more
REVOKED = 8  # certificates per tenant revoked during the run
HELD = 6  # certificates per tenant suspended during the run; every other one reinstated
CLIENTS = 6  # client threads
AGREE_WITHIN = 1.0  # seconds: both replicas' OCSP answers follow a change within this
POLL_DEADLINE = 10.0  # seconds a poll for agreement goes on before it reports the lag
RUN_DEADLINE = 90.0  # seconds the whole workload may take on a loaded machine
# every CRL is stale this long after it is made (its thisUpdate is backdated by the clock
# skew allowance of 300 s): both replicas renew CRLs all along the run
CRL_VALIDITY = 300 * 2 + 2 * 5
REASONS = ["keyCompromise", "superseded", "affiliationChanged", "cessationOfOperation"]
TIMEOUT = 60.0

GOOD = (ocsp.OCSPCertStatus.GOOD, None)
HOLD = (ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags.certificate_hold)
Status = tuple[ocsp.OCSPCertStatus, x509.ReasonFlags | None]


def revoked(reason: str) -> Status:
    return (ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags(reason))


@dataclass(frozen=True)
class Fetch:
    replica: int
    sent: float
    received: float
    number: int


@dataclass
class Replicas:
    """The two servers, the tenants' issuers, an admin token per tenant, and what the
    workload records."""

    servers: list[Server]
    issuers: dict[str, x509.Certificate]
    tokens: dict[str, str]
    operator: str
    failures: list[str] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    answered_in: list[float] = field(default_factory=list)
    # per CA: (replica, sent, received, CRL Number) of every fetch, from any thread
    fetched: dict[str, list[Fetch]] = field(default_factory=dict)
    lifecycle: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)

    def post(self, server: Server, tenant: str, path: str,
             body: dict[str, object] | None) -> httpx.Response:
        return httpx.post(f"{server.url}/api/v1/tenants/{tenant}/{path}", json=body,
                          headers={"Authorization": f"Bearer {self.tokens[tenant]}"},
                          timeout=TIMEOUT)

    def status(self, server: Server, tenant: str, serial: str) -> Status:
        """What ``server``'s OCSP answers about ``serial`` (a GET without a nonce: the
        answer kept in memory when there is one)."""
        name_hash, key_hash = ocsp_builder.issuer_keys(self.issuers[tenant]).by_algorithm[
            "sha1"]
        request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            name_hash, key_hash, int(serial, 16), hashes.SHA1()).build()
        encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
        answer = httpx.get(f"{server.url}/ocsp/{encoded}", timeout=TIMEOUT)
        assert answer.status_code == 200, answer.text
        parsed = ocsp.load_der_ocsp_response(answer.content)
        assert parsed.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        return parsed.certificate_status, parsed.revocation_reason

    def crl(self, server: Server, name: str) -> x509.CertificateRevocationList | None:
        """The CRL ``server`` serves for ``name`` (a tenant, or root), its fetch recorded."""
        sent = time.monotonic()
        response = httpx.get(f"{server.url}/crl/{name}.crl", timeout=TIMEOUT)
        received = time.monotonic()
        if response.status_code != 200:
            self.fail(f"fetch {name}.crl: {response.status_code} {response.text[:300]}")
            return None
        crl = x509.load_der_x509_crl(response.content)
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        with self.lock:
            self.fetched.setdefault(name, []).append(
                Fetch(self.servers.index(server), sent, received, number))
        return crl

    def listed(self, tenant: str, serial: str, reason: str | None, what: str) -> None:
        """Right after a change was answered, the CRL each replica serves lists ``serial``
        with ``reason`` (None: does not list it)."""
        for server in self.servers:
            crl = self.crl(server, tenant)
            if crl is not None and crl_reasons(crl).get(serial, None) != reason:
                self.fail(f"{what}: the CRL {server.url} serves lists it as "
                          f"{crl_reasons(crl).get(serial, 'absent')}, not {reason}")

    def agree(self, tenant: str, serial: str, expected: Status, changed_at: float,
              what: str) -> None:
        """Poll both replicas, in turn, until each answers ``expected``. Recorded per
        replica: how long after ``changed_at`` (when the change was answered) a question
        was still sent that got the old answer (0 when none did; the lag a relying party
        can meet), and when the first agreeing answer arrived (that lag plus the time a
        loaded replica takes to answer)."""
        waiting = list(self.servers)
        stale_for = {server.url: 0.0 for server in waiting}
        while waiting:
            for server in list(waiting):
                sent = time.monotonic()
                found = self.status(server, tenant, serial)
                received = time.monotonic()
                if found == expected:
                    waiting.remove(server)
                    with self.lock:
                        self.lags.append(max(0.0, stale_for[server.url]))
                        self.answered_in.append(received - changed_at)
                    continue
                stale_for[server.url] = sent - changed_at
                if received - changed_at > POLL_DEADLINE:
                    self.fail(f"{what}: {server.url} still answers {found} after "
                              f"{received - changed_at:.1f} s")
                    waiting.remove(server)
            time.sleep(0.01)

    def warm(self, tenant: str, serial: str, expected: Status, what: str) -> None:
        """Both replicas answer ``expected`` (and keep that answer in memory): a change
        after this must replace what they keep."""
        for server in self.servers:
            for _ in range(2):
                found = self.status(server, tenant, serial)
                if found != expected:
                    self.fail(f"{what}: {server.url} answers {found} before the change")


@dataclass
class Plan:
    """The certificates and users of one tenant the workload changes."""

    fresh: list[str]
    reissued: dict[str, str]  # login -> serial before the run
    to_revoke: dict[str, str]  # serial -> reason
    to_hold: list[str]
    reissues: dict[str, list[str]] = field(default_factory=dict)  # login -> serials answered
    issued: dict[str, str] = field(default_factory=dict)  # login -> serial (fresh users)


def prepare(service: Service, tenant: str) -> Plan:
    def users(prefix: str, count: int) -> list[str]:
        logins = [f"{prefix}{n:02d}" for n in range(count)]
        for login in logins:
            service.users.add(tenant, login, email=f"{login}@example.jp", allow=True)
        return logins

    def issue(logins: list[str]) -> list[str]:
        return [v.serial for v in service.certificates.issue(
            IssueRequest(tenant=tenant, logins=tuple(logins)))]

    fresh = users("new", FRESH)
    reissued = users("renew", REISSUED)
    revoking = users("leave", REVOKED)
    holding = users("hold", HELD)
    return Plan(fresh=fresh, reissued=dict(zip(reissued, issue(reissued), strict=True)),
                to_revoke={s: REASONS[n % len(REASONS)]
                           for n, s in enumerate(issue(revoking))},
                to_hold=issue(holding))


def answered(replicas: Replicas, response: httpx.Response, code: int, what: str) -> bool:
    if response.status_code != code:
        replicas.fail(f"{what}: {response.status_code} {response.text[:300]}")
        return False
    return True


def do_issue(replicas: Replicas, plan: Plan, tenant: str, login: str, via: Server) -> None:
    response = replicas.post(via, tenant, "certificates", {"login": login})
    if answered(replicas, response, 201, f"issue {login}"):
        serial = response.json()["certificates"][0]["serial"]
        plan.issued[login] = serial
        replicas.agree(tenant, serial, GOOD, time.monotonic(), f"issued {serial}")


def do_reissue(replicas: Replicas, plan: Plan, tenant: str, login: str) -> None:
    """Two reissues with revoke at the same moment, one through each replica; then, once
    both are answered, the user's one live certificate is superseded by a third."""
    body: dict[str, object] = {"login": login, "reissue": "revoke"}
    start = threading.Barrier(2)

    def reissue(server: Server) -> httpx.Response:
        start.wait(timeout=TIMEOUT)
        return replicas.post(server, tenant, "certificates", body)

    with ThreadPoolExecutor(max_workers=2) as pair:
        responses = list(pair.map(reissue, replicas.servers))
    serials = plan.reissues.setdefault(login, [])
    for response in responses:
        if answered(replicas, response, 201, f"reissue {login}"):
            serials.append(response.json()["certificates"][0]["serial"])
    listed = httpx.get(f"{replicas.servers[0].url}/api/v1/tenants/{tenant}/certificates",
                       params={"login": login, "state": "valid"}, timeout=TIMEOUT,
                       headers={"Authorization": f"Bearer {replicas.tokens[tenant]}"})
    live = [c["serial"] for c in listed.json()]
    if len(live) != 1 or live[0] not in serials:
        replicas.fail(f"reissue {login}: live after two reissues at once: {live}")
        return
    replicas.warm(tenant, live[0], GOOD, f"reissue {login}")
    response = replicas.post(replicas.servers[1], tenant, "certificates", body)
    if answered(replicas, response, 201, f"reissue {login} again"):
        changed_at = time.monotonic()
        serials.append(response.json()["certificates"][0]["serial"])
        replicas.agree(tenant, live[0], revoked("superseded"), changed_at,
                       f"superseded {live[0]}")
        replicas.listed(tenant, live[0], "superseded", f"superseded {live[0]}")


def do_change(replicas: Replicas, tenant: str, serial: str, action: str,
              body: dict[str, object] | None, before: Status, after: Status,
              via: Server) -> bool:
    replicas.warm(tenant, serial, before, f"{action} {serial}")
    response = replicas.post(via, tenant, f"certificates/{serial}/{action}", body)
    if not answered(replicas, response, 200, f"{action} {serial}"):
        return False
    replicas.agree(tenant, serial, after, time.monotonic(), f"{action} {serial}")
    replicas.listed(tenant, serial, None if after == GOOD else (
        "certificateHold" if after == HOLD else str(body and body["reason"])),
        f"{action} {serial}")
    return True


def do_hold(replicas: Replicas, tenant: str, serial: str, via: list[Server], *,
            lift: bool) -> None:
    """Suspend through one replica; if ``lift``, reinstate through the other."""
    if do_change(replicas, tenant, serial, "suspend", None, GOOD, HOLD, via[0]) and lift:
        do_change(replicas, tenant, serial, "reinstate", None, HOLD, GOOD, via[1])


def poll_crls(replicas: Replicas, stop: threading.Event) -> None:
    """Fetch each CA's CRL from either replica in turn until told to stop."""
    for server in itertools.cycle(replicas.servers):
        if stop.is_set():
            return
        for name in [*TENANTS, "root"]:
            replicas.crl(server, name)


def run_lifecycle(replicas: Replicas, stop: threading.Event) -> None:
    """Ask either replica in turn to run the lifecycle now (each also runs it every
    second by itself): one run at a time, across both."""
    for server in itertools.cycle(replicas.servers):
        if stop.wait(0.3):
            return
        response = httpx.post(f"{server.url}/api/v1/lifecycle/run", timeout=TIMEOUT,
                              headers={"Authorization": f"Bearer {replicas.operator}"})
        replicas.lifecycle.append(response.status_code)


@pytest.fixture
def live(settings: Settings) -> Iterator[Service]:
    first, *others = TENANTS.items()
    with live_service(settings, *first) as service:
        for name, display in others:
            service.hierarchy.create_tenant(name, display_name=display, ca_key_type="ec-p256")
        yield service


@pytest.mark.stress
def test_two_replicas_on_one_database_behave_as_one_service(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    plans = {tenant: prepare(live, tenant) for tenant in TENANTS}
    with live.database.transaction() as session:
        session.execute(update(Tenant).values(crl_validity_seconds=CRL_VALIDITY))
    keys = str(settings.effective_key_dir)
    issuers = {t: x509.load_der_x509_certificate(live.hierarchy.ca_certificates(t)[1].der)
               for t in TENANTS}
    tokens = {t: live.tokens.create(role="admin", tenant=t)[0] for t in TENANTS}
    operator = live.tokens.create(role="operator", name="運用")[0]
    rng = random.Random(14)

    # a data directory each (metrics, the lifecycle lock file), the key directory shared
    with serving(settings, tmp_path / "a.log", TEGATA_KEY_DIR=keys,
                 TEGATA_LIFECYCLE_INTERVAL_SECONDS="1",
                 TEGATA_DATA_DIR=str(tmp_path / "replica-a")) as a, \
            serving(settings, tmp_path / "b.log", TEGATA_KEY_DIR=keys,
                    TEGATA_LIFECYCLE_INTERVAL_SECONDS="1",
                    TEGATA_DATA_DIR=str(tmp_path / "replica-b")) as b:
        replicas = Replicas(servers=[a, b], issuers=issuers, tokens=tokens, operator=operator)
        tasks: list[Callable[[], object]] = []
        for tenant, plan in plans.items():
            for n, login in enumerate(plan.fresh):
                tasks.append(partial(do_issue, replicas, plan, tenant, login, [a, b][n % 2]))
            for login in plan.reissued:
                tasks.append(partial(do_reissue, replicas, plan, tenant, login))
            for n, (serial, reason) in enumerate(plan.to_revoke.items()):
                tasks.append(partial(do_change, replicas, tenant, serial, "revoke",
                                     {"reason": reason}, GOOD, revoked(reason), [a, b][n % 2]))
            for n, serial in enumerate(plan.to_hold):
                tasks.append(partial(do_hold, replicas, tenant, serial,
                                     [a, b] if n % 2 else [b, a], lift=n % 2 == 0))
        rng.shuffle(tasks)
        stop = threading.Event()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=CLIENTS + 2) as pool:
            background = [pool.submit(poll_crls, replicas, stop),
                          pool.submit(run_lifecycle, replicas, stop)]
            work = [pool.submit(task) for task in tasks]
            try:
                for task_done in work:
                    task_done.result(timeout=RUN_DEADLINE)
            finally:
                took = time.monotonic() - started
                stop.set()
            assert took < RUN_DEADLINE
            for done in background:
                done.result(timeout=TIMEOUT)

        assert replicas.failures == []
        expected = expected_entries(plans)
        for server in (a, b):  # the newest CRL each replica serves lists every change
            for tenant in TENANTS:
                crl = x509.load_der_x509_crl(httpx.get(f"{server.url}/crl/{tenant}.crl",
                                                       timeout=TIMEOUT).content)
                assert crl_reasons(crl) == expected[tenant], (server.url, tenant)
                final = {s: HOLD if r == "certificateHold" else revoked(str(r))
                         for s, r in expected[tenant].items()}
                final |= {s: GOOD for s in live_serials(plans[tenant])}
                assert {s: replicas.status(server, tenant, s) for s in final} == final

    with live.database.reading() as session:
        duplicates = session.execute(
            select(Certificate.authority_id, Certificate.serial).group_by(
                Certificate.authority_id, Certificate.serial).having(func.count() > 1)).all()
        numbers = session.execute(select(Crl.authority_id, Crl.number).order_by(Crl.id)).all()
        live_of = session.execute(
            select(Tenant.name, User.login, Certificate.serial)
            .join(Certificate, Certificate.user_id == User.id)
            .join(Tenant, Tenant.id == User.tenant_id)
            .where(live_filter(now=live.clock.now()))).all()
        cas = len(session.scalars(select(Authority.id).where(
            Authority.kind.in_(("root", "issuing")))).all())
        responders = session.execute(
            select(Authority.issuer_id, func.count()).where(
                Authority.kind == "ocsp", Authority.retired_at.is_(None))
            .group_by(Authority.issuer_id)).all()
    assert duplicates == []
    # both replicas answered each CA's first OCSP questions at once: one responder each
    assert sorted(count for _, count in responders) == [1] * len(TENANTS)
    per_ca: dict[int, list[int]] = {}
    for authority_id, number in numbers:
        per_ca.setdefault(authority_id, []).append(number)
    assert len(per_ca) == cas
    assert {ca: all(x < y for x, y in itertools.pairwise(got)) for ca, got in per_ca.items()
            } == {ca: True for ca in per_ca}, per_ca
    for name, seen in replicas.fetched.items():
        # a fetch that began after another was answered, from either replica, never gets
        # an older CRL
        assert {0, 1} == {f.replica for f in seen}, name
        assert [(f, g) for f in seen for g in seen
                if f.received < g.sent and g.number < f.number] == [], name
    by_user: dict[tuple[str, str], set[str]] = {}
    for tenant, login, serial in live_of:
        by_user.setdefault((tenant, login), set()).add(serial)
    assert by_user == {(t, login): {s} for t, plan in plans.items()
                       for login, s in live_logins(plan).items()}
    assert set(replicas.lifecycle) <= {200, 409} and 200 in replicas.lifecycle
    assert live.audit.verify().broken is None
    assert max(replicas.lags) <= AGREE_WITHIN, sorted(replicas.lags)[-10:]
    made = sum(len(n) for n in per_ca.values())
    print(f"\nreplicas: {len(tasks)} tasks in {took:.1f} s; {len(replicas.lags)} OCSP lags "
          f"(old answer to a question sent after the change): median "
          f"{statistics.median(replicas.lags) * 1000:.0f} ms, max "
          f"{max(replicas.lags) * 1000:.0f} ms; first agreeing answer received: median "
          f"{statistics.median(replicas.answered_in) * 1000:.0f} ms, max "
          f"{max(replicas.answered_in) * 1000:.0f} ms; {made} CRLs made; "
          f"{sum(len(s) for s in replicas.fetched.values())} fetched; lifecycle answers "
          f"{sorted(set(replicas.lifecycle))} ({replicas.lifecycle.count(200)} ran)")


def live_logins(plan: Plan) -> dict[str, str]:
    """login -> the one live certificate each user should have at the end."""
    return (dict(plan.issued) | {login: s[-1] for login, s in plan.reissues.items()}
            | {f"hold{n:02d}": s for n, s in enumerate(plan.to_hold)})


def live_serials(plan: Plan) -> set[str]:
    """The certificates answered good at the end: the fresh ones, the last of each reissue,
    and the held ones reinstated."""
    return ({*plan.issued.values()} | {s[-1] for s in plan.reissues.values()}
            | {s for n, s in enumerate(plan.to_hold) if n % 2 == 0})


def expected_entries(plans: dict[str, Plan]) -> dict[str, dict[str, str | None]]:
    """Per tenant, the CRL's entries at the end: serial -> reason."""
    found: dict[str, dict[str, str | None]] = {}
    for tenant, plan in plans.items():
        entries: dict[str, str | None] = dict(plan.to_revoke)
        entries |= {s: "certificateHold" for n, s in enumerate(plan.to_hold) if n % 2 == 1}
        for login, first in plan.reissued.items():
            entries |= {s: "superseded" for s in [first, *plan.reissues[login][:-1]]}
        found[tenant] = entries
    return found


RESPONDER_RACES = 4  # new CAs whose first OCSP questions reach both replicas at once


def test_both_replicas_answering_a_new_cas_first_questions_make_one_responder(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    """Each CA's delegated OCSP responder is made by whichever replica first answers for
    it: both at once make one, and both sign with it."""
    names = [f"shiten{n}" for n in range(RESPONDER_RACES)]
    serials = {}
    for name in names:
        live.hierarchy.create_tenant(name, display_name=f"支店{name}", ca_key_type="ec-p256")
        live.users.add(name, "sato", email="sato@example.jp", allow=True)
        (view,) = live.certificates.issue(IssueRequest(tenant=name, logins=("sato",)))
        serials[name] = view.serial
    issuers = {n: x509.load_der_x509_certificate(live.hierarchy.ca_certificates(n)[1].der)
               for n in names}
    keys = str(settings.effective_key_dir)
    with serving(settings, tmp_path / "a.log", TEGATA_KEY_DIR=keys,
                 TEGATA_DATA_DIR=str(tmp_path / "replica-a")) as a, \
            serving(settings, tmp_path / "b.log", TEGATA_KEY_DIR=keys,
                    TEGATA_DATA_DIR=str(tmp_path / "replica-b")) as b:
        replicas = Replicas(servers=[a, b], issuers=issuers, tokens={}, operator="")
        for name in names:
            start = threading.Barrier(2)

            def ask(server: Server, name: str = name, start: threading.Barrier = start
                    ) -> Status:
                start.wait(timeout=TIMEOUT)
                return replicas.status(server, name, serials[name])

            with ThreadPoolExecutor(max_workers=2) as pair:
                assert list(pair.map(ask, [a, b])) == [GOOD, GOOD]
    with live.database.reading() as session:
        responders = dict(session.execute(
            select(Authority.issuer_id, func.count()).where(
                Authority.kind == "ocsp", Authority.retired_at.is_(None))
            .group_by(Authority.issuer_id)).all())
    assert sorted(responders.values()) == [1] * RESPONDER_RACES


def test_a_second_server_on_a_data_directory_in_use_is_refused(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    """Each server keeps its metrics and its lifecycle lock file in its data directory:
    a second one there (a replica given the same directory) stops in one line, exit 78, and
    the first one's counts stay; once the first has stopped, the directory serves again."""
    data = tmp_path / "replica-a"
    keys = str(settings.effective_key_dir)
    with serving(settings, tmp_path / "a.log", TEGATA_KEY_DIR=keys,
                 TEGATA_DATA_DIR=str(data)) as first:
        counted = written_counts(data)
        second = subprocess.run(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(free_port())],
            cwd=ROOT, env=server_env(settings, TEGATA_KEY_DIR=keys, TEGATA_DATA_DIR=str(data)),
            capture_output=True, text=True, timeout=TIMEOUT)
        assert (second.returncode, second.stdout, second.stderr) == (
            78, "", f"tegata: error: TEGATA_DATA_DIR: {data} is in use by another tegata "
            "serve; give each server (each replica) a data directory of its own\n")
        assert httpx.get(f"{first.url}/healthz", timeout=TIMEOUT).status_code == 200
        assert written_counts(data) == counted
    with serving(settings, tmp_path / "again.log", TEGATA_KEY_DIR=keys,
                 TEGATA_DATA_DIR=str(data)) as again:
        assert httpx.get(f"{again.url}/healthz", timeout=TIMEOUT).status_code == 200


def written_counts(data: Path) -> list[str]:
    """The files the server's workers count requests in (each writes its own within a
    second of a request; waited for)."""
    deadline = time.monotonic() + POLL_DEADLINE
    while not (found := sorted(p.name for p in (data / "metrics").glob("*"))):
        assert time.monotonic() < deadline, "no worker wrote its counts"
        time.sleep(0.1)
    return found


def test_replicas_with_their_own_copy_of_the_key_directory_answer_ocsp_alike(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    """Two real servers, each with its own copy of the key directory (not one mount): the
    responder one of them makes is sealed in the database, so the other signs with it and
    stays ready."""
    live.hierarchy.create_tenant("copied", display_name="複製", ca_key_type="ec-p256")
    live.users.add("copied", "sato", email="sato@example.jp", allow=True)
    (view,) = live.certificates.issue(IssueRequest(tenant="copied", logins=("sato",)))
    issuer = x509.load_der_x509_certificate(live.hierarchy.ca_certificates("copied")[1].der)
    leaf = x509.load_der_x509_certificate(view.der)
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build()
    encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
    copies = [tmp_path / "keys-a", tmp_path / "keys-b"]
    for copy in copies:
        shutil.copytree(settings.effective_key_dir, copy)
    responders = []
    with serving(settings, tmp_path / "a.log", TEGATA_KEY_DIR=str(copies[0]),
                 TEGATA_DATA_DIR=str(tmp_path / "replica-a")) as a, \
            serving(settings, tmp_path / "b.log", TEGATA_KEY_DIR=str(copies[1]),
                    TEGATA_DATA_DIR=str(tmp_path / "replica-b")) as b:
        for server in (a, b):  # a makes the responder, b signs with it
            answer = ocsp.load_der_ocsp_response(
                httpx.get(f"{server.url}/ocsp/{encoded}", timeout=TIMEOUT).content)
            assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
            responders.append(answer.certificates[0])
        assert [httpx.get(f"{s.url}/readyz", timeout=TIMEOUT).status_code for s in (a, b)
                ] == [200, 200]
    assert responders[0] == responders[1]
    assert [list(copy.glob("ocsp-*")) for copy in copies] == [[], []]
