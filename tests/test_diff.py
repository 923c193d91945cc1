"""Comparing two runs: `log.diff(a, b)` and `synthora diff A B`, on runs made for real."""

from __future__ import annotations

import openai
import pytest

from support import AGENT, API_KEY
from synthora import Node, NodeType, OpenAIChatBackend, scope, tool
from synthora.storage import EventLog, ReplayBackend, RunNotFoundError
from synthora.storage.diff import MEASURED, OUTCOME, REQUEST
from synthora.testing.server import Behaviour, ToolCallSpec

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
PLANNER = Node(name="planner", type=NodeType.AGENT)


def run_ids(log: EventLog) -> list[str]:
    """The log's top-level runs, oldest first."""
    return [s.run_id for s in reversed(list(log.runs())) if s.parent_run_id is None]


@pytest.fixture
def other_model(server, model):
    """A backend on a second model name of the same server."""
    backend = OpenAIChatBackend.default(
        f"{model}-other", AGENT, api_key=API_KEY, base_url=server.base_url, max_retries=0
    )
    yield backend
    backend.client.close()


@pytest.fixture
def conversations(log, make_backend):
    """The run ids of two agent conversations: the second changes a step and adds a tool step."""
    with scope(PLANNER) as before:
        make_backend().run("plan the trip")
        make_backend().run("book the hotel")
    with scope(PLANNER) as after:
        make_backend().run("plan the trip")
        make_backend().run("book the cheapest hotel")
        with scope(Node(name="search", type=NodeType.TOOL)):
            make_backend().run("find flights")
    return before.run_id, after.run_id


# -- log.diff ---------------------------------------------------------------------------------


def test_the_same_prompt_twice_differs_only_in_what_is_measured(log, make_backend):
    """Two runs of one request: no difference of substance, ids and timings kept apart."""
    backend = make_backend(config={"temperature": 0.2})
    backend.run("How far is the Moon?")
    backend.run("How far is the Moon?")
    first, second = run_ids(log)
    diff = log.diff(first, second)
    assert diff.differences == ()
    assert not diff.differs
    assert (diff.a.run_id, diff.b.run_id) == (first, second)
    assert not any(diff.aspect(name).differs for name in REQUEST + OUTCOME)
    assert diff.params.a == diff.params.b == {"temperature": 0.2}
    assert diff.output.a == diff.output.b == "You said: How far is the Moon?"
    assert diff.duration_s.a is not None
    assert diff.duration_s.b is not None
    assert diff.usage.a == diff.usage.b


def test_a_changed_prompt_differs_in_messages_and_output(log, make_backend):
    """A prompt before and after a change: the messages and the output differ, nothing else."""
    make_backend().run("What is the capital of France?")
    make_backend().run("What is the capital of Spain?")
    diff = log.diff(*run_ids(log))
    assert diff.differences == ("messages", "output")
    assert [m.text for m in diff.messages.a] == ["What is the capital of France?"]
    assert [m.text for m in diff.messages.b] == ["What is the capital of Spain?"]
    assert diff.output.a == "You said: What is the capital of France?"
    assert diff.output.b == "You said: What is the capital of Spain?"
    assert not diff.model.differs
    assert not diff.finish_reason.differs


def test_two_models_and_two_configs(log, make_backend, other_model, model):
    """The same prompt to another model, then with another temperature: each one aspect."""
    make_backend().run("Name a colour.")
    other_model.run("Name a colour.")
    make_backend(config={"temperature": 0.9}).run("Name a colour.")
    first, second, third = run_ids(log)
    by_model = log.diff(first, second)
    assert by_model.differences == ("model",)
    assert (by_model.model.a, by_model.model.b) == (model, f"{model}-other")
    by_config = log.diff(first, third)
    assert by_config.differences == ("params",)
    assert (by_config.params.a, by_config.params.b) == ({}, {"temperature": 0.9})


def test_offered_tools_and_the_calls_they_bring(log, make_backend):
    """Offering tools: the tools, the output, the tool calls and the finish reason differ."""
    call = ToolCallSpec(name="get_weather", arguments='{"city": "Paris"}')
    backend = make_backend(behaviour=Behaviour(tool_calls=(call,)))
    backend.run("weather?")
    backend.run("weather?", tools=TOOLS)
    diff = log.diff(*run_ids(log))
    assert diff.differences == ("tools", "output", "tool_calls", "finish_reason")
    assert (diff.tools.a, diff.tools.b) == (None, TOOLS)
    assert not diff.params.differs
    assert diff.tool_calls.a == ()
    assert [(c.name, c.arguments) for c in diff.tool_calls.b] == [("get_weather", call.arguments)]
    assert (diff.finish_reason.a, diff.finish_reason.b) == ("stop", "tool_calls")


def test_tool_call_ids_are_not_a_difference(log, make_backend, server, model):
    """A server mints new call ids each run: calls, and the messages quoting them, still match."""
    backend = make_backend()
    for call_id in ("call_first", "call_second"):
        spec = ToolCallSpec(name="get_weather", arguments="{}", id=call_id)
        server.behave(model, Behaviour(tool_calls=(spec,)))
        asked = backend.run("weather?", tools=TOOLS)
        backend.run(["weather?", asked, tool("sunny", tool_call_id=asked.tool_calls[0].id)])
    ask_a, answer_a, ask_b, answer_b = run_ids(log)
    asks = log.diff(ask_a, ask_b)
    assert asks.differences == ()
    assert [c.id for c in asks.tool_calls.a + asks.tool_calls.b] == ["call_first", "call_second"]
    answers = log.diff(answer_a, answer_b)
    assert answers.differences == ()
    assert answers.messages.a[2].tool_call_id == "call_first"
    assert answers.messages.b[2].tool_call_id == "call_second"


def test_a_failed_run_against_an_ok_run(log, make_backend):
    """An ok run and a refused one: output, finish, status and error differ, each side shown."""
    make_backend().run("Summarise the report.")
    failing = make_backend(behaviour=Behaviour(status=429, error_message="slow down"))
    with pytest.raises(openai.RateLimitError):
        failing.run("Summarise the report.")
    diff = log.diff(*run_ids(log))
    assert diff.differences == ("output", "finish_reason", "status", "error")
    assert (diff.status.a, diff.status.b) == ("ok", "error")
    assert (diff.output.a, diff.output.b) == ("You said: Summarise the report.", "")
    assert diff.error.a is None
    assert diff.error.b is not None
    assert diff.error.b.startswith("RateLimitError (HTTP 429) during request:")
    assert "slow down" in diff.error.b
    assert diff.usage.a is not None
    assert diff.usage.b is None


def test_a_run_and_its_replay_are_the_same(log, make_backend):
    """A run re-served offline by ReplayBackend asks and answers the same; its backend differs."""
    make_backend(config={"temperature": 0.2}).run("Plan a day in Rome.")
    ReplayBackend(log, config={"temperature": 0.2}).run("Plan a day in Rome.")
    diff = log.diff(*run_ids(log))
    assert diff.differences == ()
    assert (diff.a.backend, diff.b.backend) == ("openai_chat", "replay")


def test_two_scopes_pair_their_runs_in_order(log, conversations):
    """Two agent conversations: steps paired in order, a changed step shown, an extra listed."""
    diff = log.diff(*conversations)
    assert diff.differences == ("children",)
    assert (diff.operation.a, diff.operation.b) == ("invoke_agent", "invoke_agent")
    same, changed = diff.children
    assert same.differences == ()
    assert same.output.a == "You said: plan the trip"
    assert changed.differences == ("messages", "output")
    assert changed.output.b == "You said: book the cheapest hotel"
    assert diff.only_in_a == ()
    (extra,) = diff.only_in_b
    assert (extra.operation, extra.node_name) == ("execute_tool", "search")


def test_unknown_run(log, make_backend):
    """An id no run has raises RunNotFoundError naming it."""
    make_backend().run("hello")
    (known,) = run_ids(log)
    with pytest.raises(RunNotFoundError, match="no stored run id starts with 'ffff'"):
        log.diff(known, "ffff")


def test_every_aspect_is_named(log, make_backend):
    """`aspect` reaches every request, outcome and measured aspect, and refuses other names."""
    make_backend().run("hello")
    (known,) = run_ids(log)
    diff = log.diff(known, known)
    assert {name: diff.aspect(name).differs for name in MEASURED} == dict.fromkeys(MEASURED, False)
    with pytest.raises(ValueError, match="no aspect 'run_id'"):
        diff.aspect("run_id")
