"""What real OpenAI-compatible servers send, byte for byte, is read the way a user expects."""

from __future__ import annotations

import json

import openai
import pytest

from synthora import ResponseError
from synthora.events import EndEvent, ErrorEvent
from synthora.testing.server import Behaviour


def sse(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(delta: dict, finish: str | None = None, **extra: object) -> bytes:
    body = {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "model": "raw", **extra}
    return sse({**body, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


DONE = b"data: [DONE]\n\n"


def stream_raw(make_backend, *pieces: bytes):
    backend = make_backend(behaviour=Behaviour(raw=pieces), stream=True)
    return backend.run("raw")


def closing(events):
    return [e for e in events if isinstance(e, EndEvent | ErrorEvent)]


def test_llama_cpp_error_line_is_an_error(make_backend, events):
    """llama.cpp's `error: {...}` line raises the server's message; no end follows it."""
    stream = stream_raw(
        make_backend,
        chunk({"content": "par"}),
        b'error: {"code": 500, "message": "context overflow", "type": "server_error"}\n\n',
        DONE,
    )
    with pytest.raises(openai.APIError, match="context overflow"):
        list(stream)
    (error,) = closing(events)
    assert isinstance(error, ErrorEvent)
    assert error.partial_output is not None
    assert error.partial_output.text == "par"


def test_event_error_with_spaced_json(make_backend, events):
    """`event: error` whose data already is an error object keeps the server's message."""
    stream = stream_raw(make_backend, b'event: error\ndata: { "error": {"message": "busy"}}\n\n')
    with pytest.raises(openai.APIError, match="busy"):
        list(stream)


def test_tool_calls_without_index_stay_apart(make_backend, events):
    """Servers that omit the tool-call index: a new id is a new call."""
    call = {"type": "function"}
    stream = stream_raw(
        make_backend,
        chunk({"tool_calls": [{**call, "id": "a", "function": {"name": "f", "arguments": "{"}}]}),
        chunk({"tool_calls": [{"function": {"arguments": "}"}}]}),
        chunk({"tool_calls": [{**call, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
        DONE,
    )
    list(stream)
    calls = stream.message.tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [("a", "f", "{}"), ("b", "g", "{}")]


def test_null_ids_indexes_and_models(make_backend, events):
    """`"id": null`, `"model": null` and `"index": null` do not break a stream."""
    stream = stream_raw(
        make_backend,
        chunk({"content": "ok"}, id=None, model=None),
        chunk({"tool_calls": [{"index": None, "id": "x", "function": {"name": "f"}}]}),
        chunk({}, "stop", id=None, model=None),
        DONE,
    )
    assert [c.delta for c in stream] == ["ok", ""]
    assert closing(events)[0].finish_reason == "stop"


def test_byte_order_mark_and_done_with_trailing_space(make_backend, events):
    """A leading BOM does not cost the first chunk; `[DONE] ` still ends the stream."""
    stream = stream_raw(
        make_backend, b"\xef\xbb\xbf" + chunk({"content": "first"}), b"data: [DONE] \n\n"
    )
    assert [c.delta for c in stream] == ["first"]
    assert closing(events)[0].kind == "end"


def test_malformed_chunk_is_an_api_error(make_backend, events):
    """A chunk that is not JSON raises openai.APIError naming it, after one error event."""
    stream = stream_raw(make_backend, chunk({"content": "a"}), b"data: {not json\n\n", DONE)
    with pytest.raises(openai.APIError, match="chunk this wire cannot read"):
        list(stream)
    (error,) = closing(events)
    assert error.kind == "error"


def test_all_events_in_one_read_then_close(make_backend, events):
    """Chunks already read when the consumer closes are not reported after the end."""
    stream = stream_raw(
        make_backend,
        chunk({"content": "a"}) + chunk({"content": "b"}) + chunk({"content": "c"}) + DONE,
    )
    assert next(stream).delta == "a"
    stream.close()
    assert list(stream) == []
    kinds = [e.kind for e in events]
    assert kinds == ["start", "token", "end"]


def reply(**choice: object) -> bytes:
    return json.dumps(
        {"id": "chatcmpl-j", "object": "chat.completion", "model": "m", **choice}
    ).encode()


def test_reply_without_choices_closes_the_run(make_backend, events):
    """A JSON reply with no choices raises ResponseError, after one error event."""
    backend = make_backend(behaviour=Behaviour(raw=(reply(choices=[]),)))
    with pytest.raises(ResponseError, match="no choices"):
        backend.run("x")
    assert [e.kind for e in events] == ["start", "error"]


def test_reply_without_role_and_with_a_custom_tool(make_backend, events):
    """A reply message without a role is the assistant's; a custom tool call keeps its input."""
    message = {
        "content": None,
        "tool_calls": [
            {"id": "t", "type": "custom", "custom": {"name": "sql", "input": "SELECT 1"}}
        ],
    }
    body = reply(choices=[{"index": 0, "message": message, "finish_reason": "tool_calls"}])
    result = make_backend(behaviour=Behaviour(raw=(body,))).run("x")
    (call,) = result.tool_calls
    assert (call.type, call.name, call.arguments) == ("custom", "sql", "SELECT 1")
    assert result.role == "assistant"
