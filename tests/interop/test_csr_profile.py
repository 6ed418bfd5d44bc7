"""Leaves from every key source Tegata accepts, judged by pkilint and OpenSSL.

A server-made key of each client key type, a CSR made by ``openssl req`` for each accepted
curve and RSA, a CSR that asks for what it must not get, and a leaf carrying a UPN: each must
be RFC 5280-clean, and a CSR's leaf must carry the request's key and nothing else of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from ca.db.models import Tenant
from ca.service import Service
from tests.support.issuing import issue_one
from tests.support.tools import AT_START, run, write_pem

pytestmark = pytest.mark.interop

# `openssl req` key options for each kind of key a CSR may carry
CSR_KEYS = {
    "ec-p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "ec-p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "ec-p521": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
    "rsa-2048": ["-newkey", "rsa:2048"],
}
# what a hostile request asks for: a CA certificate for a server name, under another subject
GREEDY = ["-subj", "/CN=whatever/O=Evil Corp",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "subjectAltName=DNS:evil.example"]


@dataclass(frozen=True)
class Request:
    key: Path
    csr: Path


def openssl_req(openssl: str, directory: Path, key_type: str, *extra: str) -> Request:
    """A key and a CSR made by OpenSSL itself (not by Tegata's own cryptography)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, csr = directory / "key.pem", directory / "req.pem"
    subject = [] if "-subj" in extra else ["-subj", "/CN=whatever"]
    made = run(openssl, "req", "-new", *CSR_KEYS[key_type], "-nodes", *subject, *extra,
               "-keyout", str(key), "-out", str(csr))
    assert made.returncode == 0, made.stderr
    return Request(key=key, csr=csr)


def leaf_file(service: Service, directory: Path, *, csr: Path | None = None,
              key_type: str | None = None) -> Path:
    """alice's new leaf, written to ``directory``/leaf.pem."""
    directory.mkdir(parents=True, exist_ok=True)
    view = issue_one(service, "alice", key_type=key_type,
                     csr=csr.read_bytes() if csr is not None else None)
    return write_pem(directory / "leaf.pem", view.pem)

def set_upn_suffix(service: Service, suffix: str) -> None:
    with service.database.transaction() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == "default"))
        assert tenant is not None
        tenant.upn_suffix = suffix


def text_of(openssl: str, path: Path, kind: str = "x509") -> str:
    result = run(openssl, kind, "-noout", "-text", "-in", str(path))
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def alice(service: Service) -> Service:
    """The service, with alice added (secure access, alice@example.com)."""
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    return service


@pytest.fixture
def chain_files(service: Service, tmp_path: Path) -> tuple[Path, Path]:
    root, issuing = service.hierarchy.ca_certificates("default")
    return (write_pem(tmp_path / "root.pem", root.pem),
            write_pem(tmp_path / "issuing.pem", issuing.pem))


# each way to a leaf: (openssl, service with alice, directory) -> leaf.pem
Make = Callable[[str, Service, Path], Path]


def server_key(key_type: str) -> Make:
    return lambda openssl, service, here: leaf_file(service, here, key_type=key_type)


def csr_key(key_type: str, *extra: str) -> Make:
    return lambda openssl, service, here: leaf_file(
        service, here, csr=openssl_req(openssl, here, key_type, *extra).csr)


def with_upn(openssl: str, service: Service, here: Path) -> Path:
    set_upn_suffix(service, "corp.example")
    return leaf_file(service, here)


LEAVES: dict[str, Make] = {
    "server-ec-p256": server_key("ec-p256"),
    "server-rsa-2048": server_key("rsa-2048"),
    "server-rsa-3072": server_key("rsa-3072"),
    **{f"csr-{key_type}": csr_key(key_type) for key_type in CSR_KEYS},
    "csr-asking-for-ca-and-dns": csr_key("ec-p256", *GREEDY),
    "upn": with_upn,
}


@pytest.mark.parametrize("make", LEAVES.values(), ids=LEAVES.keys())
def test_pkilint_finds_nothing_in_a_leaf_from_any_key_source(
        openssl: str, lint_cert: str, alice: Service, tmp_path: Path, make: Make) -> None:
    leaf = make(openssl, alice, tmp_path)

    result = run(lint_cert, "lint", "-s", "WARNING", str(leaf))

    assert (result.returncode, (result.stdout + result.stderr).strip()) == (0, "")


@pytest.mark.parametrize("key_type", CSR_KEYS)
def test_a_csr_leaf_carries_the_requests_key_and_verifies_for_client_auth(
        openssl: str, alice: Service, chain_files: tuple[Path, Path], tmp_path: Path,
        key_type: str) -> None:
    root, issuing = chain_files
    request = openssl_req(openssl, tmp_path, key_type)

    leaf = leaf_file(alice, tmp_path, csr=request.csr)

    of_leaf = run(openssl, "x509", "-pubkey", "-noout", "-in", str(leaf))
    of_key = run(openssl, "pkey", "-pubout", "-in", str(request.key))
    assert of_leaf.returncode == 0 and of_key.returncode == 0, of_leaf.stderr + of_key.stderr
    assert of_leaf.stdout == of_key.stdout
    verified = run(openssl, "verify", "-attime", AT_START, "-purpose", "sslclient",
                   "-CAfile", str(root), "-untrusted", str(issuing), str(leaf))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.strip() == f"{leaf}: OK"


def test_a_csrs_subject_and_extensions_are_ignored(openssl: str, alice: Service,
                                                   tmp_path: Path) -> None:
    request = openssl_req(openssl, tmp_path, "ec-p256", *GREEDY)
    asked = text_of(openssl, request.csr, "req")
    # the control: the request really asks for all of it
    assert "CA:TRUE" in asked and "DNS:evil.example" in asked and "Evil Corp" in asked

    text = text_of(openssl, leaf_file(alice, tmp_path, csr=request.csr))

    assert re.search(r"Subject: O = Default, CN = alice\n", text)
    assert re.search(r"X509v3 Basic Constraints: critical\n\s+CA:FALSE\n", text)
    assert "CA:TRUE" not in text
    assert re.search(r"X509v3 Subject Alternative Name: ?\n\s+email:alice@example.com\n", text)
    for asked_for in ("DNS:", "evil.example", "whatever", "Evil Corp"):
        assert asked_for not in text


def test_the_tenants_upn_suffix_puts_the_users_upn_in_the_san(openssl: str, alice: Service,
                                                              tmp_path: Path) -> None:
    before = text_of(openssl, leaf_file(alice, tmp_path / "before"))
    set_upn_suffix(alice, "corp.example")

    after = text_of(openssl, leaf_file(alice, tmp_path / "after"))

    assert "UPN" not in before and "othername" not in before.lower()
    san = re.search(r"X509v3 Subject Alternative Name: ?\n\s+(.+)\n", after)
    assert san is not None, after
    assert re.fullmatch(r"email:alice@example\.com, othername: ?UPN:+alice@corp\.example",
                        san.group(1)), san.group(1)
