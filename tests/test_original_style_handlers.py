"""Handlers written for the original library's hook signatures run, called as it called them."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from synthora import AsyncCallBackHandler, BaseCallBackHandler, SynthoraError, user
from synthora.messages import MessageChunk
from synthora.testing.server import Behaviour


class OriginalHandler(BaseCallBackHandler):
    """Hooks as the original library's base class declared them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_llm_start(self, source, messages, stream=False, *args, **kwargs):  # type: ignore[override]
        self.calls.append(("start", source, messages, stream))

    def on_llm_chunk(self, source, message, *args, **kwargs):  # type: ignore[override]
        self.calls.append(("chunk", source, message))

    def on_llm_end(self, source, message, stream=False, *args, **kwargs):  # type: ignore[override]
        self.calls.append(("end", source, message, stream))

    def on_llm_error(self, source, e, stream=False, *args, **kwargs):  # type: ignore[override]
        self.calls.append(("error", source, e, stream))


class AsyncOriginalHandler(AsyncCallBackHandler):
    """The async twin, as the original library's AsyncCallBackHandler declared it."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def on_llm_start(self, source, messages, stream=False, *args, **kwargs):  # type: ignore[override]
        self.calls.append(("start", source, messages, stream))

    async def on_llm_chunk(self, source, message, *args, **kwargs):  # type: ignore[override]
        self.calls.append(("chunk", source, message))

    async def on_llm_end(self, source, message, stream=False, *args, **kwargs):  # type: ignore[override]
        self.calls.append(("end", source, message, stream))

    async def on_llm_error(self, source, e, stream=False, *args, **kwargs):  # type: ignore[override]
        self.calls.append(("error", source, e, stream))


MODES = [
    pytest.param(OriginalHandler, "run", id="sync-handler-sync-run"),
    pytest.param(AsyncOriginalHandler, "run", id="async-handler-sync-run"),
    pytest.param(OriginalHandler, "async_run", id="sync-handler-async-run"),
    pytest.param(AsyncOriginalHandler, "async_run", id="async-handler-async-run"),
]


async def run_whole(backend: Any, how: str, messages: Any) -> tuple[Any, list[MessageChunk]]:
    """The reply (a stream's last chunk for a streamed run) and the chunks streamed, if any."""
    if how == "run":
        result = backend.run(messages)
        chunks = list(result) if backend.stream else []
    else:
        try:
            result = await backend.async_run(messages)
            chunks = [chunk async for chunk in result] if backend.stream else []
        finally:
            await backend.async_client.close()
    return (chunks[-1] if chunks else result), chunks


@pytest.mark.parametrize(("handler_class", "how"), MODES)
async def test_original_hooks_hear_a_whole_run(make_backend, handler_class, how):
    """Not streamed: on_llm_start(source, messages, stream=False), then on_llm_end(source,
    reply, stream=False); no chunk, as in the original library."""
    handler = handler_class()
    backend = make_backend(handlers=[handler])
    messages = [user("hello there")]
    reply, _ = await run_whole(backend, how, messages)
    assert handler.calls == [
        ("start", backend.node, messages, False),
        ("end", backend.node, reply, False),
    ]


@pytest.mark.parametrize(("handler_class", "how"), MODES)
async def test_original_hooks_hear_a_stream(make_backend, handler_class, how):
    """Streamed: every chunk the caller gets (its delta and the text so far), then the reply."""
    handler = handler_class()
    backend = make_backend(handlers=[handler], stream=True)
    messages = [user("stream this")]
    last, chunks = await run_whole(backend, how, messages)
    start, *heard, end = handler.calls
    assert start == ("start", backend.node, messages, True)
    assert [(kind, source) for kind, source, _ in heard] == [("chunk", backend.node)] * len(chunks)
    assert [(m.delta, m.content) for _, _, m in heard] == [(c.delta, c.content) for c in chunks]
    assert end[0] == "end"
    assert end[2].text == last.content
    assert end[1:] == (backend.node, end[2], True)


ERRORS = [
    pytest.param(False, Behaviour(status=500), openai.InternalServerError, id="request"),
    pytest.param(True, Behaviour(status=500), openai.InternalServerError, id="stream-request"),
    pytest.param(True, Behaviour(error_after=2), openai.APIError, id="mid-stream"),
]


@pytest.mark.parametrize(("handler_class", "how"), MODES)
@pytest.mark.parametrize(("stream", "behaviour", "raised"), ERRORS)
async def test_original_error_hook_gets_the_exception(
    make_backend, handler_class, how, stream, behaviour, raised
):
    """on_llm_error(source, error, stream) gets the very exception the caller catches."""
    handler = handler_class()
    backend = make_backend(behaviour=behaviour, handlers=[handler], stream=stream)
    with pytest.raises(raised) as caught:
        await run_whole(backend, how, "fail")
    kinds = [call[0] for call in handler.calls]
    assert kinds[0] == "start"
    assert set(kinds[1:-1]) <= {"chunk"}
    assert handler.calls[-1] == ("error", backend.node, caught.value, stream)


def test_mixed_styles_and_hooks_without_stream(make_backend):
    """One handler may mix both styles; an original hook that takes no `stream` is not given one."""
    seen: list[Any] = []

    class Mixed(BaseCallBackHandler):
        def on_llm_start(self, event):
            seen.append(("start", event.kind))

        def on_llm_end(self, source, message):  # type: ignore[override]
            seen.append(("end", source.name, message.text))

    backend = make_backend(handlers=[Mixed()])
    reply = backend.run("mix")
    assert seen == [("start", "start"), ("end", backend.name, reply.text)]


def test_a_replayed_failure_reaches_the_original_error_hook(make_backend, log):
    """Replayed to a backend, a stored failure comes as a SynthoraError quoting its record."""
    with pytest.raises(openai.InternalServerError):
        make_backend(behaviour=Behaviour(status=500, error_message="overloaded")).run("fail")
    log.flush()
    (failed,) = log.runs()
    handler = OriginalHandler()
    log.replay(failed.run_id, sender=make_backend(handlers=[handler]))
    kind, _, error, stream = handler.calls[-1]
    assert (kind, type(error), stream) == ("error", SynthoraError, False)
    assert str(error).startswith("InternalServerError: ")
    assert "overloaded" in str(error)
