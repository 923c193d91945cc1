"""Server failures become one error event, and the SDK's own exception reaches the caller."""

from __future__ import annotations

import httpx2
import openai
import pytest
from openai.resources.chat.completions import Completions

from synthora import ConfigurationError, OpenAIChatBackend, OpenAICompletionBackend, ResponseError
from synthora.events import EndEvent, ErrorEvent, Event, StartEvent, TokenEvent
from synthora.testing.server import Behaviour


async def consume(backend, async_: bool, seen: list[str]) -> None:
    """Read a streamed run to its end with run() or async_run(), keeping the deltas seen."""
    if async_:
        async for chunk in await backend.async_run("hi"):
            seen.append(chunk.delta)
    else:
        seen.extend(chunk.delta for chunk in backend.run("hi"))


def assert_failed_once(events: list[Event], error_type: str) -> ErrorEvent:
    """Start, maybe tokens, then one error and nothing after it."""
    assert isinstance(events[0], StartEvent)
    *_, last = events
    assert isinstance(last, ErrorEvent)
    assert not any(isinstance(e, EndEvent) for e in events)
    assert sum(isinstance(e, ErrorEvent) for e in events) == 1
    assert [e.seq for e in events] == list(range(len(events)))
    assert last.error_type == error_type
    return last


@pytest.mark.parametrize(
    ("status", "exc_type"),
    [
        pytest.param(400, openai.BadRequestError, id="400"),
        pytest.param(401, openai.AuthenticationError, id="401"),
        pytest.param(429, openai.RateLimitError, id="429"),
        pytest.param(500, openai.InternalServerError, id="500"),
        pytest.param(503, openai.InternalServerError, id="503"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_http_error_status(make_backend, events, status, exc_type, stream):
    """A 4xx/5xx raises the SDK's exception from run(), after one error event with the status."""
    behaviour = Behaviour(status=status, error_message="nope, said the server", error_code=status)
    backend = make_backend(behaviour=behaviour, stream=stream)
    with pytest.raises(exc_type, match="nope, said the server") as raised:
        backend.run("hi")
    error = assert_failed_once(events, exc_type.__name__)
    assert error.status_code == status
    assert error.code == str(status)
    assert error.stage == "request"
    assert "nope, said the server" in error.message
    assert any(error.run_id in note for note in raised.value.__notes__)


async def test_async_http_error_status(make_backend, events):
    """async_run raises the same exception as run, after the same error event."""
    backend = make_backend(behaviour=Behaviour(status=429), stream=True)
    with pytest.raises(openai.RateLimitError):
        await backend.async_run("hi")
    assert assert_failed_once(events, "RateLimitError").status_code == 429
    await backend.async_client.close()


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_timeout(make_backend, events, stream):
    """A server slower than the timeout gives APITimeoutError and one error event."""
    backend = make_backend(
        behaviour=Behaviour(headers_delay_s=2.0), stream=stream, timeout=httpx2.Timeout(0.2)
    )
    with pytest.raises(openai.APITimeoutError):
        backend.run("hi")
    assert_failed_once(events, "APITimeoutError")


def test_read_timeout_mid_stream(make_backend, events):
    """A stream that stalls past the read timeout fails with the partial output kept."""
    backend = make_backend(
        behaviour=Behaviour(tokens=("a", "b", "c"), delay_s=1.0),
        stream=True,
        timeout=httpx2.Timeout(5.0, read=0.3),
    )
    stream = backend.run("hi")
    with pytest.raises(openai.APITimeoutError):
        list(stream)
    error = assert_failed_once(events, "APITimeoutError")
    assert error.stage == "stream"


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("completion", [False, True], ids=["chat", "completion"])
async def test_connection_dropped_mid_stream(make_backend, events, async_, completion):
    """A dropped connection raises APIConnectionError; the error event keeps the partial text."""
    kind = OpenAICompletionBackend if completion else None
    options = {"behaviour": Behaviour(n_tokens=10, break_after=4), "stream": True}
    backend = make_backend(kind, **options) if kind else make_backend(**options)
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        await consume(backend, async_, seen)
    error = assert_failed_once(events, "APIConnectionError")
    assert error.stage == "stream"
    assert error.partial_output is not None
    assert error.partial_output.text == "".join(seen)
    assert len(seen) == 4
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert "".join(t.text for t in tokens) == "".join(seen)
    await backend.async_client.close()


@pytest.mark.parametrize("async_", [False, True], ids=["sync", "async"])
async def test_error_object_in_stream(make_backend, events, async_):
    """An error object in a data line raises openai.APIError with its message, as the SDK does."""
    behaviour = Behaviour(
        n_tokens=6, error_after=3, error_message="model overloaded", error_code=503
    )
    backend = make_backend(behaviour=behaviour, stream=True)
    with pytest.raises(openai.APIError, match="model overloaded") as raised:
        await consume(backend, async_, [])
    assert raised.value.code == "503"
    error = assert_failed_once(events, "APIError")
    assert error.message == "model overloaded"
    assert error.code == "503"
    assert error.partial_output is not None
    assert error.partial_output.text == " w0 w1 w2"
    await backend.async_client.close()


def test_unreachable_server(events):
    """Nothing listening: APIConnectionError, one error event, nothing swallowed."""
    backend = OpenAIChatBackend.default(
        "m", api_key="k", base_url="http://127.0.0.1:9/v1", max_retries=0
    )
    with pytest.raises(openai.APIConnectionError):
        backend.run("hi")
    assert_failed_once(events, "APIConnectionError")
    backend.client.close()


def test_sdk_wrapped_by_another_instrumentation(make_backend, events, monkeypatch):
    """When another instrumentation replaces the SDK's streamed response, the run fails with
    an error that says so (and closes what it got), not an AttributeError."""
    closed = []

    class ForeignStream:
        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr(Completions, "create", lambda self, **kwargs: ForeignStream())
    with pytest.raises(ConfigurationError, match="another instrumentation"):
        make_backend(stream=True).run("hi")
    assert closed == [True]
    assert_failed_once(events, "ConfigurationError")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>Bad gateway</html>", id="html"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{not json", id="broken-json"),
        pytest.param(b'{"id": "x", "choices": "nope"}', id="choices-of-the-wrong-type"),
    ],
)
def test_an_unreadable_reply_is_a_clear_sdk_error(make_backend, events, body):
    """A 200 whose body is not a chat completion: the SDK's APIError class (also Synthora's
    ResponseError), quoting what came, after exactly one error event."""
    backend = make_backend(behaviour=Behaviour(raw=(body,)))
    with pytest.raises(openai.APIError, match="cannot be read") as raised:
        backend.run("hello")
    assert isinstance(raised.value, ResponseError)
    assert body[:10].decode() in str(raised.value)
    assert [e.kind for e in events] == ["start", "error"]
    assert events[-1].error_type == "UnreadableReplyError"
