"""Who sees whom when a user's standing, a download and an issuance meet, on SQLite and
PostgreSQL, with real threads against one service: a user denied or retired while a
certificate is issued to them never keeps a valid one; a key is never handed out by a
download that a suspension already overtook; and mixed writes never deadlock (no 503).

Where an interleaving matters, the test forces it: the first party stops just after its
decision and lets the other one try to finish (for at most ``OVERTAKE`` seconds); a correct
service makes the other wait for the first, so only its outcome is checked, never a time.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from ca import audit
from ca.errors import NotPermitted, StorageError
from ca.service import IssueRequest, Service, certificates, transitions
from ca.states import State

OVERTAKE = 1.0  # seconds the paused party gives the other to overtake it
TENANT, DISPLAY = "acme", "株式会社アクメ"


def staff(service: Service, count: int) -> list[str]:
    service.hierarchy.create_tenant(TENANT, display_name=DISPLAY)
    logins = [f"shain{i:03d}" for i in range(count)]
    rows = "".join(f"{login},{login}@example.jp,yes\n" for login in logins)
    service.users.import_users(TENANT, ("login,email,secure_access\n" + rows).encode())
    return logins


def paused_once(real: Callable[..., Any], decided: threading.Event,
                overtaken: threading.Event, *, at_call: int = 1) -> Callable[..., Any]:
    """``real``, which at its ``at_call``-th call tells the other party to go and waits."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        result = real(*args, **kwargs)
        calls += 1
        if calls == at_call:
            decided.set()
            overtaken.wait(OVERTAKE)
        return result
    return wrapper


@pytest.mark.parametrize("change", ["deny", "retire"])
def test_a_user_denied_or_retired_while_being_issued_to_keeps_no_valid_certificate(
        service: Service, monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    (login,) = staff(service, 1)
    decided, overtaken = threading.Event(), threading.Event()
    # the issuance's write (its second check; the first is in the read that decides whom
    # to make certificates for) has found that the user may have one, and waits
    monkeypatch.setattr(certificates, "_may_issue",
                        paused_once(certificates._may_issue, decided, overtaken, at_call=2))
    outcome: dict[str, Any] = {}

    def issue() -> None:
        outcome["issued"] = service.certificates.issue(IssueRequest(tenant=TENANT, logins=(login,)))

    def withdraw() -> None:
        decided.wait(30)
        if change == "deny":
            service.users.set_permission(TENANT, (login,), allow=False)
        else:
            service.users.retire(TENANT, login)
        overtaken.set()

    threads = [threading.Thread(target=issue), threading.Thread(target=withdraw)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    (issued,) = outcome["issued"]
    expected = State.SUSPENDED if change == "deny" else State.REVOKED
    assert service.certificates.get(issued.serial).state is expected


def test_a_download_overtaken_by_a_suspension_hands_out_no_key(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    (login,) = staff(service, 1)
    (view,) = service.certificates.issue(IssueRequest(tenant=TENANT, logins=(login,)))
    decided, overtaken = threading.Event(), threading.Event()
    # the suspension has decided, and waits before it commits
    monkeypatch.setattr(transitions, "place_hold",
                        paused_once(transitions.place_hold, decided, overtaken))
    outcome: dict[str, Any] = {}

    def download() -> None:
        decided.wait(30)
        try:
            outcome["bundle"] = service.certificates.bundle(view.serial, tenant=TENANT)
        except NotPermitted as exc:
            outcome["bundle"] = exc
        overtaken.set()

    threads = [threading.Thread(target=lambda: service.revocation.suspend(TENANT, view.serial)),
               threading.Thread(target=download)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert isinstance(outcome["bundle"], NotPermitted), outcome["bundle"]
    assert service.certificates.get(view.serial).state is State.SUSPENDED


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: one writer
def test_no_transaction_holds_an_audit_chain_before_it_commits(service: Service) -> None:
    """The chain's lock is the last one a transaction takes (at commit): recording an event
    holds nothing, so no row lock taken afterwards can close a cycle with it."""
    probe = create_engine(service.engine.url)
    try:
        with service.database.transaction() as session:
            audit.record(session, audit.CLI_ACTOR, audit.Event(action="token.create",
                                                               target="probe"),
                         now=service.clock.now())
            with probe.connect() as conn:
                held = conn.execute(text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")).scalar()
        assert held == 0
    finally:
        probe.dispose()
    assert service.audit.verify().broken is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: one writer
def test_mixed_writes_on_the_same_users_never_deadlock(service: Service) -> None:
    logins = staff(service, 12)
    serials = {view.login: view.serial for view in service.certificates.issue(
        IssueRequest(tenant=TENANT, logins=tuple(logins)))}
    failures: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(seed: int) -> None:
        pick = random.Random(seed)
        barrier.wait(30)
        for _ in range(12):
            some = tuple(sorted(pick.sample(logins, 3), reverse=pick.random() < 0.5))
            action = pick.choice(("deny", "allow", "reissue", "suspend", "revoke", "import"))
            try:
                if action in ("deny", "allow"):
                    service.users.set_permission(TENANT, some, allow=action == "allow")
                elif action == "reissue":
                    service.certificates.issue_bulk(IssueRequest(tenant=TENANT, logins=some,
                                                    reissue="revoke", best_effort=True))
                elif action == "import":
                    rows = "".join(f"{login},{login}@example.jp,{pick.choice(('yes', 'no'))}\n"
                                   for login in some)
                    service.users.import_users(TENANT, ("login,email,secure_access\n" + rows)
                                         .encode())
                else:
                    for login in some:
                        change = (service.revocation.suspend if action == "suspend"
                                  else service.revocation.revoke)
                        change(TENANT, serials[login])
            except StorageError as exc:
                failures.append(exc)
            except NotPermitted:
                pass  # revoked already, and the like: the rules, not the database

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    assert service.audit.verify().broken is None
