"""What a durable run costs its caller: short non-streamed runs with and without the event log.

usage: python bench/durable_log.py [--runs 200] [--rounds 7] [--threads 8] [--pairs 24]
       [--postgres URL] [--json FILE]

A run with the log attached returns only once its events are durable: committed, or on SQLite
journaled and committed with others a moment later (or spooled), so every short run pays for
that. The server runs in a separate process with zero delay (a 5-token reply),
so the difference is the log's own cost. Every round runs each contender in turn (no log, the
SQLite log as a busy log runs it, with its committer process, the same without one, committed by
its writer thread, and the PostgreSQL log, in a schema of its own, when `--postgres` answers), so
machine noise hits them alike:

* single thread: the median µs of one run; the fixed cost is the median with the log minus the
  median without it, measured in this same run (the log is flushed, untimed, before the next
  contender, so none of its work spills over);
* `--threads` threads making short runs at once: runs per second, and the ratio with the log
  attached to without it (concurrent closing runs share one commit), the log's final flush
  counted in its time. This machine's speed drifts by tens of percent over seconds, so each
  ratio is taken within one of `--pairs` short rounds (each contender once, in alternating
  order) and the median and quartiles of those ratios are reported.
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


Contender = tuple[str, Callable[[], object], Callable[[], object], Callable[[], object]]
"""A name, how to attach its log, how to detach it, and how to wait for what it left to do."""


def single_rounds(
    backend: OpenAIChatBackend,
    contenders: list[Contender],
    rounds: int,
    runs: int,
) -> dict[str, list[float]]:
    """µs per run of one thread, each contender in turn, `rounds` times after a warm-up."""
    single: dict[str, list[float]] = {name: [] for name, *_ in contenders}
    for round_ in range(rounds + 1):
        for name, attach, detach, settle in contenders:
            attach()
            samples = single_thread(backend, runs)
            settle()
            detach()
            if round_:
                single[name] += samples
    return single


def threaded_pairs(
    backends: list[OpenAIChatBackend],
    contenders: list[Contender],
    pairs: int,
    runs: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Runs per second of all threads, and the ratio to no log within each round, `pairs`
    rounds after a warm-up, the contenders' order reversed every other round."""
    rates: dict[str, list[float]] = {name: [] for name, *_ in contenders}
    ratios: dict[str, list[float]] = {name: [] for name, *_ in contenders}
    per_thread = max(1, runs // len(backends))
    for pair in range(pairs + 1):
        rate: dict[str, float] = {}
        for name, attach, detach, settle in contenders[:: 1 if pair % 2 else -1]:
            attach()
            rate[name] = threaded(backends, per_thread, settle)
            detach()
        for name in rate if pair else ():
            rates[name].append(rate[name])
            ratios[name].append(rate[name] / rate["no log"])
    return rates, ratios


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per contender per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=24, help="rounds of the threaded ratio")
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", metavar="URL"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    args = parser.parse_args()
    agent = Node(name="bench", type=NodeType.AGENT)
    postgres = postgres_schema_url(args.postgres)
    with tempfile.TemporaryDirectory() as folder:
        logs = {
            "SQLite log": EventLog(f"sqlite:///{folder}/durable.db", committer=True),
            "SQLite, no committer": EventLog(f"sqlite:///{folder}/thread.db", committer=False),
        }
        if postgres is not None:
            logs["PostgreSQL log"] = EventLog(postgres[0])
        process, base_url = start_server(5)
        try:
            backends = [
                OpenAIChatBackend.default("bench", agent, api_key="bench", base_url=base_url)
                for _ in range(args.threads)
            ]
            contenders: list[Contender] = [
                ("no log", lambda: None, lambda: None, lambda: None),
                *((name, log.attach, log.detach, log.flush) for name, log in logs.items()),
            ]
            single = single_rounds(backends[0], contenders, args.rounds, args.runs)
            rates, ratios = threaded_pairs(backends, contenders, args.pairs, args.runs)
        finally:
            process.terminate()
            process.wait(timeout=10)
            for log in logs.values():
                log.close()
            if postgres is not None:
                postgres[1]()
    base = statistics.median(single["no log"])
    report: dict[str, Any] = {
        "runs": args.runs,
        "rounds": args.rounds,
        "threads": args.threads,
        "pairs": args.pairs,
    }
    print(
        f"short non-streamed runs: one thread, median of {args.rounds} interleaved rounds; "
        f"{args.threads} threads, the ratio to no log within each of {args.pairs} rounds"
    )
    for name, samples in single.items():
        us = statistics.median(samples)
        ratio = statistics.median(ratios[name])
        low, _, high = (
            statistics.quantiles(ratios[name], n=4) if len(ratios[name]) > 1 else [ratio] * 3
        )
        report[name] = {
            "us_per_run": us,
            "fixed_cost_us": us - base,
            "runs_per_s_threaded": statistics.median(rates[name]),
            "threaded_ratio": ratio,
            "threaded_ratio_quartiles": [low, high],
        }
        print(
            f"  {name:20s} {us:8.1f} µs/run ({us - base:+7.1f} µs fixed cost)   "
            f"{args.threads} threads: {statistics.median(rates[name]):5.0f} runs/s, "
            f"{ratio:.2f}x no log (quartiles {low:.2f}-{high:.2f})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
