"""Streamed runs whose server does not stream as asked, on every wire that reads its own stream
(chat, legacy completions, Responses, Anthropic Messages): a whole JSON reply or an unreadable
page instead of events, a surrogate pair split across two chunks, a stream that stops short
without an error. The caller, the events and the stored run must all tell the truth."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from test_wire_matrix import close_clients, http_wire

from synthora import OpenAIChatBackend, OpenAICompletionBackend, ResponseError
from synthora.events import EndEvent, TokenEvent
from synthora.models import AnthropicBackend, BaseModelBackend, OpenAIResponsesBackend
from synthora.testing.server import Behaviour

SAMPLES = Path(__file__).with_name("wire_samples")


def sse(payload: dict[str, Any], event: str = "") -> bytes:
    """One SSE event; json.dumps escapes a lone surrogate as ``\\udXXX``, as servers do."""
    name = f"event: {event}\n" if event else ""
    return (name + "data: " + json.dumps(payload) + "\n\n").encode()


def chat_stream(pieces: list[str]) -> tuple[bytes, ...]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({"id": "chatcmpl-s", "object": "chat.completion.chunk", "choices": [choice]})

    return (*(chunk({"content": p}) for p in pieces), chunk({}, "stop"), b"data: [DONE]\n\n")


def completion_stream(pieces: list[str]) -> tuple[bytes, ...]:
    def chunk(text: str, finish: str | None = None) -> bytes:
        choice = {"index": 0, "text": text, "finish_reason": finish}
        return sse({"id": "cmpl-s", "object": "text_completion", "choices": [choice]})

    return (*(chunk(p) for p in pieces), chunk("", "stop"), b"data: [DONE]\n\n")


def responses_stream(pieces: list[str]) -> tuple[bytes, ...]:
    response = {"id": "resp_s", "object": "response", "status": "in_progress"}
    done = {**response, "status": "completed", "usage": {"input_tokens": 1, "output_tokens": 4}}
    return (
        sse({"type": "response.created", "response": response}, "response.created"),
        *(
            sse({"type": "response.output_text.delta", "item_id": "m", "delta": p}, "delta")
            for p in pieces
        ),
        sse({"type": "response.completed", "response": done}, "response.completed"),
    )


def messages_stream(pieces: list[str]) -> tuple[bytes, ...]:
    message = {"id": "msg_s", "type": "message", "role": "assistant", "content": []}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    stop = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}
    return (
        sse({"type": "message_start", "message": message}, "message_start"),
        sse(block, "content_block_start"),
        *(
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": p},
                },
                "content_block_delta",
            )
            for p in pieces
        ),
        sse(stop, "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    )


@dataclass(frozen=True)
class Wire:
    cls: type[BaseModelBackend]
    stream_of: Callable[[list[str]], tuple[bytes, ...]]

    @property
    def sdk(self) -> Any:
        return sdk_of(self.cls)


def sdk_of(cls: type[BaseModelBackend]) -> Any:
    return anthropic if cls is AnthropicBackend else openai


@pytest.fixture
def streamed(server, model):
    """Build a streaming backend of a wire for this test's model; its client closed after."""
    built = []

    def build(cls: type[BaseModelBackend]) -> Any:
        wire = http_wire(cls, sdk_of(cls), root=cls is AnthropicBackend)
        built.append(wire.build(server, model, True, ""))
        return built[-1]

    yield build
    for backend in built:
        backend.client.close()


WIRES = [
    pytest.param(Wire(OpenAIChatBackend, chat_stream), id="chat"),
    pytest.param(Wire(OpenAICompletionBackend, completion_stream), id="completion"),
    pytest.param(Wire(OpenAIResponsesBackend, responses_stream), id="responses"),
    pytest.param(Wire(AnthropicBackend, messages_stream), id="messages"),
]
SYNC_AND_ASYNC = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


async def read(backend: BaseModelBackend, use_async: bool) -> list[Any]:
    """Iterate a streamed run as a caller would; returns the chunks."""
    try:
        if use_async:
            return [chunk async for chunk in await backend.async_run("hello")]
        return list(backend.run("hello"))
    finally:
        await close_clients(backend)


def tokens_and_end(events: list[Any]) -> tuple[str, EndEvent]:
    end = events[-1]
    assert isinstance(end, EndEvent)
    return "".join(e.text for e in events if isinstance(e, TokenEvent)), end


# -- a streamed request answered with a whole JSON reply, or with a page ------------------


@SYNC_AND_ASYNC
@pytest.mark.parametrize("wire", WIRES)
async def test_a_json_reply_to_a_streamed_request_is_the_answer(
    server, model, streamed, log, events, wire, use_async
):
    """A server that ignores ``stream: true`` and answers ``200 application/json``: the caller
    iterates the answer, and the run is stored with it, its finish reason and usage."""
    server.behave(model, Behaviour(tokens=("Hello", " there"), ignore_stream=True))
    chunks = await read(streamed(wire.cls), use_async)
    assert "".join(c.delta for c in chunks) == "Hello there"
    text, end = tokens_and_end(events)
    assert text == "Hello there"
    assert (end.output.text, end.finish_reason, end.usage.output_tokens) == (
        "Hello there",
        "stop",
        2,
    )
    log.flush()
    (summary,) = log.runs()
    assert (summary.status, summary.finish_reason, summary.output_tokens) == ("ok", "stop", 2)
    assert log.transcript(summary.run_id).output.text == "Hello there"


@SYNC_AND_ASYNC
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b"<html><body>502 Bad gateway</body></html>", "text/html", id="html"),
        pytest.param(b"null", "application/json", id="null"),
        pytest.param(b'{"id": "x", "choices": "nope', "application/json", id="broken-json"),
    ],
)
@pytest.mark.parametrize("wire", WIRES)
async def test_a_body_that_is_neither_events_nor_a_reply_is_a_clear_error(
    server, model, streamed, events, wire, use_async, body, content_type
):
    """A streamed request answered by a page or a broken body: the SDK's APIError class (and
    Synthora's ResponseError) raised from ``run()``, quoting what came, after one error event."""
    server.behave(model, Behaviour(raw=(body,), ignore_stream=True, content_type=content_type))
    with pytest.raises(wire.sdk.APIError, match="cannot be read") as raised:
        await read(streamed(wire.cls), use_async)
    assert isinstance(raised.value, ResponseError)
    assert repr(body[:12])[2:-1] in str(raised.value)
    assert [e.kind for e in events] == ["start", "error"]
    assert (events[-1].error_type, events[-1].stage) == ("UnreadableReplyError", "request")


@pytest.mark.parametrize("wire", WIRES)
def test_events_labelled_as_json_are_still_a_stream(server, model, streamed, events, wire):
    """A stream whose Content-Type says JSON (a proxy's relabelling) is still read as events."""
    server.behave(model, Behaviour(raw=wire.stream_of(["a", "b"]), content_type="application/json"))
    backend = streamed(wire.cls)
    assert [c.delta for c in backend.run("hello")] == ["a", "b"]
    assert tokens_and_end(events)[1].finish_reason == "stop"


# -- a surrogate pair split across two chunks ----------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
def test_a_surrogate_pair_split_across_chunks_is_one_character(
    server, model, streamed, log, events, wire
):
    """``"\\ud83d"`` then ``"\\ude00"`` in two chunks: the caller, the tokens, the end and the
    stored run all hold the one character they make."""
    server.behave(model, Behaviour(raw=wire.stream_of(["Hi ", "\ud83d", "\ude00", "!"])))
    chunks = list(streamed(wire.cls).run("hello"))
    assert "".join(c.delta for c in chunks) == "Hi \U0001f600!"
    assert chunks[-1].content == "Hi \U0001f600!"
    text, end = tokens_and_end(events)
    assert text == end.output.text == "Hi \U0001f600!"
    assert end.finish_reason == "stop"
    log.flush()
    (summary,) = log.runs()
    assert summary.status == "ok"
    assert log.transcript(summary.run_id).output.text == "Hi \U0001f600!"
    stored = [e.text for e in log.events(summary.run_id) if isinstance(e, TokenEvent)]
    assert "".join(stored) == "Hi \U0001f600!"


@pytest.mark.parametrize("wire", WIRES)
def test_a_high_surrogate_whose_pair_never_comes_is_a_replacement_character(
    server, model, streamed, events, wire
):
    """A lone half of a pair cannot be text: it becomes U+FFFD, as a UTF-8 decoder makes it."""
    server.behave(model, Behaviour(raw=wire.stream_of(["Hi ", "\ud83d"])))
    chunks = list(streamed(wire.cls).run("hello"))
    assert "".join(c.delta for c in chunks) == "Hi \ufffd"
    text, end = tokens_and_end(events)
    assert text == end.output.text == "Hi \ufffd"


# -- a stream that stops short without an error ----------------------------------------


@SYNC_AND_ASYNC
@pytest.mark.parametrize("wire", WIRES)
async def test_a_stream_ended_before_its_finish_is_truncated(
    server, model, streamed, log, events, wire, use_async
):
    """The body ends cleanly after three pieces, with no finish reason and no end marker: the
    caller's iteration ends as the SDK's does, and the run is stored as truncated."""
    server.behave(model, Behaviour(n_tokens=6, end_after=3))
    chunks = await read(streamed(wire.cls), use_async)
    assert "".join(c.delta for c in chunks) == " w0 w1 w2"
    text, end = tokens_and_end(events)
    assert (text, end.output.text, end.finish_reason) == (" w0 w1 w2", " w0 w1 w2", "truncated")
    log.flush()
    (summary,) = log.runs(status="truncated")
    assert summary.finish_reason == "truncated"
    assert list(log.runs(status="ok")) == []


@pytest.mark.parametrize(
    ("sample", "cls", "cut_before", "text"),
    [
        pytest.param(
            "chat-stream.txt",
            OpenAIChatBackend,
            b'data: {"choices":[{"finish_reason":"length"',
            " today day morning have",
            id="chat",
        ),
        pytest.param(
            "responses-stream.txt",
            OpenAIResponsesBackend,
            b"event: response.completed",
            " get such thing who who",
            id="responses",
        ),
        pytest.param(
            "messages-stream.txt",
            AnthropicBackend,
            b"event: message_delta",
            " then who who who food",
            id="messages",
        ),
    ],
)
def test_llama_cpp_streams_cut_before_their_finish_are_truncated(
    server, model, streamed, events, sample, cls, cut_before, text
):
    """llama.cpp's own streams, cut just before the event that finishes them: truncated."""
    body = (SAMPLES / sample).read_bytes().split(b"\n\n", 1)[1]
    server.behave(model, Behaviour(raw=(body[: body.index(cut_before)],)))
    backend = streamed(cls)
    assert "".join(c.delta for c in backend.run("hello")) == text
    assert tokens_and_end(events)[1].finish_reason == "truncated"


@pytest.mark.parametrize(
    ("kept", "finish_reason"),
    [
        pytest.param((0, 1), "stop", id="finish-reason-without-done"),
        pytest.param((0, 2), None, id="done-without-finish-reason"),
    ],
)
def test_a_stream_that_says_it_is_whole_is_not_truncated(
    server, model, streamed, events, kept, finish_reason
):
    """A finish reason or [DONE] says the answer is whole: some servers send only one of them."""
    pieces = chat_stream(["a"])
    server.behave(model, Behaviour(raw=tuple(pieces[i] for i in kept)))
    backend = streamed(OpenAIChatBackend)
    assert [c.delta for c in backend.run("hello")] == ["a"]
    assert tokens_and_end(events)[1].finish_reason == finish_reason
