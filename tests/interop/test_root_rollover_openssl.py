"""Root rollover judged by openssl: a leaf under the new root verifies with only the OLD
root as trust anchor plus the link certificate (the new root's key certified by the old),
and a leaf under the old root with only the NEW root plus the other link; neither without
its link. The tenant's bundle and CRL chain after both rollovers pass
``openssl verify -crl_check_all`` for a leaf of each generation."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.service import Service
from tests.interop.conftest import run, run_all, write_pem
from tests.support.issuing import issue_one


def pem_of(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).public_bytes(
        serialization.Encoding.PEM).decode()


def test_a_link_certificate_carries_trust_from_either_root_to_the_other(
        service: Service, openssl: str, tmp_path: Path) -> None:
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    service.users.add("default", "bob", email="bob@example.com", allow=True)
    old_root = write_pem(tmp_path / "old-root.pem",
                         service.hierarchy.ca_certificates(None)[0].pem)
    first = write_pem(tmp_path / "issuing-g1.pem",
                      service.hierarchy.ca_certificates("default")[1].pem)
    alice = write_pem(tmp_path / "alice.pem", pem_of(issue_one(service, "alice").der))
    new_root = write_pem(tmp_path / "new-root.pem", service.hierarchy.rollover_root().pem)
    second = write_pem(tmp_path / "issuing-g2.pem", service.hierarchy.rollover("default").pem)
    bob = write_pem(tmp_path / "bob.pem", pem_of(issue_one(service, "bob").der))
    up, down = service.hierarchy.links()
    up_file = write_pem(tmp_path / "link-up.pem", up.pem)
    down_file = write_pem(tmp_path / "link-down.pem", down.pem)
    untrusted = write_pem(tmp_path / "untrusted.pem", up.pem + down.pem +
                          first.read_text() + second.read_text())

    def verify(anchor: Path, leaf: Path, *untrusted_files: Path) -> str:
        argv = ["verify", "-CAfile", str(anchor)]
        for extra in untrusted_files:
            argv += ["-untrusted", str(extra)]
        result = run(openssl, *argv, "-attime", str(int(service.clock.now().timestamp())),
                     str(leaf))
        return result.stdout.strip() if result.returncode == 0 else "refused"

    # the new root's leaf, the old root trusted: through the link up
    assert verify(old_root, bob, second, up_file) == f"{bob}: OK"
    assert verify(old_root, bob, second) == "refused"
    # the old root's leaf, the new root trusted: through the link down
    assert verify(new_root, alice, first, down_file) == f"{alice}: OK"
    assert verify(new_root, alice, first) == "refused"
    # either root with every link and issuing CA: both leaves
    for anchor in (old_root, new_root):
        for leaf in (alice, bob):
            assert verify(anchor, leaf, untrusted) == f"{leaf}: OK"

    # the gateway's files after both rollovers: every CA and every CRL they need
    bundle = write_pem(tmp_path / "bundle.pem", "".join(
        v.pem for v in service.hierarchy.ca_certificates("default")))
    at = str(int(service.clock.now().timestamp()))

    def checked(leaf: Path) -> str:
        crls = write_pem(tmp_path / "crls.pem", service.crls.chain("default").pem)
        result = run(openssl, "verify", "-crl_check_all", "-CAfile", str(bundle), "-CRLfile",
                     str(crls), "-attime", at, str(leaf))
        return "OK" if result.returncode == 0 else result.stdout + result.stderr

    assert [checked(alice), checked(bob)] == ["OK", "OK"]
    service.revocation.revoke("default", x509.load_pem_x509_certificate(
        alice.read_bytes()).serial_number.__format__("X"))
    assert "certificate revoked" in checked(alice)
    assert checked(bob) == "OK"


def test_pkilint_finds_nothing_in_the_rolled_over_cas_their_links_and_leaves(
        service: Service, lint_cert: str, lint_chain: str, tmp_path: Path) -> None:
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    old_root = write_pem(tmp_path / "old-root.pem",
                         service.hierarchy.ca_certificates(None)[0].pem)
    new_root = write_pem(tmp_path / "new-root.pem", service.hierarchy.rollover_root().pem)
    second = write_pem(tmp_path / "issuing-g2.pem", service.hierarchy.rollover("default").pem)
    leaf = write_pem(tmp_path / "leaf.pem", pem_of(issue_one(service, "alice").der))
    up, down = service.hierarchy.links()
    up_file = write_pem(tmp_path / "link-up.pem", up.pem)
    down_file = write_pem(tmp_path / "link-down.pem", down.pem)
    files = {"new root": new_root, "issuing g2": second, "leaf": leaf, "link up": up_file,
             "link down": down_file}
    pairs = {"old root->link up": (old_root, up_file), "new root->link down": (new_root,
                                                                               down_file),
             "new root->issuing g2": (new_root, second), "issuing g2->leaf": (second, leaf)}
    commands = [[lint_cert, "lint", "-s", "WARNING", str(path)] for path in files.values()]
    commands += [[lint_chain, "lint", "-s", "WARNING", str(a), str(b)]
                 for a, b in pairs.values()]
    results = run_all(commands)
    report = {name: (r.returncode, (r.stdout + r.stderr).strip())
              for name, r in zip([*files, *pairs], results, strict=True)}
    assert report == {name: (0, "") for name in [*files, *pairs]}
