"""Creating and upgrading the event log's schema with Alembic, safely from many processes.

On PostgreSQL the upgrade runs under a session advisory lock, so processes starting together
migrate once. On SQLite the check and the upgrade share one ``BEGIN IMMEDIATE`` transaction
(see `synthora.storage.engines`), which serialises them the same way. A
database stamped with a revision this code does not know was written by a newer Synthora: it is
refused with a clear message, never touched.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from synthora.storage.errors import SchemaVersionError
from synthora.storage.schema import SCHEMA_REVISION

__all__ = ["MIGRATION_LOCK", "upgrade"]

MIGRATION_LOCK = 0x53594E54  # "SYNT": the advisory lock key taken while migrating
VERSION_TABLE = "synthora_alembic_version"
_SCRIPTS = Path(__file__).with_name("migrations")


def upgrade(engine: Engine, to: str = SCHEMA_REVISION) -> None:
    """Bring the database to `SCHEMA_REVISION` (or an older revision `to`, which tests use to
    build a log as an older Synthora left it), or refuse a newer one."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
    with engine.connect() as connection:
        locked = connection.dialect.name == "postgresql"
        if locked:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            connection.commit()
        try:
            with connection.begin():
                current = _current_revision(connection)
                if current is not None and current not in known:
                    raise SchemaVersionError(
                        f"the event log is at schema revision {current!r}, newer than this "
                        f"Synthora knows (up to {SCHEMA_REVISION!r}); upgrade synthora to open it"
                    )
                if current != to:
                    config.attributes["connection"] = connection
                    command.upgrade(config, to)
        finally:
            if locked:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()


def _current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()
