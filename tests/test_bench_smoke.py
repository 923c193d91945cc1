"""The benchmarks still run (at a tiny size) and write their figures: they never rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize(
    ("script", "argv", "keys"),
    [
        pytest.param(
            "stream_overhead.py",
            ["--tokens", "20", "--rounds", "1", "--plain-runs", "2"],
            {"streamed_us_per_chunk", "plain_us_per_run"},
            id="stream-overhead",
        ),
        pytest.param(
            "event_log.py",
            ["--events", "3000", "--read-events", "3000", "--caller-tokens", "20", "--rounds", "1"],
            {"sqlite_ingest", "sqlite_caller", "sqlite_read"},
            id="event-log",
        ),
        pytest.param(
            "wires.py",
            ["--tokens", "20", "--rounds", "1"],
            {"chat", "responses", "messages"},
            id="wires",
        ),
        pytest.param(
            "durable_log.py",
            ["--runs", "4", "--rounds", "1", "--threads", "2"],
            {"no log", "SQLite log", "SQLite, no committer"},
            id="durable-log",
        ),
        pytest.param(
            "peers.py", ["--tokens", "20", "--rounds", "1"], {"us_per_chunk", "missing"}, id="peers"
        ),
        pytest.param(
            "drop_in.py",
            ["--tokens", "20", "--rounds", "1", "--plain-runs", "2"],
            {"streamed_cpu_us_per_chunk", "plain_us_per_call", "missing"},
            id="drop-in",
        ),
        pytest.param("scale.py", ["--levels", "1,2", "--tokens", "5"], {"1", "2"}, id="scale"),
        pytest.param(
            "replay.py",
            ["--runs", "5", "--tokens", "3"],
            {"replay_backend_s", "export_s"},
            id="replay",
        ),
        pytest.param(
            "ui_pages.py",
            ["--runs", "30", "--tokens", "4", "--long-tokens", "20", "--rounds", "1"],
            {"sqlite"},
            id="ui-pages",
        ),
        pytest.param(
            "handler_memory.py",
            ["--backends", "10", "--warmup", "2"],
            {"rss_growth_mib", "alive_after"},
            id="handler-memory",
        ),
    ],
)
def test_benchmark_runs_small(tmp_path, script, argv, keys):
    """Each bench script runs end to end and writes a JSON report with its figures."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *argv, "--json", str(report)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert keys <= set(json.loads(report.read_text()))
