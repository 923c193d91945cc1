"""How long replay takes on a 1,000-run log: re-serving, re-emitting, exporting, importing.

usage: python bench/replay.py [--runs 1000] [--tokens 50] [--postgres URL] [--json FILE]

The log is filled with synthetic streamed chat runs (start, `--tokens` tokens, end), each with its
own prompt, then timed: a `ReplayBackend` answering every one of them (its index built on the
first request, included), `log.replay` re-emitting every run, an export to JSON Lines, and an
import of that file into a new SQLite log (and PostgreSQL when it answers).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from event_log import postgres_schema_url, synthetic_run

from synthora.events import Event
from synthora.storage import EventLog, ReplayBackend
from synthora.storage.transfer import export_runs, import_runs


def recorded_run(number: int, tokens: int) -> list[Event]:
    """A streamed run with a prompt of its own, 10 ms after the previous one."""
    ts = time.time_ns() + number * 10_000_000
    return synthetic_run(str(uuid.uuid4()), tokens, f"question number {number}", ts)


def timed(action: Any) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    report: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        with EventLog(f"sqlite:///{folder}/recorded.db") as log:
            log.write(e for n in range(args.runs) for e in recorded_run(n, args.tokens))
            replay = ReplayBackend(log, stream=True)

            def serve_all() -> None:
                for n in range(args.runs):
                    for _ in replay.run(f"question number {n}"):
                        pass

            report["replay_backend_s"] = timed(serve_all)
            run_ids = [s.run_id for s in log.runs()]
            report["re_emit_s"] = timed(lambda: [log.replay(r) for r in run_ids])
            exported = io.StringIO()
            report["export_s"] = timed(lambda: export_runs(log, exported))
        lines = exported.getvalue().splitlines()
        with EventLog(f"sqlite:///{folder}/imported.db") as target:
            report["import_sqlite_s"] = timed(lambda: import_runs(target, lines))
    postgres = postgres_schema_url(args.postgres)
    if postgres is not None:
        url, drop = postgres
        try:
            with EventLog(url) as target:
                report["import_postgres_s"] = timed(lambda: import_runs(target, lines))
        finally:
            drop()
    print(f"{args.runs} runs of {args.tokens} tokens ({len(lines):,} events):")
    for name, seconds in report.items():
        print(f"  {name:20s} {seconds:7.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
