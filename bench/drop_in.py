"""An observed client against the same SDK loop on a plain client, with the peers beside it.

usage: python bench/drop_in.py [--tokens 2000] [--rounds 7] [--plain-runs 50] [--json FILE]

Every contender runs the same user code, the `openai` SDK's own streaming loop
(``client.chat.completions.create(stream=True)``, iterating its typed chunks), against the bundled
server in a separate process (zero delay): on a plain client; with the official
``opentelemetry-instrumentation-openai-v2`` and with OpenLLMetry's instrumentation (where
installed); and on a client given to `synthora.observe`, with one callback handler, spans through
the OTLP/HTTP exporter to a local sink and the SQLite event log all on. Every span producer uses
the same provider and exporter. Rounds interleave the contenders; medians and the ratio to the
plain client measured in this same run are printed.

* streamed: CPU µs per chunk (``time.process_time``: the process's every thread, so the exporter's
  and the log writer's work count; the server's does not);
* plain: wall µs per short non-streamed call, observed without and with the event log (whose
  durable commit the call waits for).
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
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

sys.path.insert(0, str(Path(__file__).parent))
from peers import peer_instrumentors
from stream_overhead import NoOp, OTLPSink, start_server

import synthora
import synthora.telemetry
from synthora.storage import EventLog

MESSAGES = [{"role": "user", "content": "go"}]
Contender = tuple[Callable[[], None], Callable[[], None], Callable[[], int]]


def streamed_loop(client: openai.OpenAI) -> Callable[[], int]:
    """The user's code: the SDK's stream, iterated for its text chunks."""

    def loop() -> int:
        stream = client.chat.completions.create(
            model="bench", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        return sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content)

    return loop


def plain_call(client: openai.OpenAI) -> Callable[[], int]:
    def call() -> int:
        client.chat.completions.create(model="bench", messages=MESSAGES)
        return 1

    return call


def measure(
    contenders: dict[str, Contender], rounds: int, runs: int, clock: Callable[[], float]
) -> dict[str, dict[str, float]]:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(rounds + 1):  # the first round warms up
        for name, (on, off, run) in contenders.items():
            on()
            began = clock()
            units = sum(run() for _ in range(runs))
            spent = (clock() - began) / units * 1e6
            off()
            if round_:
                samples[name].append(spent)
    base = statistics.median(next(iter(samples.values())))
    return {
        name: {"us": statistics.median(s), "ratio": statistics.median(s) / base}
        for name, s in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--plain-runs", type=int, default=50, help="non-streamed calls a sample")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    args = parser.parse_args()

    sink = ThreadingHTTPServer(("127.0.0.1", 0), OTLPSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    provider = TracerProvider(shutdown_on_exit=False)
    endpoint = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    peers, missing = peer_instrumentors(provider)
    folder = tempfile.mkdtemp()
    log = EventLog(f"sqlite:///{folder}/drop-in.db")

    def all_on() -> None:
        synthora.telemetry.instrument(provider)
        log.attach()

    def all_off() -> None:
        synthora.telemetry.uninstrument()
        log.detach()

    def nothing() -> None:
        pass

    report: dict[str, Any] = {"tokens": args.tokens, "rounds": args.rounds, "missing": missing}
    for section, tokens in (("streamed_cpu_us_per_chunk", args.tokens), ("plain_us_per_call", 5)):
        process, base_url = start_server(tokens)
        try:
            plain = openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0)
            observed = synthora.observe(
                openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0),
                handlers=[NoOp()],
            )
            if section == "plain_us_per_call":
                field = {
                    "openai SDK, plain client": (nothing, nothing, plain_call(plain)),
                    "observed, no subscribers": (nothing, nothing, plain_call(observed)),
                    "observed, all on": (all_on, all_off, plain_call(observed)),
                }
                report[section] = measure(field, args.rounds, args.plain_runs, time.perf_counter)
                continue
            field = {"openai SDK, plain client": (nothing, nothing, streamed_loop(plain))}
            field |= {name: (on, off, streamed_loop(plain)) for name, (on, off, _) in peers.items()}
            bare = synthora.observe(openai.OpenAI(api_key="bench", base_url=base_url))
            field["observed, no subscribers"] = (nothing, nothing, streamed_loop(bare))
            field["observed: handler, OTLP spans, log"] = (all_on, all_off, streamed_loop(observed))
            report[section] = measure(field, args.rounds, 1, time.process_time)
        finally:
            process.terminate()
            process.wait(timeout=10)
    sink.shutdown()
    for section, unit in (
        ("streamed_cpu_us_per_chunk", "CPU µs/chunk"),
        ("plain_us_per_call", "µs/call"),
    ):
        print(f"{section} (median of {args.rounds} interleaved rounds)")
        base = next(iter(report[section].values()))["us"]
        for name, figures in report[section].items():
            print(
                f"  {name:38s} {figures['us']:9.2f} {unit}  {figures['ratio']:.3f}x"
                f"  ({figures['us'] - base:+.2f})"
            )
    for name, why in missing.items():
        print(f"  ({name} not measured: {why})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
