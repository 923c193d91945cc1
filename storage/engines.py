"""Engines for the event log: SQLite tuned for one writer thread and many readers.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (a committed run survives a process crash;
``durability="full"`` also survives power loss at ~20x the cost of a commit) and a long busy
timeout so several processes can share one file. pysqlite's own transaction handling is turned
off: write transactions begin with ``BEGIN IMMEDIATE`` so two processes never deadlock upgrading
a read lock, and reads run in autocommit, never holding a write lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from synthora.storage.codec import json_deserializer, json_serializer
from synthora.storage.errors import StorageError

__all__ = ["Durability", "make_engines", "safe_url"]

Durability = Literal["normal", "full"]


_SECRET_QUERY = ("password", "secret", "token", "key")
"""Query parameters whose name holds one of these (``sslpassword``, ``sslkey``) are hidden."""

_SERVER_TIMEOUTS = {"connect_timeout": 10, "keepalives_idle": 10, "keepalives_interval": 5}
"""libpq's defaults wait forever for a server that went silent; the writer must notice, so it
can spool. Given only where the URL does not set them."""


def safe_url(url: str | URL) -> str:
    """The URL for messages: never with its password, nor a query parameter naming a secret."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    hidden = {
        name: "***" for name in parsed.query if any(word in name.lower() for word in _SECRET_QUERY)
    }
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True)


def make_engines(url: str, durability: Durability) -> tuple[Engine, Engine]:
    """(writer, reader) engines for `url`; they are one and the same on a server database."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(
            f"not a database URL: {url!r}; expected e.g. sqlite:///synthora.db or "
            "postgresql+psycopg://user@host/db"
        ) from exc
    if durability not in ("normal", "full"):
        raise StorageError(f"durability must be 'normal' or 'full', not {durability!r}")
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {
        "json_serializer": json_serializer(backend),
        "json_deserializer": json_deserializer(backend),
    }
    try:
        if backend != "sqlite":
            if backend == "postgresql":
                timeouts = {k: v for k, v in _SERVER_TIMEOUTS.items() if k not in parsed.query}
                options["connect_args"] = timeouts
            engine = create_engine(parsed, pool_pre_ping=True, **options)
            return engine, engine
        _check_sqlite_path(parsed)
        writer = create_engine(parsed, **options)
        reader = create_engine(parsed, **options)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise StorageError(f"cannot use the event log at {safe_url(parsed)}: {exc}") from exc
    synchronous = "FULL" if durability == "full" else "NORMAL"
    _tune_sqlite(writer, synchronous, "BEGIN IMMEDIATE")
    _tune_sqlite(reader, synchronous, None)
    return writer, reader


def _check_sqlite_path(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise StorageError(
            "the event log needs a SQLite file (sqlite:///path/to/log.db), not an in-memory "
            "database: the writer thread and readers must share it"
        )
    if url.query:
        raise StorageError(
            f"the event log opens its SQLite file itself and takes no URL parameters "
            f"({', '.join(sorted(url.query))}): give sqlite:///path/to/log.db"
        )
    folder = Path(database).expanduser().resolve().parent
    if not folder.is_dir():
        raise StorageError(f"cannot create the event log {database!r}: no folder {folder}")


def _tune_sqlite(engine: Engine, synchronous: str, begin: str | None) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.close()

    if begin is not None:

        @event.listens_for(engine, "begin")
        def on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)
