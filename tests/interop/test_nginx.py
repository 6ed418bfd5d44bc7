"""The gateway kit end to end (issue #6): a real nginx in front of a real ``tegata serve``,
judged by curl holding a certificate taken out of a user's Tegata PKCS#12.

nginx's configuration is only what ``tegata gateway nginx`` prints (included into a bare
http block next to a tiny upstream that echoes the identity headers it receives) and the
trust bundle only what ``tegata gateway ca-bundle`` prints. Three nginx instances, one per
variant: ``ocsp`` (the default), ``crl`` (kept fresh by ``tegata gateway crl-sync``) and
``auth`` (the IP-restriction policy through ``auth_request``).

The tenant's OCSP validity is set short, so that nginx's OCSP cache, and with it the time a
revocation takes to reach the gateway, is seconds instead of minutes. The measured delays
are printed (``pytest -s`` or ``-rP``); deploy/nginx/README.md quotes them.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from ca.service.ocsp import BACKDATE
from tests.conftest import require_tool
from tests.interop.nginx_support import (
    Client,
    Gateway,
    Nginx,
    Reply,
    Tegata,
    Tools,
    curl,
    issue,
    poll,
    server_certificate,
    start_gateway,
    tegata_ocsp_status,
)

pytestmark = pytest.mark.interop

# Seconds. Responses are dated BACKDATE (30 s) before they are made and nginx keeps one
# until its nextUpdate, so with 40 s nginx keeps a status for about 10 s: long enough to
# see its cache at work, short enough for the whole module to run in well under 90 s.
OCSP_VALIDITY = 40
NGINX_KEEPS = OCSP_VALIDITY - int(BACKDATE.total_seconds())
POLL_LIMIT = OCSP_VALIDITY + 30  # seconds: a bounded poll, never an endless one

ALLOWED = "127.0.0.1"  # the tenant's allowed network is 127.0.0.1/32
FOREIGN = "127.0.0.2"  # another loopback address: curl --interface binds to it

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


def gateway_fixture(mode: str) -> Any:
    @pytest.fixture(scope="module")
    def fixture(tegata: Tegata, tools: Tools, gateway_files: tuple[Path, Path, Path],
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
        gateway = start_gateway(tegata, tools, gateway_files,
                                tmp_path_factory.mktemp(f"nginx-{mode}"), mode)
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
    return issue(tegata, tools.openssl, certs, login="alice", tenant="default")


@pytest.fixture(scope="module")
def bob_of_acme(tegata: Tegata, tools: Tools, certs: Path) -> Client:
    """A valid certificate of another tenant, with acme's chain as the PKCS#12 carries it."""
    return issue(tegata, tools.openssl, certs, login="bob", tenant="acme")


@pytest.fixture
def fresh_alice(tegata: Tegata, tools: Tools, certs: Path) -> Client:
    """A certificate of alice's for one test to revoke or suspend."""
    return issue(tegata, tools.openssl, certs, login="alice", tenant="default")


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
    ran = tegata("gateway", "nginx", "--mode", mode, "--upstream", nginx.upstream,
                 "--listen", f"127.0.0.1:{nginx.port}", "--server-cert", str(cert),
                 "--server-key", str(key), "--ca-bundle", str(bundle),
                 "--tegata-url", "https://127.0.0.1:8443", "--auth-include",
                 str(tmp_path / "auth.conf"))
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


# --- the OCSP variant: revocation, suspension ----------------------------------------------

def test_ocsp_gateway_refuses_a_revoked_certificate_within_the_ocsp_validity(
        tegata: Tegata, tools: Tools, ocsp_gateway: Gateway, fresh_alice: Client,
        gateway_files: tuple[Path, Path, Path], ask: Ask) -> None:
    assert ask(ocsp_gateway, fresh_alice).status == 200  # nginx now keeps "good"

    started = time.monotonic()
    tegata.ok("cert", "revoke", fresh_alice.serial, "--reason", "keyCompromise")
    # Tegata answers at once; the delay below is nginx's cache alone
    assert tegata_ocsp_status(tools, tegata, gateway_files[2], fresh_alice) == "revoked"
    reply, delay = poll(lambda: ask(ocsp_gateway, fresh_alice), refused(400),
                        limit=POLL_LIMIT, since=started)

    print(f"\nOCSP gateway: revoke -> first rejection {delay:.1f} s (OCSP validity "
          f"{OCSP_VALIDITY} s, nginx keeps a status about {NGINX_KEEPS} s)")
    assert reply.status == 400, f"still {reply.status} {delay:.1f} s after the revocation"
    assert CERTIFICATE_ERROR in reply.body
    assert delay <= OCSP_VALIDITY
    assert "certificate revoked" in ocsp_gateway.nginx.error_log.read_text()


def test_ocsp_gateway_refuses_a_suspended_certificate_and_accepts_it_once_reinstated(
        tegata: Tegata, ocsp_gateway: Gateway, fresh_alice: Client,
        ask: Ask) -> None:
    assert ask(ocsp_gateway, fresh_alice).status == 200

    started = time.monotonic()
    tegata.ok("cert", "suspend", fresh_alice.serial)
    held, held_after = poll(lambda: ask(ocsp_gateway, fresh_alice), refused(400),
                            limit=POLL_LIMIT, since=started)
    assert held.status == 400, f"still {held.status} {held_after:.1f} s after the suspension"

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
        tegata: Tegata, crl_gateway: Gateway, fresh_alice: Client,
        gateway_files: tuple[Path, Path, Path], ask: Ask) -> None:
    assert ask(crl_gateway, fresh_alice).status == 200
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
