"""Interop: Tegata's certificates judged by real tools (openssl, pkilint), not by Tegata.

The CA comes from the ``service`` fixtures of tests/conftest.py. What is judged here is the
DER, which does not depend on the database, so one database (SQLite) is enough. The helpers
are in tests/support/tools.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ca.service import Service
from tests.support.environment import require_tool
from tests.support.tools import (
    AT_START,
    Chain,
    load,
    pkilint_tool,
    run,
    run_all,
    write_chain,
    write_pem,
)

__all__ = ["AT_START", "Chain", "load", "pkilint_tool", "run", "run_all", "write_chain",
           "write_pem"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here judges Tegata with a real external tool: all carry ``interop``."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """Overrides the two-database fixture: SQLite only."""
    yield f"sqlite:///{tmp_path / 'tegata.db'}"


@pytest.fixture
def openssl() -> str:
    return require_tool("openssl")


@pytest.fixture
def lint_cert() -> str:
    return pkilint_tool("lint_pkix_cert")


@pytest.fixture
def lint_chain() -> str:
    return pkilint_tool("lint_pkix_signer_signee_cert_chain")


@pytest.fixture
def chain(service: Service, tmp_path: Path) -> Chain:
    """The ``default`` tenant's chain (EC P-256 CA keys) with a certificate for alice."""
    return write_chain(service, tmp_path / "default")
