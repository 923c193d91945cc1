"""``synthora ui`` over HTTP, on SQLite and on PostgreSQL: its pages, its live stream, its command.

What a browser makes of the pages is tested in test_ui_browser.py; here, what the server answers.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from http.client import HTTPResponse

import openai
import pytest

from synthora import Node, NodeType, scope
from synthora.demo import WEATHER_TOOL
from synthora.testing.server import Behaviour, ToolCallSpec

ROW = re.compile(r'<tr data-run="([0-9a-f-]+)"')


def get(url: str) -> tuple[int, str, HTTPResponse | urllib.error.HTTPError]:
    """Status, body and the response (for its headers) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode(), response
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), error


def test_runs_page_lists_runs_newest_first_with_their_columns(make_backend, log, viewer):
    """Each run is a row (status, operation, model, node path, tokens, finish reason) that
    links to its page, newest first; the server says its time."""
    backend = make_backend(behaviour=Behaviour(tokens=("a", "b")))
    first = backend.run("one")
    second = backend.run("two")
    assert log.flush()
    status, body, response = get(viewer + "/")
    assert status == 200
    ids = [summary.run_id for summary in log.runs()]
    assert ROW.findall(body) == ids
    assert first.text == second.text == "ab"
    assert f'href="/runs/{ids[0]}"' in body
    assert backend.model_type in body
    assert "agent:assistant/model:" in body
    assert ">stop<" in body
    assert re.search(r"app;dur=\d+", response.headers["Server-Timing"])
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_runs_page_filters_as_the_runs_command_does(make_backend, log, viewer):
    """model, node, status, since and errors only narrow the list as `synthora runs` does."""
    backend = make_backend(behaviour=Behaviour(tokens=("ok",)))
    backend.run("fine")
    with scope(Node(name="planner", type=NodeType.AGENT)):
        backend.run("inside")
    make_backend(behaviour=Behaviour(status=503))  # the same model answers 503 from now on
    with pytest.raises(openai.InternalServerError):
        backend.run("fails")
    assert log.flush()
    (failed,) = log.runs(errors_only=True)
    (planner,) = log.runs(node="planner")

    def listed(query: str) -> list[str]:
        status, body, _ = get(f"{viewer}/?{query}")
        assert status == 200, body
        return ROW.findall(body)

    assert listed("errors=1") == [failed.run_id]
    assert listed("status=error") == [failed.run_id]
    assert listed("node=planner") == [planner.run_id]
    assert len(listed("node=agent:planner")) == 2  # the scope and the run inside it
    assert listed("since=2999-01-01") == []
    assert len(listed(f"model={backend.model_type}&since=2000-01-01")) == 3


def test_runs_page_pages_through_older_runs(make_backend, log, viewer):
    """Past a page (3 runs in the test viewer), an 'older runs' link leads on without a gap
    or a repeat, and the older pages do not follow live."""
    backend = make_backend(behaviour=Behaviour(tokens=("x",)))
    for number in range(7):
        backend.run(f"run {number}")
    assert log.flush()
    seen: list[str] = []
    url = viewer + "/"
    while url:
        status, body, _ = get(url)
        assert status == 200
        seen += ROW.findall(body)
        assert ('id="live"' in body) == (url == viewer + "/")
        older = re.search(r'rel="next" href="([^"]+)"', body)
        url = viewer + older.group(1).replace("&amp;", "&") if older else ""
    assert seen == [summary.run_id for summary in log.runs()]
    assert len(seen) == 7


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("status=gone", "unknown status &#39;gone&#39;", id="status"),
        pytest.param("since=yesterday", "not an ISO date or time", id="since"),
        pytest.param("after=x", "a whole number", id="after"),
    ],
)
def test_bad_filters_are_refused_saying_why(log, viewer, query, message):
    """A filter the log cannot take is a 400 page that names it, not a server error."""
    path = "/live" if query.startswith("after") else "/"
    status, body, _ = get(f"{viewer}{path}?{query}")
    assert status == 400
    assert message in body


@pytest.mark.parametrize(
    ("host", "status"),
    [
        pytest.param("127.0.0.1:8765", 200, id="loopback"),
        pytest.param("localhost", 200, id="localhost"),
        pytest.param("[::1]:8765", 200, id="ipv6-loopback"),
        pytest.param("rebound.example:8765", 421, id="another-name"),
    ],
)
def test_only_loopback_names_reach_a_loopback_viewer(log, viewer, host, status):
    """A page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) reads nothing."""
    request = urllib.request.Request(viewer + "/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answered = response.status
    except urllib.error.HTTPError as error:
        answered = error.code
    assert answered == status


def test_an_unknown_run_is_a_404_page(log, viewer):
    status, body, _ = get(viewer + "/runs/0000dead")
    assert status == 404
    assert "no stored run id starts with &#39;0000dead&#39;" in body


def test_run_page_shows_transcript_usage_trace_and_commands(make_backend, log, viewer):
    """A run's page has what `synthora show` prints, and the commands to copy for the run."""
    backend = make_backend(behaviour=Behaviour(tokens=("Hello", " there")), stream=True)
    text = "".join(chunk.delta for chunk in backend.run("Say hello", temperature=0.25))
    assert log.flush()
    (run,) = log.runs()
    status, body, _ = get(f"{viewer}/runs/{run.run_id[:20]}")  # a prefix is enough
    assert status == 200
    assert text == "Hello there"
    assert "Say hello" in body
    assert 'title="token 2 at' in body
    assert "temperature" in body
    assert "0.25" in body
    assert f"synthora show {run.run_id}" in body
    assert f"synthora export {run.run_id} -o {run.run_id}.jsonl" in body
    assert f"synthora diff {run.run_id} &lt;other&gt;" in body


def test_run_page_shows_tool_calls_and_structured_output(make_backend, log, viewer):
    """A tool call shows its name, id and arguments; JSON asked for and given shows indented."""
    backend = make_backend(behaviour=Behaviour(tokens=('{"city":', '"Paris"}')))
    backend.run("Where?", response_format={"type": "json_object"})
    call = ToolCallSpec("get_weather", '{"city":"Paris"}', id="call_7")
    make_backend(behaviour=Behaviour(tool_calls=(call,)))
    backend.run("Weather?", tools=[WEATHER_TOOL])
    called, structured = log.runs()
    _, body, _ = get(f"{viewer}/runs/{structured.run_id}")
    assert 'id="structured">{\n  &#34;city&#34;: &#34;Paris&#34;\n}</pre>' in body
    _, body, _ = get(f"{viewer}/runs/{called.run_id}")
    assert "<strong>get_weather</strong>" in body
    assert "call_7" in body
    assert "{\n  &#34;city&#34;: &#34;Paris&#34;\n}" in body
    assert 'id="structured"' not in body


def test_live_stream_sends_the_newest_rows_when_a_run_ends(make_backend, log, viewer):
    """/live answers server-sent events: once a run is stored, an ``event: runs`` carries the
    newest page's rows with it."""
    backend = make_backend(behaviour=Behaviour(tokens=("x",)))
    with urllib.request.urlopen(f"{viewer}/live?after={log.head()}", timeout=20) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        backend.run("while watching")
        (run,) = log.runs()
        lines: list[str] = []
        while "event: runs" not in lines or lines[-1] != "":
            lines.append(stream.readline().decode().rstrip("\n"))
    data = "\n".join(line.removeprefix("data: ") for line in lines if line.startswith("data: "))
    assert ROW.findall(data) == [run.run_id]


# -- the command ------------------------------------------------------------------------------


def synthora(*argv: str) -> subprocess.Popen[str]:
    """The command as a person runs it (from elsewhere than the source tree)."""
    return subprocess.Popen(
        [sys.executable, "-m", "synthora", *argv],
        cwd=tempfile.gettempdir(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ui_command_serves_until_interrupted(make_backend, log, log_url):
    """`synthora ui --db URL --port 0` prints where it listens, serves, and stops on Ctrl-C."""
    make_backend(behaviour=Behaviour(tokens=("x",))).run("stored")
    assert log.flush()
    process = synthora("--db", log_url, "ui", "--port", "0")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert url, line
        status, body, _ = get(url.group(1) + "/")
        assert status == 200
        assert ROW.findall(body) == [run.run_id for run in log.runs()]
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=20)
    assert process.returncode in (0, 130), errors
    assert "Traceback" not in errors


def test_ui_command_says_in_one_line_that_the_port_is_taken(log, log_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = synthora("--db", log_url, "ui", "--port", str(port))
        out, errors = process.communicate(timeout=60)
    assert process.returncode == 1
    assert errors.strip().splitlines() == [
        f"synthora: port {port} on 127.0.0.1 is already in use; give another with --port"
    ]
    assert out == ""


@pytest.mark.parametrize("content", [None, b"this is not a database, only text\n" * 200])
def test_ui_command_says_in_one_line_that_the_log_is_unreadable(tmp_path, content):
    """A missing or unreadable SQLite file is one line on stderr, and nothing is served."""
    path = tmp_path / "events.db"
    if content is not None:
        path.write_bytes(content)
    process = synthora("--db", f"sqlite:///{path}", "ui", "--port", "0")
    out, errors = process.communicate(timeout=60)
    assert process.returncode == 1
    (line,) = errors.strip().splitlines()
    expected = "no event log at" if content is None else "cannot open the event log"
    assert line.startswith(f"synthora: {expected}"), line
    assert out == ""
    assert os.path.exists(path) == (content is not None)
