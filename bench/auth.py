#!/usr/bin/env python3
"""What authentication and the shared rate limits cost per request, against the floor of one
database round trip (``SELECT 1`` on the same engine) measured in the same run.

    .venv/bin/python bench/auth.py                                  # SQLite file
    .venv/bin/python bench/auth.py --database-url postgresql+psycopg://postgres@127.0.0.1/x

Rows: ``SELECT 1`` (the peer: one statement); ``authenticate`` (a read; last use not due);
``token limit`` (one counting statement, ``ca.service.limits``); ``RoleGuard`` (the whole
guard as a worker thread runs it: the failure limit's read, authenticate, the token limit).
The PostgreSQL database must exist and be empty; it is left migrated. Not part of the test
suite: it never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchkit import machine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from starlette.datastructures import State

from api.auth import KnownGood, RoleGuard, failure_limit, token_limit
from ca.clock import FixedClock
from ca.service import InitRequest, build_service
from ca.service.limits import limits_engine
from ca.settings import load_settings
from tests.moments import MOMENTS

ROUNDS = 3000


def per_call(work: Callable[[], object], rounds: int = ROUNDS) -> float:
    """Microseconds per call, the best of three runs."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(rounds):
            work()
        best = min(best, (time.perf_counter() - started) / rounds * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url")
    url = parser.parse_args().database_url
    home = Path(tempfile.mkdtemp(prefix="tegata-bench-auth-"))
    settings = load_settings(data_dir=home, database_url=url or f"sqlite:///{home / 'tegata.db'}",
                             key_passphrase="bench-" + "x" * 20,
                             public_base_url="http://tegata.test")
    service = build_service(settings, clock=FixedClock(MOMENTS.start))
    service.database.upgrade()
    service.hierarchy.initialize(InitRequest(key_type="ec-p256"))
    token, _ = service.tokens.create(role="admin", tenant="default", name="bench")
    service.tokens.authenticate(token)  # last use written: the rest are reads
    limits = limits_engine(service.engine)
    state = State({"service": service, "auth_failures": failure_limit(limits),
                   "good_tokens": KnownGood(),
                   "token_limiter": token_limit(limits, 10**9)})
    guard = RoleGuard(("admin",))
    header = f"Bearer {token}"

    def select_one() -> None:
        with service.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    print(machine())
    print(f"database: {service.engine.dialect.name}, {ROUNDS} calls, best of 3")
    floor = per_call(select_one)
    rows = [("SELECT 1 (peer)", floor),
            ("authenticate", per_call(lambda: service.tokens.authenticate(token))),
            ("token limit", per_call(lambda: state.token_limiter.admit("1",
                                                                       now=service.clock.now()))),
            ("RoleGuard", per_call(lambda: guard.admit(state, "192.0.2.1", header, "default")))]
    for name, micros in rows:
        print(f"{name:<16} {micros:8.0f} µs  {micros / floor:5.1f} x SELECT 1")


if __name__ == "__main__":
    main()
