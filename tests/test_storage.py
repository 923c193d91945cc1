"""The event log stores every run completely and reads it back exactly: SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime
import math
import sqlite3
import threading
from collections import defaultdict
from contextlib import contextmanager

import msgspec
import openai
import pytest
from sqlalchemy import create_engine, func, make_url, select, text
from sqlalchemy.types import TypeDecorator
from test_custom_backend import EchoBackend

from support import AGENT, API_KEY
from synthora import Node, NodeType, OpenAIChatBackend, OpenAICompletionBackend, bus, scope, user
from synthora.events import EndEvent, Event, StartEvent, TokenEvent
from synthora.storage import EventLog, RunNotFoundError, SchemaVersionError, StorageError
from synthora.storage.codec import batch_rows
from synthora.storage.schema import events as events_table
from synthora.storage.schema import runs as runs_table
from synthora.storage.statements import WriteStatements
from synthora.storage.transfer import ImportReport, import_runs
from synthora.testing import capture_events
from synthora.testing.server import Behaviour


def by_run(events: list[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        grouped[event.run_id].append(event)
    return grouped


def assert_stored_exactly(log: EventLog, captured: list[Event]) -> None:
    """Every captured run reads back from the log equal, event for event."""
    runs = by_run(captured)
    assert runs
    for run_id, run_events in runs.items():
        assert list(log.events(run_id)) == run_events


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
@pytest.mark.parametrize(
    "kind", [OpenAIChatBackend, OpenAICompletionBackend], ids=["chat", "completion"]
)
async def test_every_kind_of_run_is_stored_exactly(log, make_backend, kind, stream):
    """Sync and async, streamed or not, chat or completion: the log equals what the bus sent."""
    backend = make_backend(kind, stream=stream)
    with capture_events() as captured:
        sync = backend.run("stored words")
        if stream:
            list(sync)
        reply = await backend.async_run("async words")
        if stream:
            [chunk async for chunk in reply]
    assert_stored_exactly(log, captured)
    summaries = list(log.runs())
    assert [s.status for s in summaries] == ["ok", "ok"]
    assert {s.operation for s in summaries} == {backend.operation}
    assert all(s.output_tokens == 5 for s in summaries)
    await backend.async_client.close()


def test_interrupted_and_failed_runs(log, make_backend):
    """Interrupted and failed runs are stored with their status, partial output and error."""
    slow = make_backend(behaviour=Behaviour(n_tokens=50, delay_s=0.005), stream=True)
    stream = slow.run("stop early")
    next(stream)
    stream.close()
    broken = make_backend(behaviour=Behaviour(n_tokens=10, break_after=3), stream=True)
    with pytest.raises(openai.APIConnectionError):
        list(broken.run("break"))
    statuses = {s.status: s for s in log.runs()}
    assert set(statuses) == {"interrupted", "error"}
    assert statuses["interrupted"].finish_reason == "interrupted"
    failed = statuses["error"]
    assert failed.error_type == "APIConnectionError"
    assert [s.run_id for s in log.runs(errors_only=True)] == [failed.run_id]
    transcript = log.transcript(failed.run_id[:23])
    assert transcript.error is not None
    assert transcript.output is not None
    assert transcript.output.text == " w0 w1 w2"
    assert transcript.tokens == 3
    assert transcript.messages == (user("break"),)


def test_filters_and_scopes(log, make_backend):
    """Runs filter by model, node and time; scope runs are stored with their children."""
    backend = make_backend()
    before = datetime.datetime.now(datetime.UTC)
    with scope(Node(name="planner", type=NodeType.AGENT)) as planner:
        backend.run("inside")
    backend.run("outside")
    summaries = list(log.runs())
    assert len(summaries) == 3
    assert [s.operation for s in log.runs(node="planner")] == ["invoke_agent"]
    inside = list(log.runs(node="agent:planner"))
    assert {s.operation for s in inside} == {"invoke_agent", "chat"}
    (child,) = (s for s in inside if s.operation == "chat")
    assert child.parent_run_id == planner.run_id
    assert len(list(log.runs(model=backend.model_type))) == 2
    assert len(list(log.runs(since=before))) == 3
    assert list(log.runs(since=datetime.datetime.now(datetime.UTC))) == []
    assert summaries[0].started_at >= summaries[-1].started_at


def test_concurrent_threads_and_tasks(log, make_backend):
    """8 threads and 200 async tasks at once: every run stored whole, in order, once."""
    backend = make_backend(stream=True)
    with capture_events() as captured:

        def thread_runs(t: int) -> None:
            for r in range(5):
                list(backend.run(f"thread {t} run {r}"))

        async def task_run(i: int) -> None:
            [c async for c in await backend.async_run(f"task {i}")]

        threads = [threading.Thread(target=thread_runs, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()

        async def tasks() -> None:
            await asyncio.gather(*(task_run(i) for i in range(200)))
            await backend.async_client.close()

        asyncio.run(tasks())
        for thread in threads:
            thread.join()
    assert len(by_run(captured)) == 240
    assert_stored_exactly(log, captured)
    assert sum(1 for _ in log.runs(status="ok")) == 240


def test_follow_tails_the_log(log, make_backend):
    """follow() yields committed events in position order, live, and resumes after a position."""
    backend = make_backend(stream=True)
    seen: list[tuple[int, Event]] = []
    ready = threading.Event()

    def tail() -> None:
        ready.set()
        for pair in log.follow(poll_interval=0.01, idle_timeout=2):
            seen.append(pair)
            if isinstance(pair[1], EndEvent):
                return

    follower = threading.Thread(target=tail)
    follower.start()
    ready.wait()
    with capture_events() as captured:
        list(backend.run("tail me"))
    follower.join(timeout=10)
    assert [event for _, event in seen] == captured
    positions = [position for position, _ in seen]
    assert positions == sorted(positions)
    assert list(log.follow(after=positions[-1], idle_timeout=0)) == []
    assert [e for _, e in log.follow(after=positions[0], idle_timeout=0)] == captured[1:]


def test_writes_are_idempotent(log_url, make_backend):
    """Writing the same batch twice stores it once: a retried commit never duplicates."""
    with capture_events() as captured:
        list(make_backend(stream=True).run("twice"))
    with EventLog(log_url) as log:
        rows = batch_rows(captured)
        engine = create_engine(log_url)
        statements = WriteStatements(engine)
        for _ in range(2):
            connection = engine.raw_connection()
            statements.write(connection, rows)
            connection.close()
        with engine.connect() as connection:
            count = connection.execute(select(func.count()).select_from(events_table)).scalar()
        engine.dispose()
        assert count == 3
        assert list(log.events(captured[0].run_id)) == captured


def test_tokens_are_packed(log, make_backend, log_url):
    """A 2,000-token streamed run takes one row per write batch and about 10 bytes a token."""
    backend = make_backend(behaviour=Behaviour(n_tokens=2000), stream=True)
    with capture_events() as captured:
        list(backend.run("long"))
    assert_stored_exactly(log, captured)
    engine = create_engine(log_url)
    with engine.connect() as connection:
        rows = connection.execute(select(events_table.c.kind, events_table.c.pack)).all()
    engine.dispose()
    assert len(rows) <= 40
    pack_bytes = sum(len(pack) for kind, pack in rows if kind == "tokens")
    assert pack_bytes / 2000 < 15


def test_unknown_run(log):
    """Reading a run that was never stored names the problem."""
    with pytest.raises(RunNotFoundError, match="no stored run"):
        log.transcript("0000")
    with pytest.raises(RunNotFoundError, match="no events"):
        list(log.events("not-a-run"))


# -- what is stored ----------------------------------------------------------------------------


def test_api_key_never_reaches_the_database(log, make_backend, log_url, tmp_path):
    """The key sent to the server appears nowhere in what was stored."""
    backend = make_backend(
        behaviour=Behaviour(status=401, error_message=f"bad key {API_KEY}"),
        config={"extra_headers": {"Authorization": f"Bearer {API_KEY}"}},
    )
    with pytest.raises(openai.AuthenticationError):
        backend.run("secret")
    with pytest.raises(openai.AuthenticationError):
        make_backend(config={"extra_query": {"api_key": API_KEY}}).run("also secret")
    log.flush()
    engine = create_engine(log_url)
    with engine.connect() as connection:
        dump = [tuple(row) for row in connection.execute(select(events_table))]
        dump += [tuple(row) for row in connection.execute(text("SELECT * FROM synthora_runs"))]
    engine.dispose()
    assert API_KEY not in repr(dump)
    if log_url.startswith("sqlite"):
        for path in tmp_path.glob("events.db*"):
            assert API_KEY.encode() not in path.read_bytes()


def test_redact_hook_and_no_content(log_url, make_backend):
    """A redact hook rewrites events before writing; store_content=False keeps no text at all."""

    def redact(event: Event) -> Event:
        if isinstance(event, StartEvent) and event.messages:
            return msgspec.structs.replace(event, messages=(user("[scrubbed]"),))
        return event

    backend = make_backend()
    with EventLog(log_url, redact=redact) as log:
        log.attach()
        backend.run("my secret diagnosis")
        (summary,) = log.runs()
        assert log.transcript(summary.run_id).messages == (user("[scrubbed]"),)
    with EventLog(log_url, store_content=False) as log:
        log.attach()
        backend.run("private words")
        newest = next(log.runs())
        stored = list(log.events(newest.run_id))
    assert "private" not in repr(stored)
    assert stored[-1].kind == "end"
    assert stored[-1].usage is not None


def test_detach_lets_go_of_a_backends_receivers(tmp_path, make_backend):
    """attach(backend) then detach() leaves the bus as it was: a log attached and detached in a
    loop keeps nothing connected (blinker keeps a receiver disconnected from one sender only)."""
    signals = (bus.on_start, bus.on_token, bus.on_end, bus.on_error)
    before = [len(signal.receivers) for signal in signals]
    backend = make_backend()
    with EventLog(f"sqlite:///{tmp_path / 'one.db'}") as log:
        for _ in range(3):
            log.attach(backend)
            backend.run("stored")
            log.detach()
        backend.run("not stored")
        assert len(list(log.runs())) == 3
    assert [len(signal.receivers) for signal in signals] == before


def test_failing_redact_hook_stores_no_content(log_url, make_backend, caplog):
    """A redact hook that raises never lets unredacted content through."""

    def broken(event: Event) -> Event:
        raise RuntimeError("redactor bug")

    with EventLog(log_url, redact=broken) as log:
        log.attach()
        make_backend().run("confidential")
        (summary,) = log.runs()
        assert "confidential" not in repr(list(log.events(summary.run_id)))
    assert "redact hook failed" in caplog.text


def test_unencodable_payloads_are_stored_as_close_as_possible(log, make_backend):
    """A lone surrogate is stored as near as JSON allows; no run is lost. (The SDK wires refuse
    one before the run; a backend sending no JSON takes it.)"""
    EchoBackend(model_type="echo-1", source=AGENT).run([user("bad \ud800 text")])
    (surrogate,) = log.runs()
    assert surrogate.status == "ok"
    assert next(log.events(surrogate.run_id)).messages == (user("bad \ufffd text"),)


@pytest.mark.parametrize(
    "moment",
    [
        datetime.datetime(2026, 11, 30, 3, 4, 5, tzinfo=datetime.UTC),
        datetime.datetime(2026, 11, 30, 3, 4, 5, 123456, tzinfo=datetime.UTC),
        datetime.datetime(9, 1, 2, 3, 4, 5, 6),
        datetime.datetime(
            2026,
            1,
            1,
            23,
            59,
            59,
            999999,
            tzinfo=datetime.timezone(-datetime.timedelta(hours=5, minutes=30)),
        ),
    ],
)
def test_sqlite_stores_times_as_sqlalchemy_would(moment):
    """The SQLite log binds its timestamps in one step; the text is SQLAlchemy's own (naive
    UTC, microseconds always), so it orders and reads back like every row stored before."""
    sqlite_dialect = create_engine("sqlite://").dialect
    column = runs_table.c.started_at.type.dialect_impl(sqlite_dialect)
    generic = TypeDecorator.bind_processor(column, sqlite_dialect)
    assert column.bind_processor(sqlite_dialect)(moment) == generic(moment)


TRICKY = "a NUL \x00, a literal \\u0000, U+FFFF \uffff and \uffff0, \\\x00 \uffff"
"""Text PostgreSQL cannot hold as given, and the text its escaping could be mistaken for."""


def test_nul_and_its_lookalikes_read_back_exactly(log, make_backend):
    """A NUL, the literal text \\u0000 and U+FFFF, in a node name, parameters, prompt, streamed
    text and an error message: every event and every run summary reads back as it was sent."""
    node = Node(name=f"planner {TRICKY}", type=NodeType.AGENT)
    with capture_events() as captured, scope(node):
        streamed = make_backend(
            stream=True,
            config={"user": TRICKY, "metadata": {TRICKY: TRICKY}},
            behaviour=Behaviour(tokens=(TRICKY, " and ", TRICKY)),
        )
        assert "".join(chunk.content for chunk in streamed.run([user(TRICKY)]))
        failing = make_backend(behaviour=Behaviour(status=500, error_message=TRICKY))
        with pytest.raises(openai.InternalServerError):
            failing.run(TRICKY)
    assert_stored_exactly(log, captured)
    (agent,) = log.runs(node=node.name)
    assert agent.node_name == node.name
    assert len(list(log.runs(node=node.path))) == 3
    (failed,) = log.runs(errors_only=True)
    assert TRICKY in failed.error_message
    assert failed.error_message == captured[-2].message


def test_a_column_long_name_ending_in_nul_still_fits(log, make_backend):
    """A node name as long as its column, ending in NUL (longer once escaped): the run is
    stored whole; the summary's name is cut to fit, as any over-long name is."""
    node = Node(name="n" * 199 + "\x00", type=NodeType.TOOL)
    with capture_events() as captured, scope(node):
        make_backend().run("long name")
    assert_stored_exactly(log, captured)
    tool = next(s for s in log.runs() if s.operation == "execute_tool")
    assert tool.node_name in (node.name, "n" * 199)


def test_nan_is_stored_as_null(log):
    """NaN has no JSON form: a run with one in its parameters (a backend sending no JSON takes
    it) is stored, with null in its place."""
    EchoBackend(model_type="echo-1", source=AGENT, config={"temperature": math.nan}).run("nan")
    (summary,) = log.runs()
    assert summary.status == "ok"
    start = next(log.events(summary.run_id))
    assert start.params["temperature"] is None


# -- opening a log -----------------------------------------------------------------------------


def test_bad_urls_and_paths(tmp_path):
    """A malformed URL, a missing folder or an in-memory database: a clear StorageError."""
    with pytest.raises(StorageError, match="not a database URL"):
        EventLog("definitely not a url")
    with pytest.raises(StorageError, match="no folder"):
        EventLog(f"sqlite:///{tmp_path}/missing/dir/log.db")
    with pytest.raises(StorageError, match="in-memory"):
        EventLog("sqlite://")
    with pytest.raises(StorageError, match=r"no URL parameters \(mode\)"):
        EventLog(f"sqlite:///{tmp_path}/ro.db?mode=ro")
    assert not any(tmp_path.iterdir()), "nothing may be created for a refused URL"


def test_unwritable_path_as_root_or_not(tmp_path):
    """A path that is a directory, not a file: a StorageError naming the log."""
    with pytest.raises(StorageError, match="cannot open the event log"):
        EventLog(f"sqlite:///{tmp_path}")


def test_newer_schema_is_refused(log_url):
    """A database stamped by a newer Synthora is refused and left untouched."""
    EventLog(log_url).close()
    engine = create_engine(log_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE synthora_alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaVersionError, match="newer than this Synthora"):
        EventLog(log_url)
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM synthora_alembic_version")).scalar()
            == "9999"
        )
    engine.dispose()


def test_reopening_keeps_everything(log_url, make_backend):
    """A log closed and opened again reads every run it had."""
    with EventLog(log_url) as log:
        log.attach()
        make_backend().run("persist")
    with EventLog(log_url) as log:
        (summary,) = log.runs()
        assert [e.kind for e in log.events(summary.run_id)] == ["start", "token", "end"]


def test_stored_token_events_keep_their_timing(log, make_backend):
    """Packed tokens come back with their exact timestamps and indexes."""
    backend = make_backend(behaviour=Behaviour(n_tokens=20, delay_s=0.001), stream=True)
    with capture_events() as captured:
        list(backend.run("timing"))
    stored = list(log.events(captured[0].run_id))
    tokens = [e for e in stored if isinstance(e, TokenEvent)]
    assert [t.ts for t in tokens] == [e.ts for e in captured if isinstance(e, TokenEvent)]
    assert [t.index for t in tokens] == list(range(20))


# -- a full queue -----------------------------------------------------------------------------


@contextmanager
def sqlite_write_lock(url: str):
    """Another connection holds SQLite's write lock, so the log's writer has to wait."""
    blocker = sqlite3.connect(make_url(url).database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def events_of_one_run(count: int) -> list[Event]:
    node = Node(name="m", type=NodeType.MODEL)
    start = StartEvent(run_id="full-queue", seq=0, ts=1, node=node, operation="chat")
    tokens = [
        TokenEvent(run_id="full-queue", seq=i + 1, ts=2 + i, node=node, index=i, text="x")
        for i in range(count)
    ]
    return [start, *tokens]


def emit(events: list[Event]) -> None:
    for event in events:
        signal = bus.on_token if event.kind == "token" else bus.on_start
        bus.dispatch(signal, None, event=event)


def test_full_queue_waits_and_loses_nothing(tmp_path):
    """With the writer stuck, a full queue makes the emitting thread wait; nothing is lost."""
    url = f"sqlite:///{tmp_path / 'wait.db'}"
    events = events_of_one_run(200)
    with EventLog(url, max_queue=50, flush_interval=0.01) as log:
        log.attach()
        with sqlite_write_lock(url):
            emitter = threading.Thread(target=emit, args=(events,))
            emitter.start()
            emitter.join(timeout=0.5)
            assert emitter.is_alive(), "the emitter should be waiting for room"
        emitter.join(timeout=30)
        assert log.flush(timeout=30)
        assert list(log.events("full-queue")) == events
        assert log.dropped == 0


def test_full_queue_can_drop_and_count(tmp_path):
    """With on_full="drop", a full queue drops events and counts them instead of waiting."""
    url = f"sqlite:///{tmp_path / 'drop.db'}"
    events = events_of_one_run(500)
    with EventLog(url, max_queue=50, on_full="drop", flush_interval=0.01) as log:
        log.attach()
        with sqlite_write_lock(url):
            emit(events)
        assert log.flush(timeout=30)
        stored = list(log.events("full-queue"))
        assert log.dropped > 0
        assert len(stored) + log.dropped == len(events)


def test_an_agent_conversation_rebuilt(log, make_backend):
    """Every run under an agent scope, nested tool steps included, rebuilt in order."""
    backend = make_backend()
    with scope(Node(name="planner", type=NodeType.AGENT)) as planner:
        backend.run("first step")
        with scope(Node(name="search", type=NodeType.TOOL)):
            backend.run("inside the tool")
        backend.run("last step")
    backend.run("after the agent")
    steps = log.scope_transcripts(planner.run_id[:23])
    assert [s.run.operation for s in steps] == ["chat", "execute_tool", "chat", "chat"]
    texts = [s.messages[0].text for s in steps if s.messages]
    assert texts == ["first step", "inside the tool", "last step"]
    assert all(s.output is not None for s in steps if s.run.operation == "chat")


def test_import_completes_a_run_stored_while_it_was_running(log_url, make_backend, tmp_path):
    """A run stored only up to a token (its process died) is completed by importing an export
    of the whole run; an edited copy of it is refused, and the stored run kept as it is."""
    with capture_events() as captured:
        list(make_backend(stream=True).run("words to stream"))
    exported = [msgspec.json.encode(event.to_dict()) for event in captured]
    edited = [*exported[:-1], exported[-1].replace(b'"stop"', b'"length"')]
    with EventLog(log_url) as log:
        log.write(captured[:2])
        assert next(log.runs()).status == "running"
        assert import_runs(log, exported) == ImportReport(1, 0, ())
        assert list(log.events(captured[0].run_id)) == captured
        report = import_runs(log, edited)
        assert list(log.events(captured[0].run_id)) == captured
    assert report.imported == 0
    (refusal,) = report.refused
    assert (refusal.reason, refusal.first_line) == (
        "a conflict with the stored run of the same id",
        len(exported),
    )
