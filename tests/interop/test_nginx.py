"""The gateway kit end to end: a real nginx in front of a real ``tegata serve``,
judged by curl holding a certificate taken out of a user's Tegata PKCS#12.

nginx's configuration is only what ``tegata gateway nginx`` prints (included into a bare
http block next to a tiny upstream that echoes the identity headers it receives) and the
trust bundle only what ``tegata gateway ca-bundle`` prints. Three nginx instances, one per
variant: ``ocsp`` (the default), ``crl`` (kept fresh by ``tegata gateway crl-sync``) and
``auth`` (the IP-restriction policy through ``auth_request``).

Each variant's nginx also hosts, on ports of their own, the gateways of NAMED_TENANTS (names
that once let one tenant into another's gateway, or locked Japanese-named tenants out):
every tenant's gateway is asked with every tenant's certificate.
openssl s_client -sess_out/-sess_in checks that no TLS session is resumed.

The tenant's OCSP validity is set short, so that nginx's OCSP cache, and with it the time a
revocation takes to reach the gateway, is seconds instead of minutes. The measured delays
are printed (``pytest -s`` or ``-rP``); deploy/nginx/README.md quotes them.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import pytest
from cryptography import x509

from ca.service.ocsp import BACKDATE
from ca.x509.names import openssl_rfc2253
from cli import crlsync
from tests.interop.nginx_support import (
    Client,
    Gateway,
    Nginx,
    Reply,
    Tegata,
    Tools,
    auth_include,
    client_certificate,
    curl,
    kit_config,
    poll,
    s_client,
    server_certificate,
    start_gateway,
    tegata_ocsp_status,
)
from tests.support.environment import require_tool

pytestmark = pytest.mark.interop

# Seconds. Responses are dated BACKDATE (30 s) before they are made and nginx keeps one
# until its nextUpdate, so with 40 s nginx keeps a status for about 10 s: long enough to
# see its cache at work, short enough for the whole module to run in well under 90 s.
OCSP_VALIDITY = 40
NGINX_KEEPS = OCSP_VALIDITY - int(BACKDATE.total_seconds())
POLL_LIMIT = OCSP_VALIDITY + 30  # seconds: a bounded poll, never an endless one

ALLOWED = "127.0.0.1"  # the tenant's allowed network is 127.0.0.1/32
FOREIGN = "127.0.0.2"  # another loopback address: curl --interface binds to it

# Tenants whose names broke the gateway's isolation or locked their users out,
# each with a gateway of its own in every variant's nginx:
NAMED_TENANTS = {
    # identical in their first 53 characters, all an issuing CA's common name had room for
    "tokyo": "Example Holdings International Corporation Japan Branch Tokyo",
    "osaka": "Example Holdings International Corporation Japan Branch Osaka",
    # nginx prints bytes >= 0x80 of $ssl_client_i_dn as \XX
    "acme-jp": "株式会社アクメ",
    # Japanese, and differing only after the 53rd character
    "jp-tokyo": "株式会社アクメ" * 8 + "東京",
    "jp-osaka": "株式会社アクメ" * 8 + "大阪",
    # RFC 2253 escapes (, + " \ ; < > and a leading #), PCRE syntax, and an nginx variable
    # that a string operand would expand
    "quoted": '#1 Acme, "Quoted" + Sons \\ Ltd; <x> $host {a} (.*)',
}

NO_CERTIFICATE = "No required SSL certificate was sent"
CERTIFICATE_ERROR = "The SSL certificate error"


@pytest.fixture(scope="module")
def tools() -> Tools:
    """A skip on a laptop without them, a failure in CI (CI=true)."""
    # Debian installs nginx in /usr/sbin, which is not on an ordinary user's PATH
    nginx = shutil.which("nginx", path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"]))
    return Tools(nginx=nginx or require_tool("nginx"), curl=require_tool("curl"),
                 openssl=require_tool("openssl"))


@pytest.fixture(scope="module")
def tegata(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tegata]:
    """`tegata serve` on a free port, with the default tenant (alice) and acme (bob)."""
    tegata = Tegata(tmp_path_factory.mktemp("tegata"))
    tegata.ok("init", "--key-type", "ec-p256")
    tegata.ok("user", "add", "alice", "--email", "alice@example.com", "--allow")
    tegata.ok("tenant", "create", "acme", "--key-type", "ec-p256")
    tegata.ok("user", "add", "bob", "--email", "bob@example.com", "--allow", "--tenant", "acme")
    for tenant, display_name in NAMED_TENANTS.items():
        tegata.ok("tenant", "create", tenant, "--display-name", display_name,
                  "--key-type", "ec-p256")
        tegata.ok("user", "add", "taro", "--email", "taro@example.com", "--allow",
                  "--tenant", tenant)
    # no CLI or API command sets a tenant's OCSP validity yet: set the column, before the
    # server starts (its responders read the validity when they are loaded)
    with sqlite3.connect(tegata.database) as conn:
        conn.execute("UPDATE tenants SET ocsp_validity_seconds = ?", (OCSP_VALIDITY,))
    tegata.serve()
    yield tegata
    tegata.stop()


@pytest.fixture(scope="module")
def gateway_files(tegata: Tegata,
                  tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The gateway's TLS certificate and key, and the tenant's trust bundle."""
    directory = tmp_path_factory.mktemp("gateway-files")
    cert, key = server_certificate(directory)
    bundle = directory / "default-ca.pem"
    bundle.write_text(tegata.ok("gateway", "ca-bundle", "--tenant", "default"),
                      encoding="ascii")
    return cert, key, bundle


@pytest.fixture(scope="module")
def named_bundles(tegata: Tegata, gateway_files: tuple[Path, Path, Path]) -> dict[str, Path]:
    """The trust bundle of each of NAMED_TENANTS."""
    bundles = {}
    for tenant in NAMED_TENANTS:
        bundles[tenant] = gateway_files[2].with_name(f"{tenant}-ca.pem")
        bundles[tenant].write_text(tegata.ok("gateway", "ca-bundle", "--tenant", tenant),
                                   encoding="ascii")
    return bundles


def gateway_fixture(mode: str) -> Any:
    @pytest.fixture(scope="module")
    def fixture(tegata: Tegata, tools: Tools, gateway_files: tuple[Path, Path, Path],
                named_bundles: dict[str, Path],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
        gateway = start_gateway(tegata, tools, gateway_files,
                                tmp_path_factory.mktemp(f"nginx-{mode}"), mode,
                                others=named_bundles)
        yield gateway
        gateway.nginx.stop()
    return fixture


ocsp_gateway = gateway_fixture("ocsp")
crl_gateway = gateway_fixture("crl")
auth_gateway = gateway_fixture("auth")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("certs")


@pytest.fixture(scope="module")
def alice(tegata: Tegata, tools: Tools, certs: Path) -> Client:
    """A valid certificate of the default tenant that no test revokes."""
    return client_certificate(tegata, tools.openssl, certs, login="alice", tenant="default")


@pytest.fixture(scope="module")
def bob_of_acme(tegata: Tegata, tools: Tools, certs: Path) -> Client:
    """A valid certificate of another tenant, with acme's chain as the PKCS#12 carries it."""
    return client_certificate(tegata, tools.openssl, certs, login="bob", tenant="acme")


@pytest.fixture(scope="module")
def everyone(tegata: Tegata, tools: Tools, certs: Path, alice: Client,
             bob_of_acme: Client) -> dict[str, Client]:
    """A valid certificate of every tenant (taro's in each of NAMED_TENANTS)."""
    return {"default": alice, "acme": bob_of_acme} | {
        tenant: client_certificate(tegata, tools.openssl, certs, login="taro", tenant=tenant)
        for tenant in NAMED_TENANTS}


@pytest.fixture
def fresh_alice(tegata: Tegata, tools: Tools, certs: Path) -> Client:
    """A certificate of alice's for one test to revoke or suspend."""
    return client_certificate(tegata, tools.openssl, certs, login="alice", tenant="default")


class Ask(Protocol):
    def __call__(self, gateway: Gateway, client: Client | None = None,
                 source: str | None = None) -> Reply: ...


@pytest.fixture
def ask(tools: Tools, gateway_files: tuple[Path, Path, Path]) -> Ask:
    """One request through a gateway, with this certificate, from this address."""
    def ask(gateway: Gateway, client: Client | None = None, source: str | None = None) -> Reply:
        return curl(tools.curl, gateway.nginx, gateway_files[0], client=client, source=source)
    return ask


def refused(status: int) -> Callable[[Reply], bool]:
    return lambda reply: reply.status == status


def accepted(reply: Reply) -> bool:
    return reply.status == 200


# --- the kit itself ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["ocsp", "auth"])
def test_the_kit_never_prints_a_configuration_nginx_refuses_for_an_https_tegata(
        tegata: Tegata, tools: Tools, gateway_files: tuple[Path, Path, Path], mode: str,
        tmp_path: Path) -> None:
    # a production Tegata is reached over https (TEGATA_PUBLIC_BASE_URL, the default of
    # --tegata-url); nginx asks OCSP over plain http only
    cert, key, bundle = gateway_files
    nginx = Nginx(binary=tools.nginx, prefix=tmp_path)
    token_file = ("--auth-include", str(tmp_path / "auth.conf")) if mode == "auth" else ()
    ran = tegata("gateway", "nginx", "--mode", mode, "--upstream", nginx.upstream,
                 "--listen", f"127.0.0.1:{nginx.port}", "--server-cert", str(cert),
                 "--server-key", str(key), "--ca-bundle", str(bundle),
                 "--tegata-url", "https://127.0.0.1:8443", *token_file)
    if ran.code != 0:  # refusing is fine: in one line that names the URL at fault
        assert ran.err.startswith("tegata: error: ") and ran.err.count("\n") == 1, ran.err
        assert "https://127.0.0.1:8443" in ran.err or "http://" in ran.err, ran.err
        return
    nginx.gateway_conf.write_text(ran.out, encoding="utf-8")

    checked = nginx.check()

    assert checked.returncode == 0, checked.stderr


# --- every variant ------------------------------------------------------------------------

VARIANTS = ["ocsp", "crl", "auth"]


@pytest.fixture
def gateway(request: pytest.FixtureRequest, tegata: Tegata) -> Gateway:
    mode = request.param
    if mode == "auth":  # the certificate decides, as in the other variants
        tegata.ok("tenant", "ip-policy", "set", "--policy", "cert_only")
    found = request.getfixturevalue(f"{mode}_gateway")
    assert isinstance(found, Gateway)
    return found


@pytest.mark.parametrize("gateway", VARIANTS, ids=VARIANTS, indirect=True)
def test_a_certificate_of_the_tenant_passes_and_the_upstream_learns_who_holds_it(
        gateway: Gateway, alice: Client, ask: Ask) -> None:
    reply = ask(gateway, alice)

    assert reply.status == 200, reply.body
    fields = dict(part.split("=", 1) for part in reply.body.split(" ", 2))
    assert fields["verify"] == "SUCCESS"
    assert int(fields["serial"], 16) == int(alice.serial, 16)  # nginx may pad with a zero
    assert fields["subject"].strip() == "CN=alice,O=Default"


@pytest.mark.parametrize("gateway", ["ocsp", "crl"], ids=["ocsp", "crl"], indirect=True)
def test_a_client_without_a_certificate_is_refused(gateway: Gateway, ask: Ask) -> None:
    reply = ask(gateway)

    assert reply.status == 400
    assert NO_CERTIFICATE in reply.body


# ocsp: the kit pins the tenant's issuing CA (403); crl: nginx finds no CRL for acme's
# issuing CA and refuses the certificate (400); auth: Tegata's answer to the sub-request
OTHER_TENANT_REFUSAL = {"ocsp": 403, "crl": 400, "auth": 403}


@pytest.mark.parametrize("gateway", VARIANTS, ids=VARIANTS, indirect=True)
def test_a_certificate_of_another_tenant_is_refused(
        gateway: Gateway, bob_of_acme: Client, ask: Ask) -> None:
    # bob's PKCS#12 carries acme's issuing CA, and curl sends it: the chain then ends at the
    # root, which signs every tenant's issuing CA and is in the bundle
    reply = ask(gateway, bob_of_acme)

    assert reply.status == OTHER_TENANT_REFUSAL[gateway.mode], (
        f"{gateway.mode} gateway of tenant default let acme's certificate through: "
        f"{reply.status} {reply.body!r}")


def served(tools: Tools, gateway: Gateway, server_cert: Path, at: str,
           holder: Client) -> Reply:
    return curl(tools.curl, gateway.nginx, server_cert, client=holder, port=gateway.ports[at])


def leaf(client: Client) -> x509.Certificate:
    found = [cert for cert in x509.load_pem_x509_certificates(client.pem.read_bytes())
             if cert.serial_number == int(client.serial, 16)]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("gateway", VARIANTS, ids=VARIANTS, indirect=True)
def test_each_tenants_gateway_lets_in_its_own_certificates_only_whatever_the_names(
        gateway: Gateway, everyone: dict[str, Client], tools: Tools,
        gateway_files: tuple[Path, Path, Path]) -> None:
    # tokyo/osaka (and jp-tokyo/jp-osaka) had one issuing-CA name
    # and let each other in; a Japanese name's own users got 403
    cases = [(at, holder) for at in gateway.ports for holder in everyone]
    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = dict(zip(cases, pool.map(
            lambda case: served(tools, gateway, gateway_files[0], case[0], everyone[case[1]]),
            cases), strict=True))

    statuses = {case: reply.status for case, reply in replies.items()}
    assert statuses == {(at, holder): 200 if at == holder
                        else OTHER_TENANT_REFUSAL[gateway.mode] for at, holder in cases}
    # what nginx hands the upstream ($ssl_client_s_dn) is the holder's subject in the form
    # the pin is written in (ca.x509.names): checked by the real nginx, names and all
    subjects = {at: replies[at, at].body.split(" subject=", 1)[1].rstrip("\n")
                for at in gateway.ports}
    assert subjects == {at: openssl_rfc2253(leaf(everyone[at]).subject)
                        for at in gateway.ports}


# --- TLS session resumption: never -------------------------------------

PROTOCOLS = ["tls1_2", "tls1_3"]


def save_sessions(tools: Tools, port: int, server_cert: Path, client: Client,
                  directory: Path) -> dict[str, Path]:
    """A request per protocol (200), each saving the TLS session the server gave, if any."""
    saved = {}
    for protocol in PROTOCOLS:
        session = directory / f"{client.serial}-{protocol}.session"
        first = s_client(tools.openssl, port, server_cert, client, session,
                         protocol=protocol, resume=False)
        assert (first.resumed, first.status) == (False, 200), first
        if first.session_saved:
            saved[protocol] = session
    return saved


def resume(tools: Tools, port: int, server_cert: Path, client: Client,
           saved: dict[str, Path]) -> dict[str, tuple[str, int]]:
    """Each saved session offered again: (New or Reused, the HTTP status) per protocol."""
    found = {}
    for protocol, session in saved.items():
        again = s_client(tools.openssl, port, server_cert, client, session,
                         protocol=protocol, resume=True)
        found[protocol] = ("Reused" if again.resumed else "New", again.status)
    return found


@pytest.mark.parametrize("gateway", VARIANTS, ids=VARIANTS, indirect=True)
def test_no_gateway_resumes_a_tls_session(
        gateway: Gateway, alice: Client, tools: Tools,
        gateway_files: tuple[Path, Path, Path], tmp_path: Path) -> None:
    saved = save_sessions(tools, gateway.nginx.port, gateway_files[0], alice, tmp_path)

    again = resume(tools, gateway.nginx.port, gateway_files[0], alice, saved)

    # a session the server gave (TLS 1.3 still sends a ticket it will not take) is never
    # taken: every connection is a full handshake, with the certificate checked again
    print(f"\n{gateway.mode} gateway: sessions given for {sorted(saved)}, offered again: "
          f"{again}")
    assert again == {protocol: ("New", 200) for protocol in saved}
    assert "ssl_session_cache off;" in gateway.config
    assert "ssl_session_tickets off;" in gateway.config


# --- the OCSP variant: revocation, suspension ----------------------------------------------

def test_ocsp_gateway_refuses_a_revoked_certificate_within_the_ocsp_validity(
        tegata: Tegata, tools: Tools, ocsp_gateway: Gateway, fresh_alice: Client,
        gateway_files: tuple[Path, Path, Path], ask: Ask) -> None:
    assert ask(ocsp_gateway, fresh_alice).status == 200  # nginx now keeps "good"

    started = time.monotonic()
    tegata.ok("cert", "revoke", fresh_alice.serial, "--reason", "keyCompromise")
    # Tegata's kept answer follows within a second (its change feed, ca.service.ocsp_feed);
    # the delay below is nginx's cache, and that second
    deadline = time.monotonic() + POLL_LIMIT
    while ((status := tegata_ocsp_status(tools, tegata, gateway_files[2], fresh_alice))
           != "revoked" and time.monotonic() < deadline):
        time.sleep(0.05)
    assert status == "revoked"
    reply, delay = poll(lambda: ask(ocsp_gateway, fresh_alice), refused(400),
                        limit=POLL_LIMIT, since=started)

    print(f"\nOCSP gateway: revoke -> first rejection {delay:.1f} s (OCSP validity "
          f"{OCSP_VALIDITY} s, nginx keeps a status about {NGINX_KEEPS} s)")
    assert reply.status == 400, f"still {reply.status} {delay:.1f} s after the revocation"
    assert CERTIFICATE_ERROR in reply.body
    assert delay <= OCSP_VALIDITY
    assert "certificate revoked" in ocsp_gateway.nginx.error_log.read_text()


def test_ocsp_gateway_refuses_a_suspended_certificate_and_accepts_it_once_reinstated(
        tegata: Tegata, tools: Tools, ocsp_gateway: Gateway, fresh_alice: Client,
        gateway_files: tuple[Path, Path, Path], ask: Ask, tmp_path: Path) -> None:
    assert ask(ocsp_gateway, fresh_alice).status == 200
    port = ocsp_gateway.nginx.port
    saved = save_sessions(tools, port, gateway_files[0], fresh_alice, tmp_path)

    started = time.monotonic()
    tegata.ok("cert", "suspend", fresh_alice.serial)
    held, held_after = poll(lambda: ask(ocsp_gateway, fresh_alice), refused(400),
                            limit=POLL_LIMIT, since=started)
    assert held.status == 400, f"still {held.status} {held_after:.1f} s after the suspension"
    # the device offers the session it had before the suspension: no way round the check
    assert resume(tools, port, gateway_files[0], fresh_alice, saved) == {
        protocol: ("New", 400) for protocol in saved}

    started = time.monotonic()
    tegata.ok("cert", "reinstate", fresh_alice.serial)
    back, back_after = poll(lambda: ask(ocsp_gateway, fresh_alice), accepted,
                            limit=POLL_LIMIT, since=started)

    print(f"\nOCSP gateway: suspend -> first rejection {held_after:.1f} s; reinstate -> "
          f"first acceptance {back_after:.1f} s (OCSP validity {OCSP_VALIDITY} s)")
    assert back.status == 200, f"still {back.status} {back_after:.1f} s after reinstating"
    assert held_after <= OCSP_VALIDITY
    assert back_after <= OCSP_VALIDITY  # nginx keeps "revoked" until nextUpdate too


# --- the CRL variant ------------------------------------------------------------------------

def crl_sync(tegata: Tegata, gateway: Gateway, bundle: Path) -> str:
    return tegata.ok("gateway", "crl-sync", "--tenant", "default",
                     "--out", str(gateway.nginx.prefix / "crl.pem"), "--ca-bundle", str(bundle),
                     "--url", tegata.url, "--reload", gateway.nginx.reload_command())


def test_crl_gateway_refuses_a_revoked_certificate_once_crl_sync_has_run(
        tegata: Tegata, tools: Tools, crl_gateway: Gateway, fresh_alice: Client,
        gateway_files: tuple[Path, Path, Path], ask: Ask, tmp_path: Path) -> None:
    assert ask(crl_gateway, fresh_alice).status == 200
    saved = save_sessions(tools, crl_gateway.nginx.port, gateway_files[0], fresh_alice,
                          tmp_path)
    reloads = crl_gateway.nginx.reloads()

    started = time.monotonic()
    tegata.ok("cert", "revoke", fresh_alice.serial, "--reason", "keyCompromise")
    # nginx reads its CRL only at start and reload: until the sync, nothing has changed
    assert ask(crl_gateway, fresh_alice).status == 200
    synced = crl_sync(tegata, crl_gateway, gateway_files[2])
    reply, delay = poll(lambda: ask(crl_gateway, fresh_alice), refused(400), limit=POLL_LIMIT,
                        since=started)

    print(f"\nCRL gateway: revoke, then crl-sync with reload -> first rejection {delay:.1f} s")
    assert ": updated, next update " in synced
    assert crl_gateway.nginx.settled_reloads(reloads + 1) == reloads + 1
    assert reply.status == 400, f"still {reply.status} {delay:.1f} s after the revocation"
    assert CERTIFICATE_ERROR in reply.body
    assert delay <= 10
    # a session from before the revocation (a shared cache outlives the reload) gets nothing
    assert resume(tools, crl_gateway.nginx.port, gateway_files[0], fresh_alice, saved) == {
        protocol: ("New", 400) for protocol in saved}


def test_a_revocation_from_a_shell_with_another_base_url_locks_out_only_the_revoked(
        tegata: Tegata, crl_gateway: Gateway, alice: Client, fresh_alice: Client,
        gateway_files: tuple[Path, Path, Path], ask: Ask) -> None:
    # the CRL the shell makes has the scope of the CA's certificates (their CDP), not one
    # from the shell's TEGATA_PUBLIC_BASE_URL: nginx said "unable to get certificate CRL" to
    # every user of the tenant until a process with the server's URL made the next CRL
    assert (ask(crl_gateway, alice).status, ask(crl_gateway, fresh_alice).status) == (200, 200)
    shell = dataclasses.replace(tegata, shell={"TEGATA_PUBLIC_BASE_URL":
                                               "https://pki.example.jp/tegata"})

    shell.ok("cert", "revoke", fresh_alice.serial, "--reason", "keyCompromise")
    synced = crl_sync(tegata, crl_gateway, gateway_files[2])
    reply, _ = poll(lambda: ask(crl_gateway, fresh_alice), refused(400), limit=POLL_LIMIT)

    assert ": updated, next update " in synced
    assert reply.status == 400 and CERTIFICATE_ERROR in reply.body
    assert ask(crl_gateway, alice).status == 200


def test_crl_sync_without_change_leaves_the_file_and_nginx_alone(
        tegata: Tegata, crl_gateway: Gateway,
        gateway_files: tuple[Path, Path, Path]) -> None:
    nginx = crl_gateway.nginx
    reloads = nginx.reloads()
    first = crl_sync(tegata, crl_gateway, gateway_files[2])  # whatever other tests changed
    reloads = nginx.settled_reloads(reloads + (1 if ": updated, " in first else 0))
    crl_file = nginx.prefix / "crl.pem"
    before = (crl_file.read_bytes(), crl_file.stat().st_mtime_ns)

    synced = crl_sync(tegata, crl_gateway, gateway_files[2])

    assert ": unchanged, next update " in synced
    assert (crl_file.read_bytes(), crl_file.stat().st_mtime_ns) == before
    time.sleep(0.5)  # time enough for a reload to show in the log, had there been one
    assert nginx.reloads() == reloads


def test_crl_sync_checks_that_nginx_took_the_reload_and_retries_one_it_refused(
        tegata: Tegata, tools: Tools, gateway_files: tuple[Path, Path, Path],
        fresh_alice: Client, tmp_path: Path) -> None:
    """``nginx -s reload`` only signals the master and exits 0; a master that cannot bind a
    listen address of another server block keeps its old configuration and the old CRL.
    With --nginx-pid, crl-sync sees that no new workers came: exit 1, not applied, and the
    next run, once the configuration is fixed, reloads again."""
    cert, key, bundle = gateway_files
    nginx = Nginx(binary=tools.nginx, prefix=tmp_path)
    config = kit_config(tegata, nginx, "crl", "default", port=nginx.port, server=(cert, key),
                        bundle=bundle)
    nginx.gateway_conf.write_text(config, encoding="utf-8")
    nginx.start()
    out, pid_file = nginx.prefix / "crl.pem", nginx.prefix / "nginx.pid"

    def sync(*extra: str) -> tuple[int, str, str]:
        ran = tegata("gateway", "crl-sync", "--tenant", "default", "--out", str(out),
                     "--ca-bundle", str(bundle), "--url", tegata.url, "--reload",
                     nginx.reload_command(), "--nginx-pid", str(pid_file), *extra)
        return ran.code, ran.out.split(",")[0], ran.err.strip()

    def status() -> int:
        return curl(tools.curl, nginx, cert, client=fresh_alice).status

    blocker = socket.socket()
    try:
        assert status() == 200
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        # another site's server block, on an address something else holds
        nginx.gateway_conf.write_text(
            config + f"server {{\n    listen 127.0.0.1:{busy};\n    return 204;\n}}\n",
            encoding="utf-8")
        master = int(pid_file.read_text())
        tegata.ok("cert", "suspend", fresh_alice.serial)

        failed = sync("--reload-wait", "3")

        assert failed == (75, "", "tegata: error: nginx (master "
                           f"{master}) did not take the new configuration within 3 s: it keeps "
                           "the old one and the old CRL (its error log says why, e.g. [emerg] "
                           "bind() failed)")
        assert (f"bind() to 127.0.0.1:{busy} failed (98: Address already in use)"
                in nginx.error_log.read_text())
        applied = crlsync.read_applied(out)
        assert applied is not None and applied.sha256 != crlsync.digest(out.read_bytes())
        assert status() == 200  # nginx holds the old CRL
        blocker.close()  # the configuration can be taken now

        assert sync() == (0, f"{out}: updated", "")
        reply, _ = poll(status_reply(tools, nginx, cert, fresh_alice), refused(400),
                        limit=10)
        assert reply.status == 400
        assert sync() == (0, f"{out}: unchanged", "")
    finally:
        blocker.close()
        nginx.stop()


def status_reply(tools: Tools, nginx: Nginx, cert: Path, client: Client
                 ) -> Callable[[], Reply]:
    return lambda: curl(tools.curl, nginx, cert, client=client)


# --- the auth variant: the IP-restriction policy -------------------------------------------

# (policy, client address, with a certificate) -> status through nginx: Tegata's 204 lets the
# request through (200 from the upstream), its 403 is nginx's 403
POLICY_TABLE = {
    ("ip_only", ALLOWED, False): 200,
    ("ip_only", ALLOWED, True): 200,
    ("ip_only", FOREIGN, False): 403,
    ("ip_only", FOREIGN, True): 403,
    ("cert_only", ALLOWED, False): 403,
    ("cert_only", ALLOWED, True): 200,
    ("cert_only", FOREIGN, False): 403,
    ("cert_only", FOREIGN, True): 200,
    ("ip_or_cert", ALLOWED, False): 200,
    ("ip_or_cert", ALLOWED, True): 200,
    ("ip_or_cert", FOREIGN, False): 403,
    ("ip_or_cert", FOREIGN, True): 200,
    ("ip_and_cert", ALLOWED, False): 403,
    ("ip_and_cert", ALLOWED, True): 200,
    ("ip_and_cert", FOREIGN, False): 403,
    ("ip_and_cert", FOREIGN, True): 403,
}


def policy_id(case: tuple[str, str, bool]) -> str:
    policy, source, with_cert = case
    where = "allowed" if source == ALLOWED else "foreign"
    return f"{policy}-{where}-{'with' if with_cert else 'without'}-certificate"


@pytest.mark.parametrize("case", POLICY_TABLE, ids=[policy_id(c) for c in POLICY_TABLE])
def test_auth_gateway_applies_the_tenants_ip_policy(
        tegata: Tegata, auth_gateway: Gateway, alice: Client, case: tuple[str, str, bool],
        ask: Ask) -> None:
    policy, source, with_cert = case
    tegata.ok("tenant", "ip-policy", "set", "--policy", policy, "--network", f"{ALLOWED}/32")

    reply = ask(auth_gateway, alice if with_cert else None, source=source)

    assert reply.status == POLICY_TABLE[case], reply.body
    if reply.status == 200:
        assert ("verify=SUCCESS" if with_cert else "verify=NONE") in reply.body


def test_auth_gateway_refuses_a_revoked_certificate_even_from_an_allowed_network(
        tegata: Tegata, auth_gateway: Gateway, fresh_alice: Client,
        ask: Ask) -> None:
    # ip_or_cert would let the office network in without a certificate; but a certificate
    # that is offered is checked by nginx itself (ssl_verify_client optional + ssl_ocsp), and
    # a revoked one fails the request before auth_request asks Tegata
    tegata.ok("tenant", "ip-policy", "set", "--policy", "ip_or_cert",
              "--network", f"{ALLOWED}/32")
    tegata.ok("cert", "revoke", fresh_alice.serial, "--reason", "keyCompromise")

    with_revoked = ask(auth_gateway, fresh_alice, source=ALLOWED)
    without = ask(auth_gateway, None, source=ALLOWED)

    assert with_revoked.status == 400
    assert CERTIFICATE_ERROR in with_revoked.body
    assert without.status == 200  # the same device, once it stops offering the certificate


def tegata_auth(tegata: Tegata, token: str) -> int:
    """The status of Tegata's auth sub-request asked directly with this bearer token."""
    request = urllib.request.Request(f"{tegata.url}/auth/default",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return refused.code


def test_rerunning_the_auth_kit_for_its_include_file_replaces_the_gateways_token(
        tegata: Tegata, auth_gateway: Gateway, alice: Client, gateway_files: tuple[Path, Path,
                                                                                   Path],
        ask: Ask) -> None:
    tegata.ok("tenant", "ip-policy", "set", "--policy", "cert_only")
    nginx = auth_gateway.nginx
    include = auth_include(nginx, "default")
    before = include.read_text()
    old_token = before.split('"Bearer ', 1)[1].split('"', 1)[0]
    reloads = nginx.reloads()

    config = kit_config(tegata, nginx, "auth", "default", port=nginx.port,
                        server=gateway_files[:2], bundle=gateway_files[2])
    subprocess.run(shlex.split(nginx.reload_command()), check=True, timeout=30)

    assert config == auth_gateway.config  # only the include file changes
    assert nginx.settled_reloads(reloads + 1) == reloads + 1
    new_token = include.read_text().split('"Bearer ', 1)[1].split('"', 1)[0]
    assert new_token != old_token
    # Tegata: the old token is refused (revoked), the new one is a gateway's (403: no
    # certificate in these headers); nginx, reloaded, passes requests with the new one
    assert (tegata_auth(tegata, old_token), tegata_auth(tegata, new_token)) == (401, 403)
    # an old worker may take a connection or two while the new ones start (with the old
    # token: 401): a bounded poll
    reply, _ = poll(lambda: ask(auth_gateway, alice), accepted, limit=10)
    assert reply.status == 200, reply.body
    live = [line for line in tegata.ok("token", "list", "--tenant", "default").splitlines()
            if " active " in line and f"nginx kit {include}" in line]
    assert len(live) == 1, live
