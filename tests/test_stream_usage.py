"""Streamed runs report usage, sent apart, on the finish chunk, or refused by the server."""

from __future__ import annotations

import openai
import pytest

from synthora import OpenAICompletionBackend
from synthora.events import EndEvent
from synthora.testing.server import Behaviour


def bodies(server, model):
    return [r.body for r in server.requests if r.body.get("model") == model]


def test_usage_from_the_last_chunk(make_backend, events, server, model):
    """By default a stream asks for include_usage and reads usage from the choices-less chunk."""
    list(make_backend(stream=True).run("count these words"))
    (body,) = bodies(server, model)
    assert body["stream_options"] == {"include_usage": True}
    end = events[-1]
    assert isinstance(end, EndEvent)
    assert end.usage is not None
    assert end.usage.input_tokens == 3


def test_usage_on_the_finish_chunk(make_backend, events):
    """Servers that put usage on the finish chunk itself are read too."""
    list(make_backend(behaviour=Behaviour(usage="on_finish"), stream=True).run("a b"))
    assert events[-1].usage is not None
    assert events[-1].usage.output_tokens == 5


@pytest.mark.parametrize("status", [400, 422])
@pytest.mark.parametrize("completion", [False, True], ids=["chat", "completion"])
def test_server_rejecting_stream_options(make_backend, events, server, model, status, completion):
    """A 400/422 for stream_options: retried once without it, remembered for the next runs."""
    behaviour = Behaviour(reject_stream_options=status, usage="on_finish")
    options = {"behaviour": behaviour, "stream": True}
    backend = (
        make_backend(OpenAICompletionBackend, **options) if completion else make_backend(**options)
    )
    text = "".join(chunk.delta for chunk in backend.run("first run"))
    assert text.endswith("first run")
    first, retry = bodies(server, model)
    assert "stream_options" in first
    assert "stream_options" not in retry
    assert [e.kind for e in events].count("start") == 1
    assert events[-1].kind == "end"
    assert events[-1].usage is not None
    list(backend.run("second run"))
    assert "stream_options" not in bodies(server, model)[-1]
    assert len(bodies(server, model)) == 3


async def test_async_server_rejecting_stream_options(make_backend, events, server, model):
    """async_run falls back the same way."""
    backend = make_backend(behaviour=Behaviour(reject_stream_options=400), stream=True)
    chunks = [c async for c in await backend.async_run("async fallback")]
    assert chunks[-1].content.endswith("async fallback")
    assert len(bodies(server, model)) == 2
    await backend.async_client.close()


def test_other_400s_are_not_retried(make_backend, events, server, model):
    """A 400 that persists without stream_options is the caller's error, raised as it is."""
    backend = make_backend(behaviour=Behaviour(status=400), stream=True)
    with pytest.raises(openai.BadRequestError):
        backend.run("bad")
    assert len(bodies(server, model)) == 2
    assert events[-1].kind == "error"


def test_stream_usage_off(make_backend, events, server, model):
    """stream_usage=False never sends stream_options; usage is then whatever the server gives."""
    list(make_backend(stream=True, stream_usage=False).run("quiet"))
    (body,) = bodies(server, model)
    assert "stream_options" not in body
    assert events[-1].usage is None


def test_user_stream_options_are_sent_as_given(make_backend, server, model):
    """stream_options in config are the user's own: sent unchanged, never retried away."""
    list(make_backend(stream=True, config={"stream_options": {"include_usage": False}}).run("x"))
    (body,) = bodies(server, model)
    assert body["stream_options"] == {"include_usage": False}


def test_max_completion_tokens_for_legacy_completions(make_backend, server, model):
    """The completion endpoint only knows max_tokens: max_completion_tokens is sent as that."""
    make_backend(OpenAICompletionBackend, config={"max_completion_tokens": 7}).run("limit")
    (body,) = bodies(server, model)
    assert body["max_tokens"] == 7
    assert "max_completion_tokens" not in body
