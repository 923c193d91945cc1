"""Tool calls come out whole, whether streamed as deltas or answered at once."""

from __future__ import annotations

import json

import pytest

from synthora import ToolCall, tool
from synthora.events import EndEvent, TokenEvent
from synthora.testing.server import Behaviour, ToolCallSpec

CALLS = (
    ToolCallSpec(name="get_weather", arguments=json.dumps({"city": "Paris", "unit": "celsius"})),
    ToolCallSpec(name="get_time", arguments=json.dumps({"timezone": "Europe/Paris"})),
)
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
]


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_tool_calls_are_assembled(make_backend, events, stream):
    """Streamed tool-call deltas add up to the same calls a non-streamed reply gives."""
    backend = make_backend(behaviour=Behaviour(tool_calls=CALLS), stream=stream)
    result = backend.run("weather and time?", tools=TOOLS)
    if stream:
        chunks = list(result)
        assert any(c.tool_call_deltas for c in chunks)
        message = events[-1].output
    else:
        message = result
    end = events[-1]
    assert isinstance(end, EndEvent)
    assert end.finish_reason == "tool_calls"
    assert message == end.output
    assert [(c.name, json.loads(c.arguments)) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("get_time", {"timezone": "Europe/Paris"}),
    ]
    assert all(isinstance(c, ToolCall) and c.id for c in message.tool_calls)
    deltas = [d for e in events if isinstance(e, TokenEvent) for d in e.tool_calls]
    rebuilt = {}
    for delta in deltas:
        rebuilt[delta.index] = rebuilt.get(delta.index, "") + delta.arguments
    assert [rebuilt[i] for i in sorted(rebuilt)] == [c.arguments for c in CALLS]
    assert events[0].params["tools"] == TOOLS


def test_tool_results_go_back_in_openai_format(make_backend, server):
    """An assistant tool-call message and the tool's answer are sent as the API expects."""
    backend = make_backend(behaviour=Behaviour(tool_calls=CALLS[:1]))
    call_message = backend.run("weather?", tools=TOOLS)
    answer = tool('{"temp": 21}', tool_call_id=call_message.tool_calls[0].id)
    backend.run(["weather?", call_message, answer])
    sent = server.requests[-1].body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent[2] == {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call_0"}
