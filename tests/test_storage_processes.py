"""The log across processes: several writers, a writer killed mid-stream, a database outage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url
from tcp_proxy import TCPProxy

from synthora.events import EndEvent, TokenEvent
from synthora.storage import EventLog
from synthora.storage.spool import default_spool_path
from synthora.testing import capture_events
from synthora.testing.server import Behaviour

WORKER = Path(__file__).with_name("storage_worker.py")


def worker(mode: str, db_url: str, base_url: str, count: int) -> subprocess.Popen[str]:
    """A worker process; use it in a `with` block so its pipes are closed."""
    talks = mode != "runs"
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, db_url, base_url, str(count)],
        stdin=subprocess.PIPE if talks else subprocess.DEVNULL,
        stdout=subprocess.PIPE if talks else None,
        text=True,
    )


def assert_complete(log: EventLog, run_id: str) -> None:
    """Start, contiguous tokens, an end whose output the tokens add up to."""
    stored = list(log.events(run_id))
    assert [e.seq for e in stored] == list(range(len(stored)))
    end = stored[-1]
    assert isinstance(end, EndEvent)
    assert end.output is not None
    assert "".join(e.text for e in stored if isinstance(e, TokenEvent)) == end.output.text


def test_four_processes_write_one_log(log_url, server):
    """4 processes creating and streaming into one new database: every run stored once, whole."""
    processes = [worker("runs", log_url, server.base_url, 15) for _ in range(4)]
    for process in processes:
        with process:
            assert process.wait(timeout=120) == 0
    with EventLog(log_url) as log:
        summaries = list(log.runs())
        assert len(summaries) == 60
        assert {s.status for s in summaries} == {"ok"}
        for summary in summaries:
            assert_complete(log, summary.run_id)
        texts = {next(iter(log.events(s.run_id))).messages[0].text for s in summaries}
        assert len(texts) == 60


def test_killed_mid_stream(log_url, server):
    """SIGKILL while streaming: every run that returned is complete; the cut one is 'running'."""
    server.behave("slow-crash", Behaviour(n_tokens=1000, delay_s=0.01))
    finished: list[str] = []
    with worker("crash", log_url, server.base_url, 5) as child:
        assert child.stdout is not None
        for line in child.stdout:
            word, run_id = line.split()
            if word == "done":
                finished.append(run_id)
            else:
                in_flight = run_id
                break
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    with EventLog(log_url) as log:
        assert len(finished) == 5
        for run_id in finished:
            assert log.run(run_id).status == "ok"
            assert_complete(log, run_id)
        cut = log.run(in_flight)
        assert cut.status == "running"
        assert cut.ended_at is None
        assert next(log.events(in_flight)).kind == "start"


def test_runs_a_killed_process_journaled_are_committed_by_the_next(log_url, server):
    """SIGKILL right after runs returned, before the writer committed them (on SQLite their
    groups are only journaled then): the next log of the database stores each exactly once."""
    finished: list[str] = []
    with worker("journaled", log_url, server.base_url, 3) as child:
        assert child.stdout is not None
        finished = [child.stdout.readline().split()[1] for _ in range(3)]
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    spool = default_spool_path(log_url)
    with EventLog(log_url) as log:
        for run_id in finished:
            assert log.run(run_id).status == "ok"
            assert_complete(log, run_id)
        assert sorted(s.run_id for s in log.runs()) == sorted(finished)
    assert list(spool.parent.glob(f"{spool.name}.*.journal")) == []


def test_stream_abandoned_at_exit_is_stored_as_interrupted(log_url, server):
    """A process that exits with a stream half-read and its log open: the run is stored as
    interrupted, because streams are reported before the log's last flush."""
    server.behave("slow-crash", Behaviour(n_tokens=1000, delay_s=0.01))
    with worker("abandon", log_url, server.base_url, 1) as child:
        assert child.stdout is not None
        lines = child.stdout.read().split()
        assert child.wait(timeout=30) == 0
    in_flight = lines[lines.index("streaming") + 1]
    with EventLog(log_url) as log:
        summary = log.run(in_flight)
        assert summary.status == "interrupted"
        assert next(reversed(list(log.events(in_flight)))).kind == "end"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() with threads, Python 3.12+
@pytest.mark.parametrize("committer", [None, True], ids=["", "committer"])
def test_forked_child_writes_with_its_own_writer(log_url, make_backend, committer):
    """A child forked while the log is attached stores its own runs, none of the parent's twice;
    the parent's committer process (SQLite) stays the parent's."""
    with EventLog(log_url, committer=committer) as log:
        log.attach()
        backend = make_backend()
        backend.run("parent before fork")
        committing = log.health().committer
        assert (committing is not None) == bool(committer and log_url.startswith("sqlite"))
        pid = os.fork()
        if pid == 0:  # the child: one run, then leave without running the parent's tests
            code = 1
            try:
                backend.run("child after fork")
                log.close()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        backend.run("parent after fork")
        prompts = sorted(next(iter(log.events(s.run_id))).messages[0].text for s in log.runs())
        assert log.health().committer == committing
    assert prompts == ["child after fork", "parent after fork", "parent before fork"]


@pytest.mark.parametrize("spool", [None, False], ids=["spooled", "held-in-memory"])
def test_postgres_outage_loses_nothing(make_backend, postgres_url, spool):
    """PostgreSQL unreachable for a while as runs stream: once back, every event arrives once,
    whether the writer spooled them to disk or, with no spool, held them in memory."""
    url = postgres_url
    target = make_url(url)
    with TCPProxy((target.host or "127.0.0.1", target.port or 5432)) as proxy:
        proxied = target.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        backend = make_backend(stream=True, durable_timeout=0.3)
        with (
            EventLog(proxied, flush_interval=0.01, spool=spool) as log,
            capture_events() as captured,
        ):
            log.attach()
            list(backend.run("before the outage"))
            proxy.cut()
            for i in range(5):
                list(backend.run(f"during the outage {i}"))
            assert not log.flush(timeout=0.5), "writes cannot succeed while cut off"
            proxy.restore()
            assert log.flush(timeout=30)
            summaries = list(log.runs())
            assert len(summaries) == 6
            for summary in summaries:
                assert list(log.events(summary.run_id)) == [
                    e for e in captured if e.run_id == summary.run_id
                ]


def test_api_key_not_in_a_worker_database(log_url, server, tmp_path):
    """A separate process's key (given to the SDK) never reaches the stored log."""
    with worker("runs", log_url, server.base_url, 1) as process:
        assert process.wait(timeout=60) == 0
    if log_url.startswith("sqlite"):
        for path in tmp_path.glob("events.db*"):
            assert b"worker-key" not in path.read_bytes()
