"""Schema upgrades through alembic, run on an engine (``tegata db upgrade``, or at start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def reset(engine: Engine, revision: str) -> None:
    """Bring an empty database to ``revision`` exactly (a restore's first step): down to
    nothing first if it holds another revision, then up."""
    current = current_revision(engine)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if current is not None and current != revision:
            command.downgrade(config, "base")
        command.upgrade(config, revision)


def known_revisions() -> set[str]:
    """Every revision of this release's migrations."""
    return {script.revision for script in
            ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
