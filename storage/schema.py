"""The event log's tables, in SQLAlchemy Core.

``synthora_events`` is the append-only log, the source of truth. Its ``position`` orders the whole
log; ``(run_id, seq)`` is unique, which makes every write idempotent. Start, end and error events
are a row each, their dict in ``body`` (JSONB on PostgreSQL). A run's consecutive token events
written in one batch share one row: ``seq`` to ``last_seq``, packed by `synthora.storage.codec`
into ``pack``. ``synthora_runs`` is a projection of the log, one row a run, kept in the same
transaction: what listings, filters and dashboards read.

This module describes the current schema; the database is created and upgraded by the Alembic
migrations in ``migrations/``, never by ``metadata.create_all``.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

__all__ = ["SCHEMA_REVISION", "events", "metadata", "runs"]

SCHEMA_REVISION = "0002"
"""The Alembic revision this code reads and writes."""

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime.datetime]):
    """Timestamps always in UTC: timestamptz on PostgreSQL, naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        value = value.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime.datetime)
        return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value


Position = BigInteger().with_variant(Integer(), "sqlite")
Body = JSON().with_variant(JSONB(), "postgresql")

events = Table(
    "synthora_events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("kind", String(8), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("node_name", String(200), nullable=False),
    Column("node_type", String(16), nullable=False),
    Column("node_path", Text, nullable=False),
    Column("parent_run_id", String(36)),
    Column("trace_id", String(32), nullable=False, default=""),
    Column("span_id", String(16), nullable=False, default=""),
    Column("model", String(200)),
    Column("body", Body),
    Column("pack", LargeBinary),
    UniqueConstraint("run_id", "seq", name="uq_synthora_events_run_seq"),
    sqlite_autoincrement=True,
)
Index("ix_synthora_events_ts", events.c.ts)

runs = Table(
    "synthora_runs",
    metadata,
    Column("run_id", String(36), primary_key=True),
    Column("parent_run_id", String(36)),
    Column("status", String(12), nullable=False),
    Column("operation", String(32), nullable=False),
    Column("service", String(200), nullable=False, default=""),
    Column("backend", String(32), nullable=False, default=""),
    Column("model", String(200), nullable=False, default=""),
    Column("stream", Boolean, nullable=False, default=False),
    Column("node_name", String(200), nullable=False),
    Column("node_type", String(16), nullable=False),
    Column("node_path", Text, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("duration_s", Float),
    Column("time_to_first_token_s", Float),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("finish_reason", String(40)),
    Column("error_type", String(200)),
    Column("error_message", Text),
    Column("status_code", Integer),
    Column("trace_id", String(32), nullable=False, default=""),
    Column("span_id", String(16), nullable=False, default=""),
    Column("attempts", Integer),
)
Index("ix_synthora_runs_started_at", runs.c.started_at)
Index("ix_synthora_runs_model_started_at", runs.c.model, runs.c.started_at)
Index("ix_synthora_runs_node_path", runs.c.node_path)
Index("ix_synthora_runs_status_started_at", runs.c.status, runs.c.started_at)
Index("ix_synthora_runs_parent_run_id", runs.c.parent_run_id)
