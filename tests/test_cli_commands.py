"""Every synthora command in a subprocess, as a person runs it, bad input included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlalchemy import make_url

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


@pytest.mark.parametrize(
    ("config", "prompt"),
    [
        pytest.param(
            {"top_p": 0.9, "temperature": 0.5, "metadata": {"zz": "1", "a": "2"}, "seed": 7},
            "key order",
            id="key-order",
        ),
        pytest.param(
            {"user": "a\x00b", "metadata": {"\x00": "\\u0000 \uffff0"}},
            "NUL \x00, literal \\u0000, U+FFFF \uffff",
            id="nul-and-lookalikes",
        ),
    ],
)
def test_the_same_runs_export_the_same_bytes_from_any_database(
    tmp_path, make_backend, postgres_url, config, prompt
):
    """What JSONB would change (key order, NUL): SQLite and PostgreSQL export alike."""
    sqlite_url = f"sqlite:///{tmp_path / 'params.db'}"
    with EventLog(sqlite_url) as log:
        log.attach()
        make_backend(config=config).run(prompt)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert synthora("--db", sqlite_url, "export", "-o", str(first), cwd=tmp_path).returncode == 0
    assert synthora("--db", postgres_url, "import", str(first), cwd=tmp_path).returncode == 0
    assert synthora("--db", postgres_url, "export", "-o", str(second), cwd=tmp_path).returncode == 0
    assert first.read_bytes() == second.read_bytes()


def export_lines(url: str, cwd: Path) -> list[dict[str, Any]]:
    done = synthora("--db", url, "export", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def write_lines(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(event, sort_keys=True) + "\n" for event in events))
    return path


def as_run(events: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    return [{**event, "run_id": run_id} for event in events]


def test_import_keeps_the_stored_runs_and_refuses_broken_ones(stored, tmp_path):
    """An edited run that conflicts with the stored one, a seq gap, a negative seq, an end with
    no start: each refused and counted with its first line, exit 1; the good runs are imported
    and nothing stored changes. The same file imported twice is fine."""
    original = export_lines(stored, tmp_path)
    same = synthora("--db", stored, "import", str(write_lines(tmp_path / "same.jsonl", original)),
                    cwd=tmp_path)  # fmt: skip
    assert (same.returncode, same.stderr) == (0, "")
    assert "imported 3 runs" in same.stdout
    assert "3 already stored as they are" in same.stdout
    runs: dict[str, list[dict[str, Any]]] = {}
    for event in original:
        runs.setdefault(event["run_id"], []).append(event)
    streamed = next(run for run in runs.values() if run[0]["stream"])
    plain = next(run for run in runs.values() if not run[0]["stream"] and run[-1]["kind"] == "end")
    edited = [*plain[:-1], {**plain[-1], "finish_reason": "length"}]
    negative = as_run(plain, "negative")
    negative[0] = {**negative[0], "seq": -1}
    lines = [
        *streamed,  # lines 1-: already stored
        *edited,  # conflicts with the stored run at its end event
        *as_run(streamed[:2] + streamed[3:], "gap"),
        *as_run(plain[1:], "no-start"),
        *negative,
        *as_run(plain, "new"),
    ]
    conflict_line = len(streamed) + len(edited)
    gap_line = conflict_line + 3
    done = synthora("--db", stored, "import", str(write_lines(tmp_path / "edited.jsonl", lines)),
                    cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert "imported 2 runs" in done.stdout
    assert "1 already stored as they are" in done.stdout
    (message,) = done.stderr.splitlines()
    assert message.startswith("synthora: 4 runs not imported (stored runs left as they were): ")
    assert f"a conflict with the stored run of the same id (1 run; first at line {conflict_line}:" \
        in message  # fmt: skip
    assert f"a gap in its seq (1 run; first at line {gap_line}: seq 3 where 2 is due)" in message
    assert "no start event (1 run; first at line" in message
    assert "a negative seq (1 run; first at line" in message
    with EventLog(stored) as log:
        ids = {summary.run_id for summary in log.runs()}
    assert ids == {*runs, "new"}
    assert [e for e in export_lines(stored, tmp_path) if e["run_id"] != "new"] == original


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(lambda line: line[:20] + b"\xff\xfe" + line[20:], "Invalid UTF-8",
                     id="not-utf8"),
        pytest.param(lambda line: line.replace(b'"seq":1', b'"seq":%d' % 2**70),
                     "seq 1180591620717411303424 where 1 is due",
                     id="seq-2**70"),
        pytest.param(lambda line: line.replace(b'"ts":', b'"ts":%d' % 2**70 + b"0"),
                     "is beyond what the log can store", id="ts-2**70"),
    ],
)  # fmt: skip
def test_import_of_a_damaged_line_is_one_line(stored, tmp_path, damage, message):
    """A line that is not UTF-8, or a number too large to store: one line naming the line,
    a non-zero exit, no traceback."""
    lines = synthora("--db", stored, "export", cwd=tmp_path).stdout.encode().splitlines()
    lines[1] = damage(lines[1])
    (tmp_path / "damaged.jsonl").write_bytes(b"\n".join(lines))
    target = f"sqlite:///{tmp_path / 'target.db'}"
    done = synthora("--db", target, "import", str(tmp_path / "damaged.jsonl"), cwd=tmp_path)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("synthora: ")
    assert "line 2" in line
    assert message in line


def test_import_keeps_text_with_unicode_line_separators(tmp_path, make_backend):
    """Text holding U+2028, U+2029 or NEL (raw in JSON) survives export and import."""
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with EventLog(source) as log:
        log.attach()
        make_backend().run("one\u2028two\u2029three\x85four")
    exported = synthora("--db", source, "export", cwd=tmp_path).stdout
    target = f"sqlite:///{tmp_path / 'target.db'}"
    done = synthora("--db", target, "import", "-", cwd=tmp_path, stdin=exported)
    assert done.returncode == 0, done.stderr
    assert synthora("--db", target, "export", cwd=tmp_path).stdout == exported


def test_import_and_migrate_never_print_the_password(stored, tmp_path, postgres_url):
    """The database URL they report has no password in it."""
    url = make_url(postgres_url).set(password="hunter2-not-shown")
    secret_url = url.render_as_string(hide_password=False)
    exported = synthora("--db", stored, "export", cwd=tmp_path).stdout
    for argv, stdin in ((("migrate",), None), (("import", "-"), exported)):
        done = synthora("--db", secret_url, *argv, cwd=tmp_path, stdin=stdin)
        assert done.returncode == 0, done.stderr
        assert "hunter2" not in done.stdout + done.stderr
        assert "***" in done.stdout
