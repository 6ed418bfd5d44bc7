"""The CRL DER Tegata writes itself (ca/x509/crl.py), judged by OpenSSL and pkilint on the
same inputs as tests/unit/test_crl_der.py: every reason, a hold, 1- to 20-octet serials,
dates either side of 2050, a tenant's CRL and the root's ARL."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ca.signer import FileSigner
from ca.x509 import crl
from tests.support.tools import pkilint_tool, run, run_all
from tests.unit.test_crl_der import ENTRIES, MANY, issuer_and_key, request_for

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("kind", ["p384", "rsa"])
def test_openssl_verifies_the_signature_and_pkilint_finds_nothing(
        openssl: str, kind: str, tmp_path: Path) -> None:
    issuer, key = issuer_and_key(kind)
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(issuer.public_bytes(serialization.Encoding.PEM))
    files = {}
    for name, root in (("crl", False), ("arl", True)):
        files[name] = tmp_path / f"{name}.der"
        files[name].write_bytes(crl.build(request_for(root=root), issuer,
                                          FileSigner("acme-issuing", key),
                                          (crl.entry_der(e) for e in [*ENTRIES, *MANY])))
    checked = [run(openssl, "crl", "-inform", "DER", "-in", str(path), "-CAfile",
                   str(ca_pem), "-noout") for path in files.values()]
    assert [(c.returncode, "verify OK" in c.stderr + c.stdout) for c in checked] == \
        [(0, True), (0, True)]
    lint = pkilint_tool("lint_crl")
    results = run_all([[lint, "lint", "-t", name.upper(), "-p", "PKIX", "-s", "WARNING",
                        str(path)] for name, path in files.items()])
    assert [(r.returncode, (r.stdout + r.stderr).strip()) for r in results] == \
        [(0, ""), (0, "")]
