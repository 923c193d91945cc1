"""Synthora against its peers, side by side: what spans cost on the bare SDK's loop and on ours.

usage: python bench/peers.py [--tokens 2000] [--rounds 7] [--json FILE]

All contenders export spans to the same in-memory exporter (one TracerProvider, a
SimpleSpanProcessor): the bare `openai` SDK loop; the SDK with the official
``opentelemetry-instrumentation-openai-v2``; the SDK with OpenLLMetry's
``opentelemetry-instrumentation-openai``; Synthora with `synthora.telemetry.instrument`. A peer
whose package is not installed (or does not import) is left out, and the report says why.

Installing the peers next to openai 3.x (seen 2026-11): OpenLLMetry installs as is; the official
package also needs ``httpx`` (it imports it, openai 3.x uses ``httpx2``) and
``opentelemetry-util-genai==1.1b0`` (newer releases break it; only pre-releases exist, which pip
takes only when pinned exactly).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from stream_overhead import start_server

import synthora.telemetry
from synthora import OpenAIChatBackend

Contender = tuple[Callable[[], None], Callable[[], None], Callable[[], int]]


def peer_instrumentors(provider: TracerProvider) -> tuple[dict[str, Contender], dict[str, str]]:
    """(contenders for the peers that import, why the others are missing)."""
    found: dict[str, Contender] = {}
    missing: dict[str, str] = {}
    completions = openai.resources.chat.completions.Completions
    try:
        from opentelemetry.instrumentation.openai_v2 import (  # noqa: PLC0415
            OpenAIInstrumentor as Official,
        )

        official = Official()
        found["SDK + official openai-v2"] = (
            lambda: official.instrument(tracer_provider=provider),
            official.uninstrument,
            lambda: 0,
        )
    except Exception as error:  # an optional peer: any import failure means "not here"
        missing["official openai-v2"] = f"{type(error).__name__}: {error}"
    try:
        from opentelemetry.instrumentation.openai import (  # noqa: PLC0415
            OpenAIInstrumentor as OpenLLMetry,
        )
        from opentelemetry.instrumentation.utils import unwrap  # noqa: PLC0415

        llmetry = OpenLLMetry()

        def llmetry_off() -> None:
            llmetry.uninstrument()
            unwrap(completions, "create")  # its own uninstrument misses chat completions

        found["SDK + OpenLLMetry"] = (
            lambda: llmetry.instrument(tracer_provider=provider),
            llmetry_off,
            lambda: 0,
        )
    except Exception as error:  # an optional peer
        missing["OpenLLMetry"] = f"{type(error).__name__}: {error}"
    return found, missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    process, base_url = start_server(args.tokens)
    try:
        client = openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0)
        messages = [{"role": "user", "content": "go"}]
        backend = OpenAIChatBackend.default(
            "bench", api_key="bench", base_url=base_url, max_retries=0, stream=True
        )

        def sdk() -> int:
            stream = client.chat.completions.create(
                model="bench",
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            return sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content)

        def ours() -> int:
            return sum(1 for _ in backend.run(messages))

        def nothing() -> None:
            pass

        peers, missing = peer_instrumentors(provider)
        contenders: dict[str, Contender] = {"openai SDK, no spans": (nothing, nothing, sdk)}
        contenders |= {name: (on, off, sdk) for name, (on, off, _) in peers.items()}
        contenders["synthora, no spans"] = (nothing, nothing, ours)
        contenders["synthora + spans"] = (
            lambda: synthora.telemetry.instrument(provider),
            synthora.telemetry.uninstrument,
            ours,
        )
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        spans: dict[str, int] = dict.fromkeys(contenders, 0)
        for round_ in range(args.rounds + 1):
            for name, (on, off, read) in contenders.items():
                on()
                began = time.perf_counter()
                chunks = read()
                elapsed = (time.perf_counter() - began) / chunks * 1e6
                off()
                spans[name] += len(exporter.get_finished_spans())
                exporter.clear()
                if round_:
                    samples[name].append(elapsed)
    finally:
        process.terminate()
        process.wait(timeout=10)
    base = statistics.median(samples["openai SDK, no spans"])
    report: dict[str, Any] = {
        "tokens": args.tokens,
        "missing": missing,
        "us_per_chunk": {
            name: {
                "us": statistics.median(s),
                "ratio": statistics.median(s) / base,
                "spans": spans[name],
            }
            for name, s in samples.items()
        },
    }
    print(
        f"{args.tokens}-chunk stream, median of {args.rounds} interleaved rounds, spans in memory"
    )
    for name, figures in report["us_per_chunk"].items():
        print(f"  {name:28s} {figures['us']:8.2f} µs/chunk  {figures['ratio']:.3f}x SDK")
    for name, why in missing.items():
        print(f"  ({name} not measured: {why})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
