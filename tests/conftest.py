"""Fixtures shared by every test: settings, a throwaway database, a fixed clock, tools.

The suite runs on SQLite always and on PostgreSQL when ``TEGATA_TEST_DATABASE_URL`` names one
(CI does): the PostgreSQL copies of the two-database tests are collected only then, so a
laptop run has no skip lines for them. In CI (``CI=true``) a missing URL stops the run at
its start, and a missing tool or database fails instead of skipping.

What test modules import lives in tests/support/; the names below stay importable from here
for the modules that still do.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ca import sealing
from ca.clock import FixedClock
from ca.service import InitRequest, Service, build_service
from ca.settings import Settings, load_settings
from tests.moments import MOMENTS
from tests.support.databases import Templates
from tests.support.environment import (
    BASE_URL,
    DATABASES,
    IN_CI,
    PASSPHRASE,
    PG_URL,
    PRODUCTION_KDF,
    QUICK_KDF,
    require_tool,
    unavailable,
)

__all__ = ["BASE_URL", "IN_CI", "MOMENTS", "PASSPHRASE", "PG_URL", "PRODUCTION_KDF",
           "require_tool", "unavailable"]

# the fixtures whose database is a copy of the migrated template rather than an empty one
MIGRATED_BY = frozenset({"bare_service", "ready", "ready_sqlite"})


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI nothing may silently stop being tested: without a PostgreSQL URL the copies of
    the two-database tests would not be collected at all, so the run stops here instead."""
    if not IN_CI:
        return
    if not PG_URL:
        raise pytest.UsageError(
            "CI=true but TEGATA_TEST_DATABASE_URL is not set: the PostgreSQL half of the "
            "suite would not run (set it to a server the tests may create databases on)")
    engine = create_engine(PG_URL, connect_args={"connect_timeout": 10})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        raise pytest.UsageError(
            f"CI=true and TEGATA_TEST_DATABASE_URL is set, but PostgreSQL does not answer: "
            f"{type(exc).__name__}") from None
    finally:
        engine.dispose()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PostgreSQL copy of a test carries the ``postgres`` marker. Without a PostgreSQL
    URL (and outside CI) the tests written for PostgreSQL alone (``db_url`` parametrised to
    it) are deselected — counted in the summary, not a line of SKIPPED each."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("db_url") == "postgresql"
        if on_postgres:
            item.add_marker(pytest.mark.postgres)
        (dropped if on_postgres and "postgresql" not in DATABASES else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
    items.sort(key=_start_order(items))


# The modules that take longest (real servers, gateways, replicas; hostile inputs and
# schemathesis over every route), longest first, as measured on a two-core run; the
# replicas' stress test is paired with modules that start no server of their own. Under
# pytest-xdist a module is one unit of work (``--dist loadfile``) and units are handed out
# in collection order (dev.py passes ``--no-loadscope-reorder``): starting the longest ones
# first keeps one long module from running alone at the end while the other workers idle.
# Only the order changes; a module missing here starts after these, with the others.
LONGEST_FIRST = (
    "tests/integration/test_replicas.py",
    "tests/api/test_hostile_input.py",
    "tests/api/test_schemathesis.py",
    "tests/api/test_shared_limits.py",
    "tests/api/test_ocsp_processes.py",
    "tests/cli/test_hostile_input.py",
    "tests/integration/test_workers.py",
    "tests/interop/test_haproxy.py",
    "tests/integration/test_served_traffic.py",
    "tests/interop/test_nginx.py",
    "tests/browser/test_console_flow.py",
    "tests/cli/test_parity_commands.py",
    "tests/cli/test_rollover_shells.py",
    "tests/integration/test_restore_drill.py",
    "tests/cli/test_startup.py",
    "tests/cli/test_backup_cli.py",
    "tests/interop/test_ocsp_openssl.py",
)


def _start_order(items: list[pytest.Item]) -> Callable[[pytest.Item], tuple[int, int]]:
    """The key that puts LONGEST_FIRST's modules first, in that order, then every other
    module by its number of tests, most first (what xdist would do), ties in collection
    order (the sort is stable)."""
    counts = Counter(item.nodeid.split("::", 1)[0] for item in items)
    rank = {module: n for n, module in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> tuple[int, int]:
        module = item.nodeid.split("::", 1)[0]
        return (rank.get(module, len(rank)), -counts[module])
    return key


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's TEGATA_* variables or ./tegata.toml."""
    for name in list(os.environ):
        if name.startswith("TEGATA_") and name != "TEGATA_TEST_DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("TEGATA_CONFIG", str(tmp_path / "no-such-tegata.toml"))


@pytest.fixture(scope="session", autouse=True)
def _quick_key_wrapping() -> Iterator[None]:
    """scrypt at its production cost takes about 0.25 s per wrap or unwrap of the
    data-protection key, and most tests make a throwaway CA or two: they wrap at the lowest
    cost the file format accepts (the file records it). tests/unit/test_sealing.py checks
    the production cost itself. Session-wide, so that it comes before the module fixtures
    too (the gateways' Tegata, whose key every later command and server worker unwraps)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sealing, "KDF", QUICK_KDF)
        yield


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Templates]:
    """The migrated template databases of this session (of this xdist worker)."""
    made = Templates(tmp_path_factory.mktemp("templates"))
    yield made
    made.close()


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path,
           templates: Templates) -> Iterator[str]:
    """A fresh database: an SQLite file (not yet made), or a new PostgreSQL database —
    empty, or a copy of the migrated template where the test's fixtures want one migrated
    (``bare_service``, ``service``, the CLI's ``ready``)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tegata.db'}"
    else:
        migrated = not MIGRATED_BY.isdisjoint(request.fixturenames)
        yield from templates.postgres_database(migrated=migrated)


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL, or None for another database."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return load_settings(data_dir=tmp_path / "data", database_url=db_url,
                         key_passphrase=PASSPHRASE, public_base_url=BASE_URL)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(MOMENTS.start)


@pytest.fixture
def bare_service(settings: Settings, clock: FixedClock,
                 templates: Templates) -> Iterator[Service]:
    """A service on a migrated, empty database: no CA yet. The schema is a copy of the
    session's template (``db_url`` made a PostgreSQL database from it, the SQLite file is
    copied here); a database made otherwise (one that exists already) is migrated."""
    url = settings.effective_database_url
    file = sqlite_file(url)
    if file is not None and not file.exists():
        templates.sqlite_copy(file)
    service = build_service(settings, clock=clock)
    if url not in templates.migrated:
        service.database.upgrade()
    yield service
    service.engine.dispose()


@pytest.fixture
def service(bare_service: Service) -> Service:
    """A service with the root CA and the ``default`` tenant (EC P-256 keys, for speed)."""
    bare_service.hierarchy.initialize(InitRequest(key_type="ec-p256"))
    return bare_service
