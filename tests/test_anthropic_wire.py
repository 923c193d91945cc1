"""Anthropic's Messages API (`POST /v1/messages`) through the anthropic SDK, on the run
lifecycle: the request as the API takes it, replies and streams decoded as Anthropic documents
them and as llama.cpp sends them."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest
from test_telemetry import Tracing, receiver  # noqa: F401 - a fixture

from support import AGENT, API_KEY
from synthora import ResponseError, system, tool, user
from synthora.events import EndEvent, ErrorEvent, TokenEvent, Usage
from synthora.messages import ToolCall, assistant
from synthora.models import AnthropicBackend
from synthora.storage import EventLog, ReplayBackend
from synthora.telemetry import CaptureMode
from synthora.testing import capture_events
from synthora.testing.server import Behaviour, ToolCallSpec

SAMPLES = Path(__file__).with_name("wire_samples")
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
STREAM = [pytest.param(False, id="whole"), pytest.param(True, id="streamed")]


@pytest.fixture
def claude(server, model):
    """Build an AnthropicBackend for this test's model on the local server."""
    built = []

    def make(behaviour: Behaviour | None = None, **options):
        if behaviour is not None:
            server.behave(model, behaviour)
        root = server.base_url.removesuffix("/v1")  # the anthropic SDK adds /v1 itself
        backend = AnthropicBackend.default(
            model, AGENT, api_key=API_KEY, base_url=root, max_retries=0, **options
        )
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.client.close()


def reply_text(backend: AnthropicBackend, *messages: object, **params: object) -> str:
    result = backend.run(list(messages), **params)
    if backend.stream:
        chunks = list(result)
        return chunks[-1].content if chunks else ""
    return result.text


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", STREAM)
async def test_an_answered_run(claude, events, stream, use_async):
    """start, a token per text delta, end with the stop reason mapped, usage and provider."""
    backend = claude(stream=stream)
    if use_async:
        result = await backend.async_run([user("hello claude")])
        text = result.text if not stream else "".join([c.delta async for c in result])
        await backend.async_client.close()
    else:
        text = reply_text(backend, user("hello claude"))
    assert text == "You said: hello claude"
    start, *tokens, end = events
    assert (start.provider, start.operation, start.backend) == (
        "anthropic",
        "chat",
        "anthropic_messages",
    )
    assert "".join(t.text for t in tokens if isinstance(t, TokenEvent)) == text
    assert isinstance(end, EndEvent)
    assert (end.output, end.finish_reason) == (assistant(text), "stop")
    assert end.usage == Usage(input_tokens=2, output_tokens=5, cache_read_input_tokens=0)
    assert end.response_id.startswith("msg_")


@pytest.mark.parametrize("stream", STREAM)
def test_the_request_is_sent_as_the_api_takes_it(server, claude, model, stream):
    """System apart, tool calls and results as blocks, max_tokens defaulted, tools converted,
    and a parameter the SDK has no argument for sent in the body."""
    backend = claude(stream=stream)
    history = [
        system("be brief"),
        user("look it up"),
        assistant(tool_calls=[ToolCall(id="toolu_1", name="lookup", arguments='{"q": 1}')]),
        tool("found it", tool_call_id="toolu_1"),
    ]
    reply_text(backend, *history, tools=TOOLS, temperature=0.5, stop="END")
    (sent,) = [r.body for r in server.requests if r.body.get("model") == model]
    assert sent["system"] == "be brief"
    assert sent["max_tokens"] == 4096
    assert sent["temperature"] == 0.5
    assert sent["stop_sequences"] == ["END"]
    assert sent["tools"] == [{"name": "lookup", "input_schema": {"type": "object"}}]
    assert sent["messages"] == [
        {"role": "user", "content": "look it up"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": 1}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "found it"}],
        },
    ]


@pytest.mark.parametrize("stream", STREAM)
def test_tool_use(claude, events, stream):
    """tool_use blocks come back as tool calls, streamed as input_json_delta pieces or whole."""
    spec = ToolCallSpec("lookup", '{"query": "the weather in Paris"}', id="toolu_9")
    backend = claude(Behaviour(tool_calls=(spec,)), stream=stream)
    reply_text(backend, user("weather?"), tools=TOOLS)
    end = events[-1]
    assert end.finish_reason == "tool_calls"
    (call,) = end.output.tool_calls
    assert (call.id, call.name) == ("toolu_9", "lookup")
    assert call.arguments.replace(" ", "") == spec.arguments.replace(" ", "")


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        pytest.param(
            Behaviour(status=529, error_type="overloaded_error"),
            anthropic.APIStatusError,
            id="http-529",
        ),
        pytest.param(
            Behaviour(n_tokens=8, break_after=3), anthropic.APIConnectionError, id="broken"
        ),
        pytest.param(Behaviour(n_tokens=8, error_after=3), anthropic.APIError, id="error-event"),
    ],
)
def test_failures_raise_the_sdks_errors(claude, events, behaviour, error):
    """The anthropic SDK's own exceptions, after one error event with the partial output."""
    backend = claude(behaviour, stream=True)
    with pytest.raises(error):
        reply_text(backend, user("fail somehow"))
    closing = events[-1]
    assert isinstance(closing, ErrorEvent)
    if behaviour.status is None:
        assert closing.partial_output == assistant(" w0 w1 w2")


async def run_whole(backend: AnthropicBackend, use_async: bool, messages: list) -> object:
    return await backend.async_run(messages) if use_async else backend.run(messages)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>Bad gateway</html>", id="html"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"id": "msg_1", "content": "nope"}', id="content-of-the-wrong-type"),
    ],
)
async def test_an_unreadable_whole_reply_is_the_sdks_error(claude, events, body, use_async):
    """A 200 that is not a Messages reply: anthropic's APIError class (and Synthora's
    ResponseError) quoting what came, after one error event, not a bare AttributeError."""
    backend = claude(Behaviour(raw=(body,)))
    with pytest.raises(anthropic.APIError, match="cannot be read") as raised:
        await run_whole(backend, use_async, [user("hello")])
    await backend.async_client.close()
    assert isinstance(raised.value, ResponseError)
    assert body[:10].decode() in str(raised.value)
    assert [(e.kind, getattr(e, "error_type", None)) for e in events] == [
        ("start", None),
        ("error", "UnreadableReplyError"),
    ]


@pytest.mark.parametrize(
    ("sample", "stream", "text", "usage"),
    [
        pytest.param(
            "messages-stream.txt",
            True,
            " then who who who food",
            Usage(input_tokens=56, output_tokens=5, cache_read_input_tokens=55),
            id="stream",
        ),
        pytest.param(
            "messages-json.txt",
            False,
            " get around were much so next study next",
            Usage(input_tokens=35, output_tokens=8, cache_read_input_tokens=34),
            id="json",
        ),
    ],
)
def test_llama_cpp_messages(claude, events, sample, stream, text, usage):
    """What llama.cpp's server sends: cached input counted apart (and added back here)."""
    body = (SAMPLES / sample).read_bytes().split(b"\n\n", 1)[1]
    backend = claude(Behaviour(raw=(body,)), stream=stream)
    assert reply_text(backend, user("Say hello")) == text
    end = events[-1]
    assert (end.finish_reason, end.usage, end.response_model) == (
        "length",
        usage,
        "tiny-random-llama",
    )


def test_stored_and_replayed(tmp_path, claude):
    backend = claude(stream=True)
    with EventLog(f"sqlite:///{tmp_path / 'claude.db'}") as log:
        log.attach()
        live = "".join(c.delta for c in backend.run([user("keep this")]))
        with capture_events() as replayed:
            again = ReplayBackend(log).run([user("keep this")])
    assert again.text == live
    assert replayed[0].provider == "anthropic"


def test_cache_reads_reach_the_span(claude, receiver):  # noqa: F811 - the fixture
    """The span carries the input with the cached part counted in, and the cached part apart."""
    body = (SAMPLES / "messages-stream.txt").read_bytes().split(b"\n\n", 1)[1]
    tracing = Tracing(receiver, CaptureMode.NO_CONTENT)
    try:
        reply_text(claude(Behaviour(raw=(body,)), stream=True), user("Say hello"))
        (span,) = tracing.spans()
    finally:
        tracing.close()
    assert span.attributes["gen_ai.provider.name"] == "anthropic"
    assert span.attributes["gen_ai.usage.input_tokens"] == 56
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 55
    assert span.attributes["gen_ai.response.finish_reasons"] == ["length"]
