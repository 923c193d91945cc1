"""Record the demo agent's conversation into synthora/demo.jsonl, the log `synthora demo` replays.

It runs `synthora.demo.converse` against Synthora's local OpenAI-compatible test server (the
bundled fake model, no network, no key), stores it in a temporary event log, and exports it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from synthora import OpenAIChatBackend
from synthora.demo import MODEL, PLANNER, converse
from synthora.storage import EventLog
from synthora.storage.transfer import export_runs
from synthora.testing.server import Behaviour, OpenAICompatibleServer, ToolCallSpec

TARGET = Path(__file__).resolve().parent.parent / "synthora" / "demo.jsonl"


def main() -> int:
    weather = ToolCallSpec(name="get_weather", arguments='{"city": "Paris"}', id="call_weather")
    with tempfile.TemporaryDirectory() as folder, OpenAICompatibleServer() as server:
        server.behave(MODEL, Behaviour(tool_calls=(weather,)))
        with EventLog(f"sqlite:///{folder}/record.db") as log:
            log.attach()
            backend = OpenAIChatBackend.default(
                MODEL, PLANNER, name="ChatBackend", api_key="EMPTY", base_url=server.base_url
            )
            converse(backend)
            log.flush()
            chats = sorted(
                (s for s in log.runs() if s.operation == "chat"), key=lambda s: s.started_at
            )
            with TARGET.open("w") as out:
                count = export_runs(log, out, [s.run_id for s in chats])
    print(f"recorded {count} runs into {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
