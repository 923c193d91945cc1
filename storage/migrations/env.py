"""Alembic environment for the event log: run by `synthora.storage.migrate`, never by hand.

The connection comes from the caller (``config.attributes["connection"]``), already holding the
migration lock; the version table has Synthora's own name so the log can share a database with
an application that uses Alembic itself.
"""

from __future__ import annotations

from alembic import context

from synthora.storage.schema import metadata

VERSION_TABLE = "synthora_alembic_version"

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
