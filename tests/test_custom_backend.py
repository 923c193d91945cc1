"""A user's own backend: four hooks, and it gets events, handlers, spans, the log and replay.

`EchoBackend` is written exactly as the README shows a user writing one: it knows nothing of
runs, events or the bus. Every path of the run lifecycle (sync and async, streamed or not,
answered, failing before or during the answer, abandoned) must behave as for the built-in wires.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from test_telemetry import CLIENT, Tracing, receiver  # noqa: F401 - a fixture

from support import AGENT, Recorder
from synthora import Node, NodeType, user
from synthora.events import EndEvent, ErrorEvent, StartEvent, TokenEvent, Usage
from synthora.messages import BaseMessage, assistant
from synthora.models import BaseModelBackend, ModelDelta, ModelReply, ModelRequest
from synthora.storage import EventLog, ReplayBackend
from synthora.telemetry import CaptureMode
from synthora.testing import capture_events


class Unavailable(Exception):
    """What the echo service raises when asked to fail."""


class EchoBackend(BaseModelBackend):
    """Answers with the last message's words; 'fail' fails at once, 'break' after two words."""

    provider = "echo"
    operation = "chat"

    def _generate(self, request: ModelRequest) -> ModelReply:
        words = self._words(request)
        return ModelReply(
            assistant(" ".join(words)),
            "stop",
            usage=Usage(input_tokens=len(words), output_tokens=len(words)),
            response_id="echo-1",
        )

    def _stream(self, request: ModelRequest) -> Iterator[ModelDelta]:
        words = self._words(request)
        for i, word in enumerate(words):
            if i == 2 and "break" in words:
                raise Unavailable("the echo broke mid-answer")
            yield ModelDelta(text=word if i == 0 else " " + word)
        yield ModelDelta(finish_reason="stop", usage=Usage(output_tokens=len(words)))

    async def _agenerate(self, request: ModelRequest) -> ModelReply:
        await asyncio.sleep(0)
        return self._generate(request)

    async def _astream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        for delta in self._stream(request):
            await asyncio.sleep(0)
            yield delta

    def _words(self, request: ModelRequest) -> list[str]:
        words = request.messages[-1].text.split()
        if "fail" in words:
            raise Unavailable("the echo is unavailable")
        return words


class SyncOnlyEcho(EchoBackend):
    """A backend with sync hooks only: async_run runs them in a worker thread."""

    _agenerate = BaseModelBackend._agenerate
    _astream = BaseModelBackend._astream


BACKENDS = [pytest.param(EchoBackend, id="echo"), pytest.param(SyncOnlyEcho, id="sync-only")]
STREAM = [pytest.param(False, id="whole"), pytest.param(True, id="streamed")]


def echo(cls: type[EchoBackend] = EchoBackend, **options: Any) -> EchoBackend:
    options.setdefault("source", AGENT)
    return cls(model_type="echo-1", **options)


async def ask(backend: BaseModelBackend, text: str, *, use_async: bool) -> str:
    """The reply's text, through run or async_run, whole or streamed."""
    if use_async:
        result = await backend.async_run([user(text)])
        if isinstance(result, BaseMessage):
            return result.text
        return "".join([chunk.delta async for chunk in result])
    result = backend.run([user(text)])
    if isinstance(result, BaseMessage):
        return result.text
    return "".join(chunk.delta for chunk in result)


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", STREAM)
@pytest.mark.parametrize("cls", BACKENDS)
async def test_an_answered_run(cls, stream, use_async):
    """start, a token per piece, end with the finish reason, usage and chunk count."""
    backend = echo(cls, stream=stream)
    with capture_events() as events:
        text = await ask(backend, "hello from my backend", use_async=use_async)
    assert text == "hello from my backend"
    start, *tokens, end = events
    assert isinstance(start, StartEvent)
    assert (start.provider, start.operation, start.backend) == ("echo", "chat", cls.__name__)
    assert start.messages == (user("hello from my backend"),)
    assert all(isinstance(t, TokenEvent) for t in tokens)
    assert "".join(t.text for t in tokens if isinstance(t, TokenEvent)) == text
    assert isinstance(end, EndEvent)
    assert end.output == assistant(text)
    assert end.finish_reason == "stop"
    assert end.usage is not None
    assert end.usage.output_tokens == 4
    assert end.chunks == len(tokens)
    assert [e.seq for e in events] == list(range(len(events)))
    assert end.node.path == f"agent:assistant/model:{cls.__name__}"


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", STREAM)
async def test_a_run_that_fails_at_once(stream, use_async):
    """The backend's own exception reaches the caller untouched, after one error event."""
    with capture_events() as events, pytest.raises(Unavailable, match="unavailable"):
        await ask(echo(stream=stream), "please fail", use_async=use_async)
    assert [e.kind for e in events] == ["start", "error"]
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert (error.error_type, error.stage) == ("Unavailable", "request" if not stream else "stream")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_stream_that_breaks(use_async):
    """A stream failing after two pieces: error with the partial output, then the exception."""
    with capture_events() as events, pytest.raises(Unavailable, match="mid-answer"):
        await ask(echo(stream=True), "one two break three", use_async=use_async)
    assert [e.kind for e in events] == ["start", "token", "token", "error"]
    error = events[-1]
    assert isinstance(error, ErrorEvent)
    assert error.partial_output == assistant("one two")


def test_an_abandoned_stream_ends_interrupted():
    """Break out of the stream and drop it: the run ends once, interrupted, with what was read."""
    with capture_events() as events:
        stream = echo(stream=True).run([user("a b c d e")])
        next(stream)
        del stream
        gc.collect()
    assert [e.kind for e in events] == ["start", "token", "end"]
    end = events[-1]
    assert isinstance(end, EndEvent)
    assert (end.finish_reason, end.output) == ("interrupted", assistant("a"))


async def test_an_async_stream_closed_early_ends_interrupted():
    """aclose() after one piece: interrupted, and the backend's generator is closed."""
    with capture_events() as events:
        stream = await echo(stream=True).async_run([user("a b c")])
        await anext(stream)
        await stream.aclose()
    assert [e.kind for e in events] == ["start", "token", "end"]
    assert events[-1].finish_reason == "interrupted"


def test_handlers_spans_log_and_replay(tmp_path, receiver):  # noqa: F811 - the fixture
    """With no other code: the backend's handlers hear its runs, a CLIENT span carries its
    provider, the log stores the run, and ReplayBackend answers it again offline."""
    recorder = Recorder()
    backend = echo(handlers=[recorder], source=Node(name="mine", type=NodeType.AGENT))
    tracing = Tracing(receiver, CaptureMode.NO_CONTENT)
    try:
        with EventLog(f"sqlite:///{tmp_path / 'echo.db'}") as log:
            log.attach()
            reply = backend.run([user("remember this")])
            (summary,) = log.runs()
            replayed = ReplayBackend(log).run([user("remember this")])
        live, again = sorted(tracing.spans(), key=lambda s: s.start_ns)
    finally:
        tracing.close()
    assert recorder.kinds == ["start", "token", "end"]
    span = live
    assert span.kind == CLIENT
    assert span.attributes["gen_ai.provider.name"] == "echo"
    assert again.attributes["gen_ai.provider.name"] == "echo"
    assert span.attributes["gen_ai.request.model"] == "echo-1"
    assert span.attributes["synthora.node.path"] == "agent:mine/model:EchoBackend"
    assert (summary.status, summary.model, summary.backend) == ("ok", "echo-1", "EchoBackend")
    assert replayed == reply
