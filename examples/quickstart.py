"""A small agent conversation, fully observed, offline: the README's main job.

It starts Synthora's local OpenAI-compatible server (no API key, no network), then runs a
planner agent that streams an answer, calls a tool inside a tool scope, and answers again. A
callback handler prints the stream; the event log stores every run in ./synthora.db (or
$SYNTHORA_DB); with OTEL_EXPORTER_OTLP_ENDPOINT set (say, to the docker-compose Jaeger) every run
is traced too. It ends by printing `synthora runs`. Point it at a real server with
OPENAI_BASE_URL, OPENAI_API_KEY and SYNTHORA_MODEL.
"""

from __future__ import annotations

import json
import os
import sys

import synthora.telemetry
from synthora import (
    BaseCallBackHandler,
    Node,
    NodeType,
    OpenAIChatBackend,
    assistant,
    scope,
    system,
    tool,
    user,
)
from synthora.cli import main as synthora_command
from synthora.events import EndEvent, StartEvent, TokenEvent
from synthora.storage import EventLog
from synthora.testing.server import Behaviour, OpenAICompatibleServer, ToolCallSpec

PLANNER = Node(name="planner", type=NodeType.AGENT)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


class PrintStream(BaseCallBackHandler):
    """Prints each run as it happens: a header, the streamed text, then the totals."""

    def on_llm_start(self, event: StartEvent) -> None:
        print(f"\n[{event.node.path}] {event.operation} {event.model}: ", end="", flush=True)

    def on_llm_chunk(self, event: TokenEvent) -> None:
        print(event.text, end="", flush=True)

    def on_llm_end(self, event: EndEvent) -> None:
        usage = event.usage
        tokens = f"{usage.input_tokens} in / {usage.output_tokens} out" if usage else "no usage"
        print(f"\n  -> {event.finish_reason}, {tokens}, {event.duration_s * 1000:.1f} ms")


def converse(backend: OpenAIChatBackend) -> None:
    history = [system("You are a helpful travel planner."), user("Plan a day in Paris.")]
    with scope(PLANNER):
        backend.set_stream(True)
        plan = list(backend.run(history))[-1].content
        history.append(assistant(plan))
        backend.set_stream(False)
        call_reply = backend.run(
            [*history, user("What is the weather there?")], tools=[WEATHER_TOOL]
        )
        for call in call_reply.tool_calls:
            with scope(Node(name=call.name, type=NodeType.TOOL)):
                result = json.dumps({"city": "Paris", "sky": "sunny", "celsius": 21})
            history += [call_reply, tool(result, tool_call_id=call.id)]
        backend.set_stream(True)
        list(backend.run([*history, user("Summarise the plan and the weather.")]))


def main() -> int:
    base_url = os.environ.get("OPENAI_BASE_URL")
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        synthora.telemetry.configure()
    with OpenAICompatibleServer() as server, EventLog() as log:
        log.attach()
        model = os.environ.get("SYNTHORA_MODEL", "synthora-demo")
        if base_url is None:
            weather = ToolCallSpec(name="get_weather", arguments='{"city": "Paris"}')
            server.behave(model, Behaviour(tool_calls=(weather,), n_tokens=None))
        backend = OpenAIChatBackend.default(
            model_type=model,
            source=PLANNER,
            config={"temperature": 0.7, "max_completion_tokens": 256},
            name="ChatBackend",
            handlers=[PrintStream()],
            api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
            base_url=base_url or server.base_url,
        )
        converse(backend)
        print(f"\nStored in {log.url}; `synthora runs` shows the newest:\n")
    return synthora_command(["runs", "--limit", "5"])


if __name__ == "__main__":
    sys.exit(main())
