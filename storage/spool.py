"""The spool: where the writer commits batches while the database cannot be reached.

A run's durability barrier needs its events on disk somewhere, not necessarily in the database.
During an outage the writer appends each batch's rows, exactly as it would have written them, to
a local SQLite file (WAL, so an append costs a local commit, well under a millisecond), resolves
the barriers, and keeps retrying the database. Once it answers, the batches are forwarded in
order, each committed to the database before it leaves the spool; since every write is
idempotent on ``(run_id, seq)``, a batch forwarded twice (a crash between the two commits) is
stored once. The file outlives the process: the next `EventLog` for the same database finds it
and drains it. Several processes may share one spool: they append freely, and one at a time
forwards (an exclusive lock on a lock file next to it).

The rows are msgpack; a body (an event's dict) is kept as its JSON text, so that any value JSON
can hold survives the trip, as large integers do.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import make_url

from synthora.storage.codec import RunRows, json_serializer
from synthora.storage.engines import Durability, safe_url

__all__ = ["Forwarded", "Spool", "database_identity", "default_spool_path"]

_to_json = json_serializer("sqlite")
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(RunRows).decode


def database_identity(url: str) -> str:
    """The database `url` names, the same however it is spelled: a SQLite path made absolute,
    the password left out."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        parsed = parsed.set(database=str(Path(parsed.database).expanduser().resolve()))
    return safe_url(parsed)


def default_spool_path(url: str) -> Path:
    """Where the spool for the database at `url` lives unless told otherwise.

    One file per database, named by a digest of its URL (a SQLite path made absolute, the
    password left out), in ``$SYNTHORA_SPOOL_DIR``, else ``$XDG_CACHE_HOME/synthora/spool``,
    else ``~/.cache/synthora/spool``: a fixed place, so a process started elsewhere still finds
    what an earlier one spooled.
    """
    digest = hashlib.sha256(database_identity(url).encode()).hexdigest()[:20]
    folder = os.environ.get("SYNTHORA_SPOOL_DIR")
    if not folder:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = str(Path(cache) / "synthora" / "spool")
    return Path(folder) / f"{digest}.spool"


class Forwarded(msgspec.Struct, frozen=True):
    """What one `Spool.forward` did: events forwarded, events quarantined, whether it emptied."""

    forwarded: int
    unreadable: int
    empty: bool


class Spool:
    """Batches of rows waiting for the database, oldest first, in a local SQLite file.

    Used by the writer thread only (its connection is that thread's); `pending` opens its own.
    The file is created on the first append, readable by its owner only (it holds prompts and
    replies), so a log that never saw an outage leaves none.
    """

    def __init__(self, path: str | os.PathLike[str], durability: Durability = "normal") -> None:
        self.path = Path(path)
        self._synchronous = "FULL" if durability == "full" else "NORMAL"
        self._connection: sqlite3.Connection | None = None

    def append(self, rows: RunRows) -> None:
        """Commit `rows` to the spool. Raises `OSError` or `sqlite3.Error` if the file cannot
        be written, `OverflowError` or `TypeError` if the rows cannot be encoded."""
        stored = _encode(
            RunRows(
                events=[_json_body(row) for row in rows.events],
                started=rows.started,
                ended=rows.ended,
                count=rows.count,
            )
        )
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO batches (events, rows) VALUES (?, ?)", (rows.count, stored)
            )

    def forward(self, write: Callable[[RunRows], None], until: float) -> Forwarded:
        """Hand batches, oldest first, to `write`, each removed once `write` returned, until
        the spool is empty or the monotonic clock passes `until`. If `write` raises, its batch
        stays first in line and the exception propagates.

        One process forwards at a time (an exclusive lock on ``<spool>.lock``), so batches
        reach the database in the order they were spooled; appends never wait for it. A batch
        that cannot be decoded moves to the ``quarantine`` table, kept for inspection.
        """
        if self._connection is None and not self.path.exists():
            return Forwarded(0, 0, empty=True)
        connection = self._connection or self._open()
        forwarded = unreadable = 0
        with self._forwarding() as ours:
            if not ours:  # another process is forwarding this spool
                return Forwarded(0, 0, empty=False)
            while True:
                found = connection.execute(
                    "SELECT id, events, rows FROM batches ORDER BY id LIMIT 1"
                ).fetchone()
                if found is None:
                    return Forwarded(forwarded, unreadable, empty=True)
                batch_id, count, blob = found
                try:
                    rows = _decode(blob)
                    rows.events = [_parsed_body(row) for row in rows.events]
                except (msgspec.DecodeError, TypeError, ValueError):
                    with self._transaction():
                        connection.execute(
                            "INSERT INTO quarantine SELECT * FROM batches WHERE id = ?", (batch_id,)
                        )
                        connection.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                    unreadable += count
                    continue
                write(rows)
                connection.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                forwarded += rows.count
                if time.monotonic() >= until:
                    return Forwarded(forwarded, unreadable, empty=False)

    def pending(self) -> int:
        """Events waiting in the spool, from every process that shares it."""
        if not self.path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as connection:
            try:
                row = connection.execute("SELECT coalesce(sum(events), 0) FROM batches").fetchone()
            except sqlite3.OperationalError:  # created but not yet initialised by its writer
                return 0
        return int(row[0])

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def forget(self) -> None:
        """In a forked child: drop the parent's connection without touching it."""
        self._connection = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection or self._open()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextlib.contextmanager
    def _forwarding(self) -> Iterator[bool]:
        descriptor = os.open(
            self.path.with_name(self.path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600
        )
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(descriptor)  # closing the descriptor releases the lock

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))  # SQLite's files inherit it
        connection = sqlite3.connect(
            self.path, timeout=30, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {self._synchronous}")
        for table in ("batches", "quarantine"):
            connection.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                "events INTEGER NOT NULL, rows BLOB NOT NULL)"
            )
        self._connection = connection
        return connection


def _json_body(row: dict[str, Any]) -> dict[str, Any]:
    body = row["body"]
    return row if body is None else {**row, "body": _to_json(body)}


def _parsed_body(row: dict[str, Any]) -> dict[str, Any]:
    body = row["body"]
    return row if body is None else {**row, "body": msgspec.json.decode(body)}
