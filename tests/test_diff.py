"""Comparing two runs: `log.diff(a, b)` and `synthora diff A B`, on runs made for real."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import openai
import pytest

from support import AGENT, API_KEY, cli
from synthora import Node, NodeType, OpenAIChatBackend, scope, system, tool, user
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


# -- synthora diff ----------------------------------------------------------------------------


def test_cli_marks_a_changed_prompt(log, log_url, make_backend):
    """`synthora diff`: a changed conversation as a unified diff, a changed short output side by
    side, the verdict last, exit 1."""
    make_backend().run([system("Answer in one word."), user("What is the capital of France?")])
    make_backend().run([system("Answer in one word."), user("What is the capital of Spain?")])
    first, second = run_ids(log)
    status, out = cli("--db", log_url, "diff", first, second[:23])
    assert status == 1
    assert f"A  {first}  ok" in out
    assert f"B  {second}  ok" in out
    assert "\nthe same  operation, model, stream, finish reason, status\n" in out
    assert "\ndiffer    messages, output\n" in out
    assert (
        "--- A messages\n+++ B messages\n@@ -1,2 +1,2 @@\n [system] Answer in one word.\n"
        "-[user] What is the capital of France?\n+[user] What is the capital of Spain?\n"
    ) in out
    assert re.search(
        r"^output\s+You said: What is the capital of France\?\s+You said: .*Spain", out, re.M
    )
    assert re.search(r"^\s+MEASURED\s+A\s+B$", out, re.M)
    assert "never counted as differences" in out
    assert out.endswith("A and B differ in: messages, output\n")


def test_cli_same_runs_exit_zero(log, log_url, make_backend):
    """Two runs of the same request: `the same` lists what they share; exit 0."""
    make_backend().run("ping")
    make_backend().run("ping")
    status, out = cli("--db", log_url, "diff", *run_ids(log))
    assert status == 0
    assert "the same  operation, model, stream, messages, output, finish reason, status" in out
    assert "differ " not in out
    assert re.search(r"^\s+usage\s+1 in, 4 out\s+1 in, 4 out$", out, re.M)
    assert out.endswith("A and B are the same.\n")


def test_cli_failed_against_ok(log, log_url, make_backend):
    """An ok run against a failed one: statuses side by side, the long error on its own rows."""
    make_backend().run("report")
    with pytest.raises(openai.RateLimitError):
        make_backend(behaviour=Behaviour(status=429, error_message="slow down")).run("report")
    status, out = cli("--db", log_url, "diff", *run_ids(log))
    assert status == 1
    assert re.search(r"^status\s+ok\s+error$", out, re.M)
    assert re.search(r"^finish reason\s+stop\s+-$", out, re.M)
    assert re.search(
        r"^error\n  A  -\n  B  RateLimitError \(HTTP 429\) during request: .*slow down$", out, re.M
    )


def test_cli_scopes(log_url, conversations):
    """Two scopes: a pair that is the same is one line; a changed pair in full; the extra named."""
    status, out = cli("--db", log_url, "diff", *conversations)
    assert status == 1
    assert "runs inside: 2 paired in the order they started, 1 only in B\n" in out
    first, second = re.findall(r"^== (\d)  chat agent:planner/.*$", out, re.M)
    assert (first, second) == ("1", "2")
    assert re.search(r"^== 1  chat .*  the same$", out, re.M)
    assert re.search(
        r"^messages\s+\[user\] book the hotel\s+\[user\] book the cheapest hotel$", out, re.M
    )
    assert re.search(r"^only in B: \S+  execute_tool agent:planner/tool:search  \(ok\)$", out, re.M)
    assert out.endswith("A and B differ in: runs inside\n")


def test_cli_json(log, log_url, make_backend):
    """`--json`: the whole comparison as one JSON document, with the differences named."""
    make_backend().run("alpha")
    make_backend().run("beta")
    status, out = cli("--db", log_url, "diff", *run_ids(log), "--json")
    assert status == 1
    document = json.loads(out)
    assert document["differences"] == ["messages", "output"]
    assert document["output"] == {"a": "You said: alpha", "b": "You said: beta", "differs": True}
    assert document["model"]["differs"] is False
    assert document["a"]["status"] == "ok"


def test_cli_trouble_exits_2_in_one_line(tmp_path, make_backend):
    """An unknown run or a missing log: one line on stderr and exit 2, as `diff` does."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with EventLog(url) as log:
        log.attach()
        make_backend().run("hello")
        (known,) = run_ids(log)
    for argv, message in [
        (("--db", url, "diff", known, "ffff"), "synthora: no stored run id starts with 'ffff'"),
        (("--db", f"sqlite:///{tmp_path / 'none.db'}", "diff", known, known), "no event log at"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "synthora", *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert done.returncode == 2
        (line,) = done.stderr.splitlines()
        assert line.startswith("synthora: ")
        assert message in line
