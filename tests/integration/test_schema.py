"""The schema comes only from alembic, and it matches the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from ca.db import migrate
from ca.db.engine import make_engine
from ca.db.models import Base
from ca.service import Service


def test_models_and_migrations_agree(bare_service: Service) -> None:
    with bare_service.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_every_model_table_exists_after_upgrade(bare_service: Service) -> None:
    tables = set(inspect(bare_service.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_upgrade_is_idempotent_and_reaches_head(bare_service: Service) -> None:
    bare_service.database.upgrade()
    assert migrate.current_revision(bare_service.engine) == migrate.head_revision()
    bare_service.database.check()


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()
