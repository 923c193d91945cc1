"""The background writer: the caller's thread only enqueues, one thread commits in groups.

Per token the caller pays a deque append. The writer thread wakes at once when a run closes (or
every ``flush_interval`` for tokens), takes everything queued, up to ``batch_size`` events, as
one group, turns it into rows (`synthora.storage.codec`) and commits them in one transaction
(`synthora.storage.statements`): runs closing together share a commit. The closing event of a
run carries a `concurrent.futures.Future`, resolved once the group holding it is durable: the
barrier ``run()`` waits on. The queue is FIFO, so everything earlier of that run is durable too.

On SQLite, a closing caller journals its group (`synthora.storage.journal`: one local ``write``,
durable as a commit is) and returns, with no barrier to wait on; the writer thread commits every
journaled group of a round in one transaction, before anything queued after them. Once the
log is busy, a committer process (`synthora.storage.committer`) commits the journal instead: the
writer thread journals what is still queued too and hands the journal's segments over, so the
work of a commit leaves the interpreter the callers share. Without a journal (``spool=False``,
``durability="full"``), a closing caller that finds the log idle
commits its group itself, once, on its own connection (the *leader* of a group commit): it has
to wait for that commit anyway, and doing it on its own thread saves two thread hand-offs
(~60 µs each on a 2-core machine).
Anything unusual (an event the journal cannot encode, the file locked by another process, any
error, an interrupt) puts the group back at the head of the queue for the writer thread, which
owns every policy below; a caller never waits on a server's network this way, nor on an event
loop. PostgreSQL is always committed by the writer thread.

What can go wrong is contained to the smallest unit, and the writer thread never dies of it:

* a redact hook that raises (or returns something other than an event) costs that event its
  content, never its place in the log; returning None drops the event on purpose;
* an event that cannot be encoded is stored as close as it can be, else set aside and counted;
* a group the database refuses is retried one event at a time (each event with its projection
  row, so the two never disagree), and only the rows it still refuses are set aside;
* a database that cannot be reached turns the writer to the spool (`synthora.storage.spool`):
  groups are committed to a local file, the barriers resolve in a local commit's time, and the
  spool is forwarded in order once the database answers. With no spool, groups wait in memory
  and are retried with backoff, the queue's bound holding the callers back.

`Writer.health` reports all of it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import msgspec
from sqlalchemy import Engine, exc
from sqlalchemy.pool import PoolProxiedConnection

from synthora.events import Event
from synthora.storage.codec import RunRows, Unstorable, batch_rows, group_rows, without_content
from synthora.storage.committer import Committed, Committer
from synthora.storage.engines import safe_url
from synthora.storage.errors import error_line
from synthora.storage.journal import Journal, Segment, orphaned_groups
from synthora.storage.spool import Spool
from synthora.storage.statements import WriteStatements

__all__ = ["LogHealth", "OnFull", "Writer"]

logger = logging.getLogger("synthora.storage")

OnFull = Literal["wait", "drop"]
_Closing = tuple[Event, concurrent.futures.Future[None]]
_Item = Event | _Closing
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 1.0
_DRAIN_SLICE_S = 0.1
_LEADER_BUSY_MS = 20
_LEADER_MAX_EVENTS = 512  # a larger group is the writer thread's: a caller commits small ones
_DISTINCT_WARNINGS = 1000
_UNSPOOLABLE = (OverflowError, TypeError, ValueError, msgspec.EncodeError)
_BUSY_EVENTS = 2000
"""A log that has stored this many events hands its commits to a committer process (if it has
a journal and ``committer`` is left to decide): short-lived scripts and test sessions never
start one, a service does within its first thousand runs."""


class LogHealth(msgspec.Struct, frozen=True, kw_only=True):
    """How an `EventLog`'s writer is doing, since the log was opened.

    ``queued`` counts the events in memory (waiting, or being retried), ``journaled`` the
    events journaled by their runs and not yet committed (durable already; `EventLog.health`
    commits them first), ``spooled`` the events waiting in the spool file (every process's),
    ``stored`` the events this log committed to
    the database, ``set_aside`` the events it could not store in any form, ``dropped`` those a
    full queue dropped (``on_full="drop"``), ``filtered`` those a redact hook dropped by
    returning None, ``hook_failures`` the redact hook's failures. ``committer`` is the process
    id of the committer process committing for this log (`synthora.storage.committer`), if one
    does.
    """

    writer_alive: bool
    queued: int
    journaled: int = 0
    spooled: int
    stored: int
    set_aside: int
    failed_commits: int
    dropped: int
    filtered: int
    hook_failures: int
    last_error: str | None
    spool: str | None
    committer: int | None = None


class _Flush:
    __slots__ = ("future",)

    def __init__(self) -> None:
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()


@dataclass
class _Group:
    """A batch taken off the queue, its events prepared for storing."""

    events: list[Event] = field(default_factory=list)
    barriers: list[concurrent.futures.Future[None]] = field(default_factory=list)
    flushes: list[concurrent.futures.Future[None]] = field(default_factory=list)
    filtered: int = 0
    hook_errors: list[BaseException] = field(default_factory=list)


class _Unreachable(Exception):
    """The database could not be reached: a spooled batch stays where it is."""


class Writer:
    """Owns the queue, the writer thread and the spool of one `EventLog`."""

    def __init__(
        self,
        engine: Engine,
        statements: WriteStatements,
        *,
        prepare: Callable[[Event], Event | None],
        batch_size: int,
        flush_interval: float,
        max_queue: int,
        on_full: OnFull,
        spool: Spool | None,
        journal: Journal | None = None,
        committer: bool | None = None,
    ) -> None:
        self._engine = engine
        self._statements = statements
        self._prepare = prepare
        self._batch_size = batch_size
        self._interval = flush_interval
        self._max_queue = max_queue
        self._on_full = on_full
        self._spool = spool
        self._leads = statements.dialect == "sqlite"
        self._journal = journal
        self._wants_committer = committer is not False and journal is not None
        self._busy_events = 0 if committer else _BUSY_EVENTS
        dbapi = engine.dialect.loaded_dbapi
        self._unreachable_errors: tuple[type[BaseException], ...] = (
            exc.OperationalError,
            exc.InterfaceError,
            exc.DisconnectionError,
            exc.TimeoutError,
            dbapi.OperationalError,
            dbapi.InterfaceError,
        )
        self.dropped = 0
        self.stored = 0
        self.set_aside = 0
        self.failed_commits = 0
        self.filtered = 0
        self.hook_failures = 0
        self.last_error: str | None = None
        self._warned: set[tuple[str, str]] = set()
        self._reset()
        if journal is not None:
            self._commit_orphans(journal)
        if spool is not None and spool.pending():
            self._spooling = True  # left by an earlier process: forward it now
            self._start()

    def _reset(self) -> None:
        self._queue: deque[_Item | _Flush] = deque()
        self._journaled: list[_Group] = []  # journaled by their callers, to commit
        self._committing_journaled = False  # the writer thread took them and commits them now
        self._journaled_events = 0
        self._segments: list[Segment] = []  # cut from the journal, holding groups above
        self._taking = threading.Lock()  # whoever takes from the queue, in FIFO order
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._stop = threading.Event()
        self._committing = threading.Lock()
        self._thread: threading.Thread | None = None
        self._connection: PoolProxiedConnection | None = None
        self._leader_connection: PoolProxiedConnection | None = None
        self._flushes: list[concurrent.futures.Future[None]] = []
        self._retrying = 0
        self._abandoned = 0
        self._spooling = False
        self._retry_at = 0.0
        self._backoff = _FIRST_BACKOFF_S
        self._committer: Committer | None = None

    # -- the caller's side: enqueue, or lead an idle log's commit ------------------------------

    def put(self, event: Event) -> None:
        if len(self._queue) >= self._max_queue and not self._make_room():
            self.dropped += 1
            return
        self._queue.append(event)
        if self._thread is None:
            self._start()

    def put_closing(self, event: Event) -> concurrent.futures.Future[None] | None:
        """Enqueue a run's last event: a future that completes once it is durable, or None
        if it already is (journaled on this thread)."""
        if self._thread is None:
            self._start()
        if self._journal is not None and self._journal_with(event):
            return None
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.append((event, future))
        if self._journal is not None or not self._lead():
            self._wake.set()
        return future

    def journaled(self) -> bool:
        """Whether groups wait in the journal for their commit, or are being committed (a read
        commits them first)."""
        return self._committing_journaled or bool(self._journaled)

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything enqueued so far is in the database (not merely spooled);
        False if `timeout` passed first."""
        if self._thread is None and not self._queue and not self._spooling:
            return True
        marker = _Flush()
        self._queue.append(marker)
        if self._thread is None:
            self._start()
        self._wake.set()
        try:
            marker.future.result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def stop(self, timeout: float | None) -> int:
        """Flush, then end the thread, within `timeout` in all; returns how many events stay
        unwritten in memory (what waits in the spool is kept: the next log forwards it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._wants_committer = self._committer is not None  # a closing log starts none
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._in_memory() + self._abandoned

    def forget_after_fork(self) -> None:
        """In a forked child: a fresh queue and no thread; the parent's events stay the parent's."""
        for segment in self._segments:
            segment.forget()
        if self._committer is not None:
            self._committer.forget()
        self._reset()
        if self._spool is not None:
            self._spool.forget()
        if self._journal is not None:
            self._journal.forget()

    def health(self) -> LogHealth:
        thread, committer = self._thread, self._committer  # the writer thread may change them
        pid = -1 if committer is None else committer.pid  # -1 once it has ended
        return LogHealth(
            writer_alive=not self._stop.is_set() and (thread is None or thread.is_alive()),
            queued=self._in_memory(),
            journaled=self._journaled_events,
            spooled=self._spool.pending() if self._spool is not None else 0,
            stored=self.stored,
            set_aside=self.set_aside,
            failed_commits=self.failed_commits,
            dropped=self.dropped,
            filtered=self.filtered,
            hook_failures=self.hook_failures,
            last_error=self.last_error,
            spool=str(self._spool.path) if self._spool is not None else None,
            committer=pid if pid > 0 else None,
        )

    def _in_memory(self) -> int:
        waiting = sum(not isinstance(item, _Flush) for item in list(self._queue))
        return waiting + self._retrying

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

    def _journal_with(self, closing: Event) -> bool:
        """Journal the queued group and `closing`, its last event, on this thread
        (`synthora.storage.journal`): True if it did, the barriers of other runs' closing events
        in the group resolved. Anything unusual (an event the journal cannot encode, a file it
        cannot write) puts the group back and leaves it to the writer."""
        if self._spooling or self._stop.is_set() or len(self._queue) >= _LEADER_MAX_EVENTS:
            return False
        if self._journaled_events > self._max_queue:
            return False  # the writer is behind: wait for it, as a full queue would
        with self._taking:
            batch = self._take(len(self._queue))
            try:
                group = self._journal_group([*batch, closing])
            except BaseException as error:
                self._queue.extendleft(reversed(batch))
                if isinstance(error, Exception):
                    return False
                self._queue.append((closing, concurrent.futures.Future()))  # stored all the same
                self._wake.set()
                raise
        _resolve(group.barriers)
        group.barriers = []
        return True

    def _journal_group(self, items: list[_Item | _Flush]) -> _Group:
        """Prepare `items` and journal them as one group, for the next round to commit (the
        caller holds ``_taking``, so groups are journaled in queue order). Raises what
        preparing or writing them raises, having journaled nothing."""
        journal = self._journal
        assert journal is not None
        group = self._group(items)
        if group.events:
            try:
                journal.append(group.events)
            except OSError as error:
                self._warn_once("the journal cannot be written; runs wait for commits", error)
                raise
        self._journaled.append(group)
        self._journaled_events += len(group.events)
        return group

    def _lead(self) -> bool:
        """Commit the queued group on this thread if the log is idle; True if it did or the
        group went back to the writer thread. Any trouble is the writer thread's to handle."""
        if (
            not self._leads
            or len(self._queue) > _LEADER_MAX_EVENTS
            or self._spooling
            or self._stop.is_set()
            or _on_event_loop()
        ):
            return False
        if not self._committing.acquire(blocking=False):
            return False
        try:
            batch = self._take(len(self._queue))
            if not batch:  # the writer thread took it meanwhile
                return False
            try:
                group = self._group(batch)
                rows = batch_rows(group.events)
                connection = self._leader_connection or self._connect_leader()
                self._statements.write(connection, rows)
            except BaseException as error:
                self._queue.extendleft(reversed(batch))
                self._wake.set()
                if isinstance(error, Exception):
                    self._drop_leader_connection()
                    return True
                raise
            self.stored += rows.count
            self._settle(group, rows.unstorable)
        finally:
            self._committing.release()
        if self._queue:
            self._wake.set()
        return True

    def _connect_leader(self) -> PoolProxiedConnection:
        """The leader's own connection: it gives up on a locked file at once, where the writer
        thread's waits (SQLite's busy timeout) for its turn."""
        connection = self._engine.raw_connection()
        cursor = connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {_LEADER_BUSY_MS}")
        cursor.close()
        self._leader_connection = connection
        return connection

    def _drop_leader_connection(self) -> None:
        connection, self._leader_connection = self._leader_connection, None
        if connection is not None:
            connection.invalidate()

    # -- the writer thread ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._round()
            except BaseException as error:  # a fault of ours, or a hook's, must not end the log
                self._warn_once("the event-log writer failed and goes on", error)
            if self._stop.is_set() and not self._queue and not self._journaled:
                with self._committing:
                    self._release()
                return

    def _round(self) -> None:
        """Commit what was queued when the round began; what arrives meanwhile waits for the
        next wake, so a stream's tokens gather into a few packed rows, not one row a commit.
        With a committer process, what is queued is journaled first, and it commits it all."""
        with self._committing:
            with self._taking:
                left = self._take(len(self._queue))
                committer = self._committer_for_round()  # as what it commits is taken
                if committer is not None and left and self._journal_taken(left):
                    left = []
                self._committing_journaled = bool(self._journaled)  # before they leave the list
                journaled, self._journaled = self._journaled, []
                self._journaled_events = 0
                segments, self._segments = self._segments, []
                if self._journal is not None and (cut := self._journal.cut()) is not None:
                    segments.append(cut)
            if journaled:
                try:
                    self._commit_journaled(journaled, segments, committer)
                except BaseException:
                    self._queue.extendleft(reversed(left))  # after the journaled, as before
                    raise
                finally:
                    self._committing_journaled = False
            for start in range(0, len(left), self._batch_size):
                self._commit(left[start : start + self._batch_size])
            if self._spooling and time.monotonic() >= self._retry_at:
                self._drain()
            self._release_flushes()

    def _take(self, count: int) -> list[_Item | _Flush]:
        queue = self._queue
        batch = [queue.popleft() for _ in range(min(count, len(queue)))]
        with self._room:
            self._room.notify_all()
        return batch

    def _commit(self, batch: list[_Item | _Flush]) -> None:
        """Make one group durable, then resolve its barriers."""
        group = self._group(batch)
        rows = batch_rows(group.events)
        self._store(rows)
        self._settle(group, rows.unstorable)

    def _committer_for_round(self) -> Committer | None:
        """The committer process, started once the log is busy; None while this thread commits
        (also while the database cannot be reached: spooling is this thread's)."""
        if self._spooling:
            return None
        busy = self.stored >= self._busy_events and bool(self._journaled)  # runs closing here
        if self._committer is None and self._wants_committer and busy:
            try:
                self._committer = Committer(self._engine.url.render_as_string(hide_password=False))
            except OSError as error:
                self._wants_committer = False
                self._warn_once("cannot start a committer process; this one commits", error)
        return self._committer

    def _journal_taken(self, batch: list[_Item | _Flush]) -> bool:
        """Journal what this thread took from the queue, as a closing caller journals its group,
        for the committer to commit with the rest; False if it cannot be journaled (it is then
        committed here, as without a committer)."""
        try:
            group = self._journal_group(batch)
        except Exception:
            return False
        except BaseException:
            self._queue.extendleft(reversed(batch))
            raise
        _resolve(group.barriers)
        group.barriers = []
        return True

    def _commit_journaled(
        self, groups: list[_Group], segments: list[Segment], committer: Committer | None
    ) -> None:
        """Commit groups their callers journaled, as one transaction, by the committer process
        if there is one and it can, else here; then drop the segments holding them. Each group
        is made into rows on its own (`group_rows`), so that whoever commits a group stores the
        same rows. Should the commit itself fail, the groups wait for the next round."""
        committed = None if committer is None else self._commit_by(committer, segments)
        if committed is not None:
            stored, unstorable = True, committed.unstorable
            self.stored += committed.stored
        else:
            try:
                rows = group_rows([group.events for group in groups])
                stored, unstorable = self._store(rows), rows.unstorable
            except BaseException:
                with self._taking:
                    self._journaled[:0] = groups
                    self._segments[:0] = segments
                    self._journaled_events += sum(len(group.events) for group in groups)
                raise
        for segment in segments:
            if stored:
                segment.discard()
            else:
                segment.close()  # kept for the next log of this database to commit
        merged = _Group(
            flushes=[future for group in groups for future in group.flushes],
            filtered=sum(group.filtered for group in groups),
            hook_errors=[error for group in groups for error in group.hook_errors],
        )
        self._settle(merged, unstorable)

    def _commit_by(self, committer: Committer, segments: list[Segment]) -> Committed | None:
        """The committer's commit of `segments`; None if this thread is to commit them: the
        committer refused (a database error: this thread has the policies for it) or is gone."""
        if not segments:
            return Committed(0, [])
        reply = committer.commit([segment.path for segment in segments])
        if reply is None:
            self._committer = None
            self._wants_committer = False
            self._warn_once("the committer process ended; this process commits", "no reply")
            return None
        if not isinstance(reply, Committed):
            self.failed_commits += 1
            self.last_error = reply.reason
            self._warn_once("the committer process could not commit; this one tries", reply.reason)
            return None
        return reply

    def _commit_orphans(self, journal: Journal) -> None:
        """Commit what processes that died left journaled, before this log's first event."""
        for path, groups in orphaned_groups(journal.prefix):
            rows = group_rows(groups)
            if self._store(rows):
                path.unlink(missing_ok=True)
                logger.warning(
                    "synthora: committed %d events a process left journaled in %s",
                    rows.count,
                    path,
                )

    def _group(self, batch: list[_Item | _Flush]) -> _Group:
        """The batch's events as they are to be stored; counts nothing yet (a leader's group
        may go back to the queue and be prepared again)."""
        group = _Group()
        for item in batch:
            if isinstance(item, _Flush):
                group.flushes.append(item.future)
                continue
            if isinstance(item, tuple):
                event, future = item
                group.barriers.append(future)
            else:
                event = item
            try:
                prepared = self._prepare(event)
            except BaseException as error:
                if isinstance(error, KeyboardInterrupt) and _on_main_thread():
                    raise
                group.hook_errors.append(error)
                prepared = without_content(event)
            if prepared is None:
                group.filtered += 1
            else:
                group.events.append(prepared)
        return group

    def _settle(self, group: _Group, unstorable: list[Unstorable]) -> None:
        """Account for a group that is durable, and release whoever waits on it."""
        self.filtered += group.filtered
        self.hook_failures += len(group.hook_errors)
        for error in group.hook_errors:
            self._warn_once("redact hook failed; the event is stored without content", error)
        self._report(unstorable)
        _resolve(group.barriers)
        self._flushes += group.flushes
        self._release_flushes()

    def _release_flushes(self) -> None:
        if self._flushes and not self._spooling:
            _resolve(self._flushes)
            self._flushes = []

    def _report(self, unstorable: list[Unstorable]) -> None:
        for found in unstorable:
            if found.stored_as is None:
                self.set_aside += 1
            outcome = "set aside" if found.stored_as is None else f"stored {found.stored_as}"
            self._warn_once(
                f"an event could not be encoded as given and was {outcome}",
                found.error,
                f" (first seen: event {found.event.seq} of run {found.event.run_id})",
            )

    def _store(self, rows: RunRows) -> bool:
        """Make `rows` durable: in the database, else in the spool. If neither can be written
        they wait here, retried with backoff, until one can or the log is closed (False)."""
        delay = _FIRST_BACKOFF_S
        try:
            while True:
                if self._spooling and time.monotonic() >= self._retry_at:
                    self._drain()
                if not self._spooling and self._write_isolating(rows):
                    return True
                if self._spool_append(rows):
                    return True
                self._retrying = rows.count
                if self._stop.wait(delay):
                    self._abandoned += rows.count
                    return False
                delay = min(delay * 2, _MAX_BACKOFF_S)
        finally:
            self._retrying = 0

    def _write_isolating(self, rows: RunRows) -> bool:
        """Commit `rows`; a group the database refuses is retried one event at a time and only
        what it still refuses is set aside. False if the database cannot be reached."""
        try:
            self._write(rows)
        except Exception as error:
            if self._is_unreachable(error):
                return False
        else:
            return True
        for unit in rows.one_by_one():
            try:
                self._write(unit)
            except Exception as error:
                if self._is_unreachable(error):
                    return False  # the whole group is spooled; rows already in are not doubled
                self.set_aside += unit.count
                row = unit.events[0]
                self._warn_once(
                    "the database refused an event, which is set aside",
                    error,
                    f" (first seen: event {row['seq']} of run {row['run_id']})",
                )
        return True

    def _write(self, rows: RunRows) -> None:
        connection = self._connection
        try:
            if connection is None:
                connection = self._connection = self._engine.raw_connection()
            self._statements.write(connection, rows)
        except Exception as error:
            self.failed_commits += 1
            self.last_error = error_line(error)
            if self._is_unreachable(error):
                self._disconnect()
            raise
        self.stored += rows.count

    def _is_unreachable(self, error: Exception) -> bool:
        return isinstance(error, self._unreachable_errors)

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()
            except Exception:  # already broken: nothing more to release
                logger.debug("synthora: discarding a broken connection failed", exc_info=True)

    def _spool_append(self, rows: RunRows) -> bool:
        """Commit `rows` to the spool; an event the spool cannot encode is set aside alone.
        False if the spool cannot be written at all."""
        spool = self._spool
        if spool is None:
            return False
        try:
            try:
                spool.append(rows)
            except _UNSPOOLABLE:
                for unit in rows.one_by_one():
                    try:
                        spool.append(unit)
                    except _UNSPOOLABLE as error:
                        self.set_aside += unit.count
                        self._warn_once("an event could not be spooled and is set aside", error)
        except (OSError, sqlite3.Error) as error:
            self.last_error = error_line(error)
            self._warn_once(f"cannot spool to {spool.path}", error)
            return False
        if not self._spooling:
            logger.warning(
                "synthora: the event log at %s cannot be reached (%s); spooling to %s until it can",
                safe_url(self._engine.url),
                self.last_error,
                spool.path,
            )
            self._spooling = True
            self._retry_at = time.monotonic() + self._backoff
        return True

    def _drain(self) -> None:
        """Forward spooled groups, oldest first, while the database takes them, for at most a
        slice of time, so that new groups are not held up behind a long spool. Never raises:
        the group being stored must not fail because an old one cannot be forwarded."""
        assert self._spool is not None
        try:
            outcome = self._spool.forward(self._forward_one, time.monotonic() + _DRAIN_SLICE_S)
        except Exception as error:
            if not isinstance(error, _Unreachable):
                self._warn_once(f"cannot forward the spool {self._spool.path}", error)
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, _MAX_BACKOFF_S)
            return
        if outcome.unreadable:
            self.set_aside += outcome.unreadable
            self._warn_once(
                "a spooled batch could not be read; it is kept in the spool's quarantine",
                f"{outcome.unreadable} events",
            )
        if outcome.forwarded:
            logger.info("synthora: forwarded %d spooled events", outcome.forwarded)
        if outcome.empty:
            self._spooling = False
            self._backoff = _FIRST_BACKOFF_S

    def _forward_one(self, rows: RunRows) -> None:
        if not self._write_isolating(rows):
            raise _Unreachable

    def _release(self) -> None:
        if self._journal is not None:  # left only if groups could not be committed: kept
            cut = self._journal.cut()
            for segment in [*self._segments, *([cut] if cut is not None else [])]:
                segment.close()
            self._segments = []
        if self._committer is not None:
            self._committer.close()
            self._committer = None
        for connection in (self._connection, self._leader_connection):
            if connection is not None:
                connection.close()
        self._connection = self._leader_connection = None
        if self._spool is not None:
            self._spool.close()

    def _warn_once(self, what: str, error: BaseException | str, where: str = "") -> None:
        """Log `what` happened the first time it happens for this reason; the counters in
        `health` say how often. A bad event in every run must not flood the log."""
        reason = error if isinstance(error, str) else error_line(error)
        key = (what, reason)
        if key in self._warned:
            return
        if len(self._warned) < _DISTINCT_WARNINGS:
            self._warned.add(key)
        trace = None if isinstance(error, str) else error
        logger.warning("synthora: %s%s: %s", what, where, reason, exc_info=trace)


def _resolve(futures: list[concurrent.futures.Future[None]]) -> None:
    for future in futures:
        future.set_result(None)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
