"""The background writer: the caller's thread only enqueues, one thread commits in batches.

Per token the caller pays a deque append. The writer thread wakes every ``flush_interval``, or at
once when a run closes, takes what is queued (up to ``batch_size`` events a transaction), turns it
into rows (`synthora.storage.codec`) and commits. The closing event of a run carries a
`concurrent.futures.Future` that is resolved after the commit holding it, which is the
durability barrier ``run()`` waits on; since the queue is FIFO, everything earlier of that run is
committed by then.

A commit that fails is retried with backoff while the events wait in memory. Connection trouble
is retried until it heals; an error that persists with a healthy database (a row the database
refuses) is isolated row by row after a few attempts, so one bad row can never block the log.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Executable, exc, text
from sqlalchemy.dialects import postgresql, sqlite

from synthora.events import Event
from synthora.storage.codec import CLOSING_COLUMNS, RunRows, batch_rows
from synthora.storage.schema import events, runs

__all__ = ["WRITE_LOCK", "OnFull", "Writer"]

logger = logging.getLogger("synthora.storage")

WRITE_LOCK = 0x53594E55
"""PostgreSQL advisory lock held by each write transaction, so positions commit in order."""

OnFull = Literal["wait", "drop"]
_Closing = tuple[Event, concurrent.futures.Future[None]]
_ISOLATE_AFTER = 3
_MAX_BACKOFF_S = 5.0


class _Flush:
    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()


class Writer:
    """Owns the queue and the writer thread of one `EventLog`."""

    def __init__(
        self,
        engine: Engine,
        *,
        prepare: Callable[[Event], Event],
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        on_full: OnFull,
    ) -> None:
        self._engine = engine
        self._prepare = prepare
        self._batch_size = batch_size
        self._interval = flush_interval
        self._max_queue = max_queue
        self._on_full = on_full
        self.dropped = 0
        self.failed_commits = 0
        self._reset()

    def _reset(self) -> None:
        self._queue: deque[Event | _Closing | _Flush] = deque()
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    # -- the caller's side: enqueue only -------------------------------------------------------

    def put(self, event: Event) -> None:
        if len(self._queue) >= self._max_queue and not self._make_room():
            self.dropped += 1
            return
        self._queue.append(event)
        if self._thread is None:
            self._start()

    def put_closing(self, event: Event) -> concurrent.futures.Future[None]:
        """Enqueue a run's last event; the future completes once it is committed."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._enqueue_and_wake((event, future))
        return future

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything enqueued so far is committed; False if `timeout` passed first."""
        if self._thread is None and not self._queue:
            return True
        marker = _Flush()
        self._enqueue_and_wake(marker)
        try:
            marker.future.result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def stop(self, timeout: float | None) -> int:
        """Flush, then end the thread; returns how many events were left unwritten."""
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        return sum(not isinstance(item, _Flush) for item in self._queue)

    def forget_after_fork(self) -> None:
        """In a forked child: a fresh queue and no thread; the parent's events stay the parent's."""
        self._reset()

    def _enqueue_and_wake(self, item: _Closing | _Flush) -> None:
        """For what someone waits on; tokens (`put`) wait for the writer's next round instead."""
        self._queue.append(item)
        if self._thread is None:
            self._start()
        self._wake.set()

    def _make_room(self) -> bool:
        if self._on_full == "drop":
            return False
        self._wake.set()
        with self._room:
            while len(self._queue) >= self._max_queue and not self._stop.is_set():
                self._room.wait(0.1)
        return True

    def _start(self) -> None:
        with self._room:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="synthora-event-log-writer", daemon=True
                )
                self._thread.start()

    # -- the writer thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        queue = self._queue
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), self._batch_size))]
                with self._room:
                    self._room.notify_all()
                self._commit(batch)
            if self._stop.is_set():
                return

    def _commit(self, batch: list[Event | _Closing | _Flush]) -> None:
        found: list[Event] = []
        barriers: list[concurrent.futures.Future[None]] = []
        for item in batch:
            if isinstance(item, _Flush):
                barriers.append(item.future)
            elif isinstance(item, tuple):
                found.append(self._prepare(item[0]))
                barriers.append(item[1])
            else:
                found.append(self._prepare(item))
        if found:
            self._write_with_retry(batch_rows(found))
        for future in barriers:
            future.set_result(None)

    def _write_with_retry(self, rows: RunRows) -> None:
        delay, attempt = 0.05, 0
        while True:
            try:
                with self._engine.begin() as connection:
                    write(connection, rows)
                return
            except exc.SQLAlchemyError as error:
                attempt += 1
                self.failed_commits += 1
                connectivity = isinstance(error, exc.OperationalError | exc.InterfaceError)
                if not connectivity and attempt >= _ISOLATE_AFTER:
                    self._write_row_by_row(rows)
                    return
                logger.warning(
                    "synthora: event log commit failed (attempt %d, %d events kept, retrying "
                    "in %.2f s): %s",
                    attempt,
                    len(rows.events),
                    delay,
                    error.__class__.__name__,
                    exc_info=attempt == 1,
                )
                time.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_S)

    def _write_row_by_row(self, rows: RunRows) -> None:
        for one in _single_rows(rows):
            try:
                with self._engine.begin() as connection:
                    write(connection, one)
            except exc.SQLAlchemyError:
                logger.exception(
                    "synthora: the database refused an event row of run %s; it is left out",
                    (one.events or one.started or one.ended)[0]["run_id"],
                )


def write(connection: Connection, rows: RunRows) -> None:
    """One batch, one transaction: the events, then the runs projection. Idempotent."""
    dialect = connection.dialect.name
    insert_events, insert_runs, close_runs = _statements(dialect)
    if dialect == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK})
    if rows.events:
        connection.execute(insert_events, rows.events)
    if rows.started:
        connection.execute(insert_runs, rows.started)
    if rows.ended:
        connection.execute(close_runs, rows.ended)


@functools.cache
def _statements(dialect: str) -> tuple[Executable, Executable, Executable]:
    """The three write statements, built once: building an upsert costs more than running it."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert = insert(runs)
    return (
        insert(events).on_conflict_do_nothing(),
        insert(runs).on_conflict_do_nothing(),
        upsert.on_conflict_do_update(
            index_elements=[runs.c.run_id],
            set_={name: upsert.excluded[name] for name in CLOSING_COLUMNS},
        ),
    )


def _single_rows(rows: RunRows) -> Sequence[RunRows]:
    empty: list[dict[str, Any]] = []
    return [
        *(RunRows(events=[row], started=empty, ended=empty) for row in rows.events),
        *(RunRows(events=empty, started=[row], ended=empty) for row in rows.started),
        *(RunRows(events=empty, started=empty, ended=[row]) for row in rows.ended),
    ]
