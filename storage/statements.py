"""The event log's three write statements, compiled once and run on the driver's connection.

SQLAlchemy Core builds them (the upserts, JSON and timestamp binding, each dialect's SQL) and
compiles them once per engine. Running a compiled statement through `Connection.execute` still
costs ~60 µs of bookkeeping a call, which was most of a durable run's commit (a short run's
write took ~370 µs, its SQL ~40 µs). So `write` hands the compiled SQL and the rows to the
driver's ``executemany`` itself, each value passed through its column's own bind processor
(SQLAlchemy's), inside one transaction that it begins and ends.

Every row `synthora.storage.codec` makes carries every column, so nothing relies on a Python-side
column default (checked when the statements are compiled).
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Dialect, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.dml import Insert

from synthora.storage.codec import CLOSING_COLUMNS, EVENT_COLUMNS, RUN_COLUMNS, RunRows
from synthora.storage.schema import events, runs

__all__ = ["WRITE_LOCK", "WriteStatements"]

WRITE_LOCK = 0x53594E55
"""PostgreSQL advisory lock held by each write transaction, so positions commit in order."""


class _Compiled:
    """One statement's SQL and how a row dict becomes the driver's parameters."""

    __slots__ = ("_convert", "sql")

    def __init__(self, statement: Insert, table: Table, keys: Sequence[str], dialect: Dialect):
        compiled = statement.compile(dialect=dialect, column_keys=list(keys))
        if compiled.insert_prefetch:
            missing = ", ".join(column.name for column in compiled.insert_prefetch)
            raise AssertionError(f"rows for {table.name} must give every column; missing {missing}")
        self.sql = compiled.string
        processors: dict[str, Callable[[Any], Any]] = {}
        for key in keys:
            process = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                processors[key] = process
        order = compiled.positiontup
        self._convert: Callable[[dict[str, Any]], Any] = (  # a tuple or a dict, as the driver takes
            _named(processors) if order is None else _positional(tuple(order), processors)
        )

    def execute(self, cursor: DBAPICursor, rows: list[dict[str, Any]]) -> None:
        if rows:
            cursor.executemany(self.sql, [self._convert(row) for row in rows])


def _positional(
    order: tuple[str, ...], processors: dict[str, Callable[[Any], Any]]
) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    take = operator.itemgetter(*order)
    processed = tuple((i, processors[key]) for i, key in enumerate(order) if key in processors)

    def convert(row: dict[str, Any]) -> tuple[Any, ...]:
        values = list(take(row))
        for i, process in processed:
            values[i] = process(values[i])
        return tuple(values)

    return convert


def _named(
    processors: dict[str, Callable[[Any], Any]],
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    processed = tuple(processors.items())

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        values = dict(row)
        for key, process in processed:
            values[key] = process(values[key])
        return values

    return convert


class WriteStatements:
    """The log's writes for one engine: events, started runs, closed runs; idempotent."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect
        self.dialect = dialect.name
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        upsert = insert(runs)
        self._events = _Compiled(
            insert(events).inline().on_conflict_do_nothing(), events, EVENT_COLUMNS, dialect
        )
        self._started = _Compiled(insert(runs).on_conflict_do_nothing(), runs, RUN_COLUMNS, dialect)
        self._ended = _Compiled(
            upsert.on_conflict_do_update(
                index_elements=[runs.c.run_id],
                set_={name: upsert.excluded[name] for name in CLOSING_COLUMNS},
            ),
            runs,
            RUN_COLUMNS,
            dialect,
        )

    def write(self, connection: PoolProxiedConnection, rows: RunRows) -> None:
        """One batch, one transaction: the events, then the runs projection."""
        with self._transaction(connection) as cursor:
            self._events.execute(cursor, rows.events)
            self._started.execute(cursor, rows.started)
            self._ended.execute(cursor, rows.ended)

    @contextlib.contextmanager
    def _transaction(self, connection: PoolProxiedConnection) -> Iterator[DBAPICursor]:
        cursor = connection.cursor()
        try:
            if self.dialect == "sqlite":  # the driver is in autocommit; take the write lock now
                cursor.execute("BEGIN IMMEDIATE")
            else:
                cursor.execute(f"SELECT pg_advisory_xact_lock({WRITE_LOCK})")
            yield cursor
            connection.commit()
        except BaseException:
            with contextlib.suppress(Exception):  # the connection may be the thing that broke
                connection.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                cursor.close()
