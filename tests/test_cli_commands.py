"""Every synthora command in a subprocess, as a person runs it, bad input included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from synthora import Node, NodeType, scope
from synthora.events import EndEvent, StartEvent, event_from_dict
from synthora.storage import EventLog
from synthora.testing.server import Behaviour


def synthora(*argv: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synthora", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        input=stdin,
        timeout=120,
        check=False,
    )


@pytest.fixture
def stored(tmp_path, make_backend):
    """A SQLite log with a streamed run, a plain run and a failed run."""
    url = f"sqlite:///{tmp_path / 'stored.db'}"
    with EventLog(url) as log:
        log.attach()
        list(make_backend(stream=True).run("streamed words here"))
        make_backend().run("plain words")
        with pytest.raises(openai.InternalServerError):
            make_backend(behaviour=Behaviour(status=500)).run("broken")
    return url


def test_demo_runs_offline_and_stores_its_runs(tmp_path):
    """`synthora demo`: the agent conversation replayed offline, stored, then listed."""
    done = synthora("--db", f"sqlite:///{tmp_path / 'demo.db'}", "demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "You said: Plan a day in Paris." in done.stdout
    assert "invoke_agent" in done.stdout
    assert "execute_tool" in done.stdout
    assert "[span] chat synthora-demo" in done.stderr
    with EventLog(f"sqlite:///{tmp_path / 'demo.db'}") as log:
        assert sorted(s.operation for s in log.runs()) == [
            "chat", "chat", "chat", "execute_tool", "invoke_agent",
        ]  # fmt: skip


def test_replay_prints_the_run(stored, tmp_path):
    """`synthora replay RUN --speed 0` prints the run's text again."""
    with EventLog(stored) as log:
        streamed = next(s for s in log.runs() if s.stream)
    done = synthora("--db", stored, "replay", streamed.run_id[:23], "--speed", "0", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "You said: streamed words here" in done.stdout


def test_exporting_a_scope_brings_its_conversation(tmp_path, make_backend):
    """`synthora export SCOPE -o FILE` writes the scope and every run inside it, in the order
    they started, into a folder it makes; the run next to the scope stays out."""
    url = f"sqlite:///{tmp_path / 'scoped.db'}"
    with EventLog(url) as log:
        log.attach()
        backend = make_backend()
        with scope(Node(name="planner", type=NodeType.AGENT)) as planner:
            backend.run("first step")
            with scope(Node(name="search", type=NodeType.TOOL)) as search:
                backend.run("second step")
        backend.run("outside")
    assert planner.run_id is not None
    target = tmp_path / "tests" / "cassettes" / "test_agent" / "test_plan.jsonl"
    done = synthora("--db", url, "export", planner.run_id[:20], "-o", str(target), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "exported 4 runs" in done.stderr
    starts = [
        event
        for line in target.read_text().splitlines()
        if isinstance(event := event_from_dict(json.loads(line)), StartEvent)
    ]
    assert [start.operation for start in starts] == ["invoke_agent", "chat", "execute_tool", "chat"]
    assert (starts[0].run_id, starts[2].run_id) == (planner.run_id, search.run_id)
    assert [s.messages[-1].text for s in starts if s.messages] == ["first step", "second step"]


def test_export_import_export_is_identical(stored, tmp_path, postgres_url):
    """SQLite -> export -> import into PostgreSQL -> export: the same bytes."""
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert synthora("--db", stored, "export", "-o", str(first), cwd=tmp_path).returncode == 0
    loaded = synthora("--db", postgres_url, "import", str(first), cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert "imported 3 runs" in loaded.stdout
    assert synthora("--db", postgres_url, "export", "-o", str(second), cwd=tmp_path).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    assert len(first.read_text().splitlines()) > 3
    again = synthora("--db", postgres_url, "import", str(first), cwd=tmp_path)
    assert "imported 3 runs" in again.stdout
    with EventLog(postgres_url) as log:
        assert len(list(log.runs())) == 3


def test_export_to_stdout_and_import_from_stdin(stored, tmp_path):
    """Export to stdout, import from stdin: one pipe moves a run between databases."""
    exported = synthora("--db", stored, "export", cwd=tmp_path)
    assert exported.returncode == 0
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    loaded = synthora("--db", target, "import", "-", cwd=tmp_path, stdin=exported.stdout)
    assert loaded.returncode == 0, loaded.stderr
    runs = synthora("--db", target, "runs", "--json", cwd=tmp_path)
    assert len(runs.stdout.splitlines()) == 3


def test_corrupt_export_line(tmp_path, stored):
    """A corrupt line: one message naming the line, a non-zero exit, nothing stored."""
    lines = synthora("--db", stored, "export", cwd=tmp_path).stdout.splitlines()
    lines[1] = '{"kind": "token", "run_id": 7}'
    (tmp_path / "bad.jsonl").write_text("\n".join(lines))
    target = f"sqlite:///{tmp_path / 'target.db'}"
    done = synthora("--db", target, "import", str(tmp_path / "bad.jsonl"), cwd=tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("synthora: line 2 is not a Synthora event")
    assert not (tmp_path / "target.db").exists()


def test_prune(stored, tmp_path):
    """`prune --before` deletes the older runs and says how many."""
    done = synthora("--db", stored, "prune", "--before", "2999-01-01", cwd=tmp_path)
    assert done.returncode == 0
    assert "deleted 3 runs" in done.stdout
    assert synthora("--db", stored, "runs", "--json", cwd=tmp_path).stdout == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(("show", "ffff"), "no stored run id starts with 'ffff'", id="unknown-run"),
        pytest.param(("replay", "0"), "ambiguous", id="ambiguous-run"),
        pytest.param(("prune", "--before", "yesterday"), "not an ISO date", id="bad-date"),
    ],
)
def test_bad_input_is_one_line(stored, tmp_path, argv, message):
    """Unknown or ambiguous ids and bad arguments: a clear message, a non-zero exit."""
    done = synthora("--db", stored, *argv, cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_database(tmp_path):
    """Reading a log that does not exist says so, and creates nothing."""
    missing = tmp_path / "nowhere.db"
    done = synthora("--db", f"sqlite:///{missing}", "runs", cwd=tmp_path)
    assert done.returncode == 1
    assert f"no event log at {missing}" in done.stderr
    assert not missing.exists()


def test_show_a_whole_agent_conversation(tmp_path, make_backend):
    """`show` on an agent scope prints every run inside it, in order."""
    url = f"sqlite:///{tmp_path / 'agent.db'}"
    with EventLog(url) as log:
        log.attach()
        with scope(Node(name="planner", type=NodeType.AGENT)) as planner:
            make_backend().run("plan it")
            make_backend().run("then do it")
    done = synthora("--db", url, "show", planner.run_id[:23], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 runs inside this invoke_agent, in order" in done.stdout
    assert done.stdout.index("[user] plan it") < done.stdout.index("[user] then do it")


def test_a_failed_export_leaves_the_file_it_would_replace(stored, tmp_path):
    """Exporting a run that does not exist fails, one line, and the existing file is untouched."""
    existing = tmp_path / "existing.jsonl"
    existing.write_text("precious\n")
    done = synthora("--db", stored, "export", "NOSUCHID", "-o", str(existing), cwd=tmp_path)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1
    assert existing.read_text() == "precious\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`synthora runs | head -1` on a long log: one line out, nothing on stderr, exit 0."""
    url = f"sqlite:///{tmp_path / 'many.db'}"
    node = Node(name="m", type=NodeType.MODEL)
    with EventLog(url) as log:
        log.write(
            event
            for n in range(3000)
            for event in (
                StartEvent(run_id=f"run-{n:05d}", seq=0, ts=n + 1, node=node, operation="chat"),
                EndEvent(run_id=f"run-{n:05d}", seq=1, ts=n + 2, node=node),
            )
        )
    done = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m synthora --db {url} runs --limit 0 | head -1; '
         'exit "${PIPESTATUS[0]}"'],
        capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert len(done.stdout.splitlines()) == 1


def test_prune_on_a_damaged_database_is_one_line(stored, tmp_path):
    """A database error while pruning (a table dropped behind the log's back) is one line."""
    import sqlite3  # noqa: PLC0415 - only this test damages a database by hand

    with sqlite3.connect(stored.removeprefix("sqlite:///")) as connection:
        connection.execute("DROP TABLE synthora_events")
    done = synthora("--db", stored, "prune", "--before", "2100-01-01", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("synthora: cannot prune"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_same_runs_export_the_same_bytes_from_any_database(
    tmp_path, make_backend, postgres_url
):
    """Parameters whose key order JSONB would change: SQLite and PostgreSQL export alike."""
    sqlite_url = f"sqlite:///{tmp_path / 'params.db'}"
    config = {"top_p": 0.9, "temperature": 0.5, "metadata": {"zz": "1", "a": "2"}, "seed": 7}
    with EventLog(sqlite_url) as log:
        log.attach()
        make_backend(config=config).run("key order")
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert synthora("--db", sqlite_url, "export", "-o", str(first), cwd=tmp_path).returncode == 0
    assert synthora("--db", postgres_url, "import", str(first), cwd=tmp_path).returncode == 0
    assert synthora("--db", postgres_url, "export", "-o", str(second), cwd=tmp_path).returncode == 0
    assert first.read_bytes() == second.read_bytes()
