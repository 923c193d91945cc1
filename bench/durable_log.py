"""What a durable run costs its caller: short non-streamed runs with and without the event log.

usage: python bench/durable_log.py [--runs 200] [--rounds 7] [--threads 8] [--postgres URL]
       [--json FILE]

A run with the log attached returns only once its events are durable: committed, or on SQLite
journaled and committed with others a moment later (or spooled), so every short run pays for
that. The server runs in a separate process with zero delay (a 5-token reply),
so the difference is the log's own cost. Every round runs each contender in turn (no log, the
SQLite log, and the PostgreSQL log, in a schema of its own, when `--postgres` answers), so
machine noise hits them alike:

* single thread: the median µs of one run; the fixed cost is the median with the log minus the
  median without it, measured in this same run (the log is flushed, untimed, before the next
  contender, so none of its work spills over);
* `--threads` threads making short runs at once: runs per second, and the ratio with the log
  attached to without it (concurrent closing runs share one commit), the log's final flush
  counted in its time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthora import Node, NodeType, OpenAIChatBackend
from synthora.storage import EventLog

sys.path.insert(0, str(Path(__file__).parent))
from event_log import postgres_schema_url
from stream_overhead import start_server

MESSAGES = [{"role": "user", "content": "go"}]


def single_thread(backend: OpenAIChatBackend, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        backend.run(MESSAGES)
        samples.append((time.perf_counter() - began) * 1e6)
    return samples


def threaded(backends: list[OpenAIChatBackend], runs: int, settle: Callable[[], object]) -> float:
    """Runs per second with one thread per backend, each making `runs` runs; the time ends
    once `settle` returns (the log's flush: what its writer left for later counts too)."""
    start = threading.Barrier(len(backends) + 1)

    def work(backend: OpenAIChatBackend) -> None:
        start.wait()
        for _ in range(runs):
            backend.run(MESSAGES)

    threads = [threading.Thread(target=work, args=(b,)) for b in backends]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    settle()
    return len(backends) * runs / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per contender per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", metavar="URL"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    args = parser.parse_args()
    agent = Node(name="bench", type=NodeType.AGENT)
    postgres = postgres_schema_url(args.postgres)
    with tempfile.TemporaryDirectory() as folder:
        logs = {"SQLite log": EventLog(f"sqlite:///{folder}/durable.db")}
        if postgres is not None:
            logs["PostgreSQL log"] = EventLog(postgres[0])
        process, base_url = start_server(5)
        try:
            backends = [
                OpenAIChatBackend.default("bench", agent, api_key="bench", base_url=base_url)
                for _ in range(args.threads)
            ]
            contenders: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
                ("no log", lambda: None, lambda: None),
                *((name, log.attach, log.detach) for name, log in logs.items()),
            ]
            settles: dict[str, Callable[[], object]] = {n: log.flush for n, log in logs.items()}
            single: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
            rates: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
            for round_ in range(args.rounds + 1):  # the first round warms up
                for name, attach, detach in contenders:
                    attach()
                    one = single_thread(backends[0], args.runs)
                    settle = settles.get(name, lambda: None)
                    settle()
                    many = threaded(backends, max(1, args.runs // args.threads), settle)
                    detach()
                    if round_:
                        single[name] += one
                        rates[name].append(many)
        finally:
            process.terminate()
            process.wait(timeout=10)
            for log in logs.values():
                log.close()
            if postgres is not None:
                postgres[1]()
    base = statistics.median(single["no log"])
    base_rate = statistics.median(rates["no log"])
    report: dict[str, Any] = {"runs": args.runs, "rounds": args.rounds, "threads": args.threads}
    print(f"short non-streamed runs, median of {args.rounds} interleaved rounds")
    for name, samples in single.items():
        us = statistics.median(samples)
        rate = statistics.median(rates[name])
        report[name] = {
            "us_per_run": us,
            "fixed_cost_us": us - base,
            "runs_per_s_threaded": rate,
            "threaded_ratio": rate / base_rate,
        }
        print(
            f"  {name:16s} {us:8.1f} µs/run ({us - base:+7.1f} µs fixed cost)   "
            f"{args.threads} threads: {rate:7.0f} runs/s ({rate / base_rate:.2f}x no log)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
