"""Every kind of run emits start, tokens, then exactly one end, with contiguous seq numbers."""

from __future__ import annotations

from typing import Any

import pytest

from synthora import BaseMessage, OpenAIChatBackend, OpenAICompletionBackend, user
from synthora.events import EndEvent, Event, StartEvent, TokenEvent
from synthora.messages import MessageChunk
from synthora.models import OpenAIResponsesBackend
from synthora.testing.server import Behaviour

KINDS = [
    pytest.param(OpenAIChatBackend, id="chat"),
    pytest.param(OpenAICompletionBackend, id="completion"),
    pytest.param(OpenAIResponsesBackend, id="responses"),
]
STREAM = [pytest.param(False, id="no-stream"), pytest.param(True, id="stream")]


def assert_complete_run(events: list[Event], reply_text: str) -> EndEvent:
    """One run: start, token*, end; seq 0..n; tokens add up to the reply; usage in the end."""
    start, *tokens, end = events
    assert isinstance(start, StartEvent)
    assert all(isinstance(t, TokenEvent) for t in tokens)
    assert isinstance(end, EndEvent)
    assert [e.seq for e in events] == list(range(len(events)))
    assert {e.run_id for e in events} == {start.run_id}
    assert "".join(t.text for t in tokens if isinstance(t, TokenEvent)) == reply_text
    assert end.output is not None
    assert end.output.text == reply_text
    assert end.finish_reason == "stop"
    assert end.usage is not None
    assert end.usage.output_tokens is not None
    assert end.usage.output_tokens > 0
    return end


def collect_sync(backend: Any, prompt: str) -> str:
    result = backend.run([user(prompt)])
    if isinstance(result, BaseMessage):
        return result.text
    chunks = list(result)
    assert all(isinstance(c, MessageChunk) for c in chunks)
    assert chunks[-1].content == "".join(c.delta for c in chunks)
    return chunks[-1].content


async def collect_async(backend: Any, prompt: str) -> str:
    result = await backend.async_run([user(prompt)])
    if isinstance(result, BaseMessage):
        return result.text
    chunks = [chunk async for chunk in result]
    return chunks[-1].content


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("backend_cls", KINDS)
def test_sync_run_emits_a_complete_run(make_backend, events, backend_cls, stream):
    """A sync run, streamed or not, is start, tokens, end, and the tokens make the reply."""
    backend = make_backend(backend_cls, stream=stream)
    text = collect_sync(backend, "hello synthora world")
    assert "hello synthora world" in text
    end = assert_complete_run(events, text)
    start = events[0]
    assert start.operation == backend.operation
    assert start.stream is stream
    assert start.model == backend.model_type
    assert end.node.path == "agent:assistant/model:" + backend_cls.__name__


@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("backend_cls", KINDS)
async def test_async_run_emits_a_complete_run(make_backend, events, backend_cls, stream):
    """The async twin emits exactly what the sync run does."""
    backend = make_backend(backend_cls, stream=stream)
    text = await collect_async(backend, "hello async world")
    assert "hello async world" in text
    assert_complete_run(events, text)
    await backend.async_client.close()


def test_streamed_run_counts_tokens_and_timings(make_backend, events):
    """A streamed run reports one token event per content chunk and a time to first token."""
    backend = make_backend(behaviour=Behaviour(n_tokens=50), stream=True)
    text = collect_sync(backend, "count")
    end = assert_complete_run(events, text)
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert [t.index for t in tokens] == list(range(50))
    assert end.time_to_first_token_s is not None
    assert 0 < end.time_to_first_token_s <= end.duration_s
    assert end.response_id is not None
    assert end.response_id.startswith("chatcmpl-")


def test_start_event_records_the_request(make_backend, events):
    """The start event holds the messages, the parameters and the server, not the key."""
    backend = make_backend(config={"temperature": 0.2, "max_completion_tokens": 64})
    backend.run([user("what is recorded?")])
    start = events[0]
    assert isinstance(start, StartEvent)
    assert start.messages == (user("what is recorded?"),)
    assert start.params == {"temperature": 0.2, "max_completion_tokens": 64}
    assert start.server_address == "127.0.0.1"
    assert isinstance(start.server_port, int)
    assert start.service


def test_config_stream_is_the_original_librarys_set_stream(make_backend, events):
    """config={"stream": True} streams, as set_stream(True) does; it is not sent as a parameter."""
    backend = make_backend(config={"stream": True, "temperature": 0.1})
    assert backend.stream
    assert backend.config == {"temperature": 0.1}
    text = collect_sync(backend, "stream me")
    assert_complete_run(events, text)
    assert events[0].stream is True
