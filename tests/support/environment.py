"""The test run's environment: where PostgreSQL is, whether this is CI, the passphrase and
base URL every test's Tegata uses, and the rule for a missing tool (a skip on a laptop, a
failure in CI)."""

from __future__ import annotations

import os
import secrets
import shutil

import pytest

from ca import sealing

IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
PG_URL = os.environ.get("TEGATA_TEST_DATABASE_URL")
PASSPHRASE = "test-" + secrets.token_urlsafe(18)
BASE_URL = "http://tegata.test"
PRODUCTION_KDF = sealing.KDF  # as the release ships it, before any test makes it cheap
# scrypt at its production cost takes about 0.25 s per wrap or unwrap of the data-protection
# key: tests wrap at the lowest cost the file format accepts (the file records it)
QUICK_KDF = sealing.ScryptParams(n=2**10, r=8, p=1)

# The databases a two-database test runs on. PostgreSQL is collected only where a URL is
# given, or in CI, where a missing URL fails the run (tests/conftest.py, at session start)
# rather than silently testing one database.
DATABASES = ("sqlite", *(("postgresql",) if PG_URL or IN_CI else ()))


def unavailable(what: str) -> None:
    """A missing tool or service: a skip on a laptop, a failure in CI."""
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is not available")
    pytest.skip(f"{what} is not available")


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        unavailable(f"the tool {name!r}")
    assert path is not None
    return path
