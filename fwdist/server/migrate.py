"""Schema migrations: Alembic's revisions in ``migrations/versions``, run from code.

The server upgrades its database to the newest revision every time it starts (and
``fwdist server --migrate-only`` does only that), so an operator never runs a second
tool. The revisions run through Alembic's ``EnvironmentContext`` directly, without an
``env.py`` or ``alembic.ini``: the one database is the engine the server already has.
A later helper adds a table with a new file in ``versions/`` whose ``down_revision`` is
the current head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from fwdist.server.db import metadata

MIGRATIONS = Path(__file__).parent / "migrations"


def _script() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def head() -> str:
    """The newest revision id."""
    rev = _script().get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Upgrade the database to the head revision, in one transaction; returns the head."""
    script = _script()

    def steps(rev: Any, _context: Any) -> Any:
        return script._upgrade_revs("head", rev)

    config = Config()
    with EnvironmentContext(config, script, fn=steps) as env, engine.begin() as conn:
        env.configure(connection=conn, target_metadata=metadata)
        with env.begin_transaction():
            env.run_migrations()
    return head()
