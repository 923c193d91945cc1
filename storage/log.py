"""`EventLog`: every run on the bus, stored durably in SQL, and read back.

::

    with EventLog() as log:                  # sqlite:///synthora.db, created and migrated
        log.attach()                          # every backend's runs; log.attach(backend): one
        backend.run([user("hi")])             # returns once its events are committed
        (summary,) = log.runs()
        assert list(log.events(summary.run_id))[0].kind == "start"

The subscriber is cheap on purpose: a token costs the caller one deque append; the writer
thread (`synthora.storage.writer`) does the rest. A run's end or error hands ``run()`` a
durability barrier, so a run that returned is on disk. Reads stream rows with a bounded buffer,
whatever the size of the log.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import datetime
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, assert_never

from blinker import ANY
from sqlalchemy import Select, delete, exc, func, make_url, or_, select

from synthora import bus
from synthora.events import (
    EVENT_KINDS,
    EVENT_TYPES,
    EndEvent,
    ErrorEvent,
    Event,
    EventKind,
    StartEvent,
    TokenEvent,
)
from synthora.messages import BaseMessage, assistant
from synthora.models.streams import close_abandoned_streams
from synthora.storage.codec import RunRows, batch_rows, events_from_row, without_content
from synthora.storage.diff import RunDiff, RunTree, compare
from synthora.storage.engines import Durability, make_engines, safe_url
from synthora.storage.errors import RunNotFoundError, StorageError, UnstorableEventsError
from synthora.storage.journal import Journal
from synthora.storage.migrate import upgrade
from synthora.storage.projections import RunSummary, Transcript
from synthora.storage.schema import events, runs
from synthora.storage.spool import Spool, database_identity, default_spool_path
from synthora.storage.statements import WriteStatements
from synthora.storage.writer import LogHealth, OnFull, Writer

__all__ = ["DEFAULT_URL", "RUN_STATUSES", "EventLog", "RunSummary", "Transcript", "parse_time"]

logger = logging.getLogger("synthora.storage")

DEFAULT_URL = "sqlite:///synthora.db"
_EVENT_TYPES = tuple(EVENT_TYPES.values())
_READ_BUFFER = 1000
_WRITE_BATCH = 5000
_EXIT_FLUSH_S = 5.0

RUN_STATUSES = ("ok", "error", "interrupted", "truncated", "running")
"""What a run summary's ``status`` can be, as the ``runs(status=...)`` filter takes it."""


def parse_time(text: str) -> datetime.datetime:
    """An ISO date or time as the ``since`` of `EventLog.runs`; one without a zone is UTC."""
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError as error:
        raise ValueError(f"not an ISO date or time: {text!r}") from error
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


class EventLog:
    """An append-only SQL log of run events: SQLite by default, PostgreSQL at scale.

    `url` is any SQLAlchemy URL. `redact` may rewrite an event before it is written (it runs on
    the writer thread) or return None to leave the event out; if it raises or returns anything
    else, the event is stored without content rather than unredacted, and the failure counted.
    ``store_content=False`` stores no message text at all. When the queue holds `max_queue`
    events, the caller waits for room (``on_full="wait"``, nothing lost) or the event is dropped
    and counted (``on_full="drop"``).

    While the database cannot be reached, runs are committed to the `spool`, a local file
    (default: `default_spool_path`; False: none, and runs wait in memory), and forwarded in order
    once it answers, by this log or the next one opened for the same database.

    On a SQLite file, a busy log (2,000 events stored) starts a committer process
    (`synthora.storage.committer`, ~48 MB) that commits on another core, so that the
    application's threads do not share the interpreter with that work; ``committer=False``
    never starts one, ``committer=True`` starts it with the first commit.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        durability: Durability = "normal",
        redact: Callable[[Event], Event] | None = None,
        store_content: bool = True,
        batch_size: int = 5000,
        flush_interval: float = 0.05,
        max_queue: int = 100_000,
        on_full: OnFull = "wait",
        spool: str | os.PathLike[str] | Literal[False] | None = None,
        committer: bool | None = None,
    ) -> None:
        self.url = url or os.environ.get("SYNTHORA_DB") or DEFAULT_URL
        self._redact = redact
        self._store_content = store_content
        self._writer_engine, self._reader_engine = make_engines(self.url, durability)
        try:
            upgrade(self._writer_engine)
        except BaseException as error:
            self._writer_engine.dispose()
            self._reader_engine.dispose()
            if isinstance(error, exc.SQLAlchemyError):
                raise StorageError(
                    f"cannot open the event log at {safe_url(self.url)}: {_reason(error)}"
                ) from error
            raise
        self._statements = WriteStatements(self._writer_engine)
        if spool is None:
            spool = default_spool_path(self.url)
        self._writer = Writer(
            self._writer_engine,
            self._statements,
            prepare=self._prepare,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_queue=max_queue,
            on_full=on_full,
            spool=None if spool is False else Spool(spool, durability),
            journal=_journal_for(self.url, durability, spool),
            committer=committer,
        )
        self._receivers: list[tuple[Any, Callable[..., Any]]] = []
        self._attached: list[Any] = []  # the senders whose runs are stored (ANY: every run)
        self._closed = False
        self._database = database_identity(self.url)
        _open_logs.add(self)

    def __repr__(self) -> str:
        return f"<EventLog {safe_url(self.url)}>"

    # -- subscribing ---------------------------------------------------------------------------

    def attach(self, backend: Any = None) -> Self:
        """Store the runs of `backend`, or of every backend and scope when none is given.

        Attaching again what is already stored changes nothing: each event is stored once.
        """
        sender = ANY if backend is None else backend
        if any(attached is ANY or attached is sender for attached in self._attached):
            return self
        if sender is ANY:
            self.detach()  # the backends attached one by one are now covered by every run
        writer = self._writer

        def store(sender: Any, /, *, event: Event, replayed: bool = False, **_: Any) -> None:
            if not replayed:
                writer.put(event)

        def store_closing(
            sender: Any, /, *, event: Event, replayed: bool = False, **_: Any
        ) -> concurrent.futures.Future[None] | None:
            return None if replayed else writer.put_closing(event)

        def receiver_for(kind: EventKind) -> Callable[..., Any]:
            match kind:
                case "start" | "token":
                    return store
                case "end" | "error":
                    return store_closing
                case _:
                    assert_never(kind)

        for kind in EVENT_KINDS:
            signal, receiver = bus.signals[kind], receiver_for(kind)
            signal.connect(receiver, sender=sender, weak=False)
            self._receivers.append((signal, receiver))
        self._attached.append(sender)
        return self

    def detach(self) -> None:
        """Stop storing new runs; what was already enqueued is still written."""
        for signal, receiver in self._receivers:
            # From every sender: blinker keeps a receiver disconnected from one sender only, and
            # these were made for this attachment alone.
            signal.disconnect(receiver)
        self._receivers.clear()
        self._attached.clear()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event enqueued so far is committed; False on timeout."""
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = _EXIT_FLUSH_S) -> None:
        """Detach, write what is queued (waiting at most `timeout`), release the database."""
        if self._closed:
            return
        self._closed = True
        self.detach()
        left = self._writer.stop(timeout)
        if left:
            logger.error(
                "synthora: %d events could not be written to %s before close",
                left,
                safe_url(self.url),
            )
        health = self._writer.health()
        if health.spooled:
            logger.warning(
                "synthora: %d events wait in the spool %s; the next EventLog for %s forwards them",
                health.spooled,
                health.spool,
                safe_url(self.url),
            )
        self._writer_engine.dispose()
        self._reader_engine.dispose()
        _open_logs.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def dropped(self) -> int:
        """Events dropped because the queue was full (only with ``on_full="drop"``)."""
        return self._writer.dropped

    def health(self) -> LogHealth:
        """How the writer is doing: alive, queued, spooled, stored, set aside, failed commits
        (once what runs journaled is committed, as before a read)."""
        _commit_journaled(self._database)
        return self._writer.health()

    def _prepare(self, event: Event) -> Event | None:
        """The event as it is to be stored, or None to leave it out; raises if the hook fails."""
        if self._redact is not None:
            redacted: object = self._redact(event)
            if redacted is None:
                return None
            if not isinstance(redacted, _EVENT_TYPES):
                raise TypeError(
                    f"redact= must return an event or None, not {type(redacted).__name__}"
                )
            event = redacted
        return event if self._store_content else without_content(event)

    # -- reading -------------------------------------------------------------------------------

    def runs(
        self,
        model: str | None = None,
        node: str | None = None,
        status: str | None = None,
        since: datetime.datetime | None = None,
        errors_only: bool = False,
        *,
        until: datetime.datetime | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> Iterator[RunSummary]:
        """Run summaries, newest first. `node` matches a node name, a path or a path prefix.

        `before` is a run id: only the runs listed after it come, so pages follow one another
        through the ``started_at`` index however deep they go, with no offset to count past.
        """
        query = select(runs).order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        if model is not None:
            query = query.where(runs.c.model == model)
        if node is not None:
            query = query.where(
                or_(
                    runs.c.node_name == node,
                    runs.c.node_path == node,
                    runs.c.node_path.startswith(node + "/", autoescape=True),
                )
            )
        if status is not None:
            query = query.where(runs.c.status == status)
        if errors_only:
            query = query.where(runs.c.status == "error")
        if since is not None:
            query = query.where(runs.c.started_at >= since)
        if until is not None:
            query = query.where(runs.c.started_at < until)
        if before is not None:
            anchor = select(runs.c.started_at).where(runs.c.run_id == before).scalar_subquery()
            query = query.where(
                runs.c.started_at <= anchor,
                or_(runs.c.started_at < anchor, runs.c.run_id < before),
            )
        if limit is not None:
            query = query.limit(limit)
        for row in self._stream(query):
            yield RunSummary(**row)

    def run(self, run_id: str) -> RunSummary:
        """One run's summary, by its id or a unique prefix of it."""
        full = self.resolve(run_id)
        (summary,) = (
            RunSummary(**row) for row in self._stream(select(runs).where(runs.c.run_id == full))
        )
        return summary

    def resolve(self, prefix: str) -> str:
        """The full run id that `prefix` starts, if exactly one does."""
        query = select(runs.c.run_id).where(runs.c.run_id.startswith(prefix, autoescape=True))
        found: list[str] = [row["run_id"] for row in self._stream(query.limit(2))]
        if not found:
            raise RunNotFoundError(f"no stored run id starts with {prefix!r}")
        if len(found) > 1:
            raise RunNotFoundError(f"run id prefix {prefix!r} is ambiguous; give more of it")
        return found[0]

    def head(self) -> int:
        """The position of the newest stored event (0 for an empty log): ``follow(after=
        log.head())`` tails only what is committed from now on."""
        query = select(func.coalesce(func.max(events.c.position), 0).label("head"))
        (row,) = self._stream(query)
        return int(row["head"])

    def events(self, run_id: str) -> Iterator[Event]:
        """A run's events in seq order, exactly as the subscribers saw them."""
        query = select(events).where(events.c.run_id == run_id).order_by(events.c.seq)
        found = False
        for row in self._stream(query):
            found = True
            yield from events_from_row(row)
        if not found:
            raise RunNotFoundError(f"no events stored for run {run_id!r}")

    def _events_by_run(self, run_ids: Sequence[str]) -> dict[str, list[Event]]:
        """The events stored for each of `run_ids` that has any, in seq order, read in a few
        queries however many runs are asked for (an import compares every run it brings)."""
        found: dict[str, list[Event]] = {}
        for start in range(0, len(run_ids), _READ_BUFFER):
            query = (
                select(events)
                .where(events.c.run_id.in_(run_ids[start : start + _READ_BUFFER]))
                .order_by(events.c.run_id, events.c.seq)
            )
            for row in self._stream(query):
                found.setdefault(row["run_id"], []).extend(events_from_row(row))
        return found

    def follow(
        self,
        after: int = 0,
        *,
        poll_interval: float = 0.2,
        idle_timeout: float | None = None,
    ) -> Iterator[tuple[int, Event]]:
        """``(position, event)`` for every event committed after `after`, as they are committed.

        Token events packed in one row share its position. It ends after `idle_timeout` seconds
        without new events; with None it follows until the consumer stops.
        """
        idle_since = time.monotonic()
        while True:
            query = (
                select(events)
                .where(events.c.position > after)
                .order_by(events.c.position)
                .limit(_READ_BUFFER)
            )
            rows = list(self._stream(query))
            for row in rows:
                after = row["position"]
                for event in events_from_row(row):
                    yield after, event
            if rows:
                idle_since = time.monotonic()
                continue
            if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return
            time.sleep(poll_interval)

    def transcript(self, run_id: str) -> Transcript:
        """A run as a transcript: input, output, usage and error, whether it ended or not."""
        full = self.resolve(run_id)
        start: StartEvent | None = None
        closing: EndEvent | ErrorEvent | None = None
        tokens = 0
        text: list[str] = []
        for event in self.events(full):
            match event:
                case StartEvent():
                    start = event
                case TokenEvent():
                    tokens += 1
                    text.append(event.text)
                case EndEvent() | ErrorEvent():
                    closing = event
                case _:
                    assert_never(event)
        output: BaseMessage | None
        if isinstance(closing, EndEvent):
            output = closing.output
        elif isinstance(closing, ErrorEvent):
            output = closing.partial_output
        else:
            output = assistant("".join(text)) if text else None
        return Transcript(
            run=self.run(full),
            params=start.params if start else {},
            messages=start.messages if start else None,
            prompt=start.prompt if start else None,
            output=output,
            usage=closing.usage if isinstance(closing, EndEvent) else None,
            tokens=tokens,
            error=closing if isinstance(closing, ErrorEvent) else None,
            failed_attempts=closing.failed_attempts if closing else (),
            trace_sampled=start.trace_sampled if start else None,
        )

    def replay(self, run_id: str, speed: float | None = None, *, sender: Any = None) -> list[Event]:
        """Re-emit a stored run's events on the bus, marked ``replayed=True``.

        `speed` None re-emits at once; 1.0 at the recorded pace, 2.0 twice as fast. The sender
        is the run's node (global subscribers hear it), or `sender`, e.g. a backend whose
        handlers should hear it. The log itself does not store replayed events again.
        """
        stored = list(self.events(self.resolve(run_id)))
        previous: Event | None = None
        for event in stored:
            if speed and previous is not None:
                time.sleep(max(0.0, (event.ts - previous.ts) / 1e9 / speed))
            to = event.node if sender is None else sender
            bus.dispatch(bus.signals[event.kind], to, event=event, replayed=True)
            previous = event
        return stored

    def write(self, events: Iterable[Event]) -> None:
        """Store `events` now, in the caller's thread (an import): idempotent, a transaction for
        every few thousand. Raises `UnstorableEventsError`, having written none of them, if any
        cannot be stored as given."""
        batches: list[RunRows] = []
        batch: list[Event] = []
        for event in events:
            prepared = self._prepare(event)
            if prepared is not None:
                batch.append(prepared)
            if len(batch) >= _WRITE_BATCH:
                batches.append(batch_rows(batch))
                batch = []
        if batch:
            batches.append(batch_rows(batch))
        unstorable = [found for rows in batches for found in rows.unstorable]
        if unstorable:
            raise UnstorableEventsError(unstorable)
        for rows in batches:
            self._write_now(rows)

    def _write_now(self, rows: RunRows) -> None:
        dbapi = self._writer_engine.dialect.loaded_dbapi
        try:
            connection = self._writer_engine.raw_connection()
            try:
                self._statements.write(connection, rows)
            finally:
                connection.close()
        except (exc.SQLAlchemyError, dbapi.Error) as error:
            raise StorageError(f"cannot write to {safe_url(self.url)}: {_reason(error)}") from error

    def prune(self, before: datetime.datetime) -> int:
        """Delete every run started before `before`, events and summary; returns how many."""
        stale = select(runs.c.run_id).where(runs.c.started_at < before)
        try:
            with self._writer_engine.begin() as connection:
                connection.execute(delete(events).where(events.c.run_id.in_(stale)))
                removed = connection.execute(delete(runs).where(runs.c.started_at < before))
        except exc.SQLAlchemyError as error:
            raise StorageError(f"cannot prune {safe_url(self.url)}: {_reason(error)}") from error
        return int(removed.rowcount or 0)

    def scope_transcripts(self, run_id: str) -> list[Transcript]:
        """Every run under an agent or tool scope (its steps, and theirs), in the order they
        started: a whole agent conversation, rebuilt."""
        return [self.transcript(summary.run_id) for summary in self.descendants(run_id)]

    def descendants(self, run_id: str) -> list[RunSummary]:
        """The summaries of every run under a scope, at any depth, in the order they started."""
        pending = [self.resolve(run_id)]
        inside: list[RunSummary] = []
        while pending:
            children = self._children(pending)
            inside.extend(children)
            pending = [child.run_id for child in children]
        return sorted(inside, key=_in_start_order)

    def conversation(self, run_id: str) -> list[RunSummary]:
        """A run (by its id or a unique prefix) and, for an agent or tool scope, every run under
        it (its steps, and theirs), in the order they started: a whole agent conversation."""
        root = self.run(run_id)
        return [root, *self.descendants(root.run_id)]

    def diff(self, a: str, b: str) -> RunDiff:
        """How run `b` differs from run `a` (ids or unique prefixes): request, messages, output,
        finish, usage and timing, side by side; two scopes' runs are paired in the order they
        started. See `synthora.storage.diff`."""
        return compare(self._tree(a), self._tree(b))

    def _tree(self, run_id: str) -> RunTree:
        transcript = self.transcript(run_id)
        children = sorted(self._children([transcript.run.run_id]), key=_in_start_order)
        return RunTree(transcript, tuple(self._tree(child.run_id) for child in children))

    def _children(self, parents: list[str]) -> list[RunSummary]:
        """The runs directly inside the scopes `parents`."""
        query = select(runs).where(runs.c.parent_run_id.in_(parents))
        return [RunSummary(**row) for row in self._stream(query)]

    def _stream(self, query: Select[Any]) -> Iterator[dict[str, Any]]:
        _commit_journaled(self._database)
        try:
            with self._reader_engine.connect() as connection:
                result = connection.execution_options(yield_per=_READ_BUFFER).execute(query)
                try:
                    for row in result.mappings():
                        yield dict(row)
                finally:
                    result.close()  # before the connection: an abandoned read frees its cursor
        except exc.SQLAlchemyError as error:
            raise StorageError(
                f"cannot read the event log at {safe_url(self.url)}: {_reason(error)}"
            ) from error

    def _forget_after_fork(self) -> None:
        self._writer.forget_after_fork()
        self._writer_engine.dispose(close=False)
        self._reader_engine.dispose(close=False)


def _in_start_order(summary: RunSummary) -> tuple[datetime.datetime, str]:
    return summary.started_at, summary.run_id


def _reason(error: Exception) -> str:
    original = getattr(error, "orig", None)
    return str(original or error).strip().splitlines()[0]


_open_logs: weakref.WeakSet[EventLog] = weakref.WeakSet()
_READ_WAIT_S = 5.0
"""How long a read waits for journaled runs to be committed (the database may be locked)."""


def _journal_for(
    url: str, durability: Durability, spool: str | os.PathLike[str] | Literal[False]
) -> Journal | None:
    """A journal beside the spool, for a SQLite file at the default durability: there a
    journaled run is exactly as durable as a committed one (`synthora.storage.journal`)."""
    parsed = make_url(url)
    if spool is False or durability != "normal" or parsed.get_backend_name() != "sqlite":
        return None
    if parsed.database in (None, "", ":memory:"):
        return None
    return Journal(Path(spool))


def _commit_journaled(database: str) -> None:
    """Before a read: commit the runs that any log of this process has journaled for the same
    database, so a run is readable once its ``run()`` has returned."""
    for log in list(_open_logs):
        if log._database == database and log._writer.journaled():
            log._writer.flush(_READ_WAIT_S)


@atexit.register
def _close_open_logs() -> None:
    """At exit: first report streams nobody closed (so their end is stored), then flush."""
    close_abandoned_streams()
    for log in list(_open_logs):
        log.close()


def _after_fork_in_child() -> None:
    for log in list(_open_logs):
        log._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
