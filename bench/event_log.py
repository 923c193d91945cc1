"""What the event log costs and sustains: ingest, the caller's cost per token, read-back.

usage: python bench/event_log.py [--events 200000] [--read-events 1000000] [--postgres URL]
       [--json FILE]

* ingest: synthetic streamed runs (start, 1,000 tokens, end) emitted on the bus with the log
  attached, timed from the first emission to the last commit; against the raw driver's
  ``executemany`` of one row per event (what a plain logger writes) in the same run.
* caller: µs per token a 2,000-token streamed run gains when the log is attached (server in a
  separate process, interleaved rounds).
* read-back: a log of `--read-events` events read in order, events/s, then (in a second pass,
  since tracing slows allocation) the peak of memory allocated while reading.
PostgreSQL figures are included when `--postgres` (default: the local test server) answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

from synthora import Node, NodeType, OpenAIChatBackend, bus
from synthora.events import EndEvent, Event, StartEvent, TokenEvent, Usage
from synthora.messages import assistant, user
from synthora.storage import EventLog

sys.path.insert(0, str(Path(__file__).parent))
from stream_overhead import start_server

NODE = Node(name="bench", type=NodeType.MODEL, parent=Node(name="agent", type=NodeType.AGENT))
TOKENS_PER_RUN = 1000
POSTGRES_URL = os.environ.get(
    "SYNTHORA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
"""The PostgreSQL the benches measure when it answers: the test suite's."""


def synthetic_run(
    run_id: str,
    tokens: int = TOKENS_PER_RUN,
    prompt: str = "benchmark prompt",
    ts: int | None = None,
) -> list[Event]:
    """A streamed run's events, as a backend would emit them."""
    ts = time.time_ns() if ts is None else ts
    events: list[Event] = [
        StartEvent(
            run_id=run_id,
            seq=0,
            ts=ts,
            node=NODE,
            operation="chat",
            model="bench",
            stream=True,
            messages=(user(prompt),),
        )
    ]
    events += [
        TokenEvent(
            run_id=run_id, seq=i + 1, ts=ts + i * 1000, node=NODE, index=i, text=f" w{i % 97}"
        )
        for i in range(tokens)
    ]
    events.append(
        EndEvent(
            run_id=run_id,
            seq=tokens + 1,
            ts=ts + tokens * 1000,
            node=NODE,
            output=assistant("x"),
            finish_reason="stop",
            usage=Usage(input_tokens=3, output_tokens=tokens),
            duration_s=0.1,
        )
    )
    return events


def emit_all(runs: list[list[Event]]) -> None:
    for events in runs:
        for event in events:
            bus.dispatch(bus.signals[event.kind], None, event=event)


def ingest(url: str, total: int) -> float:
    """Events per second, emission to commit, through an attached EventLog."""
    runs = [synthetic_run(str(uuid.uuid4())) for _ in range(total // (TOKENS_PER_RUN + 2))]
    count = sum(map(len, runs))
    with EventLog(url, durability="normal") as log:
        log.attach()
        began = time.perf_counter()
        emit_all(runs)
        assert log.flush(timeout=600)
        elapsed = time.perf_counter() - began
    return count / elapsed


def raw_sqlite(path: str, total: int) -> float:
    """The raw driver: sqlite3 executemany, one JSON row per event, one transaction."""
    runs = [synthetic_run(str(uuid.uuid4())) for _ in range(total // (TOKENS_PER_RUN + 2))]
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute(
        "CREATE TABLE raw (position INTEGER PRIMARY KEY, run_id TEXT, seq INTEGER, body TEXT,"
        " UNIQUE (run_id, seq))"
    )
    began = time.perf_counter()
    rows = [(e.run_id, e.seq, json.dumps(e.to_dict())) for events in runs for e in events]
    connection.execute("BEGIN")
    connection.executemany("INSERT INTO raw (run_id, seq, body) VALUES (?, ?, ?)", rows)
    connection.execute("COMMIT")
    elapsed = time.perf_counter() - began
    connection.close()
    return len(rows) / elapsed


def raw_postgres(url: str, total: int) -> float:
    """The raw driver: psycopg executemany, one JSONB row per event, one transaction."""
    import psycopg  # noqa: PLC0415 - only with PostgreSQL

    runs = [synthetic_run(str(uuid.uuid4())) for _ in range(total // (TOKENS_PER_RUN + 2))]
    parsed = make_url(url)
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "CREATE TABLE raw (position BIGSERIAL PRIMARY KEY, run_id TEXT, seq INTEGER,"
            " body JSONB, UNIQUE (run_id, seq))"
        )
        began = time.perf_counter()
        rows = [(e.run_id, e.seq, json.dumps(e.to_dict())) for events in runs for e in events]
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO raw (run_id, seq, body) VALUES (%s, %s, %s)", rows)
        connection.commit()
        return len(rows) / (time.perf_counter() - began)


def caller_cost(url: str, tokens: int, rounds: int) -> dict[str, float]:
    """µs per token a streamed run gains with the log attached (interleaved rounds)."""
    process, base_url = start_server(tokens)
    try:
        backend = OpenAIChatBackend.default(
            "bench", NODE.parent, api_key="bench", base_url=base_url, max_retries=0, stream=True
        )
        log = EventLog(url)
        samples: dict[str, list[float]] = {"without": [], "with": []}
        for round_ in range(rounds + 1):
            for name, times in samples.items():
                if name == "with":
                    log.attach()
                began = time.perf_counter()
                count = sum(1 for _ in backend.run("go"))
                elapsed = (time.perf_counter() - began) / count * 1e6
                log.detach()
                if round_:  # the first round warms up
                    times.append(elapsed)
        log.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    without, with_log = (statistics.median(samples[k]) for k in ("without", "with"))
    return {
        "without_us_per_token": without,
        "with_us_per_token": with_log,
        "added_us_per_token": with_log - without,
    }


def read_back(url: str, total: int) -> dict[str, float]:
    """Read a `total`-event log in order; events/s and peak traced memory while reading."""
    runs = [synthetic_run(str(uuid.uuid4())) for _ in range(total // (TOKENS_PER_RUN + 2))]
    with EventLog(url) as log:
        log.attach()
        emit_all(runs)
        assert log.flush(timeout=600)
        log.detach()
        began = time.perf_counter()
        count = sum(1 for _ in log.follow(after=0, idle_timeout=0))
        elapsed = time.perf_counter() - began
        tracemalloc.start()  # a second pass: tracing slows allocation too much to time it
        sum(1 for _ in log.follow(after=0, idle_timeout=0))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return {"events": count, "events_per_s": count / elapsed, "peak_mib": peak / 2**20}


def postgres_schema_url(base: str) -> tuple[str, Any] | None:
    try:
        engine = create_engine(base, connect_args={"connect_timeout": 3})
        schema = f"synthora_bench_{uuid.uuid4().hex[:8]}"
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        print(f"(PostgreSQL skipped: {type(exc).__name__})")
        return None
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()

    return url.render_as_string(hide_password=False), drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--read-events", type=int, default=1_000_000)
    parser.add_argument("--caller-tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", default=POSTGRES_URL)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        sqlite_url = f"sqlite:///{folder}/ingest.db"
        ours = ingest(sqlite_url, args.events)
        raw = raw_sqlite(f"{folder}/raw.db", args.events)
        report["sqlite_ingest"] = {
            "events_per_s": ours,
            "raw_executemany_per_s": raw,
            "ratio_raw_over_ours": raw / ours,
        }
        report["sqlite_caller"] = caller_cost(
            f"sqlite:///{folder}/caller.db", args.caller_tokens, args.rounds
        )
        report["sqlite_read"] = read_back(f"sqlite:///{folder}/read.db", args.read_events)
        report["sqlite_bytes_per_token"] = (
            sum(p.stat().st_size for p in Path(folder).glob("read.db*")) / args.read_events
        )
    postgres = postgres_schema_url(args.postgres)
    if postgres is not None:
        url, drop = postgres
        try:
            ours = ingest(url, args.events)
            raw = raw_postgres(url, args.events)
            report["postgres_ingest"] = {
                "events_per_s": ours,
                "raw_executemany_per_s": raw,
                "ratio_raw_over_ours": raw / ours,
            }
            report["postgres_caller"] = caller_cost(url, args.caller_tokens, args.rounds)
            report["postgres_read"] = read_back(url, args.read_events)
        finally:
            drop()
    for name, figures in report.items():
        shown = figures if isinstance(figures, dict) else {"value": figures}
        print(f"{name:24s} " + "  ".join(f"{k}={v:,.2f}" for k, v in shown.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
