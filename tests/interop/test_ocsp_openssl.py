"""OCSP against a real ``tegata serve``: openssl, curl, NSS and pkilint are the clients.

One server per module, on a CA made by ``tegata init`` in the same environment, so the
system clock is used throughout (certificates issued with the default expiry). Each test
issues its own certificate with the in-process CLI and changes its status with
``tegata cert revoke|suspend|reinstate``, as an operator would; the server sees the change
through the shared database.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from tests.processes import free_port, stop
from tests.support.cli import Cli, issue_pem
from tests.support.environment import PASSPHRASE, require_tool
from tests.support.tools import pkilint_tool, run, run_all

pytestmark = pytest.mark.interop

START_DEADLINE = 30.0  # seconds for the server to listen
REVOKED_NSS = "-8180"  # SEC_ERROR_REVOKED_CERTIFICATE
SETTLE_DEADLINE = 30.0  # seconds for a status change to reach the server's answers


@dataclass(frozen=True)
class Server:
    url: str
    env: dict[str, str]  # TEGATA_* for the CLI
    root: Path
    issuing: Path
    log: Path


def _tegata(env: dict[str, str], cwd: Path, *argv: str) -> str:
    result = subprocess.run([sys.executable, "-m", "cli.main", *argv], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"tegata {' '.join(argv)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    require_tool("openssl")
    home = tmp_path_factory.mktemp("ocsp-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # the AIA and CRL distribution points name this server, so that NSS can find it
    env = {"TEGATA_DATA_DIR": str(home / "data"), "TEGATA_KEY_PASSPHRASE": PASSPHRASE,
           "TEGATA_PUBLIC_BASE_URL": url, "TEGATA_LIFECYCLE_INTERVAL_SECONDS": "0",
           "TEGATA_CONFIG": str(home / "no-tegata.toml")}
    child = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")} | env
    _tegata(child, home, "init", "--key-type", "ec-p256")
    _tegata(child, home, "user", "add", "alice", "--email", "alice@example.com", "--allow")
    issuing_pem, root_pem = re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE"
                                       r"-----\n", _tegata(child, home, "ca", "show",
                                                           "--tenant", "default", "--pem"),
                                       re.S)
    root, issuing = home / "root.pem", home / "issuing.pem"
    root.write_text(root_pem)
    issuing.write_text(issuing_pem)
    log = home / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
                                env=child, cwd=home, stdout=sink, stderr=subprocess.STDOUT)
    try:
        started = time.monotonic()
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port),
                                                                        timeout=0.2):
                break
            if proc.poll() is not None or time.monotonic() - started > START_DEADLINE:
                pytest.fail(f"tegata serve did not start: {log.read_text()}")
            time.sleep(0.1)
        yield Server(url=url, env=env, root=root, issuing=issuing, log=log)
    finally:
        stop(proc)


@pytest.fixture
def tegata(server: Server, monkeypatch: pytest.MonkeyPatch,
           capsys: pytest.CaptureFixture[str]) -> Cli:
    """The CLI, in this process, on the server's data directory and database."""
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    return Cli(capsys)


@dataclass(frozen=True)
class Leaf:
    serial: str
    path: Path


def leaf_file(tegata: Cli, directory: Path, name: str = "leaf") -> Leaf:
    path = directory / f"{name}.pem"
    return Leaf(serial=issue_pem(tegata, path), path=path)

@pytest.fixture
def leaf(tegata: Cli, tmp_path: Path) -> Leaf:
    return leaf_file(tegata, tmp_path)


def ask(openssl: str, server: Server, target: Leaf | str, *options: str,  # type: ignore[no-untyped-def]
        digest: str = "-sha1"):
    """``openssl ocsp`` for a certificate file, or for a bare serial ("0x1234"); ``digest``
    is the CertID's hash (openssl wants it before -cert)."""
    subject = (["-cert", str(target.path)] if isinstance(target, Leaf)
               else ["-serial", target])
    result = run(openssl, "ocsp", "-issuer", str(server.issuing), digest, *subject, "-url",
                 f"{server.url}/ocsp", "-CAfile", str(server.root), *options)
    return result, result.stdout + result.stderr


def status_line(output: str, target: Leaf | str) -> str:
    name = str(target.path) if isinstance(target, Leaf) else target
    (line,) = [x for x in output.splitlines() if x.startswith(f"{name}: ")]
    return line.removeprefix(f"{name}: ")


# answers in a row, each over a connection of its own, before every worker of the server is
# taken to have heard the change (the kernel hands each connection to one worker at random)
SETTLED_IN_A_ROW = 8


def settled(openssl: str, server: Server, target: Leaf, expected: str) -> None:
    """Once every worker of the server answers ``expected``: the CLI's change is another
    process's commit, which reaches each worker's kept answers through the change feed
    (ca.service.ocsp_feed) within a second; the deadline is generous, for a loaded machine."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    in_a_row = 0
    while in_a_row < SETTLED_IN_A_ROW and time.monotonic() < deadline:
        if status_line(ask(openssl, server, target)[1], target) == expected:
            in_a_row += 1
        else:
            in_a_row = 0
            time.sleep(0.05)


@pytest.fixture
def openssl() -> str:
    return require_tool("openssl")


# --- openssl ocsp over POST -----------------------------------------------------------------


def test_openssl_hears_good_then_revoked_with_the_reason_after_tegata_cert_revoke(
        openssl: str, server: Server, tegata: Cli, leaf: Leaf) -> None:
    result, output = ask(openssl, server, leaf)
    assert result.returncode == 0, output
    assert "Response verify OK" in output
    assert status_line(output, leaf) == "good"

    tegata.ok("cert", "revoke", leaf.serial, "--reason", "keyCompromise")
    settled(openssl, server, leaf, "revoked")

    result, output = ask(openssl, server, leaf)
    assert "Response verify OK" in output
    assert status_line(output, leaf) == "revoked"
    assert "Reason: keyCompromise" in output
    assert "Revocation Time:" in output


def test_openssl_hears_unknown_for_a_serial_tegata_never_issued(
        openssl: str, server: Server) -> None:
    _, output = ask(openssl, server, "0x1234")
    assert "Response verify OK" in output
    assert status_line(output, "0x1234") == "unknown"


def test_a_suspension_is_revoked_as_certificate_hold_until_reinstated(
        openssl: str, server: Server, tegata: Cli, leaf: Leaf) -> None:
    tegata.ok("cert", "suspend", leaf.serial)
    settled(openssl, server, leaf, "revoked")
    _, output = ask(openssl, server, leaf)
    assert status_line(output, leaf) == "revoked"
    assert "Reason: certificateHold" in output and "Response verify OK" in output

    tegata.ok("cert", "reinstate", leaf.serial)
    settled(openssl, server, leaf, "good")
    _, output = ask(openssl, server, leaf)
    assert status_line(output, leaf) == "good" and "Response verify OK" in output


@pytest.mark.parametrize("digest", ["sha256", "sha384", "sha512"])
def test_sha2_cert_ids_are_answered_in_kind(openssl: str, server: Server, tegata: Cli,
                                            leaf: Leaf, tmp_path: Path, digest: str) -> None:
    kept = tmp_path / "response.der"
    _, output = ask(openssl, server, leaf, "-resp_text", "-respout", str(kept),
                    digest=f"-{digest}")
    assert status_line(output, leaf) == "good" and "Response verify OK" in output
    assert f"Hash Algorithm: {digest}" in output and "Hash Algorithm: sha1" not in output
    # the response kept on disk verifies on its own and names the certificate asked for
    again = run(openssl, "ocsp", "-respin", str(kept), "-issuer", str(server.issuing),
                f"-{digest}", "-cert", str(leaf.path), "-CAfile", str(server.root),
                "-no_nonce")
    assert "Response verify OK" in again.stdout + again.stderr
    assert status_line(again.stdout, leaf) == "good"
    tegata.ok("cert", "revoke", leaf.serial, "--reason", "affiliationChanged")
    settled(openssl, server, leaf, "revoked")
    _, output = ask(openssl, server, leaf, digest=f"-{digest}")
    assert status_line(output, leaf) == "revoked"
    assert "Reason: affiliationChanged" in output


def test_the_nonce_is_echoed_and_a_request_without_one_is_answered_too(
        openssl: str, server: Server, leaf: Leaf) -> None:
    # openssl sends a nonce by default and checks the response echoes it
    _, output = ask(openssl, server, leaf, "-resp_text")
    assert "OCSP Nonce" in output
    assert "WARNING: no nonce in response" not in output
    assert "Nonce Verify error" not in output
    _, output = ask(openssl, server, leaf, "-no_nonce", "-resp_text")
    assert status_line(output, leaf) == "good" and "Response verify OK" in output
    assert "OCSP Nonce" not in output


# --- GET through curl -----------------------------------------------------------------------


def curl_get(server: Server, path: str, out: Path) -> tuple[int, dict[str, str]]:
    """Status and headers (lower-case names) of a GET, the body written to ``out``."""
    result = run(require_tool("curl"), "-sS", "--path-as-is", "-D", "-", "-o", str(out),
                 f"{server.url}{path}")
    assert result.returncode == 0, result.stderr
    head, *lines = result.stdout.strip().splitlines()
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(head.split()[1]), headers


def test_a_get_through_curl_has_the_exact_media_type_and_rfc_5019_caching_headers(
        openssl: str, server: Server, leaf: Leaf, tmp_path: Path) -> None:
    request = tmp_path / "req.der"
    result = run(openssl, "ocsp", "-issuer", str(server.issuing), "-cert", str(leaf.path),
                 "-no_nonce", "-reqout", str(request))
    assert result.returncode == 0, result.stderr
    encoded = base64.b64encode(request.read_bytes()).decode()

    code, headers = curl_get(server, f"/ocsp/{encoded}", tmp_path / "resp.der")

    assert code == 200
    assert headers["content-type"] == "application/ocsp-response"
    cache = {part.strip() for part in headers["cache-control"].split(",")}
    assert {"public", "no-transform", "must-revalidate"} <= cache
    (max_age,) = [p for p in cache if p.startswith("max-age=")]
    assert 0 < int(max_age.removeprefix("max-age=")) <= 300
    for name in ("last-modified", "expires", "etag"):
        assert headers.get(name), name
    checked = run(openssl, "ocsp", "-respin", str(tmp_path / "resp.der"), "-issuer",
                  str(server.issuing), "-cert", str(leaf.path), "-CAfile", str(server.root))
    assert "Response verify OK" in checked.stdout + checked.stderr
    assert status_line(checked.stdout, leaf) == "good"


def _request_with_slash_plus_and_equals(issuing: x509.Certificate) -> tuple[int, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    template = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
                .issuer_name(issuing.subject).public_key(key.public_key()))
    # only the serial varies between attempts (the hashes of the issuer's name and key are
    # fixed): 4 to 6 random bytes of it, so that '/' and '+' can fall anywhere and every
    # length modulo 3 (hence a trailing '=') comes up, whatever the issuer's name
    for attempt in range(5000):
        serial = secrets.randbits(32 + 8 * (attempt % 3)) | 1
        cert = (template.serial_number(serial)
                .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
                .not_valid_after(dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
                .sign(key, hashes.SHA256()))
        der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuing, hashes.SHA1()).build(
        ).public_bytes(serialization.Encoding.DER)
        encoded = base64.b64encode(der).decode()
        if "/" in encoded and "+" in encoded and encoded.endswith("="):
            return serial, encoded
    raise AssertionError("no request with '/', '+' and '=' in its base64")


@pytest.mark.parametrize("escape", ["unescaped", "percent-encoded"])
def test_a_get_path_with_slash_plus_and_equals_is_understood(
        server: Server, tmp_path: Path, escape: str) -> None:
    issuing = x509.load_pem_x509_certificate(server.issuing.read_bytes())
    serial, encoded = _request_with_slash_plus_and_equals(issuing)
    path = encoded if escape == "unescaped" else quote(encoded, safe="")
    code, headers = curl_get(server, f"/ocsp/{path}", tmp_path / "resp.der")
    assert code == 200 and headers["content-type"] == "application/ocsp-response"
    answer = ocsp.load_der_ocsp_response((tmp_path / "resp.der").read_bytes())
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.serial_number == serial
    assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


# --- refusals -------------------------------------------------------------------------------


def test_garbage_posted_gets_a_malformed_request_response(openssl: str, server: Server,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "resp.der"
    result = run(require_tool("curl"), "-sS", "-o", str(out), "-w", "%{http_code} "
                 "%{content_type}", "--data-binary", "this is not an OCSP request", "-H",
                 "Content-Type: application/ocsp-request", f"{server.url}/ocsp")
    assert result.stdout == "200 application/ocsp-response"
    shown = run(openssl, "ocsp", "-respin", str(out), "-resp_text", "-noverify")
    assert "malformedrequest" in shown.stdout + shown.stderr


def test_a_certificate_of_another_issuer_is_unauthorized(openssl: str, server: Server,
                                                         tmp_path: Path) -> None:
    ca_key, ca, key, csr, cert = (tmp_path / n for n in (
        "other-ca.key", "other-ca.pem", "other.key", "other.csr", "other.pem"))
    steps = [
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(ca_key), "-out", str(ca), "-subj", "/CN=Someone Else CA",
         "-days", "30"],
        [openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=someone"],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
         "-set_serial", "7", "-days", "30", "-out", str(cert)],
    ]
    for argv in steps:
        made = run(*argv)
        assert made.returncode == 0, made.stderr
    result = run(openssl, "ocsp", "-issuer", str(ca), "-cert", str(cert), "-url",
                 f"{server.url}/ocsp", "-CAfile", str(server.root))
    assert "Responder Error: unauthorized" in result.stdout + result.stderr


# --- pkilint and NSS ------------------------------------------------------------------------


def test_pkilint_finds_nothing_in_good_revoked_and_unknown_responses(
        openssl: str, server: Server, tegata: Cli, tmp_path: Path) -> None:
    lint = pkilint_tool("lint_ocsp_response")
    good, revoked = leaf_file(tegata, tmp_path, "good"), leaf_file(tegata, tmp_path, "revoked")
    tegata.ok("cert", "revoke", revoked.serial, "--reason", "keyCompromise")
    settled(openssl, server, revoked, "revoked")
    files = {name: tmp_path / f"{name}.der" for name in ("good", "revoked", "unknown")}
    for name, target in (("good", good), ("revoked", revoked), ("unknown", "0x1234")):
        _, output = ask(openssl, server, target, "-respout", str(files[name]))
        assert status_line(output, target) == name
    results = run_all([[lint, "lint", "-s", "WARNING", str(path)] for path in files.values()])
    report = {name: (r.returncode, (r.stdout + r.stderr).strip())
              for name, r in zip(files, results, strict=True)}
    assert report == dict.fromkeys(files, (0, ""))


@pytest.fixture
def nss_db(server: Server, tmp_path: Path) -> Path:
    """An NSS database that trusts Tegata's root for TLS clients."""
    certutil = require_tool("certutil")
    directory = tmp_path / "nss"
    directory.mkdir()
    for argv in ([certutil, "-N", "-d", f"sql:{directory}", "--empty-password"],
                 [certutil, "-A", "-d", f"sql:{directory}", "-n", "tegata-root", "-t",
                  "CT,C,C", "-a", "-i", str(server.root)]):
        result = run(*argv)
        assert result.returncode == 0, result.stderr
    return directory


def vfychain_ocsp(server: Server, nss_db: Path, leaf: Leaf, *flags: str):  # type: ignore[no-untyped-def]
    """NSS's verdict for a TLS client certificate (-u 0), checked by OCSP only, at the AIA
    URL (this server); -pp is libpkix, the only path with the revocation options."""
    result = run(require_tool("vfychain"), "-d", f"sql:{nss_db}", "-pp", "-u", "0",
                 "-g", "leaf", "-m", "ocsp", *flags, "-a", str(leaf.path), "-a",
                 str(server.issuing))
    return result, result.stdout + result.stderr


def test_nss_agrees_good_then_revoked_by_ocsp(server: Server, tegata: Cli, leaf: Leaf,
                                              nss_db: Path, openssl: str) -> None:
    # failIfNoInfo: passing means NSS did get a "good" answer from the responder
    result, output = vfychain_ocsp(server, nss_db, leaf, "-s", "failIfNoInfo")
    assert result.returncode == 0 and "Chain is good!" in output, output

    tegata.ok("cert", "revoke", leaf.serial, "--reason", "keyCompromise")
    settled(openssl, server, leaf, "revoked")

    # without failIfNoInfo a missing answer would pass: failing means "revoked" was heard
    result, output = vfychain_ocsp(server, nss_db, leaf)
    assert result.returncode != 0 and "Chain is bad!" in output
    assert REVOKED_NSS in output, output


def test_nss_hears_a_suspension_as_revoked(server: Server, tegata: Cli, leaf: Leaf,
                                           nss_db: Path, openssl: str) -> None:
    tegata.ok("cert", "suspend", leaf.serial)
    settled(openssl, server, leaf, "revoked")
    result, output = vfychain_ocsp(server, nss_db, leaf)
    assert result.returncode != 0 and REVOKED_NSS in output, output
    tegata.ok("cert", "reinstate", leaf.serial)
    settled(openssl, server, leaf, "good")
    result, output = vfychain_ocsp(server, nss_db, leaf, "-s", "failIfNoInfo")
    assert result.returncode == 0, output
