"""Events are frozen records whose dict form round-trips exactly."""

from __future__ import annotations

import json
import uuid

import msgspec
import pytest

from synthora import Node, NodeType, assistant, bus, event_from_dict, user
from synthora.events import (
    EVENT_KINDS,
    EVENT_TYPES,
    EndEvent,
    ErrorEvent,
    StartEvent,
    TokenEvent,
    Usage,
)
from synthora.ids import new_run_id
from synthora.messages import ToolCall, ToolCallDelta

NODE = Node(name="m", type=NodeType.MODEL, parent=Node(name="a", type=NodeType.AGENT))
ENVELOPE = {"run_id": "r1", "node": NODE, "parent_run_id": "p0", "trace_id": "t", "span_id": "s"}
EVENTS = [
    StartEvent(
        seq=0,
        ts=1,
        operation="chat",
        model="gpt",
        stream=True,
        params={"temperature": 0.5, "stop": ["\n"], "nested": {"a": [1, 2.5, None]}},
        messages=(user("hi"), assistant(tool_calls=[ToolCall(id="c", name="f", arguments="{}")])),
        **ENVELOPE,
    ),
    TokenEvent(
        seq=1,
        ts=2,
        index=0,
        text="héllo ✓",
        tool_calls=(ToolCallDelta(index=0, id="c", name="f", arguments='{"'),),
        **ENVELOPE,
    ),
    EndEvent(
        seq=2,
        ts=3,
        output=assistant("héllo ✓"),
        finish_reason="stop",
        usage=Usage(input_tokens=3, output_tokens=None),
        duration_s=0.1 + 0.2,
        time_to_first_token_s=1e-7,
        **ENVELOPE,
    ),
    ErrorEvent(
        seq=3,
        ts=4,
        error_type="APIError",
        message="x",
        status_code=500,
        stage="stream",
        partial_output=assistant("hé"),
        **ENVELOPE,
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.kind)
def test_round_trip_through_json(event) -> None:
    """to_dict, JSON and back gives an equal event: what the log stores is what was sent."""
    stored = json.loads(msgspec.json.encode(event.to_dict()))
    assert stored["kind"] == event.kind
    assert event_from_dict(stored) == event
    assert event_from_dict(event.to_dict()) == event


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.kind)
def test_events_are_frozen(event) -> None:
    """An event cannot change after subscribers saw it."""
    with pytest.raises(AttributeError):
        event.seq = 99


def test_unknown_kind_is_refused() -> None:
    """A dict with an unknown kind names the problem."""
    with pytest.raises(msgspec.ValidationError, match="kind"):
        event_from_dict({"kind": "teleport", "run_id": "r", "seq": 0, "ts": 0, "node": {}})


def test_node_path_and_ancestors() -> None:
    """A node knows its chain and its readable path."""
    assert NODE.path == "agent:a/model:m"
    assert [n.name for n in NODE.ancestors] == ["a"]
    assert str(NODE.child("t", NodeType.TOOL)) == "agent:a/model:m/tool:t"


def test_one_registry_of_kinds():
    """Every kind has its class and its signal, in a run's order: the one list code matches on."""
    assert EVENT_KINDS == ("start", "token", "end", "error")
    assert [cls.kind for cls in EVENT_TYPES.values()] == list(EVENT_KINDS)
    assert all(bus.signals[kind].name == kind for kind in EVENT_KINDS)


def test_run_ids_sort_in_the_order_they_were_made():
    """10,000 ids made back to back, thousands a millisecond: sorted, they are in order; each
    is a version-7, RFC-variant UUID."""
    made = [new_run_id() for _ in range(10_000)]
    assert sorted(made) == made
    assert len(set(made)) == len(made)
    parsed = uuid.UUID(made[0])
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
