"""Stored runs, served again offline: same chunks, same finish, same usage, same errors."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import synthora.telemetry
from support import AGENT, Recorder
from synthora import OpenAIChatBackend, OpenAICompletionBackend, user
from synthora.events import EndEvent, ErrorEvent, TokenEvent
from synthora.storage import EventLog, ReplayBackend, ReplayMissError
from synthora.testing import capture_events
from synthora.testing.server import Behaviour, OpenAICompatibleServer, ToolCallSpec

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def outcome(backend, prompt, **params):
    """What a run gave the caller: the chunks (or the message), or the error raised."""
    try:
        result = backend.run(prompt, **params)
        if backend.stream:
            return ("chunks", [(c.delta, c.tool_call_deltas) for c in result])
        return ("message", result)
    except openai.APIError as error:
        return ("error", type(error).__name__, getattr(error, "status_code", None), error.message)


def closings(events):
    return [
        (e.finish_reason, e.usage) if isinstance(e, EndEvent) else (e.error_type, e.stage)
        for e in events
        if isinstance(e, EndEvent | ErrorEvent)
    ]


CASES = [
    pytest.param(OpenAIChatBackend, False, "plain question", {}, id="chat"),
    pytest.param(OpenAIChatBackend, True, "streamed question", {}, id="chat-stream"),
    pytest.param(OpenAICompletionBackend, False, "once upon", {}, id="completion"),
    pytest.param(OpenAICompletionBackend, True, "a streamed time", {}, id="completion-stream"),
    pytest.param(OpenAIChatBackend, True, "use a tool", {"tools": TOOLS}, id="tool-calls"),
    pytest.param(OpenAIChatBackend, False, "fail please", {}, id="error"),
    pytest.param(OpenAIChatBackend, True, "break please", {}, id="broken-stream"),
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A log of every kind of run, recorded against a server that is then stopped."""
    url = f"sqlite:///{tmp_path_factory.mktemp('replay') / 'recorded.db'}"
    live = {}
    with OpenAICompatibleServer() as server, EventLog(url) as log:
        server.behave("tooling", Behaviour(tool_calls=(ToolCallSpec("lookup", '{"q": "x"}'),)))
        log.attach()
        for param in CASES:
            kind, stream, prompt, params = param.values
            model = {"tool-calls": "tooling", "error": "failing", "broken-stream": "broken"}.get(
                param.id, "recorded"
            )
            server.behave("failing", Behaviour(status=429, error_message="slow down"))
            server.behave("broken", Behaviour(n_tokens=8, break_after=3))
            backend = kind.default(
                model, AGENT, api_key="k", base_url=server.base_url, max_retries=0, stream=stream
            )
            with capture_events() as events:
                try:
                    live[param.id] = outcome(backend, prompt, **params)
                except openai.APIConnectionError:
                    live[param.id] = ("connection error",)
            live[param.id + ":events"] = events
    return url, live


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("replay opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize(("kind", "stream", "prompt", "params"), CASES)
def test_replay_gives_what_the_server_gave(
    recorded, no_network, kind, stream, prompt, params, request
):
    """Offline, every kind of recorded run answers with the same chunks, ending and usage."""
    url, live = recorded
    case = request.node.callspec.id
    operation = "text_completion" if kind is OpenAICompletionBackend else "chat"
    with EventLog(url) as log:
        replay = ReplayBackend(log, operation=operation, stream=stream)
        with capture_events() as events:
            try:
                again = outcome(replay, prompt, **params)
            except openai.APIConnectionError:
                again = ("connection error",)
    assert again == live[case]
    assert closings(events) == closings(live[case + ":events"])
    replayed_tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    live_tokens = [e.text for e in live[case + ":events"] if isinstance(e, TokenEvent)]
    assert replayed_tokens == live_tokens
    assert events[0].backend == "replay"


def test_a_miss_names_the_closest_request(recorded, no_network):
    """An unrecorded request raises a clear error saying where it differs from the closest."""
    url, _ = recorded
    with EventLog(url) as log, pytest.raises(ReplayMissError) as raised:
        ReplayBackend(log).run([user("plain questions")])
    message = str(raised.value)
    assert "closest differs" in message
    assert "plain question" in message


def test_a_miss_names_the_field_that_differs_and_shows_both_sides(tmp_path, make_backend):
    """Which parameter differs, with both values; a text of several lines as a diff."""
    url = f"sqlite:///{tmp_path / 'sides.db'}"
    letter = "Dear team,\nthe launch moves to Monday.\nRegards"
    with EventLog(url) as log:
        log.attach()
        make_backend(config={"temperature": 0.2, "seed": 7}).run(letter)
        with pytest.raises(ReplayMissError) as parameter:
            ReplayBackend(log, config={"temperature": 0.9, "seed": 7}).run(letter)
        with pytest.raises(ReplayMissError) as text:
            ReplayBackend(log).run(letter.replace("Monday", "Tuesday"))
    assert str(parameter.value) == (
        "no recorded chat request matches; the closest differs: params 'temperature'\n"
        '  asked:    {"temperature":0.9}\n'
        '  recorded: {"temperature":0.2}'
    )
    assert str(text.value) == (
        "no recorded chat request matches; the closest differs: message 0 (user) content\n"
        "  --- recorded\n"
        "  +++ asked\n"
        "  @@ -1,3 +1,3 @@\n"
        "   Dear team,\n"
        "  -the launch moves to Monday.\n"
        "  +the launch moves to Tuesday.\n"
        "   Regards"
    )


def test_identical_requests_are_answered_in_recorded_order(tmp_path, server, make_backend):
    """The same request asked three times is answered by the three recordings, in order."""
    url = f"sqlite:///{tmp_path / 'order.db'}"
    with EventLog(url) as log:
        log.attach()
        for n in (3, 5, 7):
            server.behave("counting", Behaviour(n_tokens=n))
            OpenAIChatBackend.default("counting", api_key="k", base_url=server.base_url).run("same")
        replay = ReplayBackend(log)
        lengths = [len(replay.run("same").text.split()) for _ in range(4)]
    assert lengths == [3, 5, 7, 7]


def test_model_and_config_narrow_the_match(tmp_path, make_backend):
    """Given config=, the parameters that change the answer must match too."""
    url = f"sqlite:///{tmp_path / 'narrow.db'}"
    with EventLog(url) as log:
        log.attach()
        make_backend(config={"temperature": 0.2}).run("tuned")
        assert ReplayBackend(log).run("tuned").text.endswith("tuned")
        assert ReplayBackend(log, config={"temperature": 0.2}).run("tuned").text
        with pytest.raises(ReplayMissError, match="params"):
            ReplayBackend(log, config={"temperature": 0.9}).run("tuned")


def test_record_mode_falls_through_and_records(tmp_path, make_backend):
    """mode="record": a miss goes to the live backend, is stored, and is then served offline."""
    url = f"sqlite:///{tmp_path / 'cassette.db'}"
    live = make_backend()
    with EventLog(url) as log:
        log.attach()
        cassette = ReplayBackend(log, mode="record", live=live)
        first = cassette.run("new episode")
        assert [s.backend for s in log.runs()] == ["openai_chat"]
        again = cassette.run("new episode")
        assert again == first
        assert sorted(s.backend for s in log.runs()) == ["openai_chat", "replay"]


async def test_async_replay(recorded, no_network):
    """async_run replays too, streamed or not."""
    url, live = recorded
    with EventLog(url) as log:
        plain = await ReplayBackend(log).async_run("plain question")
        assert ("message", plain) == live["chat"]
        stream = await ReplayBackend(log, stream=True).async_run("streamed question")
        chunks = [(c.delta, c.tool_call_deltas) async for c in stream]
        assert ("chunks", chunks) == live["chat-stream"]


def test_re_emitting_gives_handlers_the_live_sequence(tmp_path, make_backend):
    """log.replay re-emits a run to a backend's handlers exactly as they heard it live;
    the log does not store the replayed events again."""
    live_recorder, replay_recorder = Recorder(), Recorder()
    backend = make_backend(handlers=[live_recorder], stream=True)
    url = f"sqlite:///{tmp_path / 'emit.db'}"
    with EventLog(url) as log:
        log.attach()
        with capture_events() as live:
            list(backend.run("say it again"))
        backend.remove_handler(live_recorder)
        backend.add_handler(replay_recorder)
        with capture_events(include_replayed=True) as replayed:
            again = log.replay(live[0].run_id, speed=1000.0, sender=backend)
        log.flush()
        assert len(list(log.runs())) == 1
        assert sum(1 for _ in log.follow(idle_timeout=0)) == len(live)
    assert replay_recorder.kinds == live_recorder.kinds
    assert again == live == replayed


def test_replayed_spans_link_to_the_original(tmp_path, make_backend):
    """A re-emitted run is traced as a replay, linked to the original run's span."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    synthora.telemetry.instrument(provider)
    try:
        url = f"sqlite:///{tmp_path / 'spans.db'}"
        with EventLog(url) as log:
            log.attach()
            make_backend().run("traced then replayed")
            (summary,) = log.runs()
            log.replay(summary.run_id)
    finally:
        synthora.telemetry.uninstrument()
    original, replay = exporter.get_finished_spans()
    assert replay.attributes["synthora.replayed"] is True
    (link,) = replay.links
    assert link.context.span_id == original.context.span_id
    assert replay.context.trace_id != original.context.trace_id
    provider.shutdown()


def test_replayed_stream_abandoned_at_exit_is_stored_interrupted(recorded, tmp_path):
    """A replayed stream left open when the interpreter exits ends as interrupted, as a live
    one does: replay runs close through the same lifecycle."""
    url, _ = recorded
    replays = f"sqlite:///{tmp_path / 'replays.db'}"
    script = textwrap.dedent(
        f"""
        from synthora.storage import EventLog, ReplayBackend
        source = EventLog({url!r})
        EventLog({replays!r}).attach()
        stream = ReplayBackend(source, stream=True).run("streamed question")
        next(stream)
        print(stream.run_id)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    with EventLog(replays) as log:
        summary = log.run(done.stdout.strip())
        assert summary.status == "interrupted"
        assert [e.kind for e in log.events(summary.run_id)] == ["start", "token", "end"]
