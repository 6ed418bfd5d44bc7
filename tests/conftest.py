"""Fixtures shared by every test: settings, a throwaway database, a fixed clock, tools.

The suite runs on SQLite always and on PostgreSQL when ``TEGATA_TEST_DATABASE_URL`` names one
(CI does). In CI (``CI=true``) a missing tool or database fails instead of skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ca import sealing
from ca.clock import FixedClock
from ca.service import InitRequest, Service, build_service
from ca.settings import Settings, load_settings
from tests.moments import MOMENTS

IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
PG_URL = os.environ.get("TEGATA_TEST_DATABASE_URL")
PASSPHRASE = "test-" + secrets.token_urlsafe(18)
BASE_URL = "http://tegata.test"
PRODUCTION_KDF = sealing.KDF  # as the release ships it, before any test makes it cheap


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


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's TEGATA_* variables or ./tegata.toml."""
    for name in list(os.environ):
        if name.startswith("TEGATA_") and name != "TEGATA_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEGATA_CONFIG", str(tmp_path / "no-such-tegata.toml"))


@pytest.fixture(autouse=True)
def _quick_key_wrapping(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt at its production cost takes about 0.25 s per wrap or unwrap of the
    data-protection key, and most tests make a throwaway CA or two: they wrap at the lowest
    cost the file format accepts (the file records it). tests/unit/test_sealing.py checks
    the production cost itself."""
    monkeypatch.setattr(sealing, "KDF", sealing.ScryptParams(n=2**10, r=8, p=1))


def _postgres_database() -> Iterator[str]:
    if not PG_URL:
        unavailable("PostgreSQL (set TEGATA_TEST_DATABASE_URL)")
    assert PG_URL is not None
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = "tegata_t_" + secrets.token_hex(6)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        if IN_CI:
            pytest.fail(f"PostgreSQL at TEGATA_TEST_DATABASE_URL is not usable: {exc}")
        pytest.skip(f"PostgreSQL not usable: {exc}")
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tegata.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(data_dir=tmp_path / "data", database_url=db_url,
                         key_passphrase=PASSPHRASE, public_base_url=BASE_URL)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(MOMENTS.start)


@pytest.fixture
def bare_service(settings: Settings, clock: FixedClock) -> Iterator[Service]:
    """A service on a migrated, empty database: no CA yet."""
    service = build_service(settings, clock=clock)
    service.database.upgrade()
    yield service
    service.engine.dispose()


@pytest.fixture
def service(bare_service: Service) -> Service:
    """A service with the root CA and the ``default`` tenant (EC P-256 keys, for speed)."""
    bare_service.hierarchy.initialize(InitRequest(key_type="ec-p256"))
    return bare_service
