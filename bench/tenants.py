#!/usr/bin/env python3
"""10,000 tenants at rest: ``tegata serve`` start-up, a lifecycle pass with nothing to do,
and every CRL renewed while ``/healthz`` is probed.

    .venv/bin/python bench/tenants.py                        # 10,000 tenants, SQLite
    .venv/bin/python bench/tenants.py --tenants 2000
    .venv/bin/python bench/tenants.py --postgres postgresql+psycopg://postgres@127.0.0.1/postgres
    .venv/bin/python bench/tenants.py --before ../tegata-before  # that checkout too, same run

Setup (not measured, labelled): ``tegata init``'s service call makes the root, then N tenants
are inserted directly with their issuing CAs: each its own EC P-384 key in its own encrypted
key file (no fsync), certificate signed by the root, subject and CRL URL, as
``create_tenant`` makes them, minus the audit events. Then, measured:

1. ``tegata serve`` from process start to the first ``/healthz`` 200; its lifecycle loop
   then publishes every CA's first CRL (seconds from server start until all are out).
2. a lifecycle pass with nothing to do, in this process (wall and CPU, median of 5).
3. every CRL made due at once (labelled: each CA's CRLs moved 31 days back, and its due
   time with it where the schema has one), a server started,
   and the seconds until its lifecycle loop has renewed all of them, with ``/healthz``
   probed every 20 ms meanwhile (p50, p99, max), then for 5 s at rest for comparison.

Every step runs the code of one tree in processes of its own: this one, and with ``--before
DIR`` (a checkout of the code before this change, e.g. ``git archive <commit>``) that one too, on
its own instance, for a same-run ratio. No peer runs 10,000 tenants here; the figures
measured before the performance work (6.1 s start-up, 18 s of CPU a pass, about 58 s for
every CRL) are quoted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from benchkit import machine
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from served import BASE_URL, PASSPHRASE, ROOT, database, environment, percentile, serving
from sqlalchemy import (
    Engine,
    bindparam,
    column,
    create_engine,
    func,
    inspect,
    select,
    table,
    text,
    update,
)

from ca.db.types import UTCDateTime
from ca.service import build_service

CRLS = table("crls", column("id"), column("authority_id"), column("created_at", UTCDateTime()),
             column("this_update", UTCDateTime()), column("next_update", UTCDateTime()))

PROBE_EVERY = 0.02  # seconds between two /healthz probes
QUOTED = {"start": 6.1, "idle_cpu": 18.0, "all_crls": 58.0}


def service_here(work: Path, db_url: str) -> Any:
    """The service of the code this process imports (a setup or pass process of a tree)."""
    from ca.settings import load_settings

    return build_service(load_settings(
        data_dir=work / "data", database_url=db_url, public_base_url=BASE_URL,
        key_passphrase=os.environ.get("TEGATA_KEY_PASSPHRASE", PASSPHRASE)))


def setup(service: Any, tenants: int) -> float:
    """The root through the service, then ``tenants`` tenants inserted directly."""
    from ca.db import queries
    from ca.db.models import Tenant
    from ca.service import InitRequest, crls
    from ca.service.hierarchy import _authority_row, issuing_request
    from ca.x509.certificate import build_issuing

    started = time.monotonic()
    service.database.upgrade()
    service.hierarchy.initialize(InitRequest())
    now = service.clock.now()
    with service.database.reading() as session:
        root = queries.require_root(session)
    root_cert = x509.load_der_x509_certificate(root.der)
    root_signer = service.keys.signer(root)
    store = service.keys.keystore
    encryption = serialization.BestAvailableEncryption(service.settings.passphrase())
    for start in range(0, tenants, 1000):
        with service.database.transaction() as session:
            for n in range(start, min(tenants, start + 1000)):
                name, shown = f"tenant-{n:05d}", f"テナント {n:05d}"
                key = ec.generate_private_key(ec.SECP384R1())
                key_id = f"issuing-bench{n:08d}"
                path = store.path_for(key_id)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   encryption))
                cert = build_issuing(
                    issuing_request(name, shown, root_cert, key.public_key(), now=now),
                    root_cert, root_signer, serial=x509.random_serial_number(),
                    urls=service.urls, crl_url=root.crl_url or "")
                owner = Tenant(name=name, display_name=shown, created_at=now, timezone="UTC")
                session.add(owner)
                session.add(_authority_row(cert, kind="issuing", key_id=key_id, tenant=owner,
                                           issuer_id=root.id, now=now,
                                           crl_url=crls.new_crl_url(service.urls, name)))
    return time.monotonic() - started


def published(engine: Engine, since: dt.datetime) -> int:
    """CAs with a CRL made after ``since``."""
    with engine.connect() as conn:
        return conn.scalar(select(func.count(CRLS.c.authority_id.distinct()))
                           .where(CRLS.c.created_at > since)) or 0


def make_all_due(engine: Engine) -> None:
    """Labelled setup: every CRL 31 days older, past half of any validity (the root's is 30
    days), so due on any schema; and its due time too where the schema has one."""
    back = dt.timedelta(days=31)
    with engine.begin() as conn:
        rows = conn.execute(select(CRLS.c.id, CRLS.c.this_update, CRLS.c.next_update)).all()
        conn.execute(update(CRLS).where(CRLS.c.id == bindparam("crl")).values(
            this_update=bindparam("this"), next_update=bindparam("next")),
            [{"crl": i, "this": this - back, "next": next_ - back} for i, this, next_ in rows])
        if "crl_renew_at" in {c["name"] for c in inspect(conn).get_columns("authorities")}:
            conn.execute(text("UPDATE authorities SET crl_renew_at = NULL"))


def idle_pass(work: Path, db_url: str) -> dict[str, float]:
    """A lifecycle pass in this process (a pass process of a tree): wall and CPU seconds."""
    service = service_here(work, db_url)
    service.lifecycle.run()  # whatever start-up costs once (a first query, the root key)
    wall, cpu = time.perf_counter(), time.process_time()
    report = service.lifecycle.run()
    figures = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    assert report.crls == 0, report
    return figures


class Prober:
    """``/healthz`` every 20 ms in a thread, as a load balancer's checks come (not back to
    back, which would compete with the server's own work): every answer's latency in ms."""

    def __init__(self, url: str) -> None:
        self.url, self.errors = url, 0
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append((time.perf_counter() - started) * 1000)
                self.errors += not ok
                self._stop.wait(PROBE_EVERY)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def summary(self) -> str:
        lat = self.latencies
        return (f"{len(lat)} probes, p50 {percentile(lat, 0.5):.1f} ms, p99 "
                f"{percentile(lat, 0.99):.1f} ms, max {max(lat, default=0):.1f} ms, "
                f"{self.errors} errors")


def until_published(engine: Engine, since: dt.datetime, total: int, started: float,
                    limit: float = 900) -> float:
    while published(engine, since) < total:
        if time.monotonic() - started > limit:
            raise SystemExit(f"not every CRL was made within {limit:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - started


def in_tree(tree: Path, env: dict[str, str], *args: str) -> Any:
    """This script's ``args`` step in a process running ``tree``'s code; its JSON answer."""
    done = subprocess.run([sys.executable, __file__, *args], env=env, cwd=tree,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{args[0]} failed in {tree}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(tree: Path, work: Path, db_url: str, tenants: int) -> list[tuple[str, str]]:
    """Every step on a new instance running ``tree``'s code: (what, figure) rows."""
    env = environment(work, db_url, tree, TEGATA_LIFECYCLE_INTERVAL_SECONDS="60")
    made = in_tree(tree, env, "--setup", str(work), db_url, str(tenants))
    rows = [(f"setup: {tenants} tenants inserted directly", f"{made['seconds']:.1f} s")]
    engine = create_engine(db_url)
    cas = tenants + 2  # and the root and "default"
    log = work / "serve.log"
    since = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    with serving(env, log) as (url, start_up), Prober(url) as first:
        first_out = until_published(engine, since, cas, started)
    rows.append(("serve: start to first /healthz 200", f"{start_up:.2f} s"))
    rows.append((f"first CRL of all {cas} CAs, from server start", f"{first_out:.1f} s"))
    rows.append(("/healthz while the first CRLs are made", first.summary()))
    passes = [in_tree(tree, env, "--pass", str(work), db_url) for _ in range(3)]
    rows.append(("lifecycle pass, nothing to do (wall / CPU, median of 3)",
                 f"{statistics.median(p['wall'] for p in passes) * 1000:.0f} ms / "
                 f"{statistics.median(p['cpu'] for p in passes) * 1000:.0f} ms"))
    make_all_due(engine)
    since = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    with serving(env, log) as (url, start_up), Prober(url) as during:
        renewed = until_published(engine, since, cas, started)
        with Prober(url) as rest:
            time.sleep(5)
    engine.dispose()
    rows.append(("serve with every CRL due: start to first /healthz 200", f"{start_up:.2f} s"))
    rows.append((f"every CRL renewed ({cas}), from server start", f"{renewed:.1f} s"))
    rows.append(("/healthz while every CRL is renewed", during.summary()))
    rows.append(("/healthz afterwards, at rest (5 s)", rest.summary()))
    return rows


def main() -> None:
    if sys.argv[1:2] in (["--setup"], ["--pass"]):  # a step process of measure()
        work, db_url = Path(sys.argv[2]), sys.argv[3]
        if sys.argv[1] == "--pass":
            print(json.dumps(idle_pass(work, db_url)))
            return
        service = service_here(work, db_url)
        print(json.dumps({"seconds": setup(service, int(sys.argv[4]))}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--postgres", help="a PostgreSQL URL (a database is made there)")
    parser.add_argument("--before", type=Path, help="a checkout of the code before this "
                        "change, measured in the same run")
    args = parser.parse_args()
    print(machine())
    print(f"{'PostgreSQL' if args.postgres else 'SQLite'}; before this change, quoted from "
          f"the measurement before: start-up {QUOTED['start']} s, "
          f"{QUOTED['idle_cpu']} s of CPU a pass, "
          f"≈ {QUOTED['all_crls']} s for every CRL")
    trees = [("this tree", ROOT)] + ([("before", args.before)] if args.before else [])
    table_rows: dict[str, list[tuple[str, str]]] = {}
    for name, tree in trees:
        with tempfile.TemporaryDirectory(prefix="tegata-bench-tenants-") as tmp, \
                database(Path(tmp), args.postgres) as db_url:
            table_rows[name] = measure(tree, Path(tmp), db_url, args.tenants)
    width = max(len(what) for what, _ in table_rows["this tree"])
    print(f"\n{'what':<{width}}  " + "  ".join(f"{name:<62}" for name, _ in trees))
    for index, (what, _) in enumerate(table_rows["this tree"]):
        print(f"{what:<{width}}  " + "  ".join(f"{table_rows[name][index][1]:<62}"
                                              for name, _ in trees))


if __name__ == "__main__":
    main()
