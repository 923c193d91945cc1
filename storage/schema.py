"""The event log's tables, in SQLAlchemy Core.

``synthora_events`` is the append-only log, the source of truth. Its ``position`` orders the whole
log; ``(run_id, seq)`` is unique, which makes every write idempotent. Start, end and error events
are a row each, their dict in ``body`` (JSONB on PostgreSQL). A run's consecutive token events
written in one batch share one row: ``seq`` to ``last_seq``, packed by `synthora.storage.codec`
into ``pack``. ``synthora_runs`` is a projection of the log, one row a run, kept in the same
transaction: what listings, filters and dashboards read.

PostgreSQL's text and JSONB cannot hold a NUL character, which SQLite and JSON can: there, text
is stored with NUL escaped (`escape_nul`) and unescaped as it is read, so every database reads
back what was written.

This module describes the current schema; the database is created and upgraded by the Alembic
migrations in ``migrations/``, never by ``metadata.create_all``.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
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
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "NUL_ESCAPE",
    "SCHEMA_REVISION",
    "escape_nul",
    "events",
    "metadata",
    "runs",
    "unescape_nul",
]

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

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, the text SQLAlchemy would store, made in one step: every closing run
        binds two timestamps, and the generic path (this class, then SQLite's formatting) took
        a sixth of the writer's Python time per run."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        utc = datetime.UTC

        def process(value: datetime.datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                return value.isoformat(" ", "microseconds")
            return value.astimezone(utc).isoformat(" ", "microseconds")[:-6]  # "+00:00" off

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime.datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime.datetime)
        return value.replace(tzinfo=datetime.UTC) if value.tzinfo is None else value


NUL_ESCAPE = "\uffff"
"""On PostgreSQL, NUL is stored as U+FFFF then ``0``, and U+FFFF itself as two of them.

U+FFFF is a Unicode noncharacter, reserved for a program's internal use: text meant for people
does not carry it, so nearly every string is stored as given (and text that does carry it
round-trips too), at the cost of two substring scans. Rows stored before this escaping held no
NUL; one of theirs would read differently only if it held U+FFFF before a ``0`` or a U+FFFF."""

_ESCAPED = re.compile(NUL_ESCAPE + "(.)", re.DOTALL)
_UNESCAPED = {"0": "\x00", NUL_ESCAPE: NUL_ESCAPE}


def escape_nul(text: str) -> str:
    """`text` with NUL and `NUL_ESCAPE` escaped; a string holding neither is returned as is."""
    if "\x00" not in text and NUL_ESCAPE not in text:
        return text
    return text.replace(NUL_ESCAPE, NUL_ESCAPE * 2).replace("\x00", NUL_ESCAPE + "0")


def unescape_nul(text: str) -> str:
    """The text `escape_nul` was given. A `NUL_ESCAPE` that escapes nothing is kept."""
    if NUL_ESCAPE not in text:
        return text
    return _ESCAPED.sub(lambda found: _UNESCAPED.get(found[1], found[0]), text)


class NulEscapedText(TypeDecorator[str]):
    """Text on PostgreSQL: NUL escaped on the way in, unescaped on the way out.

    An escaped value longer than the column is cut to it, never through an escape, as
    `synthora.storage.codec` cuts the values it fits (the event's body keeps them whole).
    """

    impl = String
    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__(length)
        self.length = length

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        escaped = escape_nul(value)
        limit = self.length
        if escaped is value or limit is None or len(escaped) <= limit:
            return escaped
        cut = escaped[:limit]
        trailing = len(cut) - len(cut.rstrip(NUL_ESCAPE))
        return cut[:-1] if trailing % 2 else cut  # an escape left open by the cut is dropped

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else unescape_nul(value)


def _text(length: int | None = None) -> TypeEngine[str]:
    """A text column (bounded when `length` is given) that holds any string on every database."""
    plain = Text() if length is None else String(length)
    return plain.with_variant(NulEscapedText(length), "postgresql")


Position = BigInteger().with_variant(Integer(), "sqlite")
Body = JSON().with_variant(JSONB(), "postgresql")

events = Table(
    "synthora_events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("run_id", _text(36), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("last_seq", Integer, nullable=False),
    Column("kind", _text(8), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("node_name", _text(200), nullable=False),
    Column("node_type", _text(16), nullable=False),
    Column("node_path", _text(), nullable=False),
    Column("parent_run_id", _text(36)),
    Column("trace_id", _text(32), nullable=False, default=""),
    Column("span_id", _text(16), nullable=False, default=""),
    Column("model", _text(200)),
    Column("body", Body),
    Column("pack", LargeBinary),
    UniqueConstraint("run_id", "seq", name="uq_synthora_events_run_seq"),
    sqlite_autoincrement=True,
)
Index("ix_synthora_events_ts", events.c.ts)

runs = Table(
    "synthora_runs",
    metadata,
    Column("run_id", _text(36), primary_key=True),
    Column("parent_run_id", _text(36)),
    Column("status", _text(12), nullable=False),
    Column("operation", _text(32), nullable=False),
    Column("service", _text(200), nullable=False, default=""),
    Column("backend", _text(32), nullable=False, default=""),
    Column("model", _text(200), nullable=False, default=""),
    Column("stream", Boolean, nullable=False, default=False),
    Column("node_name", _text(200), nullable=False),
    Column("node_type", _text(16), nullable=False),
    Column("node_path", _text(), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("duration_s", Float),
    Column("time_to_first_token_s", Float),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("finish_reason", _text(40)),
    Column("error_type", _text(200)),
    Column("error_message", _text()),
    Column("status_code", Integer),
    Column("trace_id", _text(32), nullable=False, default=""),
    Column("span_id", _text(16), nullable=False, default=""),
    Column("attempts", Integer),
)
Index("ix_synthora_runs_started_at", runs.c.started_at)
Index("ix_synthora_runs_model_started_at", runs.c.model, runs.c.started_at)
Index("ix_synthora_runs_node_path", runs.c.node_path)
Index("ix_synthora_runs_status_started_at", runs.c.status, runs.c.started_at)
Index("ix_synthora_runs_parent_run_id", runs.c.parent_run_id)
