#!/usr/bin/env python3
"""CRLs with many revoked entries: Tegata's pure builder, the service's ``publish_crl``, and
``openssl ca -gencrl`` measured in the same run.

    .venv/bin/python bench/crl.py                      # 10,000 / 100,000 / 1,000,000
    .venv/bin/python bench/crl.py --size 100000        # one size only

Each measurement runs in a fresh process, so that its peak memory (max RSS) is its own:
``op s`` is the operation alone, timed inside that process (for openssl, the whole command);
``peak MB`` includes the interpreter and its imports (the ``baseline`` row shows how much).
The service path reads revoked rows inserted directly with SQLAlchemy Core (random serials,
fake fingerprints and DER) with the CRL entry a revocation keeps (migration 0013): issuing a
million real certificates first would take hours, and ``publish_crl`` reads only the kept
entries. ``publish_crl`` is the first CRL of a fresh process over those rows; "revoke one,
republish" is then one more ``revoke`` (its CRL made in the same transaction); "no entry
kept" is ``publish_crl`` over rows without kept entries (every entry encoded, as from
scratch). Half the entries carry the reason keyCompromise, half none. Not part of the test
suite: it never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import machine

from ca.service import build_service

ROOT = Path(__file__).resolve().parent.parent
TEGATA = [sys.executable, "-m", "cli.main"]
SIZES = (10_000, 100_000, 1_000_000)
UNKEPT_SIZES = (100_000,)  # rows with no kept entry: the service encodes every one
REVOKED_AT = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)

# Peer figures quoted from the peer survey of this machine kind (2 cores), not re-measured here:
# (peer, entries) -> (seconds, peak MB)
QUOTED = {
    ("openssl ca -gencrl", 100_000): (0.67, 65),
    ("openssl ca -gencrl", 1_000_000): (6.5, 590),
    ("django-ca 3.2", 100_000): (21.0, 360),
    ("cryptography, at once", 100_000): (1.05, 78),
    ("cryptography, at once", 1_000_000): (13.4, 455),
}


def reason_of(i: int) -> str | None:
    return "keyCompromise" if i % 2 else None


# --- the measured processes -------------------------------------------------------------------


def child_pure(size: int) -> dict[str, float]:
    """Build and sign a CRL of ``size`` entries with ``ca.x509.crl.build`` and a P-384 key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from ca.signer import FileSigner
    from ca.x509 import crl

    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Issuing CA")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issuer = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
              .public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(days=1))
              .not_valid_after(now + dt.timedelta(days=365))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                             critical=False)
              .sign(key, hashes.SHA384()))
    signer = FileSigner("bench-crl", key)
    start = time.perf_counter()
    entries = [crl.Entry(serial=x509.random_serial_number(), revoked_at=REVOKED_AT,
                         reason=reason_of(i)) for i in range(size)]
    prepared = time.perf_counter() - start
    if size == 0:
        return {"op_s": 0.0, "prep_s": 0.0, "crl_bytes": 0}
    request = crl.CrlRequest(number=1, this_update=now, next_update=now + dt.timedelta(days=7),
                             distribution_point="http://127.0.0.1/crl/default.crl",
                             covers_ca_certificates=False)
    start = time.perf_counter()  # every entry encoded: the CRL from scratch
    der = crl.build(request, issuer, signer, (crl.entry_der(e) for e in entries))
    seconds = time.perf_counter() - start
    made = x509.load_der_x509_crl(der)
    assert len(made) == size and made.is_signature_valid(key.public_key())
    return {"op_s": seconds, "prep_s": prepared, "crl_bytes": len(der)}


def child_insert(size: int, kept: bool = True) -> dict[str, float]:
    """Put ``size`` revoked certificate rows under the default tenant's issuing CA, each
    with the CRL entry a revocation keeps (``kept``), or none, as rows revoked before
    migration 0013 would have had without its back-fill."""
    from cryptography import x509
    from sqlalchemy import insert, select

    from ca import serials
    from ca.db.models import Authority, Certificate, Tenant, User
    from ca.settings import load_settings
    from ca.x509 import crl

    service = build_service(load_settings())
    start = time.perf_counter()
    fake_der = b"\x30\x82\x02\x58" + bytes(596)  # about a real client certificate's size
    far = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    with service.engine.begin() as conn:
        tenant_id = conn.execute(select(Tenant.id).where(Tenant.name == "default")).scalar_one()
        authority_id = conn.execute(select(Authority.id).where(
            Authority.tenant_id == tenant_id, Authority.kind == "issuing")).scalar_one()
        user_id = conn.execute(select(User.id).where(User.tenant_id == tenant_id)
                               .limit(1)).scalar_one()
        seen: set[int] = set()
        done = 0
        while done < size:
            rows = []
            for i in range(done, min(size, done + 20_000)):
                serial = x509.random_serial_number()
                while serial in seen:  # 159 random bits: never in practice, but unique per issuer
                    serial = x509.random_serial_number()
                seen.add(serial)
                rows.append({
                    "tenant_id": tenant_id, "authority_id": authority_id, "user_id": user_id,
                    "serial": serials.to_text(serial), "fingerprint_sha256": secrets.token_hex(32)
                    .upper(), "subject": f"CN=bench{i},O=Default", "der": fake_der,
                    "key_type": "ec-p256", "source": "server", "p12_profile": "compat",
                    "not_before": REVOKED_AT - dt.timedelta(days=30), "not_after": far,
                    "expiry_date": far.date(), "expiry_zone": "UTC",
                    "created_at": REVOKED_AT - dt.timedelta(days=30),
                    "revoked_at": REVOKED_AT, "revocation_reason": reason_of(i) or "unspecified",
                    "crl_entry": crl.entry_der(crl.Entry(serial=serial, revoked_at=REVOKED_AT,
                                                         reason=reason_of(i))) if kept else None,
                })
            conn.execute(insert(Certificate), rows)
            done += len(rows)
    return {"op_s": time.perf_counter() - start}


def child_publish(size: int) -> dict[str, float]:
    """``service.publish_crl("default")`` over the inserted rows in a fresh process (keys
    loaded first, as ``tegata serve`` does at start-up); then one more certificate revoked,
    which republishes in the revocation's transaction: ``republish_s`` is that whole call."""
    import resource

    from cryptography import x509

    from ca.service import IssueRequest
    from ca.settings import load_settings

    service = build_service(load_settings())
    service.startup.load_signers()
    (one,) = service.certificates.issue(IssueRequest(tenant="default", logins=("bench",)))
    start = time.perf_counter()
    view = service.crls.publish("default")
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    service.revocation.revoke("default", one.serial, reason="keyCompromise")
    republish = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the checks
    listed = len(x509.load_der_x509_crl(view.der))
    assert listed == size, f"the CRL lists {listed} entries, not {size}"
    again = x509.load_der_x509_crl(service.crls.current("default").der)
    assert len(again) == size + 1 and again.get_revoked_certificate_by_serial_number(
        int(one.serial, 16)) is not None
    return {"op_s": seconds, "republish_s": republish, "crl_bytes": len(view.der),
            "peak_mb": peak}


CHILDREN = {"pure": child_pure, "insert": child_insert, "publish": child_publish,
            "insert-unkept": lambda size: child_insert(size, kept=False)}


def child_main(kind: str, size: int, out: Path) -> None:
    import resource

    result = CHILDREN[kind](size)
    result.setdefault("peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out.write_text(json.dumps(result), encoding="utf-8")


# --- the parent -------------------------------------------------------------------------------


def measure(argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT, *,
            quiet: bool = False) -> tuple[float, float, int]:
    """Run a command in a fresh process: (wall seconds, its peak RSS in MB, exit code)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child becomes the command, so that wait4 reports its own peak
        try:
            os.chdir(cwd)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            if quiet:  # openssl's "Using configuration from ..."
                os.dup2(devnull, 2)
            os.execvpe(argv[0], argv, env if env is not None else os.environ)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def python_child(kind: str, size: int, work: Path,
                 env: dict[str, str] | None = None) -> dict[str, float]:
    out = work / f"{kind}-{size}.json"
    wall, peak, code = measure([sys.executable, str(Path(__file__).resolve()), "--child", kind,
                                str(size), str(out)], env)
    if code != 0:
        raise SystemExit(f"the {kind} run at {size:,} entries failed (exit {code})")
    result: dict[str, float] = json.loads(out.read_text(encoding="utf-8"))
    result.update(process_s=wall, peak_mb=result["peak_mb"] if kind == "publish" else
                  max(peak, result["peak_mb"]))
    return result


OPENSSL_CNF = """\
[ca]
default_ca = bench
[bench]
dir = {dir}
database = $dir/index.txt
crlnumber = $dir/crlnumber
certificate = $dir/ca.pem
private_key = $dir/ca.key
new_certs_dir = $dir
serial = $dir/serial
default_md = sha384
default_crl_days = 7
unique_subject = no
policy = anything
[anything]
commonName = supplied
[crl_ext]
authorityKeyIdentifier = keyid:always
"""


def openssl_gencrl(size: int, work: Path) -> dict[str, float]:
    """``openssl ca -gencrl`` over an index.txt of ``size`` 'R' lines, P-384 key, SHA-384."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_dir = work / f"openssl-{size}"
    ca_dir.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-384", "-nodes", "-subj", "/CN=Bench openssl CA",
                    "-days", "30", "-keyout", "ca.key", "-out", "ca.pem"], cwd=ca_dir,
                   check=True, capture_output=True)
    (ca_dir / "openssl.cnf").write_text(OPENSSL_CNF.format(dir=ca_dir), encoding="utf-8")
    (ca_dir / "crlnumber").write_text("01\n", encoding="utf-8")
    (ca_dir / "index.txt.attr").write_text("unique_subject = no\n", encoding="utf-8")
    revoked = REVOKED_AT.strftime("%y%m%d%H%M%SZ")
    with (ca_dir / "index.txt").open("w", encoding="ascii") as index:
        for i in range(size):
            serial = format(x509.random_serial_number(), "X")
            serial = serial if len(serial) % 2 == 0 else "0" + serial
            when = f"{revoked},keyCompromise" if reason_of(i) else revoked
            index.write(f"R\t491231235959Z\t{when}\t{serial}\tunknown\t/CN=x{i}\n")
    wall, peak, code = measure(["openssl", "ca", "-gencrl", "-config", "openssl.cnf",
                                "-crlexts", "crl_ext", "-out", "crl.pem"], cwd=ca_dir, quiet=True)
    if code != 0:
        raise SystemExit(f"openssl ca -gencrl failed (exit {code})")
    crl = x509.load_pem_x509_crl((ca_dir / "crl.pem").read_bytes())
    assert len(crl) == size, f"openssl listed {len(crl)} entries, not {size}"
    return {"op_s": wall, "process_s": wall, "peak_mb": peak,
            "crl_bytes": len(crl.public_bytes(serialization.Encoding.DER))}


def environment(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
    env.update(TEGATA_DATA_DIR=str(data), TEGATA_KEY_PASSPHRASE=secrets.token_urlsafe(24),
               TEGATA_CONFIG=str(data / "none.toml"), TEGATA_LIFECYCLE_INTERVAL_SECONDS="0")
    return env


def service_run(size: int, work: Path, *,
                kept: bool = True) -> tuple[dict[str, float], dict[str, float]]:
    """A new Tegata (P-384 issuing CA), ``size`` revoked rows (with their kept entries or
    without), then one ``publish_crl`` and one more revocation."""
    env = environment(work / f"service-{size}-{kept}")
    for args in (["init"], ["user", "add", "bench", "--email", "bench@example.com", "--allow"]):
        subprocess.run([*TEGATA, *args], env=env, cwd=ROOT, check=True, capture_output=True)
    inserted = python_child("insert" if kept else "insert-unkept", size, work, env)
    published = python_child("publish", size, work, env)
    shutil.rmtree(work / f"service-{size}-{kept}", ignore_errors=True)
    return inserted, published


def ratio(mine: float | None, theirs: float) -> str:
    return "-" if mine is None else f"{mine / theirs:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, action="append",
                        help="entries (default 10,000, 100,000 and 1,000,000)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child[0], int(args.child[1]), Path(args.child[2]))
        return
    sizes = sorted(set(args.size or SIZES))
    have_openssl = shutil.which("openssl") is not None
    import cryptography

    print(machine(f"cryptography {cryptography.__version__}"))
    print("signer: EC P-384 / SHA-384 (pure builder: ca.signer.FileSigner; service: the "
          "default tenant's issuing CA); half the entries with reason keyCompromise")
    print("service path: revoked rows inserted directly with SQLAlchemy Core (random serials, "
          "fake DER and fingerprints), not issued: issuing 1,000,000 real certificates would "
          "take too long\n")
    rows: list[tuple[str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="tegata-bench-crl-") as tmp:
        work = Path(tmp)
        rows.append(("baseline: python, imports, no CRL", 0, python_child("pure", 0, work)))
        for size in sizes:
            rows.append(("tegata pure build", size, python_child("pure", size, work)))
            if have_openssl:
                rows.append(("openssl ca -gencrl (measured)", size, openssl_gencrl(size, work)))
        for size in [0, *sizes]:
            inserted, published = service_run(size, work)
            if size == 0:
                rows.append(("baseline: service, empty CRL", 0, published))
                continue
            rows.append(("tegata service publish_crl", size, published))
            rows.append(("tegata service revoke one, republish", size,
                         {**published, "op_s": published["republish_s"]}))
            rows.append(("  (setup: insert rows, not a CRL)", size, inserted))
            if size in UNKEPT_SIZES:
                _, unkept = service_run(size, work, kept=False)
                rows.append(("tegata service, no entry kept", size, unkept))
    print(f"{'path':36} {'entries':>10} {'op s':>8} {'process s':>10} {'peak MB':>8} "
          f"{'CRL MB':>7}")
    for label, size, r in rows:
        crl_mb = f"{r['crl_bytes'] / 1e6:.1f}" if r.get("crl_bytes") else ""
        print(f"{label:36} {size:>10,} {r['op_s']:>8.2f} {r['process_s']:>10.2f} "
              f"{r['peak_mb']:>8.0f} {crl_mb:>7}")

    def find(label: str, size: int) -> dict[str, float] | None:
        return next((r for lab, s, r in rows if lab == label and s == size), None)

    print("\nratios: Tegata's measured figure / the peer's figure (below 1: Tegata faster or "
          "smaller); op s for Tegata, whole command for openssl")
    print(f"{'peer':48} {'entries':>10} {'peer s':>7} {'peer MB':>8} | {'pure s':>7} "
          f"{'pure MB':>8} | {'svc s':>7} {'svc MB':>7}")
    peers: list[tuple[str, int, float, float]] = []
    for size in sizes:
        measured = find("openssl ca -gencrl (measured)", size)
        if measured is not None:
            peers.append(("openssl ca -gencrl, measured now", size, measured["op_s"],
                          measured["peak_mb"]))
    peers += [(f"{peer}, quoted, not re-measured", size, s, mb)
              for (peer, size), (s, mb) in QUOTED.items() if size in sizes]
    for peer, size, peer_s, peer_mb in peers:
        pure = find("tegata pure build", size) or {}
        svc = find("tegata service publish_crl", size) or {}
        print(f"{peer:48} {size:>10,} {peer_s:>7.2f} {peer_mb:>8.0f} | "
              f"{ratio(pure.get('op_s'), peer_s):>7} {ratio(pure.get('peak_mb'), peer_mb):>8} | "
              f"{ratio(svc.get('op_s'), peer_s):>7} {ratio(svc.get('peak_mb'), peer_mb):>7}")
    print("(peak MB: max RSS of the process, interpreter included; quoted figures are from "
          "the peer survey of this machine kind, on another day, not re-measured; load "
          f"average at the end {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
