"""What a streamed run costs: the bare openai SDK loop against Synthora, in the same run.

usage: python bench/stream_overhead.py [--tokens 2000] [--rounds 7] [--json FILE]

The OpenAI-compatible server runs in a separate process (``python -m synthora.testing.server``)
with zero delay, so the figures are the client's own cost per chunk. Readers are interleaved
round by round (A/B/C/A/B/C…) so machine noise hits all of them alike; medians are printed,
with each reader's ratio to the bare SDK loop measured in this same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import openai

from synthora import BaseCallBackHandler, Node, NodeType, OpenAIChatBackend, bus
from synthora.events import EndEvent, StartEvent, TokenEvent


class NoOp(BaseCallBackHandler):
    """A handler that listens to every hook and does nothing: the pure cost of dispatch."""

    def on_llm_start(self, event: StartEvent) -> None:
        pass

    def on_llm_chunk(self, event: TokenEvent) -> None:
        pass

    def on_llm_end(self, event: EndEvent) -> None:
        pass


def start_server(tokens: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "synthora.testing.server", "--n-tokens", str(tokens)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if not line or line[0] != "ready":
        process.kill()
        raise SystemExit("the benchmark server did not start")
    return process, line[1]


def readers(base_url: str) -> dict[str, Callable[[], int]]:
    client = openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0)
    messages = [{"role": "user", "content": "go"}]

    def bare_sdk() -> int:
        stream = client.chat.completions.create(
            model="bench", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        return sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content)

    def synthora(handlers: int) -> Callable[[], int]:
        backend = OpenAIChatBackend.default(
            "bench",
            Node(name="bench", type=NodeType.AGENT),
            api_key="bench",
            base_url=base_url,
            max_retries=0,
            handlers=[NoOp() for _ in range(handlers)],
            stream=True,
        )
        return lambda: sum(1 for _ in backend.run(messages))

    return {
        "openai SDK loop": bare_sdk,
        "synthora, no subscribers": synthora(0),
        "synthora, 3 no-op handlers": synthora(3),
    }


def measure(tokens: int, rounds: int) -> dict[str, Any]:
    process, base_url = start_server(tokens)
    try:
        contenders = readers(base_url)
        for read in contenders.values():  # warm up connections and caches
            read()
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(rounds):
            for name, read in contenders.items():
                began = time.perf_counter()
                chunks = read()
                samples[name].append((time.perf_counter() - began) / chunks * 1e6)
                if chunks != tokens:
                    raise SystemExit(f"{name} read {chunks} chunks, expected {tokens}")
    finally:
        process.terminate()
        process.wait(timeout=10)
    base = statistics.median(samples["openai SDK loop"])
    return {
        "tokens": tokens,
        "rounds": rounds,
        "openai": openai.__version__,
        "subscriber_failures": bus.subscriber_failures(),
        "results": {
            name: {"us_per_chunk": statistics.median(s), "ratio": statistics.median(s) / base}
            for name, s in samples.items()
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    args = parser.parse_args()
    report = measure(args.tokens, args.rounds)
    print(f"streamed run of {args.tokens} chunks, median of {args.rounds} interleaved rounds")
    for name, figures in report["results"].items():
        print(f"  {name:28s} {figures['us_per_chunk']:8.2f} µs/chunk  {figures['ratio']:.3f}x SDK")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
