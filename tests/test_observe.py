"""`synthora.observe`: unmodified openai / anthropic SDK code, over real HTTP to the local server.

Every call through an observed client must be the run the matching backend makes for the same
request (the same start, tokens and end), while the caller gets exactly what a plain client
gives: the SDK's own types, its exceptions, its raw responses.
"""

from __future__ import annotations

import gc
import inspect
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from openai._streaming import SSEDecoder
from test_retries import run_once
from test_telemetry import Tracing, receiver  # noqa: F401 - a fixture

import synthora
import synthora.telemetry
from support import AGENT, API_KEY, Recorder
from synthora import OpenAIChatBackend, OpenAICompletionBackend, user
from synthora.events import EndEvent, ErrorEvent, StartEvent, TokenEvent
from synthora.instrumentation import SynthoraInstrumentor
from synthora.models import AnthropicBackend, OpenAIEmbeddingBackend, OpenAIResponsesBackend
from synthora.observed import ObservingNewClients
from synthora.storage import EventLog, ReplayBackend, ReplayMissError
from synthora.telemetry import CaptureMode
from synthora.testing import capture_events
from synthora.testing.server import Behaviour

PROMPT = "observe me closely"
MESSAGES = [{"role": "user", "content": PROMPT}]


@dataclass(frozen=True)
class Endpoint:
    """One SDK call, how the caller reads its answer, and the backend that makes the same run."""

    call: Callable[[Any, str, bool], Any]
    piece: Callable[[Any], str]  # a streamed item's text
    whole: Callable[[Any], str]  # a whole reply's text
    backend: type[Any]
    backend_input: Any
    anthropic: bool = False
    streams: bool = True


def chat_piece(chunk: Any) -> str:
    return (chunk.choices[0].delta.content or "") if chunk.choices else ""


def completion_piece(chunk: Any) -> str:
    return chunk.choices[0].text if chunk.choices else ""


def responses_piece(event: Any) -> str:
    return event.delta if event.type == "response.output_text.delta" else ""


def messages_piece(event: Any) -> str:
    if event.type == "content_block_delta" and event.delta.type == "text_delta":
        return str(event.delta.text)
    return ""


def usage_asked(stream: bool) -> dict[str, Any]:
    """The stream usage a backend asks for itself, asked by the caller here."""
    return {"stream_options": {"include_usage": True}} if stream else {}


ENDPOINTS = {
    "chat": Endpoint(
        lambda c, model, stream: c.chat.completions.create(
            model=model, messages=MESSAGES, stream=stream, temperature=0.5, **usage_asked(stream)
        ),
        chat_piece,
        lambda reply: reply.choices[0].message.content,
        OpenAIChatBackend,
        [user(PROMPT)],
    ),
    "completion": Endpoint(
        lambda c, model, stream: c.completions.create(
            model=model, prompt=PROMPT, stream=stream, temperature=0.5, **usage_asked(stream)
        ),
        completion_piece,
        lambda reply: reply.choices[0].text,
        OpenAICompletionBackend,
        PROMPT,
    ),
    "responses": Endpoint(
        lambda c, model, stream: c.responses.create(
            model=model, input=MESSAGES, stream=stream, temperature=0.5
        ),
        responses_piece,
        lambda reply: reply.output_text,
        OpenAIResponsesBackend,
        [user(PROMPT)],
    ),
    "embeddings": Endpoint(
        lambda c, model, stream: c.embeddings.create(model=model, input=["one", "two"]),
        lambda item: "",
        lambda reply: str(len(reply.data)),
        OpenAIEmbeddingBackend,
        ["one", "two"],
        streams=False,
    ),
    "messages": Endpoint(
        lambda c, model, stream: c.messages.create(
            model=model,
            max_tokens=64,
            messages=MESSAGES,
            stream=stream,
            extra_body={"temperature": 0.5},  # this SDK release has no temperature argument
        ),
        messages_piece,
        lambda reply: reply.content[0].text,
        AnthropicBackend,
        [user(PROMPT)],
        anthropic=True,
    ),
}
CALLS = [
    pytest.param(name, stream, use_async, id=f"{name}-{mode}-{'async' if use_async else 'sync'}")
    for name, endpoint in ENDPOINTS.items()
    for stream, mode in ((False, "whole"), (True, "streamed"))
    if stream is False or endpoint.streams
    for use_async in (False, True)
]


def sdk_client(server: Any, endpoint: Endpoint, use_async: bool, **options: Any) -> Any:
    options.setdefault("max_retries", 0)
    if endpoint.anthropic:
        kind = anthropic.AsyncAnthropic if use_async else anthropic.Anthropic
        return kind(api_key=API_KEY, base_url=server.base_url.removesuffix("/v1"), **options)
    kind = openai.AsyncOpenAI if use_async else openai.OpenAI
    return kind(api_key=API_KEY, base_url=server.base_url, **options)


async def answer(endpoint: Endpoint, result: Any, stream: bool) -> tuple[str, list[type]]:
    """The text the caller reads from an SDK call's result, and the types it was given."""
    if inspect.isawaitable(result):
        result = await result
    if not stream:
        return endpoint.whole(result), [type(result)]
    items = [item async for item in result] if hasattr(result, "__aiter__") else list(result)
    return "".join(endpoint.piece(item) for item in items), [type(result), type(items[0])]


async def close(client: Any) -> None:
    closing = client.close()
    if inspect.isawaitable(closing):
        await closing


def comparable(events: list[Any]) -> list[tuple[Any, ...]]:
    """A run's events without what differs between any two runs (ids, times, the node)."""
    compared: list[tuple[Any, ...]] = []
    for event in events:
        match event:
            case StartEvent():
                compared.append(
                    (
                        "start",
                        event.operation,
                        event.provider,
                        event.backend,
                        event.model,
                        event.messages,
                        event.prompt,
                        event.params,
                        event.stream,
                    )
                )
            case TokenEvent():
                compared.append(("token", event.text, event.tool_calls))
            case EndEvent():
                compared.append(
                    ("end", event.output, event.finish_reason, event.usage, event.vectors)
                )
            case ErrorEvent():
                compared.append(("error", event.error_type, event.status_code))
    return compared


@pytest.mark.parametrize(("name", "stream", "use_async"), CALLS)
async def test_an_observed_call_is_the_backends_run(server, model, name, stream, use_async):
    """The caller gets what a plain client gives; the bus gets the backend's run for it."""
    endpoint = ENDPOINTS[name]
    plain = sdk_client(server, endpoint, use_async)
    observed = synthora.observe(sdk_client(server, endpoint, use_async), source=AGENT)
    with capture_events() as unobserved:
        expected = await answer(endpoint, endpoint.call(plain, model, stream), stream)
    with capture_events() as events:
        got = await answer(endpoint, endpoint.call(observed, model, stream), stream)
    assert unobserved == []
    assert got == expected

    backend = endpoint.backend.default(
        model, AGENT, api_key=API_KEY, base_url=observed.base_url, max_retries=0, stream=stream
    )
    params = {"max_tokens": 64} if endpoint.anthropic else {}
    if name != "embeddings":
        params["temperature"] = 0.5
    with capture_events() as backend_events:
        result = backend.run(endpoint.backend_input, **params)
        if stream:
            list(result)
    assert comparable(events) == comparable(backend_events)
    provider = "anthropic" if endpoint.anthropic else "openai"
    assert {e.node.path for e in events} == {f"{AGENT.path}/model:{provider}"}
    for client in (plain, observed):
        await close(client)
    backend.client.close()


@pytest.fixture
def observed(server, model):
    """An observed openai client for this test's model; `behaviour` scripts the server."""
    clients: list[Any] = []

    def make(behaviour: Behaviour | None = None, *, use_async: bool = False, **options: Any):
        if behaviour is not None:
            server.behave(model, behaviour)
        client = synthora.observe(
            sdk_client(server, ENDPOINTS["chat"], use_async), source=AGENT, **options
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        if isinstance(client, openai.OpenAI):
            client.close()


def chat(client: Any, model: str, **options: Any) -> Any:
    return client.chat.completions.create(model=model, messages=MESSAGES, **options)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_server_error_is_the_sdks_exception_and_an_error_event(observed, model, events, stream):
    """The caller gets the SDK's own exception; the run ends in one error event that names it,
    with the key the server echoed scrubbed."""
    message = f"upstream failed for key {API_KEY}"
    client = observed(Behaviour(status=503, error_message=message))
    with pytest.raises(openai.InternalServerError) as raised:
        chat(client, model, stream=stream)
    assert API_KEY in str(raised.value)  # the caller's exception is the SDK's, untouched
    start, error = events
    assert isinstance(start, StartEvent)
    assert isinstance(error, ErrorEvent)
    assert (error.error_type, error.status_code, error.stage) == (
        "InternalServerError",
        503,
        "request",
    )
    assert API_KEY not in error.message
    assert "[REDACTED]" in error.message


def test_sdk_retries_stay_inside_one_run(observed, model, events, server):
    """The SDK's own retries happen inside the observed call: one run, counting its attempts."""
    client = observed(Behaviour(status=500))
    with pytest.raises(openai.InternalServerError):
        chat(client.with_options(max_retries=2), model)
    attempts = [r for r in server.requests if r.body.get("model") == model]
    assert len(attempts) == 3
    assert [e.kind for e in events] == ["start", "error"]
    assert events[-1].attempts == 3
    assert [a.status_code for a in events[-1].failed_attempts] == [500, 500, 500]


@pytest.mark.parametrize(("stream", "use_async"), [(False, False), (True, False), (True, True)])
async def test_an_observed_anthropic_client_counts_its_attempts(server, model, stream, use_async):
    """An anthropic client counts each attempt once: itself, its copies, and a backend over it
    (which would otherwise add a counter of its own)."""
    endpoint = ENDPOINTS["messages"]
    client = synthora.observe(sdk_client(server, endpoint, use_async, max_retries=2), source=AGENT)
    runs = []
    for target in (client, client.with_options(timeout=30)):
        server.behave(model, Behaviour(fail_first=2, status=529, retry_after_s=0.001))
        with capture_events() as events:
            await answer(endpoint, endpoint.call(target, model, stream), stream)
        runs.append(events[-1])
    server.behave(model, Behaviour(fail_first=2, status=529, retry_after_s=0.001))
    other = sdk_client(server, endpoint, not use_async)
    clients = {"async_client": client, "client": other} if use_async else {"client": client}
    clients.setdefault("async_client", other)
    backend = AnthropicBackend(model_type=model, source=AGENT, stream=stream, **clients)
    with capture_events() as events:
        await run_once(backend, use_async)
    runs.append(events[-1])
    assert [(end.kind, end.attempts) for end in runs] == [("end", 3)] * 3
    assert {tuple(a.status_code for a in end.failed_attempts) for end in runs} == {(529, 529)}
    for made in (client, other):
        await close(made)


def test_a_client_with_its_own_event_decoder_keeps_it(server, model):
    """A client class that decodes its streams itself (as a cloud's binary event stream does)
    keeps its decoder when observed; the run is still read off the same bytes."""
    used = []

    class OwnDecoder(SSEDecoder):
        def iter_bytes(self, iterator: Any) -> Any:
            used.append(self)
            return super().iter_bytes(iterator)

    class OwnClient(openai.OpenAI):
        def _make_sse_decoder(self) -> Any:
            return OwnDecoder()

    client = synthora.observe(OwnClient(api_key=API_KEY, base_url=server.base_url), source=AGENT)
    server.behave(model, Behaviour(tokens=("own", " decoder")))
    with capture_events() as events:
        text = "".join(chat_piece(chunk) for chunk in chat(client, model, stream=True))
    assert (text, len(used)) == ("own decoder", 1)
    assert [e.kind for e in events] == ["start", "token", "token", "end"]
    assert events[-1].output.text == "own decoder"
    client.close()


def test_a_broken_stream_fails_the_run_with_its_partial_output(observed, model, events):
    """The SDK raises what it raises for a cut connection; the run's error keeps what came."""
    client = observed(Behaviour(tokens=("one", " two", " three"), break_after=2))
    pieces: list[str] = []
    stream = chat(client, model, stream=True)
    with pytest.raises(openai.APIConnectionError):  # what the SDK itself raises for it
        pieces.extend(chat_piece(chunk) for chunk in stream)
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert (error.stage, error.error_type) == ("stream", "APIConnectionError")
    assert error.partial_output is not None
    assert error.partial_output.text == "".join(pieces) == "one two"
    assert [e.kind for e in events].count("error") == 1


def test_an_error_inside_the_stream_fails_the_run_once(observed, model, events):
    client = observed(Behaviour(tokens=("a", "b", "c"), error_after=1))
    with pytest.raises(openai.APIError):
        list(chat(client, model, stream=True))
    kinds = [e.kind for e in events]
    assert (kinds[0], kinds[-1], kinds.count("error"), "end" in kinds) == (
        "start",
        "error",
        1,
        False,
    )


@pytest.mark.parametrize("how", ["close", "with", "dropped"])
def test_an_abandoned_stream_ends_interrupted_with_what_came(observed, model, events, how):
    client = observed(Behaviour(tokens=("first", " second", " third")))
    stream = chat(client, model, stream=True)
    seen = ""
    if how == "with":
        with stream:
            for chunk in stream:
                seen += chat_piece(chunk)
                if seen:
                    break
    else:
        for chunk in stream:
            seen += chat_piece(chunk)
            if seen:
                break
        if how == "close":
            stream.close()
        else:
            del stream, chunk
            gc.collect()
    end = events[-1]
    assert isinstance(end, EndEvent)
    assert end.finish_reason == "interrupted"
    assert end.output is not None
    assert end.output.text == seen == "first"


async def test_an_abandoned_async_stream_ends_interrupted(observed, model, events):
    client = observed(Behaviour(tokens=("first", " second")), use_async=True)
    stream = await chat(client, model, stream=True)
    async for chunk in stream:
        if chat_piece(chunk):
            break
    await stream.close()
    await client.close()
    assert (events[-1].kind, events[-1].finish_reason) == ("end", "interrupted")


async def test_raw_responses_copies_and_helpers_are_observed(observed, model, events, server):
    """``with_raw_response``, ``with_streaming_response``, ``with_options`` copies and the
    anthropic ``messages.stream`` helper: each call is one run, and observing twice is a no-op."""
    client = observed()
    assert synthora.observe(client) is client
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    assert raw.parse().choices[0].message.content == f"You said: {PROMPT}"
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=MESSAGES, stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    copy = client.with_options(timeout=10)
    assert copy is not client
    assert copy.chat.completions.create(model=model, messages=MESSAGES).choices
    claude = synthora.observe(sdk_client(server, ENDPOINTS["messages"], False), source=AGENT)
    with claude.messages.stream(model=model, max_tokens=64, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == f"You said: {PROMPT}"
    claude.close()
    runs = [e for e in events if isinstance(e, EndEvent)]
    assert [e.output.text for e in runs] == [f"You said: {PROMPT}"] * 4
    assert [e.kind for e in events].count("start") == 4


def test_other_calls_pass_through_unobserved(observed, events):
    """Endpoints no backend speaks (models, files) are the SDK's alone: no run, same error."""
    client = observed()
    with pytest.raises(openai.NotFoundError):
        client.models.list()
    assert events == []


def test_handlers_hear_their_clients_runs_only(server, model):
    recorder = Recorder()
    heard = synthora.observe(
        sdk_client(server, ENDPOINTS["chat"], False), handlers=[recorder], name="heard"
    )
    other = synthora.observe(sdk_client(server, ENDPOINTS["chat"], False))
    chat(other, model)
    chat(heard, model)
    list(chat(heard.with_options(timeout=5), model, stream=True))
    tokens = len(f"You said: {PROMPT}".split(" ")) + 1  # "You", " said", ":", " observe", ...
    assert recorder.kinds == ["start", "token", "end", "start"] + ["token"] * tokens + ["end"]
    for client in (heard, other):
        client.close()


def test_observed_runs_are_stored_and_replay_offline(observed, model, log, server):
    """The log stores an observed run as it stores a backend's; `ReplayBackend` serves it back
    for the same request with no server."""
    with capture_events() as events:
        client = observed()
        text = "".join(chat_piece(c) for c in chat(client, model, stream=True, temperature=0.5))
    log.flush()
    (run_id,) = {e.run_id for e in events}
    stored = list(log.events(run_id))
    assert stored == events
    log.detach()
    server.behave(model, Behaviour(status=500))  # the live server would fail it now
    replay = ReplayBackend(log, stream=True)
    assert "".join(c.delta for c in replay.run([user(PROMPT)])) == text


def test_attaching_the_log_twice_stores_each_event_once(observed, model, log):
    """The `log` fixture attached it already: attaching it again, to everything or to one
    backend, stores a run's events once (a token burst read in one piece once came out doubled)."""
    log.attach()
    log.attach(OpenAIChatBackend.default(model, api_key=API_KEY))
    with capture_events() as events:
        list(chat(observed(), model, stream=True))
    log.flush()
    assert list(log.events(events[0].run_id)) == events


def test_an_observed_call_is_a_span(receiver, observed, model, events):  # noqa: F811
    tracing = Tracing(receiver, CaptureMode.NO_CONTENT)
    try:
        chat(observed(), model, temperature=0.5)
        (span,) = tracing.spans()
    finally:
        tracing.close()
    attributes = span.attributes
    assert span.name == f"chat {model}"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["synthora.node.path"] == f"{AGENT.path}/model:openai"
    assert {(e.trace_id, e.span_id) for e in events} == {(span.trace_id, span.span_id)}


def test_only_sdk_clients_can_be_observed():
    with pytest.raises(synthora.ConfigurationError, match="not a dict"):
        synthora.observe({})


INSTRUMENTED_APP = """
import sys, openai
client = openai.OpenAI(api_key=sys.argv[2], base_url=sys.argv[1], max_retries=0)
messages = [{"role": "user", "content": "an unmodified program"}]
reply = client.chat.completions.create(model="instrumented", messages=messages)
print(reply.choices[0].message.content)
stream = client.chat.completions.create(model="instrumented", messages=messages, stream=True)
print("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
"""


def run_instrumented(base_url: str, endpoint: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``opentelemetry-instrument python app.py``, as a user runs it, outside the source tree."""
    instrument = Path(sys.executable).with_name("opentelemetry-instrument")
    return subprocess.run(
        [str(instrument), sys.executable, "-c", INSTRUMENTED_APP, base_url, API_KEY],
        cwd=tempfile.gettempdir(),
        env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_opentelemetry_instrument_traces_an_unmodified_program(receiver, server):  # noqa: F811
    receiver.reset()
    done = run_instrumented(server.base_url, receiver.http_endpoint, OTEL_SERVICE_NAME="plain-app")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["You said: an unmodified program"] * 2
    # other installed instrumentations (the bench extra's peers) may add spans of their own
    spans = [s for s in receiver.received.wait_for_spans(2) if "synthora.run_id" in s.attributes]
    assert [(s.name, s.attributes["gen_ai.request.stream"]) for s in spans] == [
        ("chat instrumented", False),
        ("chat instrumented", True),
    ]
    assert {s.resource["service.name"] for s in spans} == {"plain-app"}
    assert API_KEY not in done.stderr + done.stdout


def test_disabled_instrumentation_leaves_the_program_alone(receiver, server):  # noqa: F811
    receiver.reset()
    done = run_instrumented(
        server.base_url,
        receiver.http_endpoint,
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="synthora",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["You said: an unmodified program"] * 2
    assert receiver.received.spans == []


def test_instrumentor_observes_clients_made_while_instrumented(server, model, receiver):  # noqa: F811
    tracing = Tracing(receiver, CaptureMode.NO_CONTENT)
    synthora.telemetry.uninstrument()  # the instrumentor connects the providers itself
    instrumentor = SynthoraInstrumentor()
    instrumentor.instrument(tracer_provider=tracing.tracer_provider)
    try:
        made = sdk_client(server, ENDPOINTS["chat"], False)
        with capture_events() as events:
            chat(made.with_options(timeout=9), model)
    finally:
        instrumentor.uninstrument()
    plain = sdk_client(server, ENDPOINTS["chat"], False)
    with capture_events() as after:
        chat(plain, model)
    for client in (made, plain):
        client.close()
    assert [e.kind for e in events] == ["start", "token", "end"]
    assert after == []
    (span,) = tracing.spans()
    assert span.name == f"chat {model}"
    tracing.close()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_backend_over_an_observed_client_is_one_run(server, model, stream):
    """A backend built while every new client is observed (its SDK clients are) reports each
    run once: the request it sends is its run's, not another observed call."""
    new_clients = ObservingNewClients()
    new_clients.start()
    try:
        backend = OpenAIChatBackend.default(
            model, AGENT, api_key=API_KEY, base_url=server.base_url, stream=stream
        )
    finally:
        new_clients.stop()
    assert backend.client._synthora_observer is not None
    with capture_events() as events:
        reply = backend.run([user(PROMPT)])
        text = "".join(chunk.delta for chunk in reply) if stream else reply.text
    assert text == f"You said: {PROMPT}"
    assert [e.kind for e in events].count("start") == 1
    assert events[0].backend == "openai_chat"
    backend.client.close()


def test_an_observed_client_composes_with_openai_v2(server, model, receiver):  # noqa: F811
    """Where the official instrumentation is installed (the bench extra), both trace each call."""
    official = pytest.importorskip("opentelemetry.instrumentation.openai_v2")
    tracing = Tracing(receiver, CaptureMode.NO_CONTENT)
    instrumentor = official.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracing.tracer_provider)
    client = synthora.observe(sdk_client(server, ENDPOINTS["chat"], False))
    try:
        with capture_events() as events:
            assert chat(client, model).choices[0].message.content == f"You said: {PROMPT}"
            assert "".join(chat_piece(c) for c in chat(client, model, stream=True))
    finally:
        instrumentor.uninstrument()
        client.close()
    ours = [("synthora.run_id" in span.attributes, span.name) for span in tracing.spans()]
    tracing.close()
    assert [e.kind for e in events].count("end") == 2
    assert sorted(ours) == [(False, f"chat {model}")] * 2 + [(True, f"chat {model}")] * 2


# -- replay: unmodified code answered from the log ----------------------------------------------


def offline(endpoint: Endpoint, use_async: bool, log: EventLog, **options: Any) -> Any:
    """An observed client over a log, pointed at a port nobody listens on."""
    kind: Any
    if endpoint.anthropic:
        kind = anthropic.AsyncAnthropic if use_async else anthropic.Anthropic
        url = "http://127.0.0.1:9"
    else:
        kind = openai.AsyncOpenAI if use_async else openai.OpenAI
        url = "http://127.0.0.1:9/v1"
    client = kind(api_key=API_KEY, base_url=url, max_retries=0)
    return synthora.observe(client, source=AGENT, replay=log, **options)


@pytest.mark.parametrize(("name", "stream", "use_async"), CALLS)
async def test_replay_answers_unmodified_code_offline(
    server, model, log, name, stream, use_async, monkeypatch
):
    """What an observed client recorded comes back, with no server and no socket, as the SDK's
    own objects; the replayed run's events are the recorded run's."""
    endpoint = ENDPOINTS[name]
    live = synthora.observe(sdk_client(server, endpoint, use_async), source=AGENT)
    with capture_events() as recorded:
        expected = await answer(endpoint, endpoint.call(live, model, stream), stream)
    await close(live)
    log.flush()
    log.detach()
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    replayed = offline(endpoint, use_async, log)
    with capture_events() as events:
        got = await answer(endpoint, endpoint.call(replayed, model, stream), stream)
    assert got == expected
    assert comparable(events) == comparable(recorded)


def refuse_connect(self: socket.socket, address: Any) -> None:
    raise AssertionError(f"a socket was opened to {address}")


def test_a_backends_runs_replay_to_an_observed_client(make_backend, model, log, monkeypatch):
    """A run recorded by `OpenAIChatBackend` answers the same request from unmodified code."""
    backend = make_backend(stream=True)
    text = "".join(chunk.delta for chunk in backend.run([user(PROMPT)], temperature=0.5))
    log.flush()
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    client = offline(ENDPOINTS["chat"], False, log)
    stream = chat(client, model, stream=True, temperature=0.5)
    assert "".join(chat_piece(chunk) for chunk in stream) == text


def test_a_replay_miss_names_the_closest_request(server, model, log, events):
    client = synthora.observe(sdk_client(server, ENDPOINTS["chat"], False))
    chat(client, model, temperature=0.5)
    client.close()
    log.flush()
    replayed = offline(ENDPOINTS["chat"], False, log)
    events.clear()
    with pytest.raises(ReplayMissError, match="closest differs: params") as missed:
        chat(replayed, model, temperature=0.9)
    assert '"temperature":0.5' in str(missed.value)
    assert events == []  # nothing is emitted for a request nobody answered


def test_record_mode_sends_a_miss_live_and_answers_it_offline_next(server, model, log):
    recording = offline(ENDPOINTS["chat"], False, log, mode="record").with_options(
        base_url=server.base_url
    )
    first = chat(recording, model).choices[0].message.content
    log.flush()
    assert chat(offline(ENDPOINTS["chat"], False, log), model).choices[0].message.content == first


def test_identical_requests_replay_in_recorded_order(server, model, log):
    """Two identical calls answered differently are replayed in that order, then the last."""
    client = synthora.observe(sdk_client(server, ENDPOINTS["chat"], False))
    answers = []
    for tokens in (("first",), ("second",)):
        server.behave(model, Behaviour(tokens=tokens))
        answers.append(chat(client, model).choices[0].message.content)
    client.close()
    log.flush()
    replayed = offline(ENDPOINTS["chat"], False, log)
    again = [chat(replayed, model).choices[0].message.content for _ in range(3)]
    assert again == ["first", "second", "second"]


def test_recorded_failures_fail_again_as_the_sdks_exceptions(server, model, log):
    """A recorded 429 is the SDK's RateLimitError again, without a retry; a recorded broken
    stream gives what came before the break, then the SDK's connection error."""
    client = synthora.observe(sdk_client(server, ENDPOINTS["chat"], False))
    server.behave(model, Behaviour(status=429, error_message="slow down"))
    with pytest.raises(openai.RateLimitError):
        chat(client, model)
    server.behave(model, Behaviour(tokens=("one", " two", " three"), break_after=2))
    with pytest.raises(openai.APIConnectionError):
        list(chat(client, model, stream=True))
    client.close()
    log.flush()
    replayed = offline(ENDPOINTS["chat"], False, log).with_options(max_retries=3)
    with capture_events() as events, pytest.raises(openai.RateLimitError, match="slow down"):
        chat(replayed, model)
    pieces: list[str] = []
    stream = chat(replayed, model, stream=True)
    with pytest.raises(openai.APIConnectionError):
        pieces.extend(chat_piece(chunk) for chunk in stream)
    assert "".join(pieces) == "one two"
    assert [e.kind for e in events] == ["start", "error"]


def test_azures_client_is_observed_on_the_same_path(server, model, log, monkeypatch):
    """``AzureOpenAI`` shares the OpenAI client's code path (its deployment URLs are built
    below it), so a run recorded from the OpenAI client answers it offline."""
    live = synthora.observe(sdk_client(server, ENDPOINTS["chat"], False))
    expected = chat(live, model).choices[0].message.content
    live.close()
    log.flush()
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    azure = openai.AzureOpenAI(
        api_key=API_KEY, azure_endpoint="http://127.0.0.1:9", api_version="2024-10-21"
    )
    with capture_events() as events:
        reply = chat(synthora.observe(azure, replay=log), model)
    assert reply.choices[0].message.content == expected
    assert [e.kind for e in events] == ["start", "token", "end"]
