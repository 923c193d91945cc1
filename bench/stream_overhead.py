"""What observability costs a run: the bare openai SDK against Synthora with each subscriber.

usage: python bench/stream_overhead.py [--tokens 2000] [--rounds 7] [--delay S] [--json FILE]

The OpenAI-compatible server runs in a separate process (``python -m synthora.testing.server``)
with zero delay, so the figures are the client's own cost; ``--delay 0.02`` paces it like a
llama.cpp-speed server (50 tokens/s), where what matters is the wall time against the SDK's.
Every round runs every contender once, in turn (A/B/C…/A/B/C…), so machine noise hits them
alike; medians are printed with each one's ratio to the bare SDK loop measured in this same run:

* streamed: µs per chunk of a `--tokens`-chunk stream;
* plain: µs per run of a short non-streamed reply (the fixed cost of a run).

Contenders: the bare SDK; Synthora with no subscribers; + 3 no-op callback handlers; + tracing to
an in-memory exporter; + tracing over OTLP/HTTP to a local sink; + the SQLite event log; and all
of it at once (handlers, OTLP tracing, the log).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import synthora.telemetry
from synthora import BaseCallBackHandler, Node, NodeType, OpenAIChatBackend
from synthora.events import EndEvent, StartEvent, TokenEvent
from synthora.storage import EventLog


class NoOp(BaseCallBackHandler):
    """A handler that listens to every hook and does nothing: the pure cost of dispatch."""

    def on_llm_start(self, event: StartEvent) -> None:
        pass

    def on_llm_chunk(self, event: TokenEvent) -> None:
        pass

    def on_llm_end(self, event: EndEvent) -> None:
        pass


class OTLPSink(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that accepts and discards: the exporter's real work, no collector's."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def start_server(tokens: int, delay: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synthora.testing.server",
            "--n-tokens",
            str(tokens),
            "--delay",
            str(delay),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if not line or line[0] != "ready":
        process.kill()
        raise SystemExit("the benchmark server did not start")
    return process, line[1]


@dataclass
class Contender:
    """One way of running: set up its subscribers, run, take them down again."""

    name: str
    run: Callable[[], int]
    setup: Callable[[], None] = lambda: None
    teardown: Callable[[], None] = lambda: None
    samples: list[float] = field(default_factory=list)


def contenders(base_url: str, folder: str, stream: bool) -> list[Contender]:
    client = openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0)
    messages = [{"role": "user", "content": "go"}]
    agent = Node(name="bench", type=NodeType.AGENT)

    def bare_sdk() -> int:
        if not stream:
            client.chat.completions.create(model="bench", messages=messages)
            return 1
        chunks = client.chat.completions.create(
            model="bench", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        return sum(1 for chunk in chunks if chunk.choices and chunk.choices[0].delta.content)

    def synthora_run(handlers: int = 0) -> Callable[[], int]:
        backend = OpenAIChatBackend.default(
            "bench", agent, api_key="bench", base_url=base_url, max_retries=0, stream=stream,
            handlers=[NoOp() for _ in range(handlers)],
        )  # fmt: skip
        if stream:
            return lambda: sum(1 for _ in backend.run(messages))
        return lambda: (backend.run(messages), 1)[1]

    def tracing(exporter: SpanExporter) -> tuple[Callable[[], None], Callable[[], None]]:
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return (lambda: synthora.telemetry.instrument(provider)), synthora.telemetry.uninstrument

    sink = ThreadingHTTPServer(("127.0.0.1", 0), OTLPSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{sink.server_address[1]}/v1/traces"
    log = EventLog(f"sqlite:///{folder}/bench-{'stream' if stream else 'plain'}.db")
    in_memory_on, in_memory_off = tracing(InMemorySpanExporter())
    otlp_on, otlp_off = tracing(OTLPSpanExporter(endpoint=otlp))

    def everything_on() -> None:
        otlp_on()
        log.attach()

    def everything_off() -> None:
        otlp_off()
        log.detach()

    return [
        Contender("openai SDK", bare_sdk),
        Contender("synthora", synthora_run()),
        Contender("+ 3 no-op handlers", synthora_run(3)),
        Contender("+ tracing, in-memory", synthora_run(), in_memory_on, in_memory_off),
        Contender("+ tracing, OTLP/HTTP", synthora_run(), otlp_on, otlp_off),
        Contender("+ SQLite event log", synthora_run(), log.attach, log.detach),
        Contender("all on (handlers, OTLP, log)", synthora_run(3), everything_on, everything_off),
    ]


def measure(base_url: str, folder: str, stream: bool, rounds: int, runs: int) -> dict[str, Any]:
    field_ = contenders(base_url, folder, stream)
    for round_ in range(rounds + 1):  # the first round warms up
        for contender in field_:
            contender.setup()
            began = time.perf_counter()
            units = sum(contender.run() for _ in range(runs))
            elapsed = (time.perf_counter() - began) / units * 1e6
            contender.teardown()
            if round_:
                contender.samples.append(elapsed)
    base = statistics.median(field_[0].samples)
    return {
        c.name: {"us": statistics.median(c.samples), "ratio": statistics.median(c.samples) / base}
        for c in field_
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--plain-runs", type=int, default=50, help="non-streamed runs per sample")
    parser.add_argument("--delay", type=float, default=0.0, help="server delay per chunk, s")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "tokens": args.tokens,
        "rounds": args.rounds,
        "delay_s": args.delay,
        "openai": openai.__version__,
    }
    with tempfile.TemporaryDirectory() as folder:
        process, base_url = start_server(args.tokens, args.delay)
        try:
            report["streamed_us_per_chunk"] = measure(base_url, folder, True, args.rounds, 1)
        finally:
            process.terminate()
            process.wait(timeout=10)
        process, base_url = start_server(5)
        try:
            plain = measure(base_url, folder, False, args.rounds, args.plain_runs)
            report["plain_us_per_run"] = plain
        finally:
            process.terminate()
            process.wait(timeout=10)
    for section, unit in (("streamed_us_per_chunk", "µs/chunk"), ("plain_us_per_run", "µs/run")):
        print(f"{section} (median of {args.rounds} interleaved rounds)")
        base = report[section]["openai SDK"]["us"]
        for name, figures in report[section].items():
            added = figures["us"] - report[section]["synthora"]["us"]
            print(
                f"  {name:30s} {figures['us']:9.2f} {unit}  {figures['ratio']:.3f}x SDK"
                f"  ({added:+.2f} over bare synthora, {figures['us'] - base:+.2f} over SDK)"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
