"""The demo agent: a planner that streams a plan, calls a weather tool, and sums up.

`synthora demo` runs it offline through a `ReplayBackend` over ``demo.jsonl``, a log shipped
with the package that was recorded by running this same agent against Synthora's local
OpenAI-compatible test server (``examples/record_demo.py`` records it again).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from synthora.callbacks import BaseCallBackHandler
from synthora.events import EndEvent, StartEvent, TokenEvent
from synthora.messages import BaseMessage, MessageChunk, assistant, system, tool, user
from synthora.models.base import BaseModelBackend
from synthora.scope import scope
from synthora.types.enums import NodeType
from synthora.types.node import Node

__all__ = ["MODEL", "PLANNER", "WEATHER_TOOL", "PrintStream", "converse"]

MODEL = "synthora-demo"
PLANNER = Node(name="planner", type=NodeType.AGENT)
WEATHER_TOOL: dict[str, Any] = {
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


def converse(backend: BaseModelBackend) -> list[BaseMessage]:
    """Plan a day: a streamed answer, a tool call in a tool scope, and a streamed summary."""
    history: list[BaseMessage] = [
        system("You are a helpful travel planner."),
        user("Plan a day in Paris."),
    ]
    with scope(PLANNER):
        backend.set_stream(True)
        plan = _streamed(backend.run(history))
        history.append(assistant(plan))
        backend.set_stream(False)
        history.append(user("What is the weather there?"))
        call_reply = backend.run(history, tools=[WEATHER_TOOL])
        assert isinstance(call_reply, BaseMessage)
        history.append(call_reply)
        for call in call_reply.tool_calls:
            with scope(Node(name=call.name, type=NodeType.TOOL)):
                result = json.dumps({"city": "Paris", "sky": "sunny", "celsius": 21})
            history.append(tool(result, tool_call_id=call.id))
        backend.set_stream(True)
        history.append(user("Summarise the plan and the weather."))
        summary = _streamed(backend.run(history))
        history.append(assistant(summary))
    return history


def _streamed(result: BaseMessage | Iterable[MessageChunk]) -> str:
    """The whole text of a streamed reply."""
    if isinstance(result, BaseMessage):
        return result.text
    return "".join(chunk.delta for chunk in result)
