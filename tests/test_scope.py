"""Agent and tool scopes are runs themselves, and the runs inside them are their children."""

from __future__ import annotations

import asyncio
import threading

import pytest

from support import Recorder
from synthora import ConfigurationError, Node, NodeType, OpenAIChatBackend, scope
from synthora.events import EndEvent, ErrorEvent, StartEvent

PLANNER = Node(name="planner", type=NodeType.AGENT)
SEARCH = Node(name="search", type=NodeType.TOOL)


def starts(events):
    return [e for e in events if isinstance(e, StartEvent)]


def test_runs_inside_a_scope_are_its_children(make_backend, events):
    """A model run in an agent scope records the scope's run id and sits under its node."""
    backend = make_backend()
    with scope(PLANNER) as agent:
        backend.run("plan")
        with scope(SEARCH) as tool:
            backend.run("search")
    agent_start, model_start, tool_start, inner_start = starts(events)
    assert agent_start.operation == "invoke_agent"
    assert agent_start.run_id == agent.run_id
    assert agent_start.parent_run_id is None
    assert model_start.parent_run_id == agent.run_id
    assert model_start.node.path == "agent:planner/agent:assistant/model:OpenAIChatBackend"
    assert tool_start.operation == "execute_tool"
    assert tool_start.parent_run_id == agent.run_id
    assert tool_start.node.path == "agent:planner/tool:search"
    assert inner_start.parent_run_id == tool.run_id
    ends = [e for e in events if isinstance(e, EndEvent)]
    assert [e.run_id for e in ends][-2:] == [tool.run_id, agent.run_id]
    assert all(e.seq == 1 for e in ends if e.run_id in (agent.run_id, tool.run_id))


def test_backend_owned_by_the_scope_agent_keeps_its_path(server, events):
    """A backend whose source is the scope's agent is not placed under it twice."""
    backend = OpenAIChatBackend.default("m", PLANNER, api_key="k", base_url=server.base_url)
    with scope(PLANNER):
        backend.run("hi")
    assert starts(events)[1].node.path == "agent:planner/model:OpenAIChatBackend"
    backend.client.close()


def test_failing_scope_reports_error_and_reraises(make_backend, events):
    """An exception leaving the scope is one error event for the scope, and propagates."""
    with pytest.raises(ValueError, match="tool broke"), scope(SEARCH):
        raise ValueError("tool broke")
    start, error = events
    assert isinstance(start, StartEvent)
    assert isinstance(error, ErrorEvent)
    assert error.stage == "scope"
    assert error.error_type == "ValueError"


def test_scope_events_reach_global_subscribers_only(make_backend, events):
    """A backend's handlers do not hear scope events; global subscribers do."""
    recorder = Recorder()
    backend = make_backend(handlers=[recorder])
    with scope(PLANNER):
        backend.run("x")
    assert recorder.kinds == ["start", "token", "end"]
    assert len(starts(events)) == 2


def test_threads_do_not_share_scopes(make_backend, events):
    """A run on another thread started while a scope is open here is not its child."""
    backend = make_backend()
    with scope(PLANNER):
        worker = threading.Thread(target=backend.run, args=("elsewhere",))
        worker.start()
        worker.join()
    model_start = next(s for s in starts(events) if s.operation == "chat")
    assert model_start.parent_run_id is None


async def test_async_scopes_keep_tasks_apart(make_backend, events):
    """Concurrent tasks each in their own async scope attribute runs to their own scope."""
    backend = make_backend()

    async def agent(name: str) -> str | None:
        async with scope(Node(name=name, type=NodeType.AGENT)) as step:
            await backend.async_run(f"from {name}")
            return step.run_id

    ids = await asyncio.gather(*(agent(f"agent{i}") for i in range(10)))
    for model_start in (s for s in starts(events) if s.operation == "chat"):
        assert model_start.messages is not None
        name = model_start.messages[0].text.removeprefix("from ")
        assert model_start.node.path.startswith(f"agent:{name}/")
        assert model_start.parent_run_id == ids[int(name.removeprefix("agent"))]
    await backend.async_client.close()


def test_scope_needs_an_agent_or_tool_node():
    """A scope over a model node is refused with a message saying what it takes."""
    with pytest.raises(ConfigurationError, match="agent or tool"):
        scope(Node(name="m", type=NodeType.MODEL))
