"""The demo agent against a live OpenAI-compatible server, fully observed.

By default it starts Synthora's own local test server (no API key, no network); point it at a
real one with OPENAI_BASE_URL, OPENAI_API_KEY and SYNTHORA_MODEL. Every run is stored in
./synthora.db (or $SYNTHORA_DB) and, with OTEL_EXPORTER_OTLP_ENDPOINT set, traced.
`synthora demo` runs the same agent offline, from a recorded log.
"""

from __future__ import annotations

import os
import sys

import synthora.telemetry
from synthora import OpenAIChatBackend
from synthora.cli import main as synthora_command
from synthora.demo import MODEL, PLANNER, PrintStream, converse
from synthora.storage import EventLog
from synthora.testing.server import Behaviour, OpenAICompatibleServer, ToolCallSpec


def main() -> int:
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        synthora.telemetry.configure()
    model = os.environ.get("SYNTHORA_MODEL", MODEL)
    with OpenAICompatibleServer() as server, EventLog() as log:
        weather = ToolCallSpec(name="get_weather", arguments='{"city": "Paris"}')
        server.behave(model, Behaviour(tool_calls=(weather,)))
        log.attach()
        backend = OpenAIChatBackend.default(
            model,
            PLANNER,
            name="ChatBackend",
            handlers=[PrintStream()],
            api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
            base_url=os.environ.get("OPENAI_BASE_URL") or server.base_url,
        )
        converse(backend)
        print(f"\nStored in {log.url}:\n")
    return synthora_command(["runs", "--limit", "5"])


if __name__ == "__main__":
    sys.exit(main())
