"""Does the cost stay flat as concurrency grows? 1, 10, 100 and 1,000 concurrent async streams.

usage: python bench/scale.py [--levels 1,10,100,1000] [--tokens 50] [--json FILE]

At each level, that many streamed runs start at once with `async_run`, with everything on
(3 callback handlers, tracing over OTLP/HTTP to a local sink, the SQLite event log), against the
bare `AsyncOpenAI` SDK streaming the same replies. Reports runs per second, the median latency of
one run, and the peak of memory allocated (tracemalloc, in a separate pass).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import openai
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from stream_overhead import NoOp, OTLPSink, start_server

import synthora.telemetry
from synthora import OpenAIChatBackend
from synthora.storage import EventLog

Run = Callable[[int], Awaitable[float]]


async def wave(run: Run, size: int) -> tuple[float, float]:
    """(runs per second, median seconds per run) for `size` runs started together."""
    began = time.perf_counter()
    latencies = await asyncio.gather(*(run(i) for i in range(size)))
    return size / (time.perf_counter() - began), statistics.median(latencies)


async def measure(base_url: str, folder: str, levels: list[int]) -> dict[str, Any]:
    # A thousand connects at once queue up at the test server's accept loop: allow for it.
    timeout = httpx2.Timeout(120.0, connect=60.0)
    client = openai.AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0, timeout=timeout)
    backend = OpenAIChatBackend.default(
        "bench", api_key="bench", base_url=base_url, max_retries=0, stream=True,
        handlers=[NoOp() for _ in range(3)], timeout=timeout,
    )  # fmt: skip

    async def bare(i: int) -> float:
        began = time.perf_counter()
        stream = await client.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": f"run {i}"}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        async for _ in stream:
            pass
        return time.perf_counter() - began

    async def synthora_run(i: int) -> float:
        began = time.perf_counter()
        async for _ in await backend.async_run(f"run {i}"):
            pass
        return time.perf_counter() - began

    report: dict[str, Any] = {}
    for size in levels:
        await wave(bare, min(size, 10))  # warm the connection pools
        await wave(synthora_run, min(size, 10))
        sdk_rate, sdk_latency = await wave(bare, size)
        our_rate, our_latency = await wave(synthora_run, size)
        tracemalloc.start()
        await wave(synthora_run, size)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        report[str(size)] = {
            "sdk_runs_per_s": sdk_rate,
            "synthora_runs_per_s": our_rate,
            "sdk_latency_ms": sdk_latency * 1000,
            "synthora_latency_ms": our_latency * 1000,
            "synthora_peak_mib": peak / 2**20,
        }
    await client.close()
    await backend.async_client.close()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,10,100,1000")
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    sink = ThreadingHTTPServer(("127.0.0.1", 0), OTLPSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://127.0.0.1:{sink.server_address[1]}/v1/traces")
        )
    )
    synthora.telemetry.instrument(provider)
    process, base_url = start_server(args.tokens)
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            EventLog(f"sqlite:///{folder}/scale.db") as log,
        ):
            log.attach()
            report = asyncio.run(measure(base_url, folder, levels))
    finally:
        process.terminate()
        process.wait(timeout=10)
        synthora.telemetry.uninstrument()
        provider.shutdown()
    print(f"concurrent streamed runs of {args.tokens} chunks; Synthora with handlers, spans, log")
    print(f"  {'runs':>5s} {'SDK runs/s':>11s} {'ours runs/s':>12s} {'SDK ms/run':>11s} "
          f"{'ours ms/run':>12s} {'peak MiB':>9s}")  # fmt: skip
    for size, f in report.items():
        print(f"  {size:>5s} {f['sdk_runs_per_s']:11.1f} {f['synthora_runs_per_s']:12.1f} "
              f"{f['sdk_latency_ms']:11.1f} {f['synthora_latency_ms']:12.1f} "
              f"{f['synthora_peak_mib']:9.1f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
