"""The pytest plugin, as a user meets it: pytest run in a subprocess on example test files.

Each test writes example test modules into a folder of its own (no conftest: the ``pytest11``
entry point loads the plugin), records their cassettes against a local test server, then runs
them again with the server stopped, and reads what pytest printed and what the cassettes hold.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import cli
from synthora import Node, NodeType, OpenAIChatBackend, scope, system, user
from synthora.events import Event
from synthora.storage import EventLog
from synthora.storage.transfer import read_events
from synthora.testing.pytest_plugin import cassette_file_name
from synthora.testing.server import OpenAICompatibleServer

API_KEY = "sk-example-secret-7c41d9e2"
"""The key the example tests send: it must never reach a cassette."""

AGENT_TESTS = f'''
"""An agent's tests, answered from cassettes."""
import os

import openai
import pytest

import synthora
from synthora import Node, NodeType, OpenAIChatBackend, scope, system, user
from synthora.testing import capture_events

API_KEY = "{API_KEY}"
PROMPT = os.environ.get("EXAMPLE_PROMPT", "What is the capital of France?")
SEARCH = os.environ.get("EXAMPLE_SEARCH", "search flights")
APP_CLIENT = synthora.observe(  # the application's client, observed when it is imported
    openai.OpenAI(api_key=API_KEY, base_url=os.environ["EXAMPLE_SERVER"], max_retries=0)
)


def make_backend(**options):
    return OpenAIChatBackend.default(
        "example-model",
        api_key=API_KEY,
        base_url=os.environ["EXAMPLE_SERVER"],
        max_retries=0,
        **options,
    )


@pytest.mark.synthora
def test_backend():
    with capture_events() as events:
        reply = make_backend().run([system("Answer in one word."), user(PROMPT)])
    assert reply.text == "You said: " + PROMPT
    assert [event.kind for event in events] == ["start", "token", "end"]
    assert events[0].backend == "openai_chat"
    assert events[0].node.path == "agent:app/model:OpenAIChatBackend"


@pytest.mark.synthora
def test_scope_with_child_runs():
    backend = make_backend(stream=True)
    with scope(Node(name="planner", type=NodeType.AGENT)):
        plan = "".join(chunk.delta for chunk in backend.run([user("plan the trip")]))
        with scope(Node(name="search", type=NodeType.TOOL)):
            found = "".join(chunk.delta for chunk in backend.run([user(SEARCH)]))
    assert (plan, found) == ("You said: plan the trip", "You said: " + SEARCH)


@pytest.mark.synthora
def test_observed_client():
    client = openai.OpenAI(api_key=API_KEY, base_url=os.environ["EXAMPLE_SERVER"], max_retries=0)
    completion = client.chat.completions.create(
        model="example-model", messages=[{{"role": "user", "content": "hello"}}]
    )
    assert completion.choices[0].message.content == "You said: hello"


@pytest.mark.synthora
def test_client_observed_before_the_test():
    stream = APP_CLIENT.chat.completions.create(
        model="example-model", messages=[{{"role": "user", "content": "stream it"}}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "You said: stream it"


@pytest.mark.synthora
@pytest.mark.asyncio
async def test_async_run():
    reply = await make_backend().async_run([user("awaited")])
    assert reply.text == "You said: awaited"


@pytest.mark.synthora
def test_cassette_fixture(synthora_cassette):
    make_backend().run([user("remember me")])
    (run,) = synthora_cassette.runs()
    assert (run.operation, run.status, run.model) == ("chat", "ok", "example-model")


@pytest.mark.synthora
@pytest.mark.parametrize("city", ["Paris", "Rio de Janeiro"])
def test_parametrized(city):
    assert make_backend().run([user(city)]).text == "You said: " + city


def test_unmarked():
    assert getattr(openai.OpenAI(api_key="k"), "_synthora_observer", None) is None
'''

CLASS_TESTS = """
import os

import pytest

from synthora import OpenAIChatBackend, user

pytestmark = pytest.mark.synthora


class TestPlanner:
    def test_plan(self):
        backend = OpenAIChatBackend.default(
            "example-model", api_key="k", base_url=os.environ["EXAMPLE_SERVER"], max_retries=0
        )
        assert backend.run([user("plan")]).text == "You said: plan"
"""

CASSETTES = {
    "test_agent": [
        "test_async_run",
        "test_backend",
        "test_cassette_fixture",
        "test_client_observed_before_the_test",
        "test_observed_client",
        "test_parametrized[Paris]",
        "test_parametrized[Rio de Janeiro]",
        "test_scope_with_child_runs",
    ],
    "test_classes": ["TestPlanner.test_plan"],
}

FRANCE = "What is the capital of France?"
SPAIN = "What is the capital of Spain?"


class Project:
    """A folder of example tests, run with pytest in a subprocess."""

    def __init__(self, folder: Path, server_url: str) -> None:
        self.folder = folder
        self.server_url = server_url
        folder.mkdir(exist_ok=True)
        (folder / "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )

    def write(self, name: str, source: str) -> None:
        (self.folder / name).write_text(textwrap.dedent(source))

    def cassette(self, module: str, test: str) -> Path:
        return self.folder / "tests" / "cassettes" / module / cassette_file_name(test)

    def pytest(self, *args: str, **env: str) -> tuple[str, str]:
        """What pytest printed, and its summary line without the time (``2 passed``)."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        completed = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
            cwd=self.folder,
            env={**inherited, "EXAMPLE_SERVER": self.server_url, "COLUMNS": "240", **env},
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        output = completed.stdout + completed.stderr
        lines = [line for line in completed.stdout.splitlines() if line.strip()]
        summary = re.sub(r" in [\d.]+s.*$", "", lines[-1].strip("= ")) if lines else ""
        return output, summary


@pytest.fixture
def live() -> Iterator[OpenAICompatibleServer]:
    """A server of the test's own, to stop half-way."""
    with OpenAICompatibleServer() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, live: OpenAICompatibleServer) -> Project:
    made = Project(tmp_path, live.base_url)
    made.write("test_agent.py", AGENT_TESTS)
    return made


def runs_in(path: Path) -> dict[str, list[Event]]:
    """A cassette's runs: each run's events, by run id, in the file's order."""
    runs: dict[str, list[Event]] = {}
    for _, event in read_events(path.read_bytes().split(b"\n")):
        runs.setdefault(event.run_id, []).append(event)
    return runs


def asked(path: Path) -> list[str]:
    """The last user message of each model run in a cassette."""
    return [
        events[0].messages[-1].text
        for events in runs_in(path).values()
        if getattr(events[0], "messages", None)
    ]


def test_recorded_once_the_tests_pass_offline_with_the_server_stopped(project, live):
    """--synthora-record=once writes one cassette a test, secret-free; the server stopped, the
    same tests pass from their cassettes."""
    project.write("test_classes.py", CLASS_TESTS)
    output, summary = project.pytest("--synthora-record=once")
    assert summary == "10 passed", output
    for module, tests in CASSETTES.items():
        for test in tests:
            assert project.cassette(module, test).is_file(), (module, test)
    written = sorted(p.relative_to(project.folder) for p in project.folder.rglob("*.jsonl"))
    assert len(written) == 9  # the unmarked test has none
    assert cassette_file_name("test_parametrized[Rio de Janeiro]").startswith(
        "test_parametrized[Rio_de_Janeiro]-"
    )
    for path in project.folder.rglob("*.jsonl"):
        assert API_KEY.encode() not in path.read_bytes(), path

    scoped = project.cassette("test_agent", "test_scope_with_child_runs")
    (planner, plan, search, found) = runs_in(scoped).values()
    assert [run[0].node.path for run in (planner, plan, search, found)] == [
        "agent:planner",
        "agent:planner/agent:app/model:OpenAIChatBackend",
        "agent:planner/tool:search",
        "agent:planner/tool:search/agent:app/model:OpenAIChatBackend",
    ]
    assert [run[0].parent_run_id for run in (plan, search, found)] == [
        planner[0].run_id,
        planner[0].run_id,
        search[0].run_id,
    ]
    ((start, *_, end),) = runs_in(project.cassette("test_agent", "test_observed_client")).values()
    assert (start.node.path, end.output.text) == ("agent:app/model:openai", "You said: hello")

    recorded = {p: p.read_bytes() for p in project.folder.rglob("*.jsonl")}
    requests = len(live.requests)
    live.stop()
    output, summary = project.pytest()
    assert summary == "10 passed", output
    assert {p: p.read_bytes() for p in project.folder.rglob("*.jsonl")} == recorded
    assert len(live.requests) == requests


def test_a_changed_prompt_fails_naming_the_closest_recorded_request(project, live):
    """In mode none, a request no recorded run answers fails the test; pytest shows which
    message differs and both texts."""
    project.pytest("--synthora-record=once", "test_agent.py::test_backend")
    live.stop()
    output, summary = project.pytest("test_agent.py::test_backend", EXAMPLE_PROMPT=SPAIN)
    assert summary == "1 failed", output
    assert (
        "FAILED test_agent.py::test_backend - synthora.storage.replay.ReplayMissError: no recorded "
        "chat request matches; the closest differs: message 1 (user) content\n"
    ) in output
    assert (
        "E       synthora.storage.replay.ReplayMissError: no recorded chat request matches; the "
        "closest differs: message 1 (user) content\n"
        f'E         asked:    "{SPAIN}"\n'
        f'E         recorded: "{FRANCE}"\n'
        "E       cassette tests/cassettes/test_agent/test_backend.jsonl: "
        "--synthora-record=new_episodes adds the request to it, --synthora-record=all records "
        "it anew\n"
    ) in output


def test_new_episodes_appends_what_went_live(project, live):
    """new_episodes replays what the cassette answers, sends the rest live and appends it (with
    the scopes it ran in) after the cassette's bytes; with nothing new, the file is left be."""
    tests = ("test_agent.py::test_backend", "test_agent.py::test_scope_with_child_runs")
    project.pytest("--synthora-record=once", *tests)
    backend, scoped = (project.cassette("test_agent", t.split("::")[1]) for t in tests)
    before = {path: path.read_bytes() for path in (backend, scoped)}

    changed = {"EXAMPLE_PROMPT": SPAIN, "EXAMPLE_SEARCH": "search trains"}
    output, summary = project.pytest("--synthora-record=new_episodes", *tests, **changed)
    assert summary == "2 passed", output
    for path, old in before.items():
        assert path.read_bytes().startswith(old)
    assert asked(backend) == [FRANCE, SPAIN]
    runs = list(runs_in(scoped).values())
    assert [run[0].node.path for run in runs[4:]] == [  # the plan was replayed: not appended
        "agent:planner",
        "agent:planner/tool:search",
        "agent:planner/tool:search/agent:app/model:OpenAIChatBackend",
    ]
    assert runs[6][0].parent_run_id == runs[5][0].run_id
    assert runs[5][0].parent_run_id == runs[4][0].run_id

    live.stop()
    grown = {path: path.read_bytes() for path in (backend, scoped)}
    for env in ({}, changed):
        output, summary = project.pytest(*tests, **env)
        assert summary == "2 passed", output
    output, summary = project.pytest("--synthora-record=new_episodes", *tests, **changed)
    assert summary == "2 passed", output
    assert {path: path.read_bytes() for path in (backend, scoped)} == grown


def test_once_keeps_a_cassette_and_all_records_it_anew(project):
    """once never records over an existing cassette (a miss still fails); all rewrites it."""
    test = "test_agent.py::test_backend"
    project.pytest("--synthora-record=once", test)
    output, summary = project.pytest("--synthora-record=once", test, EXAMPLE_PROMPT=SPAIN)
    assert summary == "1 failed", output
    assert asked(project.cassette("test_agent", "test_backend")) == [FRANCE]

    output, summary = project.pytest("--synthora-record=all", test, EXAMPLE_PROMPT=SPAIN)
    assert summary == "1 passed", output
    assert asked(project.cassette("test_agent", "test_backend")) == [SPAIN]


def test_workers_of_pytest_xdist_each_write_their_tests_cassettes(project, live):
    """With pytest-xdist, the tests recorded by two workers all get their cassettes, and
    replay on two workers offline."""
    project.write("test_classes.py", CLASS_TESTS)
    output, summary = project.pytest("-p", "xdist", "-n", "2", "--synthora-record=once")
    assert summary == "10 passed", output
    assert "2 workers" in output
    written = {(p.parent.name, p.name) for p in project.folder.rglob("*.jsonl")}
    assert written == {
        (module, cassette_file_name(test)) for module, tests in CASSETTES.items() for test in tests
    }
    live.stop()
    output, summary = project.pytest("-p", "xdist", "-n", "2")
    assert summary == "10 passed", output


MISUSE_TESTS = """
import os

import pytest

from synthora import OpenAIChatBackend, user


def ask(text):
    backend = OpenAIChatBackend.default(
        "example-model", api_key="k", base_url=os.environ["EXAMPLE_SERVER"], max_retries=0
    )
    return backend.run([user(text)])


@pytest.mark.synthora
def test_never_recorded():
    ask("hi")


@pytest.mark.synthora
def test_catches_everything():
    try:
        ask("hi")
    except Exception:
        pass


def test_fixture_without_the_marker(synthora_cassette):
    pass
"""


def test_misses_are_failures_whatever_the_code_under_test_does(tmp_path):
    """A test with no cassette fails saying how to record one, even where the code under test
    catches the error; the fixture asks for the marker."""
    project = Project(tmp_path, "http://127.0.0.1:9/v1")  # nothing listens: nothing goes live
    project.write("test_misuse.py", MISUSE_TESTS)
    output, summary = project.pytest()
    assert summary == "2 failed, 1 error", output
    missing = (
        "no cassette tests/cassettes/test_misuse/{} to answer the test's requests: record it "
        "with --synthora-record=once"
    )
    assert (
        "E       synthora.storage.replay.ReplayMissError: "
        + missing.format("test_never_recorded.jsonl")
        in output
    )
    assert (
        "FAILED test_misuse.py::test_catches_everything - Failed: the code under test caught a "
        "request its cassette does not answer:\n"
    ) in output
    assert missing.format("test_catches_everything.jsonl") in output
    assert (
        "ERROR test_misuse.py::test_fixture_without_the_marker - Failed: the synthora_cassette "
        "fixture needs the test marked @pytest.mark.synthora"
    ) in output
    assert not (tmp_path / "tests").exists()


PRODUCTION_TESTS = """
import os

import pytest

from synthora import Node, NodeType, OpenAIChatBackend, scope, system, user

PLANNER = Node(name="planner", type=NodeType.AGENT)


@pytest.mark.synthora
def test_conversation():
    backend = OpenAIChatBackend.default(
        "prod-model", PLANNER, api_key="k", base_url=os.environ["EXAMPLE_SERVER"], max_retries=0
    )
    with scope(PLANNER):
        first = backend.run([system("Be brief."), user("Where to?")])
        second = backend.run([system("Be brief."), user("Where to?"), first, user("Why?")])
    assert second.text == "You said: Why?"
"""


def test_an_exported_production_conversation_replays_as_a_test(tmp_path, live):
    """synthora export SCOPE -o tests/cassettes/<module>/<test>.jsonl exports the scope's whole
    conversation; marked, the test that has the same conversation passes offline."""
    url = f"sqlite:///{tmp_path / 'production.db'}"
    planner = Node(name="planner", type=NodeType.AGENT)
    with EventLog(url) as log:
        log.attach()
        backend = OpenAIChatBackend.default(
            "prod-model", planner, api_key=API_KEY, base_url=live.base_url, max_retries=0
        )
        with scope(planner) as conversation:
            first = backend.run([system("Be brief."), user("Where to?")])
            backend.run([system("Be brief."), user("Where to?"), first, user("Why?")])
    live.stop()
    project = Project(tmp_path / "project", "http://127.0.0.1:9/v1")
    project.write("test_production.py", PRODUCTION_TESTS)
    cassette = project.cassette("test_production", "test_conversation")
    assert conversation.run_id is not None
    status, _ = cli("--db", url, "export", conversation.run_id[:18], "-o", str(cassette))
    assert status == 0
    assert len(runs_in(cassette)) == 3  # the scope and the two runs inside it

    output, summary = project.pytest()
    assert summary == "1 passed", output
