"""OpenAI's Responses API (`POST /v1/responses`) on the run lifecycle: the request as the API
takes it, replies and streams decoded as OpenAI documents them and as llama.cpp sends them."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from synthora import system, tool, user
from synthora.events import EndEvent, ErrorEvent, TokenEvent, Usage
from synthora.messages import ToolCall, assistant
from synthora.models import OpenAIResponsesBackend
from synthora.storage import EventLog, ReplayBackend
from synthora.testing import capture_events
from synthora.testing.server import Behaviour, ToolCallSpec

SAMPLES = Path(__file__).with_name("wire_samples")
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
STREAM = [pytest.param(False, id="whole"), pytest.param(True, id="streamed")]


def body_of(sample: str) -> bytes:
    """The body of a captured HTTP response."""
    return (SAMPLES / sample).read_bytes().split(b"\n\n", 1)[1]


def reply_of(backend: OpenAIResponsesBackend, *messages: object, **params: object):
    result = backend.run(list(messages), **params)
    if backend.stream:
        chunks = list(result)
        return chunks[-1].content if chunks else "", result
    return result.text, result


@pytest.mark.parametrize("stream", STREAM)
def test_the_request_is_sent_as_the_api_takes_it(server, make_backend, model, stream):
    """System messages become instructions, the rest input items; a tool result is a
    function_call_output; chat-format tools and max_completion_tokens are translated."""
    backend = make_backend(OpenAIResponsesBackend, stream=stream)
    history = [
        system("be brief"),
        user("look it up"),
        assistant(tool_calls=[ToolCall(id="call_1", name="lookup", arguments="{}")]),
        tool("found it", tool_call_id="call_1"),
        user("and now?"),
    ]
    reply_of(backend, *history, tools=TOOLS, max_completion_tokens=20)
    (sent,) = [r.body for r in server.requests if r.body.get("model") == model]
    assert sent["instructions"] == "be brief"
    assert sent["input"] == [
        {"role": "user", "content": "look it up"},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "found it"},
        {"role": "user", "content": "and now?"},
    ]
    assert sent["tools"] == [
        {"type": "function", "name": "lookup", "parameters": {"type": "object"}}
    ]
    assert sent["max_output_tokens"] == 20
    assert "max_completion_tokens" not in sent


@pytest.mark.parametrize("stream", STREAM)
def test_tool_calls(make_backend, events, stream):
    """Function-call items come back as tool calls, streamed argument by argument or whole."""
    spec = ToolCallSpec("lookup", '{"query": "the weather in Paris"}', id="call_9")
    backend = make_backend(
        OpenAIResponsesBackend, behaviour=Behaviour(tool_calls=(spec,)), stream=stream
    )
    reply_of(backend, user("weather?"), tools=TOOLS)
    end = events[-1]
    assert isinstance(end, EndEvent)
    assert end.finish_reason == "tool_calls"
    assert end.output == assistant(
        tool_calls=[ToolCall(id="call_9", name="lookup", arguments=spec.arguments)]
    )
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    if stream:
        assert len(tokens) > 2  # the item, then its arguments in pieces


@pytest.mark.parametrize("stream", STREAM)
def test_a_reply_cut_short_ends_with_length(make_backend, events, stream):
    """An incomplete response (max_output_tokens reached) finishes with 'length'."""
    backend = make_backend(
        OpenAIResponsesBackend, behaviour=Behaviour(finish_reason="length"), stream=stream
    )
    reply_of(backend, user("go on"))
    assert events[-1].finish_reason == "length"


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        pytest.param(Behaviour(status=429), openai.RateLimitError, id="http-429"),
        pytest.param(Behaviour(n_tokens=8, break_after=3), openai.APIConnectionError, id="broken"),
        pytest.param(Behaviour(n_tokens=8, error_after=3), openai.APIError, id="error-event"),
    ],
)
def test_failures_raise_the_sdks_errors(make_backend, events, behaviour, error):
    """A status error raises before the stream is handed back; a broken stream or an error
    event in it raises the SDK's exception after one error event with the partial output."""
    backend = make_backend(OpenAIResponsesBackend, behaviour=behaviour, stream=True)
    with pytest.raises(error):
        reply_of(backend, user("fail somehow"))
    closing = events[-1]
    assert isinstance(closing, ErrorEvent)
    assert closing.error_type == error.__name__
    if behaviour.status is None:
        assert closing.partial_output == assistant(" w0 w1 w2")


@pytest.mark.parametrize(
    ("sample", "stream", "text", "usage"),
    [
        pytest.param(
            "responses-stream.txt",
            True,
            " get such thing who who",
            Usage(input_tokens=35, output_tokens=5, cache_read_input_tokens=34),
            id="stream",
        ),
        pytest.param(
            "responses-json.txt",
            False,
            " air during such like words off such during",
            Usage(input_tokens=35, output_tokens=8, cache_read_input_tokens=0),
            id="json",
        ),
    ],
)
def test_llama_cpp_responses(make_backend, events, sample, stream, text, usage):
    """What llama.cpp's server sends (no [DONE], event: lines, usage in response.completed)."""
    backend = make_backend(
        OpenAIResponsesBackend, behaviour=Behaviour(raw=(body_of(sample),)), stream=stream
    )
    got, _ = reply_of(backend, user("Say hello"))
    assert got == text
    end = events[-1]
    assert isinstance(end, EndEvent)
    assert (end.output, end.finish_reason, end.usage) == (assistant(text), "stop", usage)
    assert end.response_model == "tiny-random-llama"
    assert end.response_id.startswith("resp_")


def test_a_responses_run_is_stored_and_replayed(tmp_path, make_backend):
    """The log stores a Responses run; ReplayBackend answers it again offline."""
    backend = make_backend(OpenAIResponsesBackend, stream=True)
    with EventLog(f"sqlite:///{tmp_path / 'responses.db'}") as log:
        log.attach()
        live = "".join(chunk.delta for chunk in backend.run([user("keep this")]))
        (summary,) = log.runs()
        with capture_events() as replayed:
            again = ReplayBackend(log).run([user("keep this")])
    assert (summary.backend, summary.status) == ("openai_responses", "ok")
    assert again.text == live
    assert replayed[0].provider == "openai"
    assert json.loads(json.dumps(summary.input_tokens)) is not None
