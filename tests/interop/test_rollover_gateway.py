"""After an issuing-CA rollover, a certificate of each generation passes nginx configured by
the kit (`tegata gateway nginx`, crl variant, with the bundle of `gateway ca-bundle` and the
CRL chain `gateway crl-sync` keeps) and `openssl verify -crl_check_all` with that bundle and
chain; revoking either is refused at the gateway once crl-sync has run; `openssl ocsp`
verifies each generation's answer as signed for its own CA.

Both generations have the same name: OpenSSL tells them apart by key identifier (the AKI of
a certificate or CRL names its CA's key), and each CRL's IDP matches only the CDP of its own
generation's certificates."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cli import crlsync
from tests.interop.nginx_support import (
    Client,
    Nginx,
    Tegata,
    Tools,
    client_certificate,
    curl,
    kit_config,
    poll,
    server_certificate,
)
from tests.interop.test_nginx import tools  # noqa: F401 (the fixture: nginx, curl, openssl)

pytestmark = pytest.mark.interop

PORTS = range(18400, 18500)  # this module's servers listen on ports of this range


OLD_BUNDLE_PORTS = range(18700, 18800)  # the gateway left with its bundle of before


def port(ports: range = PORTS) -> int:
    """A free port of ``ports`` (the first one no process holds)."""
    for candidate in ports:
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind(("127.0.0.1", candidate))
            return candidate
    raise AssertionError(f"no free port in {ports}")


class Rolled:
    """Tegata with the default tenant rolled over once: alice's certificates are of the
    first issuing CA, bob's of the second."""

    def __init__(self, tegata: Tegata, binaries: Tools, directory: Path) -> None:
        self.tegata = tegata
        self.tools = binaries
        self.directory = directory
        self.bundle = directory / "default-ca.pem"
        self.prefix = directory / "nginx"  # the gateway's: the kit writes its CRLs there
        self.prefix.mkdir()
        self.crls = self.prefix / "crl.pem"

    def issue(self, login: str) -> Client:
        return client_certificate(self.tegata, self.tools.openssl, self.directory,
                                  login=login, tenant="default")

    def sync(self, nginx: Nginx | None = None) -> str:
        extra = [] if nginx is None else ["--reload", nginx.reload_command()]
        return self.tegata.ok("gateway", "crl-sync", "--tenant", "default", "--out",
                              str(self.crls), "--ca-bundle", str(self.bundle), "--url",
                              self.tegata.url, *extra)

    def verify(self, client: Client) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.tools.openssl, "verify", "-crl_check_all", "-CAfile", str(self.bundle),
             "-CRLfile", str(self.crls), str(leaf_only(client))],
            capture_output=True, text=True, timeout=30, check=False)

    def ocsp(self, client: Client, generation: int) -> str:
        """The status the responder gives, asked of the CA of that generation, verified by
        `openssl ocsp` (the responder must be certified by that very CA)."""
        issuer = self.directory / f"issuing-g{generation}.pem"
        result = subprocess.run(
            [self.tools.openssl, "ocsp", "-issuer", str(issuer), "-cert",
             str(leaf_only(client)), "-CAfile", str(self.bundle), "-url",
             f"{self.tegata.url}/ocsp", "-no_nonce"],
            capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr
        assert "Response verify OK" in result.stderr + result.stdout
        return result.stdout.split(": ", 1)[1].split()[0]


def leaf_only(client: Client) -> Path:
    """The user's certificate alone (the PEM openssl unpacked holds the chain too)."""
    path = client.pem.with_name("leaf.pem")
    if not path.exists():
        first = x509.load_pem_x509_certificates(client.pem.read_bytes())[0]
        path.write_bytes(first.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def rolled(tools: Tools, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
           ) -> Iterator[Rolled]:
    tegata = Tegata(tmp_path_factory.mktemp("tegata"), port=port())
    tegata.ok("init", "--key-type", "ec-p256")
    for login in ("alice", "bob", "carol", "dave"):
        tegata.ok("user", "add", login, "--email", f"{login}@example.com", "--allow")
    tegata.serve()
    try:
        yield Rolled(tegata, tools, tmp_path_factory.mktemp("rolled"))
    finally:
        tegata.stop()


@pytest.fixture(scope="module")
def generations(rolled: Rolled) -> dict[str, Client]:
    """alice and carol of the first generation, bob and dave of the second; the bundle and
    CRL chain written after the rollover, as the operator's runbook says."""
    before = {login: rolled.issue(login) for login in ("alice", "carol")}
    first = rolled.tegata.ok("ca", "show", "--pem")
    made = json.loads(rolled.tegata.ok("ca", "rollover", "--json"))
    after = {login: rolled.issue(login) for login in ("bob", "dave")}
    rolled.bundle.write_text(rolled.tegata.ok("gateway", "ca-bundle"), encoding="ascii")
    cas = x509.load_pem_x509_certificates(rolled.bundle.read_bytes())
    assert format(cas[0].serial_number, "X") == made["serial"]
    assert len(cas) == 3 and cas[0].subject == cas[1].subject
    (rolled.directory / "issuing-g2.pem").write_bytes(
        cas[0].public_bytes(serialization.Encoding.PEM))
    (rolled.directory / "issuing-g1.pem").write_bytes(
        x509.load_pem_x509_certificates(first.encode())[0].public_bytes(
            serialization.Encoding.PEM))
    assert cas[1] == x509.load_pem_x509_certificates(first.encode())[0]
    rolled.sync()
    return before | after


@pytest.fixture(scope="module")
def nginx(rolled: Rolled, generations: dict[str, Client]) -> Iterator[Nginx]:
    """nginx with the kit's crl variant for the default tenant, on ports of ``PORTS``."""
    cert, key = server_certificate(rolled.directory)
    server = Nginx(binary=rolled.tools.nginx, prefix=rolled.prefix, port=port())
    server.upstream_port = port() if server.port != port() else server.port + 1
    config = kit_config(rolled.tegata, server, "crl", "default", port=server.port,
                        server=(cert, key), bundle=rolled.bundle)
    server.gateway_conf.write_text(config, encoding="utf-8")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_chain_of_crls_carries_both_generations(rolled: Rolled,
                                                     generations: dict[str, Client]) -> None:
    crls = crlsync.split(rolled.crls.read_bytes())
    cas = x509.load_pem_x509_certificates(rolled.bundle.read_bytes())
    keys = [c.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            for c in cas]
    assert [crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
            .value.key_identifier for crl in crls] == keys


def test_a_certificate_of_each_generation_verifies_and_passes_nginx(
        rolled: Rolled, generations: dict[str, Client], nginx: Nginx) -> None:
    cert = rolled.directory / "server.pem"
    for login in ("alice", "bob"):
        verified = rolled.verify(generations[login])
        assert verified.returncode == 0, (login, verified.stdout, verified.stderr)
        reply = curl(rolled.tools.curl, nginx, cert, client=generations[login])
        assert reply.status == 200, (login, reply.body)
        # nginx's $ssl_client_serial pads to whole bytes (0B80...); Tegata writes no leading
        # zero: compared as numbers
        shown = reply.body.split("serial=", 1)[1].split()[0]
        assert int(shown, 16) == int(generations[login].serial, 16), (login, reply.body)
    assert rolled.ocsp(generations["alice"], 1) == "good"
    assert rolled.ocsp(generations["bob"], 2) == "good"


def test_revoking_either_generation_is_refused_at_the_gateway(
        rolled: Rolled, generations: dict[str, Client], nginx: Nginx) -> None:
    cert = rolled.directory / "server.pem"
    carol, dave = generations["carol"], generations["dave"]
    for client in (carol, dave):
        assert curl(rolled.tools.curl, nginx, cert, client=client).status == 200
        rolled.tegata.ok("cert", "revoke", client.serial, "--reason", "keyCompromise")
    assert ": updated, next update " in rolled.sync(nginx)
    # the reload is signalled; the new workers take the new CRLs a moment later
    for client in (carol, dave):
        reply, _ = poll(lambda c=client: curl(rolled.tools.curl, nginx, cert, client=c),
                        lambda r: r.status == 400, limit=20)
        assert reply.status == 400, (client.serial, reply)
        assert "The SSL certificate error" in reply.body
        verified = rolled.verify(client)
        assert verified.returncode != 0 and "certificate revoked" in verified.stdout + \
            verified.stderr
    # the others of both generations still pass
    for login in ("alice", "bob"):
        assert curl(rolled.tools.curl, nginx, cert, client=generations[login]).status == 200
        assert rolled.verify(generations[login]).returncode == 0
    assert rolled.ocsp(carol, 1) == "revoked"
    assert rolled.ocsp(dave, 2) == "revoked"


def test_the_ocsp_variant_asks_each_generations_responder(
        rolled: Rolled, generations: dict[str, Client]) -> None:
    """nginx with the kit's ocsp variant: a certificate of each generation passes, and
    carol's and dave's (one of each, revoked here unless the test above did) are refused:
    nginx asks with the CertID of the CA that signed each, and verifies the answer of
    that CA's responder."""
    for login in ("carol", "dave"):
        serial = generations[login].serial
        (shown,) = [c for c in json.loads(rolled.tegata.ok("cert", "list", "--json"))
                    if c["serial"] == serial]
        if shown["state"] != "revoked":
            rolled.tegata.ok("cert", "revoke", serial, "--reason", "keyCompromise")
    cert = rolled.directory / "server.pem"
    if not cert.exists():
        server_certificate(rolled.directory)
    prefix = rolled.directory / "nginx-ocsp"
    prefix.mkdir()
    server = Nginx(binary=rolled.tools.nginx, prefix=prefix, port=port())
    server.upstream_port = port() if server.port != port() else server.port + 1
    server.gateway_conf.write_text(kit_config(
        rolled.tegata, server, "ocsp", "default", port=server.port,
        server=(cert, rolled.directory / "server.key"), bundle=rolled.bundle),
        encoding="utf-8")
    server.start()
    try:
        replies = {login: curl(rolled.tools.curl, server, cert, client=generations[login])
                   for login in ("alice", "bob", "carol", "dave")}
    finally:
        server.stop()
    assert {login: reply.status for login, reply in replies.items()} == {
        "alice": 200, "bob": 200, "carol": 400, "dave": 400}
    assert all("The SSL certificate error" in replies[login].body
               for login in ("carol", "dave"))


def test_a_gateway_left_with_its_bundle_of_before_the_rollover_still_gets_revocations(
        tools: Tools, tmp_path: Path) -> None:  # noqa: F811
    """The operator has not yet rewritten the gateway's bundle after `tegata ca rollover`:
    crl-sync still writes the CRLs of the CAs that bundle trusts (exit 0), warns in one
    line that the new generation's CRL is left out, and revoking a certificate of the old
    generation is refused at nginx."""
    tegata = Tegata(tmp_path / "tegata", port=port(OLD_BUNDLE_PORTS))
    (tmp_path / "tegata").mkdir()
    tegata.ok("init", "--key-type", "ec-p256")
    tegata.ok("user", "add", "erin", "--email", "erin@example.com", "--allow")
    tegata.serve()
    try:
        rolled = Rolled(tegata, tools, tmp_path)
        erin = rolled.issue("erin")
        rolled.bundle.write_text(tegata.ok("gateway", "ca-bundle"), encoding="ascii")
        cert, key = server_certificate(tmp_path)
        server = Nginx(binary=tools.nginx, prefix=rolled.prefix, port=port(OLD_BUNDLE_PORTS))
        server.upstream_port = server.port + 1
        server.gateway_conf.write_text(kit_config(
            tegata, server, "crl", "default", port=server.port, server=(cert, key),
            bundle=rolled.bundle), encoding="utf-8")
        server.start()
        try:
            assert curl(tools.curl, server, cert, client=erin).status == 200
            tegata.ok("ca", "rollover")
            tegata.ok("cert", "revoke", erin.serial, "--reason", "keyCompromise")
            ran = tegata("gateway", "crl-sync", "--tenant", "default", "--out",
                         str(rolled.crls), "--ca-bundle", str(rolled.bundle), "--url",
                         tegata.url, "--reload", server.reload_command())
            assert ran.code == 0, ran.err
            assert ": updated, next update " in ran.out
            warnings = ran.err.splitlines()
            assert len(warnings) == 1 and "a CA rollover happened" in warnings[0], ran.err
            assert "tegata gateway ca-bundle" in warnings[0]
            old = x509.load_pem_x509_certificates(rolled.bundle.read_bytes())
            assert [crl.issuer for crl in crlsync.split(rolled.crls.read_bytes())] == [
                ca.subject for ca in old]
            reply, _ = poll(lambda: curl(tools.curl, server, cert, client=erin),
                            lambda r: r.status == 400, limit=20)
            assert reply.status == 400 and "The SSL certificate error" in reply.body
            verified = rolled.verify(erin)
            assert "certificate revoked" in verified.stdout + verified.stderr
        finally:
            server.stop()
    finally:
        tegata.stop()
