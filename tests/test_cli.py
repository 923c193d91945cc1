"""The synthora command line, on a log of real runs; and its Jaeger lookup, on a stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider

import synthora.telemetry
from support import cli
from synthora.events import Event, event_from_dict
from synthora.storage import EventLog
from synthora.storage.codec import batch_rows
from synthora.storage.journal import Journal
from synthora.storage.spool import Spool, default_spool_path
from synthora.testing import capture_events
from synthora.testing.server import Behaviour


@pytest.fixture
def stored(log_url, make_backend):
    """A log holding an ok run, a failed run and a streamed run."""
    with EventLog(log_url) as log:
        log.attach()
        make_backend().run("first question")
        with pytest.raises(openai.RateLimitError):
            make_backend(behaviour=Behaviour(status=429, error_message="slow down")).run("again")
    return log_url


def test_runs_table_and_filters(stored):
    """`runs` lists every run newest first; --errors-only and --status filter them."""
    status, out = cli("--db", stored, "runs")
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["RUN", "STARTED", "(UTC)"]
    assert [row.split()[3] for row in rows] == ["error", "ok"]
    status, out = cli("--db", stored, "runs", "--errors-only")
    assert len(out.splitlines()) == 2
    assert "RateLimitError" in out


def test_runs_as_json_lines(stored):
    """`runs --json` writes one JSON object per run, with the summary's fields."""
    status, out = cli("--db", stored, "runs", "--json", "--status", "ok")
    assert status == 0
    (line,) = out.splitlines()
    summary = json.loads(line)
    assert summary["status"] == "ok"
    assert summary["output_tokens"] == 5
    assert set(summary) >= {"run_id", "model", "node_path", "started_at", "duration_s"}


def test_runs_with_truncated_status(log_url, make_backend):
    """`runs --status truncated` lists the streams a server ended without finishing them."""
    with EventLog(log_url) as log:
        log.attach()
        make_backend().run("whole")
        cut = make_backend(behaviour=Behaviour(n_tokens=6, end_after=3), stream=True)
        assert len(list(cut.run("cut short"))) == 3
    status, out = cli("--db", log_url, "runs", "--status", "truncated", "--json")
    assert status == 0
    (line,) = out.splitlines()
    summary = json.loads(line)
    assert (summary["status"], summary["finish_reason"]) == ("truncated", "truncated")


def test_show_by_prefix(stored):
    """`show` takes a unique prefix and prints the transcript, usage and any error."""
    runs = [json.loads(line) for line in cli("--db", stored, "runs", "--json")[1].splitlines()]
    failed = next(r for r in runs if r["status"] == "error")
    ok = next(r for r in runs if r["status"] == "ok")
    status, out = cli("--db", stored, "show", ok["run_id"][:23])
    assert status == 0
    assert "[user] first question" in out
    assert "[assistant] You said: first question" in out
    assert "usage    2 in, 5 out" in out
    _, out = cli("--db", stored, "show", failed["run_id"])
    assert "RateLimitError (HTTP 429) during request" in out


def test_unknown_and_ambiguous_runs_are_one_line_errors(stored, capsys):
    """A run id nobody has, or a prefix several share: one line on stderr, exit 1."""
    assert cli("--db", stored, "show", "ffff")[0] == 1
    assert cli("--db", stored, "show", "0")[0] == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "synthora: no stored run id starts with 'ffff'"
    assert "ambiguous" in err[1]


def test_bad_database_url_is_one_line(capsys):
    """A database URL that is not one: one line, exit 1, no traceback."""
    assert cli("--db", "nonsense", "runs")[0] == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("synthora: not a database URL")


def test_python_dash_m(stored):
    """`python -m synthora` is the same command."""
    done = subprocess.run(
        [sys.executable, "-m", "synthora", "--db", stored, "runs", "--json"],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        check=True,
    )
    assert len(done.stdout.splitlines()) == 2


# -- Jaeger -----------------------------------------------------------------------------------


class JsonStandIn(BaseHTTPRequestHandler):
    """A local HTTP API that answers each GET with the JSON its `answer` chooses."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def answer(self) -> tuple[int, object]:
        raise NotImplementedError

    def do_GET(self) -> None:
        status, body = self.answer()
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve(handler: type[JsonStandIn]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class JaegerStandIn(JsonStandIn):
    """Answers /api/v3/traces/{id} the way Jaeger v2's query API does."""

    traces: ClassVar[dict[str, list[str]]] = {}

    def answer(self) -> tuple[int, object]:
        trace_id = self.path.rsplit("/", 1)[-1]
        names = self.traces.get(trace_id)
        if names is None:
            return 404, {"error": {"httpCode": 404, "message": "trace not found"}}
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "app"}}]}
        spans = [{"traceId": trace_id, "spanId": "00f067aa0ba902b7", "name": n} for n in names]
        resource_spans = [{"resource": resource, "scopeSpans": [{"spans": spans}]}]
        return 200, {"result": {"resourceSpans": resource_spans}}


@pytest.fixture
def jaeger():
    yield from serve(JaegerStandIn)


def store_a_traced_run(url, make_backend):
    """Run once with tracing on (the SDK's default sampler) into the log at `url`; its summary."""
    provider = TracerProvider(shutdown_on_exit=False)
    synthora.telemetry.instrument(provider)
    try:
        with EventLog(url) as log:
            log.attach()
            make_backend().run("traced")
            (summary,) = log.runs()
    finally:
        synthora.telemetry.uninstrument()
        provider.shutdown()
    return summary


@pytest.fixture
def traced_run(tmp_path, make_backend):
    """A run stored with tracing on: (db url, run id, trace id)."""
    url = f"sqlite:///{tmp_path / 'traced.db'}"
    summary = store_a_traced_run(url, make_backend)
    return url, summary.run_id, summary.trace_id


@pytest.fixture
def unsampled_run(tmp_path, make_backend, monkeypatch):
    """A run stored with tracing on and OTEL_TRACES_SAMPLER=always_off: (db url, run id)."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    url = f"sqlite:///{tmp_path / 'unsampled.db'}"
    return url, store_a_traced_run(url, make_backend).run_id


def test_trace_found_in_jaeger(traced_run, jaeger):
    """`trace` finds the run's trace in Jaeger and prints its UI link."""
    url, run_id, trace_id = traced_run
    JaegerStandIn.traces = {trace_id: ["chat m"]}
    status, out = cli("--db", url, "trace", run_id[:23], "--jaeger", jaeger)
    assert status == 0
    assert f"{jaeger}/trace/{trace_id}" in out
    assert "1 spans from app" in out


def test_trace_not_yet_in_jaeger(traced_run, jaeger):
    """A trace Jaeger does not know yet: said plainly, exit 1."""
    url, run_id, _ = traced_run
    JaegerStandIn.traces = {}
    status, out = cli("--db", url, "trace", run_id, "--jaeger", jaeger)
    assert status == 1
    assert "is not in Jaeger" in out


def test_jaeger_unreachable(traced_run, capsys):
    """Jaeger down: one line saying so."""
    url, run_id, _ = traced_run
    assert cli("--db", url, "trace", run_id, "--jaeger", "http://127.0.0.1:9")[0] == 1
    assert "not reachable" in capsys.readouterr().err


def test_trace_of_an_unsampled_run(unsampled_run, capsys):
    """A run the sampler dropped has no trace to look up: said so, without asking Jaeger."""
    url, run_id = unsampled_run
    status, out = cli("--db", url, "trace", run_id, "--jaeger", "http://127.0.0.1:9")
    assert (status, out) == (1, "")
    assert capsys.readouterr().err == (
        f"synthora: run {run_id} was not sampled: the tracer's sampler dropped its trace, "
        "so none was exported\n"
    )


def test_show_of_an_unsampled_run(unsampled_run):
    """`show` says an unsampled run's trace was not sampled, and links to no trace."""
    url, run_id = unsampled_run
    status, out = cli("--db", url, "show", run_id)
    assert status == 0
    (line,) = [line for line in out.splitlines() if line.startswith("trace")]
    assert line.split(maxsplit=1)[1].startswith("not sampled")
    assert "/trace/" not in out


def test_an_older_log_with_trace_ids_still_finds_them(tmp_path, make_backend, jaeger):
    """Events logged before sampling was recorded (no trace_sampled) are still looked up by
    their trace id; one Jaeger does not know may not have been sampled, and `trace` says so."""
    provider = TracerProvider(shutdown_on_exit=False)
    synthora.telemetry.instrument(provider)
    try:
        with capture_events() as events:
            make_backend().run("logged by an older version")
    finally:
        synthora.telemetry.uninstrument()
        provider.shutdown()
    older = [
        event_from_dict({k: v for k, v in e.to_dict().items() if k != "trace_sampled"})
        for e in events
    ]
    url = f"sqlite:///{tmp_path / 'older.db'}"
    with EventLog(url) as log:
        log.write(older)
    run_id, trace_id = older[0].run_id, older[0].trace_id
    JaegerStandIn.traces = {trace_id: ["chat m"]}
    status, out = cli("--db", url, "trace", run_id, "--jaeger", jaeger)
    assert status == 0
    assert f"{jaeger}/trace/{trace_id}" in out
    JaegerStandIn.traces = {}
    status, out = cli("--db", url, "trace", run_id, "--jaeger", jaeger)
    assert status == 1
    assert out.endswith("is not in Jaeger at " + jaeger + " (yet, or it was not sampled)\n")


class GrafanaStandIn(JsonStandIn):
    """Answers /api/health and /api/search (with basic auth) like Grafana's HTTP API."""

    dashboards: ClassVar[list[dict[str, str]]] = []

    def answer(self) -> tuple[int, object]:
        if self.path.startswith("/api/health"):
            return 200, {"database": "ok", "version": "13.2.0"}
        if not self.headers.get("Authorization", "").startswith("Basic "):
            return 401, {"message": "Unauthorized"}
        if self.path.startswith("/api/search"):
            return 200, self.dashboards
        return 404, {"message": "Not found"}


class JaegerServices(JsonStandIn):
    """Jaeger's /api/v3/services."""

    def answer(self) -> tuple[int, object]:
        return 200, {"services": ["pytest", "jaeger"]}


@pytest.fixture
def grafana():
    yield from serve(GrafanaStandIn)


@pytest.fixture
def jaeger_services():
    yield from serve(JaegerServices)


def test_doctor_all_wired(stored, jaeger_services, grafana):
    """Log at the current schema, Jaeger answering, Grafana with the dashboard: all ok."""
    GrafanaStandIn.dashboards = [{"uid": "synthora-runs", "title": "Synthora runs"}]
    status, out = cli("--db", stored, "doctor", "--jaeger", jaeger_services, "--grafana", grafana)
    assert status == 0, out
    log_line, jaeger_line, grafana_line = out.splitlines()
    assert log_line.startswith("ok  event log")
    assert "runs stored" in log_line
    assert "up, 2 services, receiving from pytest" in jaeger_line
    assert "dashboard provisioned" in grafana_line


def leave_in_spool(url: str, events: list[Event]) -> None:
    """As a process that died during an outage leaves them."""
    spool = Spool(default_spool_path(url))
    spool.append(batch_rows(events))
    spool.close()


def leave_in_journal(url: str, events: list[Event]) -> None:
    """As a process killed before its writer committed its journal leaves them."""
    journal = Journal(default_spool_path(url))
    journal.append(events)
    segment = journal.cut()
    assert segment is not None
    segment.close()


def assert_doctor_stores(
    url: str, leave: Callable[[str, list[Event]], None], backend, urls
) -> None:
    """A run `leave` puts where a dead process leaves it: doctor stores it and says so."""
    GrafanaStandIn.dashboards = [{"uid": "synthora-runs", "title": "Synthora runs"}]
    with capture_events() as captured:
        backend.run("left by a process that died")
    leave(url, captured)
    status, out = cli("--db", url, "doctor", "--jaeger", urls[0], "--grafana", urls[1])
    assert status == 0, out
    log_line = out.splitlines()[0]
    assert f"stored {len(captured)} events that earlier processes left" in log_line
    status, out = cli("--db", url, "show", captured[0].run_id)
    assert "left by a process that died" in out


def test_doctor_stores_a_spool_left_behind(stored, jaeger_services, grafana, make_backend):
    """Runs spooled by a process that died during an outage, on any database."""
    backend = make_backend(behaviour=Behaviour())
    assert_doctor_stores(stored, leave_in_spool, backend, (jaeger_services, grafana))


def test_doctor_stores_a_journal_left_behind(tmp_path, jaeger_services, grafana, make_backend):
    """Runs a process killed before its writer's next round left journaled (SQLite only)."""
    backend = make_backend(behaviour=Behaviour())
    url = f"sqlite:///{tmp_path / 'journaled.db'}"
    assert_doctor_stores(url, leave_in_journal, backend, (jaeger_services, grafana))


def test_doctor_reports_what_is_missing(stored, grafana):
    """A Grafana without the dashboard and a Jaeger that is down: said, and exit 1."""
    GrafanaStandIn.dashboards = []
    status, out = cli(
        "--db", stored, "doctor", "--jaeger", "http://127.0.0.1:9", "--grafana", grafana
    )
    assert status == 1
    _, jaeger_line, grafana_line = out.splitlines()
    assert jaeger_line.startswith("NO  Jaeger")
    assert "not reachable" in jaeger_line
    assert grafana_line.startswith("NO  Grafana")
    assert "missing" in grafana_line
