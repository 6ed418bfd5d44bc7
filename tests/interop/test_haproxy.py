"""HAProxy in front of a real ``tegata serve``: one real
HAProxy 2.6 per tenant, configured only by what ``tegata gateway haproxy`` prints, its CRL
kept by ``tegata gateway crl-sync --haproxy-socket``.

- isolation: every tenant's certificate is refused at every other tenant's gateway, though
  all chain to one root and the client sends its own issuing CA (tenants named in Japanese
  and with long names that differ only at the end);
- resumption: a session saved before a suspension is neither resumed nor let in after it;
  a kept-alive connection does not outlive a revocation (closed after each response);
- crl-sync: a failed push is retried by the next run, the watcher outlives HAProxy's
  restart, failures are named with their exit codes, every argument is checked before
  anything is fetched or written, an unchanged CRL costs a 304;
- HEAD and conditional GET through the real server, with curl and ``wget --spider``.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from ca.errors import InvalidInput
from ca.x509.names import openssl_rfc2253
from cli import crlsync
from cli.haproxy_kit import HaproxyKit
from tests.interop.haproxy_support import Haproxy, Reply, curl, s_client
from tests.interop.nginx_support import (
    Client,
    Tegata,
    client_certificate,
    server_certificate,
    tail,
)
from tests.processes import free_port, stop
from tests.support.environment import require_tool

pytestmark = pytest.mark.interop

# tenant -> display name: the issuing CA's name comes from it
TENANTS = {
    "acme": "株式会社アクメ",
    "tokyo": "Example Holdings International Corporation Japan Branch Tokyo",
    "osaka": "Example Holdings International Corporation Japan Branch Osaka",
}
POLL_LIMIT = 20.0  # seconds for a bounded poll
POLL_EVERY = 0.2


@pytest.fixture(scope="module")
def tools() -> dict[str, str]:
    return {name: require_tool(name) for name in ("haproxy", "openssl", "curl", "wget")}


@pytest.fixture(scope="module")
def tegata(tools: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Tegata]:
    tegata = Tegata(tmp_path_factory.mktemp("tegata"))
    tegata.ok("init", "--key-type", "ec-p256")
    for tenant, display in TENANTS.items():
        tegata.ok("tenant", "create", tenant, "--display-name", display, "--key-type",
                  "ec-p256")
        tegata.ok("user", "add", "alice", "--email", f"alice@{tenant}.example", "--allow",
                  "--tenant", tenant)
    tegata.serve(workers=1)  # HEAD and GET of one OCSP answer are signed by one worker
    yield tegata
    tegata.stop()


@pytest.fixture(scope="module")
def server_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The gateways' TLS certificate (to verify them), and certificate + key in one file
    (HAProxy's crt)."""
    directory = tmp_path_factory.mktemp("server")
    cert, key = server_certificate(directory)
    both = directory / "server-both.pem"
    both.write_bytes(cert.read_bytes() + key.read_bytes())
    both.chmod(0o600)
    return cert, both


@pytest.fixture(scope="module")
def gateways(tegata: Tegata, tools: dict[str, str], server_files: tuple[Path, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Haproxy]]:
    started = {}
    try:
        for tenant in TENANTS:
            gateway = Haproxy(binary=tools["haproxy"], tenant=tenant,
                              directory=tmp_path_factory.mktemp(f"haproxy-{tenant}"))
            gateway.configure(tegata, server_files[1])
            gateway.start()
            started[tenant] = gateway
        yield started
    finally:
        for gateway in started.values():
            gateway.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


@pytest.fixture(scope="module")
def clients(tegata: Tegata, tools: dict[str, str], certs: Path) -> dict[str, Client]:
    """A valid certificate of each tenant, with the chain its PKCS#12 carries (the client
    sends its issuing CA)."""
    return {tenant: client_certificate(tegata, tools["openssl"], certs, login="alice",
                                       tenant=tenant)
            for tenant in TENANTS}


def ask(tools: dict[str, str], gateway: Haproxy, server_files: tuple[Path, Path],
        client: Client) -> Reply:
    return curl(tools["curl"], gateway, server_files[0], client)


def until(check: object, *, limit: float = POLL_LIMIT) -> bool:
    """Call ``check`` every POLL_EVERY seconds until it is true, for at most ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        if check():  # type: ignore[operator]
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_EVERY)


# --- isolation ----------------------------------------------------------------------------

HOSTILE_NAMES = ["株式会社アクメ", " leading space", "trailing space ", "#hash first", "a#b",
                 'x,y+z"q\\r<s>t;u=v', "tab\tdel\x7f", "Ω é ü ß", "\U0001d4d0 😀", "  ", "=eq",
                 "it's / slash", TENANTS["tokyo"][:53]]


def test_the_pin_is_the_issuer_as_openssl_and_so_haproxy_prints_it(
        tools: dict[str, str], tmp_path: Path) -> None:
    """HAProxy's ssl_c_i_dn(,0,rfc2253) is OpenSSL's X509_NAME_print_ex(XN_FLAG_RFC2253),
    as `openssl x509 -nameopt RFC2253` prints it; HAProxy itself is asked in the isolation
    tests (the Japanese tenant gets in only if the pin is right)."""
    key = ec.generate_private_key(ec.SECP256R1())
    when = dt.datetime.now(dt.UTC)
    mine, theirs = {}, {}
    for value in HOSTILE_NAMES:
        name = x509.Name([
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP")]),
            x509.RelativeDistinguishedName([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tegata, Inc."),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "a+b")]),
            x509.RelativeDistinguishedName([
                x509.NameAttribute(NameOID.COMMON_NAME, value)]),
            x509.RelativeDistinguishedName([
                x509.NameAttribute(NameOID.SERIAL_NUMBER, "42"),
                x509.NameAttribute(NameOID.DN_QUALIFIER, "q")])])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(1).not_valid_before(when)
                .not_valid_after(when + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
        printed = subprocess.run(
            [tools["openssl"], "x509", "-noout", "-subject", "-nameopt", "RFC2253"],
            input=cert.public_bytes(serialization.Encoding.PEM), capture_output=True,
            timeout=30, check=True).stdout.decode("ascii").strip()
        theirs[value] = printed.removeprefix("subject=")
        mine[value] = openssl_rfc2253(x509.load_der_x509_certificate(
            cert.public_bytes(serialization.Encoding.DER)).subject)
    assert mine == theirs
    # UTF-8 bytes as \XX, in the order of the bytes
    assert r"CN=\E6\A0\AA\E5\BC\8F\E4\BC\9A\E7\A4\BE\E3\82\A2\E3\82\AF\E3\83\A1" in (
        theirs["株式会社アクメ"].split(","))

def test_every_tenants_certificate_is_refused_at_every_other_tenants_gateway(
        tools: dict[str, str], gateways: dict[str, Haproxy], clients: dict[str, Client],
        server_files: tuple[Path, Path]) -> None:
    seen = {(gw, holder): ask(tools, gateways[gw], server_files, clients[holder])
            for gw in TENANTS for holder in TENANTS}
    # another tenant's chain has a CA whose CRL the gateway lacks: the handshake fails
    assert {key: reply.status for key, reply in seen.items()} == {
        (gw, holder): 200 if gw == holder else 0 for gw in TENANTS for holder in TENANTS}
    for (gw, holder), reply in seen.items():
        if gw == holder:
            # HAProxy prints the serial's bytes in hex (a leading zero digit kept); Tegata
            # writes serials without leading zeros: the same number
            verify, _, serial = reply.body.rstrip("\n").partition(" serial=")
            assert (verify, int(serial, 16)) == ("verify=0", int(clients[holder].serial, 16))
        else:
            assert "alert" in reply.body, reply.body


def test_the_issuer_pin_refuses_another_tenant_whose_crl_the_gateway_holds(
        tegata: Tegata, tools: dict[str, str], gateways: dict[str, Haproxy],
        clients: dict[str, Client], server_files: tuple[Path, Path]) -> None:
    """Should a gateway's CRL file hold every tenant's CRL (one file for all), the chain of
    any tenant verifies: the pin on the issuing CA, written as HAProxy prints it, is what
    refuses the others (and what lets the Japanese-named tenant in). It needs every issuing
    CA's subject to be unique: Tokyo's and Osaka's names differ past 53
    characters."""
    subjects = {t: tegata.ok("gateway", "ca-bundle", "--tenant", t).split("-----END")[0]
                for t in TENANTS}
    assert len({crlsync.x509.load_pem_x509_certificate((pem + "-----END CERTIFICATE-----\n")
                .encode()).subject for pem in subjects.values()}) == len(TENANTS), (
        "issuing-CA subjects are not unique across tenants")
    for tenant, gateway in gateways.items():
        everyone = b"".join(
            crlsync.fetch(f"{tegata.url}/crl/{other}"
                          + ("-chain.pem" if other == tenant else ".pem")).pem or b""
            for other in TENANTS)
        crlsync.haproxy_push(str(gateway.socket), gateway.crl_file, everyone)
    try:
        seen = {(gw, holder): ask(tools, gateways[gw], server_files, clients[holder]).status
                for gw in TENANTS for holder in TENANTS}
    finally:
        for gateway in gateways.values():
            gateway.sync(tegata, push=True)
    assert seen == {(gw, holder): 200 if gw == holder else 403
                    for gw in TENANTS for holder in TENANTS}


@pytest.mark.parametrize(("field", "value"), [
    ("bind", ":443 ssl crt /x"), ("server_pem", "/a#b"), ("ca_bundle", '/a"b'),
    ("crl_file", "/a\\b"), ("runtime_socket", "/a$HOME"), ("upstream", "http://x:1"),
    ("upstream", "x:1\nglobal"), ("bind", "")],
    ids=["space", "comment", "quote", "backslash", "variable", "url", "newline", "empty"])
def test_the_kit_refuses_a_value_haproxy_would_read_as_syntax(field: str,
                                                              value: str) -> None:
    values = {"tenant": "acme", "bind": ":443", "server_pem": "/s.pem", "ca_bundle": "/ca.pem",
              "crl_file": "/crl.pem", "runtime_socket": "/admin.sock",
              "upstream": "127.0.0.1:9000", "issuer_dn": "CN=x"}
    with pytest.raises(InvalidInput) as caught:
        HaproxyKit(**{**values, field: value})
    assert caught.value.field == field


# --- session resumption -------------------------------------------------------------------

def test_a_suspended_certificate_neither_resumes_its_session_nor_connects(
        tegata: Tegata, tools: dict[str, str], gateways: dict[str, Haproxy],
        server_files: tuple[Path, Path], certs: Path, tmp_path: Path) -> None:
    gateway = gateways["acme"]
    client = client_certificate(tegata, tools["openssl"], certs, login="alice", tenant="acme")
    session = tmp_path / "session.pem"
    first = s_client(tools["openssl"], gateway, server_files[0], client, sess_out=session)
    assert (first.status, first.reused) == (200, False), first.transcript
    assert session.stat().st_size > 0  # a session was offered to save (TLS 1.3 ticket)

    tegata.ok("cert", "suspend", client.serial, "--tenant", "acme")
    assert ": updated, " in gateway.sync(tegata, push=True)
    second = s_client(tools["openssl"], gateway, server_files[0], client, sess_in=session)

    assert (second.status, second.reused) == (0, False), second.transcript
    # and a full handshake is refused for the suspension, not for anything else
    assert ask(tools, gateway, server_files, client).status == 0
    tegata.ok("cert", "reinstate", client.serial, "--tenant", "acme")
    gateway.sync(tegata, push=True)
    assert ask(tools, gateway, server_files, client).status == 200


def test_a_kept_alive_connection_does_not_outlive_a_revocation(
        tegata: Tegata, tools: dict[str, str], gateways: dict[str, Haproxy],
        server_files: tuple[Path, Path], certs: Path) -> None:
    """HAProxy checks the CRL at the handshake only, and `commit ssl crl-file` leaves open
    connections alone (an idle keep-alive connection is no session `shutdown session`
    could end): the kit closes the client's connection after each response, so every
    request is a new handshake checked against the CRL HAProxy holds."""
    gateway = gateways["tokyo"]
    client = client_certificate(tegata, tools["openssl"], certs, login="alice", tenant="tokyo")
    context = ssl.create_default_context(cafile=str(server_files[0]))
    context.load_cert_chain(str(client.pem))
    connection = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=context,
                                             timeout=10)
    try:
        connection.request("GET", "/")
        first = connection.getresponse()
        assert (first.status, first.read().decode().split()[0]) == (200, "verify=0")
        assert first.getheader("Connection") == "close"
        assert connection.sock is None  # HAProxy closed it after the response

        tegata.ok("cert", "suspend", client.serial, "--tenant", "tokyo")
        assert ": updated, " in gateway.sync(tegata, push=True)

        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            connection.request("GET", "/")  # a new connection, and handshake: refused
            connection.getresponse().read()
    finally:
        connection.close()
        tegata.ok("cert", "reinstate", client.serial, "--tenant", "tokyo")
        gateway.sync(tegata, push=True)


# --- crl-sync -------------------------------------------------------------------------------

def test_a_failed_push_is_retried_by_the_next_run(
        tegata: Tegata, tools: dict[str, str], gateways: dict[str, Haproxy],
        server_files: tuple[Path, Path], certs: Path) -> None:
    gateway = gateways["tokyo"]
    client = client_certificate(tegata, tools["openssl"], certs, login="alice", tenant="tokyo")
    gateway.sync(tegata, push=True)
    assert ask(tools, gateway, server_files, client).status == 200
    tegata.ok("cert", "suspend", client.serial, "--tenant", "tokyo")
    away = gateway.socket.with_name("away.sock")
    gateway.socket.rename(away)  # the runtime API is out of reach for one run
    try:
        failed = tegata("gateway", "crl-sync", "--tenant", "tokyo", "--out",
                        str(gateway.crl_file), "--ca-bundle", str(gateway.ca_bundle),
                        "--url", tegata.url, "--haproxy-socket", str(gateway.socket))
    finally:
        away.rename(gateway.socket)
    assert failed.code == 69
    assert failed.err.splitlines()[-1] == (
        f"tegata: error: HAProxy's runtime API at {gateway.socket}: No such file or directory")
    assert ask(tools, gateway, server_files, client).status == 200  # HAProxy has the old CRL

    retried = gateway.sync(tegata, push=True)  # the file is new already: not "unchanged"

    assert retried.startswith(f"{gateway.crl_file}: updated, next update ")
    assert ask(tools, gateway, server_files, client).status == 0
    assert gateway.sync(tegata, push=True).startswith(f"{gateway.crl_file}: unchanged, ")


def test_a_failed_reload_is_retried_by_the_next_run(tegata: Tegata, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text(tegata.ok("gateway", "ca-bundle", "--tenant", "osaka"))
    out, reloads = tmp_path / "crl.pem", tmp_path / "reloads"

    def sync(command: str) -> tuple[int, str, str]:
        ran = tegata("gateway", "crl-sync", "--tenant", "osaka", "--out", str(out),
                     "--ca-bundle", str(bundle), "--url", tegata.url, "--reload", command)
        return ran.code, ran.out.split(",")[0], ran.err.strip()

    count = f"sh -c 'echo reload >> {reloads}'"
    assert sync("sh -c 'echo nginx is down >&2; exit 1'") == (
        75, "", "tegata: error: reload command failed (1): nginx is down")
    assert sync("no-such-reload-command") == (
        78, "", "tegata: error: reload command no-such-reload-command not found")
    assert sync(count) == (0, f"{out}: updated", "")
    assert sync(count) == (0, f"{out}: unchanged", "")
    assert reloads.read_text() == "reload\n"
    # applied by another command (another gateway) is not applied by this one
    assert sync(count + " # another") == (0, f"{out}: updated", "")
    assert reloads.read_text() == "reload\n" * 2


def test_crl_sync_names_what_failed_with_its_exit_code(
        tegata: Tegata, gateways: dict[str, Haproxy], tmp_path: Path) -> None:
    gateway = gateways["osaka"]
    nobody = f"http://127.0.0.1:{free_port()}"
    common = ["gateway", "crl-sync", "--tenant", "osaka", "--ca-bundle",
              str(gateway.ca_bundle)]
    cases = {
        "tegata-unreachable": ([*common, "--out", str(tmp_path / "a.pem"), "--url", nobody],
                               69, f"tegata: error: cannot reach Tegata at "
                                   f"{nobody}/crl/osaka-chain.pem: [Errno 111] Connection "
                                   "refused"),
        "haproxy-unreachable": ([*common, "--out", str(tmp_path / "b.pem"), "--url",
                                 tegata.url, "--haproxy-socket", str(tmp_path / "no.sock")],
                                69, f"tegata: error: HAProxy's runtime API at "
                                    f"{tmp_path / 'no.sock'}: No such file or directory"),
        "unknown-tenant": (["gateway", "crl-sync", "--tenant", "nobody", "--ca-bundle",
                            str(gateway.ca_bundle), "--out", str(tmp_path / "c.pem"),
                            "--url", tegata.url],
                           2, f"tegata: error: Tegata at {tegata.url}/crl/nobody-chain.pem "
                              "answered 404"),
        "out-not-writable": ([*common, "--out", str(tmp_path / "no-dir" / "d.pem"), "--url",
                              tegata.url],
                             78, f"tegata: error: cannot write {tmp_path / 'no-dir' / 'd.pem'}"
                                 ": No such file or directory"),
    }
    seen = {}
    for case, (argv, _, _) in cases.items():
        ran = tegata(*argv)
        seen[case] = (ran.code, ran.err.splitlines()[-1] if ran.err else "")
    assert seen == {case: (code, line) for case, (_, code, line) in cases.items()}


def crl_without_number() -> bytes:
    """A CRL not made by Tegata: no CRL Number extension."""
    key = ec.generate_private_key(ec.SECP256R1())
    moment = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone else")]))
           .last_update(moment).next_update(moment + dt.timedelta(days=1))
           .sign(key, hashes.SHA256()))
    return crl.public_bytes(serialization.Encoding.PEM)


def test_crl_sync_checks_every_argument_before_it_fetches_or_writes(
        tegata: Tegata, gateways: dict[str, Haproxy], tmp_path: Path) -> None:
    """Bad --reload values and an --out file that holds no CRL: exit 2, nothing written,
    with --watch too (no 'internal error', no exit 70)."""
    gateway = gateways["osaka"]
    foreign = tmp_path / "server.key"
    foreign.write_text("-----BEGIN PRIVATE KEY-----\nnot a CRL\n")
    cases = {
        "unbalanced-quote": (["--reload", "nginx 'x"], "crl.pem",
                             "--reload nginx 'x: No closing quotation"),
        "empty": (["--reload", ""], "crl.pem", "--reload is empty"),
        "blank": (["--reload", "  "], "crl.pem", "--reload is empty"),
        "pid-without-reload": (["--nginx-pid", str(tmp_path / "nginx.pid")], "crl.pem",
                               "--nginx-pid checks the reload: give --reload too"),
        "not-a-crl-file": ([], "server.key",
                           f"{foreign} exists and holds no PEM CRL: not overwriting it"),
    }
    watched = ("unbalanced-quote", "empty", "not-a-crl-file")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
    seen = {}
    for case, (extra, name, _) in cases.items():
        argv = ["gateway", "crl-sync", "--tenant", "osaka", "--ca-bundle",
                str(gateway.ca_bundle), "--url", tegata.url, "--out", str(tmp_path / name),
                *extra]
        ran = tegata(*argv)
        seen[case, False] = (ran.code, ran.out, ran.err)
        if case in watched:  # a watcher that does not stop at once is a failure, not a hang
            try:
                done = subprocess.run([sys.executable, "-m", "cli.main", *argv, "--watch"],
                                      env={**env, **tegata.env()}, capture_output=True,
                                      text=True, timeout=30, check=False)
                seen[case, True] = (done.returncode, done.stdout, done.stderr)
            except subprocess.TimeoutExpired:
                seen[case, True] = (-1, "still watching after 30 s", "")
    assert seen == {(case, watch): (2, "", f"tegata: error: {line}\n")
                    for case, (_, _, line) in cases.items()
                    for watch in ((False, True) if case in watched else (False,))}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.key"]
    assert foreign.read_text() == "-----BEGIN PRIVATE KEY-----\nnot a CRL\n"


def test_a_reload_command_that_cannot_be_run_is_configuration(
        tegata: Tegata, gateways: dict[str, Haproxy], tmp_path: Path) -> None:
    gateway = gateways["osaka"]
    not_executable = tmp_path / "reload.sh"
    not_executable.write_text("#!/bin/sh\nexit 0\n")
    not_executable.chmod(0o644)
    ran = {command: tegata("gateway", "crl-sync", "--tenant", "osaka", "--ca-bundle",
                           str(gateway.ca_bundle), "--url", tegata.url, "--out",
                           str(tmp_path / "crl.pem"), "--reload", command)
           for command in (str(not_executable), str(tmp_path))}
    assert {command: (r.code, r.err.splitlines()[-1]) for command, r in ran.items()} == {
        str(not_executable): (78, f"tegata: error: reload command {not_executable} cannot "
                                  "be run: Permission denied"),
        str(tmp_path): (78, f"tegata: error: reload command {tmp_path} cannot be run: "
                            "Permission denied"),
    }
    assert crlsync.read_applied(tmp_path / "crl.pem") is None  # written, never applied


def test_a_crl_file_without_a_crl_number_is_replaced_with_a_warning(
        tegata: Tegata, gateways: dict[str, Haproxy], tmp_path: Path) -> None:
    gateway = gateways["osaka"]
    out = tmp_path / "crl.pem"
    out.write_bytes(crl_without_number())
    ran = tegata("gateway", "crl-sync", "--tenant", "osaka", "--ca-bundle",
                 str(gateway.ca_bundle), "--url", tegata.url, "--out", str(out))
    assert (ran.code, ran.out.split(",")[0], ran.err) == (
        0, f"{out}: updated",
        f"tegata: WARNING: {out}: the CRL of CN=Someone else has no CRL Number; "
        "replacing it\n")
    tegata.ok("gateway", "crl-sync", "--tenant", "osaka", "--ca-bundle",
              str(gateway.ca_bundle), "--url", tegata.url, "--out", str(tmp_path / "b.pem"))
    assert out.read_bytes() == (tmp_path / "b.pem").read_bytes()  # osaka's CRLs, no other


def test_the_watcher_outlives_haproxys_restart_and_pushes_what_it_missed(
        tegata: Tegata, tools: dict[str, str], gateways: dict[str, Haproxy],
        server_files: tuple[Path, Path], certs: Path) -> None:
    gateway = gateways["osaka"]
    client = client_certificate(tegata, tools["openssl"], certs, login="alice", tenant="osaka")
    log = gateway.directory / "watch.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
    with log.open("wb") as sink:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "gateway", "crl-sync", "--tenant", "osaka",
             "--out", str(gateway.crl_file), "--ca-bundle", str(gateway.ca_bundle), "--url",
             tegata.url, "--haproxy-socket", str(gateway.socket), "--watch", "--interval",
             "1", "--retry", "1"],
            env={**env, **tegata.env()}, stdout=sink, stderr=subprocess.STDOUT)
    try:
        assert until(lambda: ": unchanged, " in log.read_text() or ": updated, " in
                     log.read_text()), tail(log)
        gateway.stop()
        failure = f"failed (unreachable): HAProxy's runtime API at {gateway.socket}: "
        assert until(lambda: log.read_text().count(failure) >= 2), tail(log)
        assert watcher.poll() is None, tail(log)
        gateway.start()  # with the CRL on disk; then a suspension only the watcher brings
        tegata.ok("cert", "suspend", client.serial, "--tenant", "osaka")
        assert until(lambda: ask(tools, gateway, server_files, client).status == 0), tail(log)
        assert watcher.poll() is None, tail(log)
    finally:
        stop(watcher)  # type: ignore[arg-type]
    lines = [line for line in log.read_text().splitlines() if "failed" in line]
    assert lines and all(line.startswith("tegata: WARNING: crl-sync of ") and
                         "; retry " in line for line in lines), lines


def test_an_unchanged_crl_costs_crl_sync_a_304(tegata: Tegata,
                                                 gateways: dict[str, Haproxy]) -> None:
    gateway = gateways["acme"]
    gateway.sync(tegata, push=True)
    log = tegata.home / "serve.log"
    before = log.read_text().count(' GET /crl/acme-chain.pem 304 ')
    assert ": unchanged, " in gateway.sync(tegata, push=True)
    assert until(lambda: log.read_text().count(
        ' GET /crl/acme-chain.pem 304 ') == before + 1, limit=5), tail(log)


# --- HEAD and 304 through the real server ----------------------------------------------------

def ocsp_url(tegata: Tegata, client: Client) -> str:
    """A GET URL asking Tegata's responder about ``client`` (RFC 6960, A.1)."""
    leaf, issuing = x509.load_pem_x509_certificates(client.pem.read_bytes())[:2]
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuing, hashes.SHA1()).build()
    encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
    return f"{tegata.url}/ocsp/{quote(encoded, safe='')}"


def test_head_and_conditional_get_through_the_real_server(
        tegata: Tegata, tools: dict[str, str], clients: dict[str, Client]) -> None:
    """``tegata serve``, with the OCSP fast path in front of the app: HEAD answers 200 with
    GET's headers and no body (curl -I, wget --spider), and the advertised ETag gets 304."""
    urls = [f"{tegata.url}{path}" for path in (
        "/crl/acme.crl", "/crl/acme.pem", "/crl/acme-chain.pem", "/crl/root.crl",
        "/ca/root.crt", "/ca/acme.crt", "/healthz", "/readyz")] + [
        ocsp_url(tegata, clients["acme"])]

    def fetch(*argv: str) -> list[str]:
        result = subprocess.run([tools["curl"], "-sS", *argv], capture_output=True,
                                text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    for url in urls:
        head = fetch("-I", url)
        got = fetch("-D", "-", "-o", "/dev/null", url)
        assert head[0] == "HTTP/1.1 200 OK", (url, head)
        assert without_request_id(head) == without_request_id(got), url
        spider = subprocess.run([tools["wget"], "--spider", "-q", url], capture_output=True,
                                text=True, timeout=30, check=False)
        assert spider.returncode == 0, (url, spider.stderr)
    for url in (urls[2], urls[-1]):  # the chain bundle, an OCSP answer (the fast path)
        etag = next(line.split(": ", 1)[1] for line in fetch("-I", url)
                    if line.lower().startswith("etag: "))
        assert fetch("-H", f"If-None-Match: {etag}", "--write-out",
                     "%{http_code} %{size_download}", "-o", "/dev/null", url) == ["304 0"]
        assert fetch("-H", 'If-None-Match: "0"', "--write-out", "%{http_code}", "-o",
                     "/dev/null", url) == ["200"]


def without_request_id(lines: list[str]) -> list[str]:
    # Date may tick between the two requests
    return [line for line in lines if not line.lower().startswith(("x-request-id:", "date:"))]


BIG_PORTS = range(18700, 18800)  # the servers of the test of a CRL file beyond one buffer


def test_crls_too_big_for_one_runtime_api_command_reach_haproxy_by_its_reload(
        tools: dict[str, str], server_files: tuple[Path, Path], tmp_path: Path) -> None:
    """A tenant rolled over 36 times: its chain of CRLs is over 16 KB, more than HAProxy's
    runtime API takes in one command (tune.bufsize). Without --reload, crl-sync says so
    (exit 75, a reason, never an empty one) and sends nothing that could upset HAProxy;
    with HAProxy's reload command, the new worker reads the file and a revoked certificate
    of the first generation is refused."""
    ports = iter(p for p in BIG_PORTS if free_port_in(p))
    tegata = Tegata(tmp_path / "tegata", port=next(ports))
    (tmp_path / "tegata").mkdir()
    tegata.ok("init", "--key-type", "ec-p256")
    tegata.ok("tenant", "create", "big", "--display-name", "大きな組織", "--key-type",
              "ec-p256")
    tegata.ok("user", "add", "alice", "--email", "alice@big.example", "--allow",
              "--tenant", "big")
    tegata.serve(workers=1)
    gateway = Haproxy(binary=tools["haproxy"], tenant="big", directory=tmp_path / "haproxy",
                      port=next(ports), upstream_port=next(ports), master_worker=True)
    try:
        alice = client_certificate(tegata, tools["openssl"], tmp_path, login="alice",
                                   tenant="big")
        for _ in range(36):
            tegata.ok("ca", "rollover", "--tenant", "big", "--key-type", "ec-p256")
        gateway.configure(tegata, server_files[1])
        assert gateway.crl_file.stat().st_size > 16384
        gateway.start()
        assert ask(tools, gateway, server_files, alice).status == 200
        tegata.ok("cert", "revoke", alice.serial, "--tenant", "big")
        sync = ["gateway", "crl-sync", "--tenant", "big", "--out", str(gateway.crl_file),
                "--ca-bundle", str(gateway.ca_bundle), "--url", tegata.url,
                "--haproxy-socket", str(gateway.socket)]

        refused = tegata(*sync)

        assert refused.code == 75, refused.err
        size = gateway.crl_file.stat().st_size
        assert refused.err.splitlines()[-1] == (
            f"tegata: error: the CRLs of {gateway.crl_file} ({size} bytes) do not fit in one "
            "command of HAProxy's runtime API (tune.bufsize 16384, less 1024 spare): written, "
            "not applied; give --reload with HAProxy's reload command (e.g. 'systemctl "
            "reload haproxy'), or raise tune.bufsize and --haproxy-bufsize")
        assert gateway.proc is not None and gateway.proc.poll() is None
        assert ask(tools, gateway, server_files, alice).status == 200  # the old CRLs

        applied = tegata(*sync, "--reload", gateway.reload_command())

        assert applied.code == 0, applied.err
        assert applied.out.startswith(f"{gateway.crl_file}: updated, next update ")
        assert crlsync.haproxy_holds(str(gateway.socket), gateway.crl_file,
                                     gateway.crl_file.read_bytes())
        assert ask(tools, gateway, server_files, alice).status == 0
        assert tegata(*sync, "--reload", gateway.reload_command()).out.startswith(
            f"{gateway.crl_file}: unchanged, ")
    finally:
        gateway.stop()
        tegata.stop()


def free_port_in(candidate: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            return False
        return True

