"""pkilint's RFC 5280 verdict on each certificate and on each signer/signee link."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca.service import InitRequest, Service
from tests.support.tools import Chain, run, run_all, write_chain

pytestmark = pytest.mark.interop

# every CA key type Tegata offers; EC P-256 is also what the ``service`` fixture uses
CA_KEY_TYPES = ["ec-p256", "ec-p384", "rsa-3072", "rsa-4096"]


@pytest.fixture(params=CA_KEY_TYPES)
def any_chain(request: pytest.FixtureRequest, bare_service: Service, tmp_path: Path) -> Chain:
    bare_service.hierarchy.initialize(InitRequest(key_type=request.param))
    return write_chain(bare_service, tmp_path)


def findings(result) -> str:
    return (result.stdout + result.stderr).strip()


def test_pkilint_finds_nothing_in_the_root_the_issuing_ca_or_the_leaf(
        lint_cert: str, any_chain: Chain) -> None:
    names = list(any_chain.files())
    results = run_all([[lint_cert, "lint", "-s", "WARNING", str(path)]
                       for path in any_chain.files().values()])
    report = {name: (r.returncode, findings(r)) for name, r in zip(names, results, strict=True)}
    assert report == {name: (0, "") for name in names}


def test_pkilint_finds_nothing_in_either_link_of_the_chain(lint_chain: str,
                                                           any_chain: Chain) -> None:
    links = {"root->issuing": (any_chain.root, any_chain.issuing),
             "issuing->leaf": (any_chain.issuing, any_chain.leaf)}
    results = run_all([[lint_chain, "lint", "-s", "WARNING", str(a), str(b)]
                       for a, b in links.values()])
    report = {name: (r.returncode, findings(r)) for name, r in zip(links, results, strict=True)}
    assert report == {name: (0, "") for name in links}


def test_pkilint_does_judge_a_link_that_skips_the_issuing_ca(lint_chain: str,
                                                             chain: Chain) -> None:
    # the control for the empty reports above: root -> leaf is not a real link
    result = run(lint_chain, "lint", "-s", "WARNING", str(chain.root), str(chain.leaf))
    assert result.returncode != 0
    assert "pkix.signature_verification_failed" in result.stdout
