"""Every wire against its own SDK's streaming loop: CPU per chunk, with three no-op handlers.

usage: python bench/wires.py [--tokens 2000] [--rounds 5] [--json FILE]

For each wire the bundled server (a separate process, zero delay) streams `--tokens` chunks; the
SDK's own loop (``client.chat.completions.create(stream=True)``,
``client.responses.create(stream=True)``, anthropic's ``client.messages.create(stream=True)``
when the ``anthropic`` extra is installed) iterates its typed events, and the Synthora backend
of the same wire, with three no-op callback handlers, iterates its chunks. Rounds interleave the
contenders so noise hits them alike; medians and the ratio to the SDK loop measured in this same
run are printed. CPU time (``time.process_time``) is measured, so the server's share is left out.
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

from synthora import Node, NodeType
from synthora.models import (
    AnthropicBackend,
    BaseModelBackend,
    OpenAIChatBackend,
    OpenAIResponsesBackend,
)

sys.path.insert(0, str(Path(__file__).parent))
from stream_overhead import NoOp, start_server

MESSAGES = [{"role": "user", "content": "go"}]


def contenders(base_url: str) -> dict[str, dict[str, Callable[[], int]]]:
    client = openai.OpenAI(api_key="bench", base_url=base_url, max_retries=0)
    agent = Node(name="bench", type=NodeType.AGENT)

    def synthora(kind: type[BaseModelBackend]) -> Callable[[], int]:
        backend = kind.default(  # type: ignore[attr-defined]
            "bench", agent, api_key="bench", base_url=base_url, max_retries=0, stream=True,
            handlers=[NoOp() for _ in range(3)],
        )  # fmt: skip
        return lambda: sum(1 for _ in backend.run(MESSAGES))

    def chat_sdk() -> int:
        stream = client.chat.completions.create(
            model="bench", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )  # type: ignore[call-overload]
        return sum(1 for chunk in stream if chunk.choices and chunk.choices[0].delta.content)

    def responses_sdk() -> int:
        stream = client.responses.create(model="bench", input="go", stream=True)
        return sum(1 for event in stream if event.type == "response.output_text.delta")

    wires = {
        "chat": {"sdk": chat_sdk, "synthora": synthora(OpenAIChatBackend)},
        "responses": {"sdk": responses_sdk, "synthora": synthora(OpenAIResponsesBackend)},
    }
    try:
        import anthropic  # noqa: PLC0415 - the optional extra; measured where installed
    except ImportError:
        print("(the Messages wire left out: pip install 'synthora[anthropic]')")
        return wires
    root = base_url.removesuffix("/v1")
    claude = anthropic.Anthropic(api_key="bench", base_url=root, max_retries=0)
    ours = AnthropicBackend.default(
        "bench", agent, api_key="bench", base_url=root, max_retries=0, stream=True,
        handlers=[NoOp() for _ in range(3)],
    )  # fmt: skip

    def messages_sdk() -> int:
        stream = claude.messages.create(
            model="bench", max_tokens=4096, messages=MESSAGES, stream=True
        )  # type: ignore[call-overload]
        return sum(1 for event in stream if event.type == "content_block_delta")

    wires["messages"] = {
        "sdk": messages_sdk,
        "synthora": lambda: sum(1 for _ in ours.run(MESSAGES)),
    }
    return wires


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    args = parser.parse_args()
    process, base_url = start_server(args.tokens)
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        field = contenders(base_url)
        for round_ in range(args.rounds + 1):  # the first round warms up
            for wire, runs in field.items():
                for name, run in runs.items():
                    began = time.process_time()
                    chunks = run()
                    spent = (time.process_time() - began) / max(chunks, 1) * 1e6
                    if round_:
                        samples.setdefault(wire, {}).setdefault(name, []).append(spent)
    finally:
        process.terminate()
        process.wait(timeout=10)
    report: dict[str, Any] = {"tokens": args.tokens, "rounds": args.rounds}
    print(f"CPU µs per chunk, {args.tokens}-chunk streams, median of {args.rounds} rounds")
    for wire, figures in samples.items():
        sdk = statistics.median(figures["sdk"])
        ours = statistics.median(figures["synthora"])
        report[wire] = {"sdk_us": sdk, "synthora_us": ours, "ratio": ours / sdk}
        print(
            f"  {wire:10s} SDK {sdk:7.2f}   synthora + 3 handlers {ours:6.2f}   {ours / sdk:.3f}x"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
