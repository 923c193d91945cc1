"""The event-log writer never dies, never stalls the caller, and says how it is doing.

Each trigger here once killed the writer thread for the rest of the process, or left the runs
projection disagreeing with the stored events; each runs on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import math
import os
import signal
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import make_url
from tcp_proxy import TCPProxy
from test_custom_backend import EchoBackend
from test_storage import sqlite_write_lock
from test_storage_processes import assert_complete, worker

from support import AGENT, postgres_schema
from synthora import Node, NodeType, bus, user
from synthora.events import EVENT_KINDS, EndEvent, ErrorEvent, Event, StartEvent, TokenEvent
from synthora.runs import INTERRUPTED, TRUNCATED
from synthora.storage import EventLog, writer
from synthora.storage import committer as committer_module
from synthora.storage.codec import batch_rows
from synthora.storage.engines import safe_url
from synthora.storage.journal import Journal
from synthora.storage.schema import events, runs
from synthora.storage.spool import Spool, default_spool_path
from synthora.storage.statements import WriteStatements
from synthora.testing import capture_events
from synthora.testing.server import Behaviour

HUGE = 9_223_372_036_854_775_808  # 2**63: one past what a 64-bit integer column holds
NODE = Node(name="hand-made", type=NodeType.MODEL)


def reply_with_usage(prompt_tokens: int) -> Behaviour:
    """A server whose (non-streamed) reply reports `prompt_tokens`."""
    body = {
        "id": "chatcmpl-huge",
        "object": "chat.completion",
        "created": 1,
        "model": "huge",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1, "total_tokens": 1},
    }
    return Behaviour(raw=(json.dumps(body).encode(),))


def assert_writer_still_works(log: EventLog, make_backend) -> None:
    """A normal run after the trouble is stored whole: the writer thread is alive."""
    with capture_events() as captured:
        make_backend().run("after the trouble")
    assert list(log.events(captured[0].run_id)) == captured
    assert log.health().writer_alive


def emit(*events: Event) -> None:
    """Send events as a run would, waiting on the durability barriers a closing one returns."""
    for event in events:
        for result in bus.dispatch(bus.signals[event.kind], None, event=event):
            if isinstance(result, concurrent.futures.Future):
                result.result(timeout=10)


@pytest.fixture(params=["sqlite", "sqlite, committer", "postgresql"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventLog]:
    """An event log attached to the bus: on SQLite also with a committer process, which then
    makes the rows (`synthora.storage.committer`) and leaves what it refuses to the writer."""
    with ExitStack() as stack:
        if request.param == "postgresql":
            url = stack.enter_context(postgres_schema())
        else:
            url = f"sqlite:///{tmp_path / 'events.db'}"
        committer = True if request.param == "sqlite, committer" else None
        event_log = stack.enter_context(EventLog(url, committer=committer))
        event_log.attach()
        yield event_log
        if committer:
            assert event_log.health().committer is not None


# -- one bad event -----------------------------------------------------------------------------


def test_unencodable_content_is_stored_as_its_repr(log, make_backend):
    """Message content msgspec cannot encode (the SDK wires refuse it before the run; a backend
    sending no JSON takes it): the start is stored with the value's repr, and the writer goes
    on."""
    opaque = object()
    EchoBackend(model_type="echo-1", source=AGENT).run([user([{"type": "text", "text": opaque}])])
    (run,) = log.runs()
    assert run.status == "ok"
    start = next(log.events(run.run_id))
    assert isinstance(start, StartEvent)
    assert start.messages is not None
    assert start.messages[0].content == [{"type": "text", "text": repr(opaque)}]
    assert_writer_still_works(log, make_backend)
    assert log.health().set_aside == 0


def test_usage_too_large_for_a_column(log, make_backend):
    """A server reporting 2**63 prompt tokens: the end event keeps the exact figure, the runs
    projection (a 32-bit column) says NULL, and the run is not left 'running'."""
    make_backend(behaviour=reply_with_usage(HUGE)).run("count me")
    (summary,) = log.runs()
    assert summary.status == "ok"
    assert summary.input_tokens is None
    assert summary.output_tokens == 1
    end = list(log.events(summary.run_id))[-1]
    assert isinstance(end, EndEvent)
    assert end.usage is not None
    assert end.usage.input_tokens == HUGE
    assert_writer_still_works(log, make_backend)


def test_a_refused_row_costs_only_its_own_event(log):
    """In one write group, an event the database refuses (a timestamp past 64 bits) is set aside
    and counted; every other event of the group is stored, and the refused run's projection
    follows what was stored (its end is, so it is not 'running')."""
    good, bad = "run-good", "run-bad"
    emit(
        StartEvent(run_id=good, seq=0, ts=1_000, node=NODE, operation="chat", model="m"),
        StartEvent(run_id=bad, seq=0, ts=HUGE, node=NODE, operation="chat", model="m"),
        TokenEvent(run_id=good, seq=1, ts=2_000, node=NODE, index=0, text="hi"),
    )
    with capture_events() as closing:
        emit(
            EndEvent(run_id=good, seq=2, ts=3_000, node=NODE, finish_reason="stop"),
            EndEvent(run_id=bad, seq=1, ts=3_000, node=NODE, finish_reason="stop"),
        )
    assert log.flush(timeout=10)
    assert [e.kind for e in log.events(good)] == ["start", "token", "end"]
    assert list(log.events(bad)) == [closing[1]]
    assert log.run(good).status == "ok"
    assert log.run(bad).status == "ok"
    health = log.health()
    assert health.set_aside == 1
    assert health.writer_alive


@pytest.mark.parametrize("committer", [False, True], ids=["writer", "committer"])
def test_a_row_a_database_rule_refuses_costs_only_its_own_event(tmp_path, caplog, committer):
    """A rule of the database's own (here a SQLite trigger) refuses one run's end: the group is
    retried one event at a time, by the writer thread also when a committer process refused
    it first; that end alone is set aside, and its run stays 'running' as its events say."""
    path = tmp_path / "ruled.db"
    with EventLog(f"sqlite:///{path}", committer=committer) as log:
        with sqlite3.connect(path) as raw:
            raw.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON synthora_events "
                "WHEN NEW.run_id = 'refused' AND NEW.kind = 'end' "
                "BEGIN SELECT RAISE(ABORT, 'ends of this run are refused'); END"
            )
        log.attach()
        for run_id in ("kept", "refused"):
            emit(
                StartEvent(run_id=run_id, seq=0, ts=1_000, node=NODE, operation="chat"),
                EndEvent(run_id=run_id, seq=1, ts=2_000, node=NODE, finish_reason="stop"),
            )
        assert [e.kind for e in log.events("kept")] == ["start", "end"]
        assert [e.kind for e in log.events("refused")] == ["start"]
        assert (log.run("kept").status, log.run("refused").status) == ("ok", "running")
        health = log.health()
        assert (health.set_aside, health.writer_alive) == (1, True)
        assert (health.committer is not None) == committer
    said = [m for r in caplog.records if "ends of this run are refused" in (m := r.getMessage())]
    assert any("set aside" in message for message in said)
    assert any("committer process could not commit" in message for message in said) == committer


# -- the redact hook ---------------------------------------------------------------------------


def test_redact_returning_none_leaves_the_event_out(log_url, make_backend):
    """redact= returning None drops that event on purpose; the rest of the run is stored."""

    def no_tokens(event: Event) -> Event | None:
        return None if isinstance(event, TokenEvent) else event

    with EventLog(log_url, redact=no_tokens) as log:
        log.attach()
        with capture_events() as captured:
            list(make_backend(stream=True).run("quiet"))
        (summary,) = log.runs()
        assert [e.kind for e in log.events(summary.run_id)] == ["start", "end"]
        assert summary.status == "ok"
        assert log.health().filtered == sum(isinstance(e, TokenEvent) for e in captured)


@pytest.mark.parametrize(
    "hook",
    [
        pytest.param(lambda event: event.to_dict(), id="returns-a-dict"),
        pytest.param(lambda event: 1 / 0, id="raises"),
    ],
)
def test_broken_redact_hook_stores_without_content_and_warns_once(
    log_url, make_backend, caplog, hook
):
    """A hook that raises or returns a non-event: every event is stored without content (never
    unredacted), the failures are counted, and the warning is logged once, not per event."""
    backend = make_backend()
    with (
        caplog.at_level(logging.WARNING, logger="synthora.storage"),
        EventLog(log_url, redact=hook) as log,
    ):
        log.attach()
        for n in range(3):
            backend.run(f"confidential {n}")
        stored = [list(log.events(s.run_id)) for s in log.runs()]
        health = log.health()
    assert len(stored) == 3
    assert all(events[-1].kind == "end" for events in stored)
    assert "confidential" not in repr(stored)
    assert health.hook_failures == sum(len(events) for events in stored)
    warnings = [r for r in caplog.records if "redact hook failed" in r.getMessage()]
    assert len(warnings) == 1


# -- health --------------------------------------------------------------------------------------


def test_health_counts_what_was_stored(log_url, make_backend):
    """health() reads the writer: alive, nothing queued or spooled, every event counted."""
    with EventLog(log_url) as log:
        log.attach()
        with capture_events() as captured:
            list(make_backend(stream=True).run("count"))
        health = log.health()
        assert health.writer_alive
        assert (health.queued, health.spooled, health.set_aside) == (0, 0, 0)
        assert health.stored == len(captured)
        assert health.last_error is None
        assert msgspec.json.decode(msgspec.json.encode(health))["stored"] == len(captured)
    assert not log.health().writer_alive


def test_idle_writer_commits_a_closing_run_at_once(log_url, make_backend):
    """With a long flush interval, a run still returns at once, committed: its close is never
    left waiting for the writer's next round."""
    with EventLog(log_url, flush_interval=30) as log:
        log.attach()
        began = time.monotonic()
        with capture_events() as captured:
            make_backend().run("now")
        assert time.monotonic() - began < 5
        assert list(log.events(captured[0].run_id)) == captured


def journals(spool: Path) -> list[Path]:
    """The journal segments of the log whose spool is `spool`."""
    return list(spool.parent.glob(f"{spool.name}.*.journal"))


def test_a_journaled_run_is_readable_from_any_log_of_the_process(tmp_path, make_backend):
    """On SQLite a closing run is journaled, and committed with others in the writer's next
    round: it is not in the database file yet when run() returns, but any log of this process
    reading that database commits it first, and the journal is then gone."""
    path = tmp_path / "journaled.db"
    spool = default_spool_path(f"sqlite:///{path}")
    with EventLog(f"sqlite:///{path}", flush_interval=3600) as log:
        log.attach()
        with capture_events() as captured:
            make_backend().run("journaled")
        run_id = captured[0].run_id
        with sqlite3.connect(path) as raw:
            in_file = raw.execute("SELECT count(*) FROM synthora_events").fetchone()[0]
        assert (in_file, log._writer.health().journaled) == (0, len(captured))
        assert [p.stat().st_size > 0 for p in journals(spool)] == [True]
        with EventLog(f"sqlite:///{tmp_path / '.' / 'journaled.db'}") as other:
            assert [s.run_id for s in other.runs()] == [run_id]
        assert list(log.events(run_id)) == captured
        assert log.health().journaled == 0
    assert journals(spool) == []


def test_a_read_while_journaled_runs_are_committed_waits_for_them(
    tmp_path, monkeypatch, make_backend
):
    """A read made while the writer thread commits journaled runs waits for that commit, so a
    run that has returned reads back whole (such a read once saw nothing journaled, and read
    the database as it was before the commit)."""
    committing, release, reading = threading.Event(), threading.Event(), threading.Event()
    write, flush = WriteStatements.write, writer.Writer.flush

    def held_write(self, connection, rows):
        committing.set()
        release.wait(10)
        write(self, connection, rows)

    def noted_flush(self, timeout):
        if threading.current_thread().name == "reader":
            reading.set()  # it waits for the commit
        return flush(self, timeout)

    monkeypatch.setattr(WriteStatements, "write", held_write)
    monkeypatch.setattr(writer.Writer, "flush", noted_flush)
    with EventLog(f"sqlite:///{tmp_path / 'read.db'}", flush_interval=3600) as log:
        log.attach()
        with capture_events() as captured:
            make_backend().run("read me whole")  # journaled: it returns before any commit
        flusher = threading.Thread(target=log.flush)  # a round, which commits it
        flusher.start()
        assert committing.wait(10)
        read: list[Event] = []

        def read_it() -> None:
            read.extend(log.events(captured[0].run_id))
            reading.set()

        reader = threading.Thread(target=read_it, name="reader")
        reader.start()
        assert reading.wait(10)
        release.set()
        reader.join(10)
        flusher.join(10)
    assert read == captured


# -- the committer process ---------------------------------------------------------------------


def stored_events(path: Path, run_id: str) -> int:
    """How many events of `run_id` the SQLite file holds (a packed row holds several)."""
    with sqlite3.connect(path) as raw:
        query = "SELECT sum(last_seq - seq + 1) FROM synthora_events WHERE run_id = ?"
        return int(raw.execute(query, (run_id,)).fetchone()[0] or 0)


def test_a_busy_log_hands_its_commits_to_a_committer_process(tmp_path, monkeypatch, make_backend):
    """Once a SQLite log has stored enough events, a committer process commits for it: every
    run is stored exactly once, whichever committed it, and the process ends with the log."""
    monkeypatch.setattr(writer, "_BUSY_EVENTS", 6)
    path = tmp_path / "busy.db"
    backend = make_backend()
    with EventLog(f"sqlite:///{path}") as log:
        log.attach()
        with capture_events() as captured:
            for prompt in ("one", "two"):
                backend.run(prompt)
            assert log.health().committer is None
            assert log.health().stored == len(captured) >= 6
            for prompt in ("three", "four", "five"):
                backend.run(prompt)
            committer = log.health().committer
        assert committer is not None
        application = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, committer) > application  # it yields to the app
        run_ids = list(dict.fromkeys(event.run_id for event in captured))
        assert len(run_ids) == 5
        for run_id in run_ids:
            mine = [event for event in captured if event.run_id == run_id]
            assert list(log.events(run_id)) == mine
            assert stored_events(path, run_id) == len(mine)
            assert log.run(run_id).status == "ok"
        assert log.health().stored == len(captured)
        assert journals(default_spool_path(f"sqlite:///{path}")) == []
    with pytest.raises(ProcessLookupError):
        os.kill(committer, 0)  # ended and reaped with the log


@pytest.mark.parametrize("trouble", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "hung"])
def test_a_lost_committer_leaves_its_work_to_the_writer(
    tmp_path, monkeypatch, make_backend, caplog, trouble
):
    """The committer process killed, or hung (stopped: ended once it says nothing for its
    timeout), between two runs: the writer commits the runs itself from then on, says so once,
    and every run is stored exactly once."""
    monkeypatch.setattr(committer_module, "_REPLY_TIMEOUT_S", 0.5)
    monkeypatch.setattr(committer_module, "_EXIT_TIMEOUT_S", 0.5)
    path = tmp_path / "lost.db"
    backend = make_backend()
    with EventLog(f"sqlite:///{path}", committer=True) as log:
        log.attach()
        with capture_events() as captured:
            backend.run("committed by the committer")
            committer = log.health().committer
            assert committer is not None
            os.kill(committer, trouble)
            for prompt in ("after it was lost", "and after that"):
                backend.run(prompt)
        health = log.health()
        assert (health.committer, health.writer_alive, health.set_aside) == (None, True, 0)
        assert health.stored == len(captured)
        prompts = []
        for summary in log.runs():
            mine = [event for event in captured if event.run_id == summary.run_id]
            assert list(log.events(summary.run_id)) == mine
            assert stored_events(path, summary.run_id) == len(mine)
            prompts.append(mine[0].messages[0].text)
    assert sorted(prompts) == ["after it was lost", "and after that", "committed by the committer"]
    ended = [r for r in caplog.records if "committer process ended" in r.getMessage()]
    assert len(ended) == 1
    with pytest.raises(ProcessLookupError):
        os.kill(committer, 0)  # ended and reaped


def test_a_closing_log_starts_no_committer(tmp_path, monkeypatch, make_backend):
    """A log busy enough for a committer, but closing, commits what is left itself: a process
    started only to be ended would cost the application's exit a third of a second."""
    monkeypatch.setattr(writer, "_BUSY_EVENTS", 0)
    started = []
    monkeypatch.setattr(writer, "Committer", started.append)
    path = tmp_path / "closing.db"
    with EventLog(f"sqlite:///{path}", flush_interval=3600) as log:
        log.attach()
        with capture_events() as captured:
            make_backend().run("left for the close")
    assert started == []
    assert stored_events(path, captured[0].run_id) == len(captured)


def test_a_committer_that_cannot_open_the_database_says_why(tmp_path):
    """A committer process whose database cannot be opened (its folder is gone) refuses the
    first request, naming the reason, for the writer thread to commit it; then it has ended."""
    missing = tmp_path / "gone" / "log.db"
    process = committer_module.Committer(f"sqlite:///{missing}")
    try:
        reply = process.commit([])
        assert isinstance(reply, committer_module.Refused)
        assert f"no folder {missing.parent}" in reply.reason
        assert process.commit([]) is None
        assert process.pid == -1  # reaped
    finally:
        process.close()


# -- a database that cannot be reached ---------------------------------------------------------


@contextmanager
def proxied(url: str) -> Iterator[tuple[TCPProxy, str]]:
    """A TCP proxy in front of the test PostgreSQL, and the URL that goes through it."""
    target = make_url(url)
    with TCPProxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
        yield (
            proxy,
            target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        )


def test_outage_never_stalls_a_run(make_backend, postgres_url):
    """PostgreSQL cut off for 10 s while runs go on: each run returns within 1 s (its events
    are spooled to a local file), and once the database is back every event of every run is
    in PostgreSQL exactly once, in order."""
    backend = make_backend(stream=True)
    with (
        proxied(postgres_url) as (proxy, url),
        EventLog(url) as log,
        capture_events() as captured,
    ):
        log.attach()
        list(backend.run("before the outage"))
        proxy.cut()
        longest, count = 0.0, 0
        until = time.monotonic() + 10
        while time.monotonic() < until:
            began = time.monotonic()
            list(backend.run(f"during the outage {count}"))
            longest = max(longest, time.monotonic() - began)
            count += 1
            time.sleep(0.05)  # a steady trickle of runs, as an application makes them
        during = log.health()
        proxy.restore()
        assert log.flush(timeout=60)
        assert longest < 1.0
        assert during.spooled > 0
        assert during.last_error is not None
        summaries = list(log.runs())
        assert len(summaries) == count + 1
        for summary in summaries:
            assert list(log.events(summary.run_id)) == [
                e for e in captured if e.run_id == summary.run_id
            ]
        assert log.health().spooled == 0


def test_a_long_outage_keeps_memory_bounded(postgres_url):
    """50,000 token events emitted while the database is cut off, with room for 1,000 in
    memory: none is dropped, the queue never holds more than its bound, the spool holds them,
    and they all arrive once the database is back."""
    tokens = 50_000
    with proxied(postgres_url) as (proxy, url), EventLog(url, max_queue=1000) as log:
        log.attach()
        proxy.cut()
        emit(StartEvent(run_id="long-outage", seq=0, ts=1, node=NODE, operation="chat"))
        most_queued = 0
        for i in range(tokens):
            emit(TokenEvent(run_id="long-outage", seq=i + 1, ts=2 + i, node=NODE, index=i))
            if i % 5000 == 0:
                most_queued = max(most_queued, log.health().queued)
        emit(EndEvent(run_id="long-outage", seq=tokens + 1, ts=tokens + 2, node=NODE))
        spooled = log.health()
        proxy.restore()
        assert log.flush(timeout=120)
        assert most_queued <= 1000
        assert (spooled.queued, spooled.spooled, spooled.dropped) == (0, tokens + 2, 0)
        assert sum(1 for _ in log.events("long-outage")) == tokens + 2
        assert log.run("long-outage").status == "ok"


def test_spool_of_a_killed_process_is_drained_by_the_next(server, postgres_url):
    """A process that spooled its runs during an outage is killed; the next EventLog opened for
    the same database forwards them: every run that returned is stored whole, once."""
    with proxied(postgres_url) as (proxy, url):
        with worker("outage", url, server.base_url, 5) as child:
            assert child.stdin is not None
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            proxy.cut()
            child.stdin.write("go\n")
            child.stdin.flush()
            finished = []
            for line in child.stdout:
                if line.strip() == "spooled":
                    break
                finished.append(line.split()[1])
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        proxy.restore()
        with EventLog(url) as log:
            assert log.flush(timeout=30)
            assert len(finished) == 5
            for run_id in finished:
                assert log.run(run_id).status == "ok"
                assert_complete(log, run_id)
            assert log.health().spooled == 0


# -- faults found in review: each once lost events or stalled a caller ---------------------------


def test_a_locked_sqlite_file_never_holds_the_caller(tmp_path, make_backend):
    """Another process holds SQLite's write lock: the closing caller does not wait on it (the
    writer thread does); the run returns after durable_timeout at most, and is stored once the
    lock is released."""
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    backend = make_backend(durable_timeout=0.5)
    with EventLog(url) as log:
        log.attach()
        with sqlite_write_lock(url), capture_events() as captured:
            began = time.monotonic()
            backend.run("while locked")
            assert time.monotonic() - began < 5
        assert log.flush(timeout=60)
        assert list(log.events(captured[0].run_id)) == captured


def interrupt_the_first_call(monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> list[bool]:
    """Make the first call of `owner.name` raise KeyboardInterrupt; the list says once it has."""
    interrupted: list[bool] = []
    method = getattr(owner, name)

    def interrupt_once(*args):
        if not interrupted:
            interrupted.append(True)
            raise KeyboardInterrupt
        return method(*args)

    monkeypatch.setattr(owner, name, interrupt_once)
    return interrupted


@pytest.mark.parametrize(
    ("owner", "name", "spool"),
    [(WriteStatements, "write", False), (Journal, "append", None)],
    ids=["committing", "journaling"],
)
def test_an_interrupted_closing_caller_loses_nothing(tmp_path, monkeypatch, owner, name, spool):
    """Ctrl-C while a closing caller makes its group durable, committing it itself (no spool,
    so no journal) or journaling it: the caller gets its KeyboardInterrupt, and every event of
    the group, its own closing event and other runs' included, is still stored."""
    interrupt_the_first_call(monkeypatch, owner, name)
    with EventLog(f"sqlite:///{tmp_path / 'kb.db'}", flush_interval=5, spool=spool) as log:
        log.attach()
        for run_id in ("other", "me"):
            emit(StartEvent(run_id=run_id, seq=0, ts=1, node=NODE, operation="chat"))
        with pytest.raises(KeyboardInterrupt):
            emit(EndEvent(run_id="me", seq=1, ts=2, node=NODE, finish_reason="stop"))
        emit(EndEvent(run_id="other", seq=1, ts=3, node=NODE, finish_reason="stop"))
        assert log.flush(timeout=10)
        for run_id in ("other", "me"):
            assert [e.kind for e in log.events(run_id)] == ["start", "end"]
            assert log.run(run_id).status == "ok"


def test_an_interrupted_commit_of_journaled_runs_loses_nothing(tmp_path, monkeypatch):
    """An interrupt while the writer commits journaled runs: they, and what was queued behind
    them, are committed in its next round; every event is stored once."""
    interrupted = interrupt_the_first_call(monkeypatch, WriteStatements, "write")
    with EventLog(f"sqlite:///{tmp_path / 'kb.db'}", flush_interval=0.2) as log:
        log.attach()
        emit(
            StartEvent(run_id="first", seq=0, ts=1, node=NODE, operation="chat"),
            EndEvent(run_id="first", seq=1, ts=2, node=NODE, finish_reason="stop"),
            StartEvent(run_id="queued", seq=0, ts=3, node=NODE, operation="chat"),
        )
        assert log.flush(timeout=10)
        emit(EndEvent(run_id="queued", seq=1, ts=4, node=NODE, finish_reason="stop"))
        assert interrupted
        for run_id in ("first", "queued"):
            assert [e.kind for e in log.events(run_id)] == ["start", "end"]
            assert log.run(run_id).status == "ok"


def test_texts_longer_than_their_columns_are_cut_in_the_summary_only(log):
    """Names a user or server chooses, longer than their columns (a node name, a model, a
    service, a backend, a finish reason, an error type): each summary holds them cut to fit,
    on every database, and the events hold them whole."""
    node = Node(name="n" * 300, type=NodeType.AGENT)
    long = {"model": "m" * 300, "service": "s" * 300, "backend": "b" * 300, "operation": "chat"}
    ended = (
        StartEvent(run_id="ended", seq=0, ts=1, node=node, **long),
        EndEvent(run_id="ended", seq=1, ts=2, node=node, finish_reason="f" * 300),
    )
    failed = (
        StartEvent(run_id="failed", seq=0, ts=1, node=node, **long),
        ErrorEvent(run_id="failed", seq=1, ts=2, node=node, error_type="E" * 300, message="x"),
    )
    emit(
        *ended,
        ErrorEvent(run_id="unstarted", seq=1, ts=2, node=node, error_type="E" * 300, message="y"),
    )
    emit(failed[0])
    log.flush(timeout=10)
    emit(failed[1])
    assert log.flush(timeout=10)
    columns = {column.name: getattr(column.type, "length", None) for column in runs.c}
    for run_id in ("ended", "failed", "unstarted"):
        summary = log.run(run_id)
        for name in ("node_name", "model", "service", "backend", "operation", "finish_reason"):
            value = getattr(summary, name)
            assert value is None or len(value) <= columns[name], (run_id, name)
        assert summary.node_name == node.name[: columns["node_name"]]
    assert log.run("ended").model == long["model"][: columns["model"]]
    assert log.run("ended").finish_reason == "f" * columns["finish_reason"]
    assert log.run("failed").error_type == "E" * columns["error_type"]
    assert log.run("unstarted").status == "error"
    assert list(log.events("ended")) == list(ended)
    assert list(log.events("failed")) == list(failed)


def test_the_logs_own_words_fit_their_columns():
    """Event kinds and run statuses are never cut (the codec does not fit them)."""
    kinds = (*EVENT_KINDS, "tokens")
    assert max(map(len, kinds)) <= events.c.kind.type.length
    statuses = ("running", "ok", "error", INTERRUPTED, TRUNCATED)
    assert max(map(len, statuses)) <= runs.c.status.type.length


def test_events_with_impossible_times_cost_only_themselves(log):
    """A start at a time no date can hold and an end lasting forever, in one group with a
    normal run: both are set aside, and the normal run is stored whole."""
    emit(
        StartEvent(run_id="fine", seq=0, ts=1, node=NODE, operation="chat"),
        StartEvent(run_id="odd", seq=0, ts=10**21, node=NODE, operation="chat"),
        EndEvent(run_id="fine", seq=1, ts=2, node=NODE, finish_reason="stop"),
        EndEvent(run_id="odd", seq=1, ts=2, node=NODE, duration_s=math.inf),
    )
    assert log.flush(timeout=10)
    assert [e.kind for e in log.events("fine")] == ["start", "end"]
    assert [s.run_id for s in log.runs()] == ["fine"]
    assert log.health().set_aside == 2


def test_an_unreadable_spooled_batch_is_quarantined(tmp_path):
    """A spooled batch that cannot be decoded moves to the spool's quarantine and is counted;
    new runs are stored as usual."""
    spool_path = tmp_path / "poisoned.spool"
    spool = Spool(spool_path)
    spool.append(batch_rows([StartEvent(run_id="old", seq=0, ts=1, node=NODE, operation="chat")]))
    spool.close()
    with sqlite3.connect(spool_path) as connection:
        connection.execute("UPDATE batches SET rows = x'c1c1c1'")
    with EventLog(f"sqlite:///{tmp_path / 'log.db'}", spool=spool_path) as log:
        log.attach()
        emit(
            StartEvent(run_id="new", seq=0, ts=1, node=NODE, operation="chat"),
            EndEvent(run_id="new", seq=1, ts=2, node=NODE, finish_reason="stop"),
        )
        assert log.flush(timeout=10)
        assert [s.run_id for s in log.runs()] == ["new"]
        health = log.health()
        assert (health.spooled, health.set_aside) == (0, 1)
    with sqlite3.connect(spool_path) as connection:
        assert connection.execute("SELECT count(*) FROM quarantine").fetchone() == (1,)


def test_a_hook_raising_system_exit_does_not_end_the_writer(log_url, make_backend):
    """A redact hook raising a BaseException (SystemExit) is a hook failure like any other."""

    def exits(event: Event) -> Event:
        raise SystemExit(3)

    with EventLog(log_url, redact=exits) as log:
        log.attach()
        make_backend().run("exit?")
        make_backend().run("still here")
        assert len(list(log.runs())) == 2
        assert log.health().writer_alive


def test_spool_is_private_to_its_owner(tmp_path, postgres_url):
    """The spool holds prompts and replies: its folder and files are its owner's alone."""
    with proxied(postgres_url) as (proxy, url):
        folder = tmp_path / "private"
        with EventLog(url, spool=folder / "log.spool") as log:
            log.attach()
            proxy.cut()
            emit(StartEvent(run_id="private", seq=0, ts=1, node=NODE, operation="chat"))
            emit(EndEvent(run_id="private", seq=1, ts=2, node=NODE, finish_reason="stop"))
            assert log.health().spooled == 2
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            for path in folder.glob("log.spool*"):
                assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
            proxy.restore()


def test_closing_during_an_outage_without_a_spool_says_what_is_lost(postgres_url, caplog):
    """With no spool and the database cut off, close() ends within its timeout, ends the writer
    thread and logs how many events could not be written."""
    with proxied(postgres_url) as (proxy, url):
        log = EventLog(url, spool=False)
        log.attach()
        proxy.cut()
        emit(StartEvent(run_id="lost", seq=0, ts=1, node=NODE, operation="chat"))
        bus.dispatch(bus.on_end, None, event=EndEvent(run_id="lost", seq=1, ts=2, node=NODE))
        began = time.monotonic()
        log.close(timeout=1)
        assert time.monotonic() - began < 5
        assert not log.health().writer_alive
        proxy.restore()
    assert "2 events could not be written" in caplog.text


def test_urls_never_show_secrets():
    """A password in the URL's query string is hidden like the URL's own."""
    shown = safe_url(
        "postgresql+psycopg://u:pw@h/db?password=hunter2&sslpassword=x&sslmode=require"
    )
    assert "hunter2" not in shown
    assert "pw@" not in shown
    assert "sslmode=require" in shown
