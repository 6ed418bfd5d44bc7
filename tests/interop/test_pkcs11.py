"""CA keys in a PKCS#11 token (SoftHSM2), judged by openssl and pkilint, over a real
``tegata serve`` with two worker processes.

One token and one server per module: ``tegata init`` and ``tegata tenant create`` make the
root's and the tenant's keys inside the token (the CLI's --pkcs11-* options, then the
TEGATA_PKCS11_* settings), every command and the server run as separate processes, so each
opens its own session. What the token signed (the CA certificates, leaves, CRLs, the OCSP
responder certificate) must pass ``openssl verify -crl_check_all``, ``openssl ocsp -respin``
and pkilint; both workers must sign through the token.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.processes import free_port, stop
from tests.support.environment import PASSPHRASE, require_tool
from tests.support.softhsm import SoftToken, make_token
from tests.support.tools import pkilint_tool, run, run_all

TENANT = "kansai"
START_DEADLINE = 60.0  # seconds for the server to listen
ISSUED_OVER_HTTP = 24  # certificates issued through the API per round, eight at a time
ROUNDS = 5
ISSUE_ROUTE = "/api/v1/tenants/{tenant}/certificates"


@dataclass(frozen=True)
class Deployment:
    home: Path
    env: dict[str, str]  # the whole environment of a child ``tegata``
    url: str
    api_token: str
    root: Path
    issuing: Path
    token: SoftToken
    server: subprocess.Popen[bytes]


def tegata(deployment_env: dict[str, str], cwd: Path, *argv: str) -> str:
    result = subprocess.run([sys.executable, "-m", "cli.main", *argv], env=deployment_env,
                            cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"tegata {' '.join(argv)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_tool("openssl")
    home = tmp_path_factory.mktemp("pkcs11")
    token = make_token(home / "hsm")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")} | {
        "TEGATA_DATA_DIR": str(home / "data"), "TEGATA_KEY_PASSPHRASE": PASSPHRASE,
        "TEGATA_PUBLIC_BASE_URL": url, "TEGATA_LIFECYCLE_INTERVAL_SECONDS": "0",
        "TEGATA_CONFIG": str(home / "no-tegata.toml"), "SOFTHSM2_CONF": str(token.conf)}
    # init names the module and the PIN file on its command line; later commands and the
    # server take them from the settings
    tegata(base, home, "init", "--key-type", "ec-p384", "--pkcs11-module", str(token.module),
           "--pkcs11-token", token.label, "--pin-file", str(token.pin_file))
    env = base | token.env()
    tegata(env, home, "tenant", "create", TENANT, "--key-type", "rsa-3072",
           "--pkcs11-token", token.label)
    users = home / "users.csv"
    users.write_text("login,email,secure_access\n" + "".join(
        f"{login},{login}@example.com,yes\n"
        for login in ("alice", "bob", *(f"u{n:02}" for n in range(ISSUED_OVER_HTTP)))))
    tegata(env, home, "user", "import", str(users), "-t", TENANT)
    api_token = json.loads(tegata(env, home, "token", "create", "--role", "operator",
                                  "--json"))["token"]
    issuing_pem, root_pem = re.findall(
        r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n",
        tegata(env, home, "ca", "show", "--tenant", TENANT, "--pem"), re.S)
    root, issuing = home / "root.pem", home / "issuing.pem"
    root.write_text(root_pem)
    issuing.write_text(issuing_pem)
    log = home / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--workers", "2"],
            env=env, cwd=home, stdout=sink, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=0.2):
                break
            if server.poll() is not None or time.monotonic() - started > START_DEADLINE:
                pytest.fail(f"tegata serve did not start: {log.read_text()}")
            time.sleep(0.1)
        yield Deployment(home=home, env=env, url=url, api_token=api_token, root=root,
                         issuing=issuing, token=token, server=server)
    finally:
        stop(server)


def leaf(deployment: Deployment, login: str, directory: Path) -> tuple[str, Path]:
    (made,) = json.loads(tegata(deployment.env, deployment.home, "cert", "issue", login,
                                "-t", TENANT, "--json"))
    path = directory / f"{login}.pem"
    path.write_text(made["pem"])
    return made["serial"], path


def test_chain_crls_and_ocsp_signed_in_the_token_pass_openssl_and_pkilint(
        deployment: Deployment, tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    _, alice = leaf(deployment, "alice", tmp_path)
    bob_serial, bob = leaf(deployment, "bob", tmp_path)
    tegata(deployment.env, deployment.home, "cert", "revoke", bob_serial, "-t", TENANT,
           "--reason", "keyCompromise")
    crl, arl = tmp_path / "kansai.crl", tmp_path / "root.crl"
    crl.write_bytes(httpx.get(f"{deployment.url}/crl/{TENANT}.crl", timeout=30).content)
    arl.write_bytes(httpx.get(f"{deployment.url}/crl/root.crl", timeout=30).content)
    crls = tmp_path / "crls.pem"
    crls.write_text("".join(run(openssl, "crl", "-inform", "DER", "-in", str(path)).stdout
                            for path in (crl, arl)))
    chain = tmp_path / "chain.pem"
    chain.write_text(deployment.issuing.read_text() + deployment.root.read_text())

    verdicts = {name: run(openssl, "verify", "-crl_check_all", "-CAfile", str(chain),
                          "-CRLfile", str(crls), str(path))
                for name, path in (("alice", alice), ("bob", bob))}
    assert verdicts["alice"].returncode == 0, verdicts["alice"].stderr
    assert verdicts["alice"].stdout.strip() == f"{alice}: OK"
    assert verdicts["bob"].returncode != 0
    assert "certificate revoked" in verdicts["bob"].stdout + verdicts["bob"].stderr

    answers = {}
    for name, path in (("alice", alice), ("bob", bob)):
        response = tmp_path / f"{name}.ocsp.der"
        asked = run(openssl, "ocsp", "-issuer", str(deployment.issuing), "-cert", str(path),
                    "-url", f"{deployment.url}/ocsp", "-CAfile", str(chain),
                    "-respout", str(response))
        assert asked.returncode == 0, asked.stderr
        again = run(openssl, "ocsp", "-respin", str(response), "-CAfile", str(chain),
                    "-issuer", str(deployment.issuing), "-cert", str(path), "-no_nonce")
        output = again.stdout + again.stderr
        assert "Response verify OK" in output, output
        answers[name] = output.split(f"{path}: ", 1)[1].splitlines()[0]
    assert answers == {"alice": "good", "bob": "revoked"}

    lint_cert, lint_crl = pkilint_tool("lint_pkix_cert"), pkilint_tool("lint_crl")
    lint_ocsp = pkilint_tool("lint_ocsp_response")
    judged = {"root": [lint_cert, "lint", "-s", "WARNING", str(deployment.root)],
              "issuing": [lint_cert, "lint", "-s", "WARNING", str(deployment.issuing)],
              "alice": [lint_cert, "lint", "-s", "WARNING", str(alice)],
              "crl": [lint_crl, "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", str(crl)],
              "arl": [lint_crl, "lint", "-t", "ARL", "-p", "PKIX", "-s", "WARNING", str(arl)],
              "ocsp-good": [lint_ocsp, "lint", "-s", "WARNING", str(tmp_path / "alice.ocsp.der")],
              "ocsp-revoked": [lint_ocsp, "lint", "-s", "WARNING",
                               str(tmp_path / "bob.ocsp.der")]}
    results = run_all(list(judged.values()))
    report = {name: (r.returncode, (r.stdout + r.stderr).strip())
              for name, r in zip(judged, results, strict=True)}
    assert report == dict.fromkeys(judged, (0, ""))


def worker_pids(server: subprocess.Popen[bytes]) -> set[int]:
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return {int(pid) for pid in children}


def issue_counts(data_dir: Path) -> dict[int, int]:
    """Per worker process, the issuance requests it served (api/sharedmetrics.py's files)."""
    counts: dict[int, int] = {}
    for path in (data_dir / "metrics").glob("*-*.json"):
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(path.read_text())
            pid = int(path.name.split("-", 1)[0])
            counts[pid] = sum(n for name, label, n in data["counters"]
                              if name == "tegata_http_requests_total" and label == ISSUE_ROUTE)
    return counts


def test_both_worker_processes_sign_through_their_own_token_session(
        deployment: Deployment) -> None:
    workers = worker_pids(deployment.server)
    assert len(workers) == 2
    issuing = x509.load_pem_x509_certificate(deployment.issuing.read_bytes())

    def issue(login: str) -> x509.Certificate:
        # a connection of its own each time: the kernel hands each to one worker
        response = httpx.post(f"{deployment.url}/api/v1/tenants/{TENANT}/certificates",
                              json={"login": login}, timeout=60,
                              headers={"Authorization": f"Bearer {deployment.api_token}",
                                       "Connection": "close"})
        assert response.status_code == 201, response.text
        (made,) = response.json()["certificates"]
        return x509.load_pem_x509_certificate(made["pem"].encode())

    # rounds of 24 issuances, eight connections at a time, until each worker has served
    # some (the kernel picks the worker per connection: one round nearly always does)
    issued = 0
    counts: dict[int, int] = {}
    for _ in range(ROUNDS):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            made = list(pool.map(issue, [f"u{n:02}" for n in range(ISSUED_OVER_HTTP)]))
        for certificate in made:
            certificate.verify_directly_issued_by(issuing)
        issued += len(made)
        deadline = time.monotonic() + 30  # each worker writes its counts within a second
        while sum((counts := issue_counts(deployment.home / "data")).values()) < issued:
            assert time.monotonic() < deadline, counts
            time.sleep(0.2)
        if all(counts.get(pid, 0) > 0 for pid in workers):
            break
    assert set(counts) == workers and all(n > 0 for n in counts.values()), counts
    for pid in workers:  # each worker loaded the module itself (granian forks them)
        assert str(deployment.token.module.resolve()) in Path(f"/proc/{pid}/maps").read_text()


def test_serve_stops_with_one_line_and_exit_78_when_the_pin_does_not_open_the_token(
        deployment: Deployment, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-pin"
    wrong.write_text("00000000\n")
    wrong.chmod(0o600)
    env = deployment.env | {"TEGATA_PKCS11_PIN_FILE": str(wrong)}
    result = subprocess.run([sys.executable, "-m", "cli.main", "serve", "--port",
                             str(free_port())], env=env, cwd=deployment.home,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 78
    assert result.stderr == (f"tegata: error: PKCS#11 token {deployment.token.label!r}: the "
                             f"PIN in {wrong} does not open it (all tokens are opened with "
                             "the PIN of TEGATA_PKCS11_PIN_FILE); it is not tried again until "
                             "a restart\n")
    assert deployment.token.pin not in result.stdout + result.stderr
