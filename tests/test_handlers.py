"""Callback handlers hear their own backend's runs; a failing one never breaks the run."""

from __future__ import annotations

import gc
import logging
import threading
import weakref

import pytest

from support import AGENT, API_KEY, Recorder
from synthora import AsyncCallBackHandler, BaseCallBackHandler, OpenAIChatBackend, bus
from synthora.events import EndEvent, StartEvent, TokenEvent


class AsyncRecorder(AsyncCallBackHandler):
    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.threads: set[str] = set()

    async def on_llm_start(self, event: StartEvent) -> None:
        self.kinds.append(event.kind)
        self.threads.add(threading.current_thread().name)

    async def on_llm_chunk(self, event: TokenEvent) -> None:
        self.kinds.append(event.kind)

    async def on_llm_end(self, event: EndEvent) -> None:
        self.kinds.append(event.kind)


class Exploding(BaseCallBackHandler):
    def on_llm_start(self, event: StartEvent) -> None:
        raise RuntimeError("handler bug")

    def on_llm_chunk(self, event: TokenEvent) -> None:
        raise RuntimeError("handler bug")


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_handler_hears_the_whole_run(make_backend, stream):
    """A handler given to a backend gets start, every token and end."""
    recorder = Recorder()
    backend = make_backend(handlers=[recorder], stream=stream)
    result = backend.run("one two three")
    if stream:
        list(result)
    assert recorder.kinds[0] == "start"
    assert recorder.kinds[-1] == "end"
    assert set(recorder.kinds[1:-1]) == {"token"}


def test_handlers_hear_only_their_backend(make_backend):
    """Handlers are scoped by blinker's sender: backend A's handler never hears backend B."""
    mine, theirs = Recorder(), Recorder()
    a = make_backend(handlers=[mine])
    b = make_backend()
    b.add_handler(theirs)
    a.run("for a")
    assert theirs.kinds == []
    b.run("for b")
    assert mine.kinds == ["start", "token", "end"]
    assert theirs.kinds == ["start", "token", "end"]
    b.remove_handler(theirs)
    b.run("again")
    assert theirs.kinds == ["start", "token", "end"]
    assert a.handlers == [mine]


def test_raising_handler_does_not_break_the_run(make_backend, events, caplog):
    """A handler that raises is logged and counted; the run and the other handlers go on."""
    recorder = Recorder()
    backend = make_backend(handlers=[Exploding(), recorder], stream=True)
    before = bus.subscriber_failures()
    with caplog.at_level(logging.ERROR, logger="synthora.bus"):
        text = "".join(chunk.delta for chunk in backend.run("keep going"))
    assert text.endswith("keep going")
    assert recorder.kinds[-1] == "end"
    assert isinstance(events[-1], EndEvent)
    failures = bus.subscriber_failures() - before
    assert failures == recorder.kinds.count("start") + recorder.kinds.count("token")
    assert "handler bug" in caplog.text
    assert events[0].run_id in caplog.text


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_async_handler_in_sync_run_is_awaited(make_backend, stream):
    """A sync run awaits async hooks, in order, on Synthora's private loop before returning."""
    recorder = AsyncRecorder()
    backend = make_backend(handlers=[recorder], stream=stream)
    result = backend.run("async hooks")
    if stream:
        list(result)
    assert recorder.kinds[0] == "start"
    assert recorder.kinds[-1] == "end"
    assert recorder.threads == {"synthora-async-handlers"}


async def test_async_handler_in_async_run_runs_on_the_callers_loop(make_backend):
    """async_run awaits async hooks on the caller's own loop."""
    recorder = AsyncRecorder()
    backend = make_backend(handlers=[recorder], stream=True)
    async for _ in await backend.async_run("on my loop"):
        pass
    assert recorder.kinds[0] == "start"
    assert recorder.kinds[-1] == "end"
    assert recorder.threads == {threading.current_thread().name}
    await backend.async_client.close()


def test_unoverridden_hooks_are_not_connected(make_backend):
    """A handler with no token hook adds no token receiver: nothing is built for it per token."""

    class EndsOnly(BaseCallBackHandler):
        def on_llm_end(self, event: EndEvent) -> None:
            pass

    backend = make_backend(handlers=[EndsOnly()])
    assert not list(bus.on_token.receivers_for(backend))
    assert list(bus.on_end.receivers_for(backend))


class HoldsItsBackend(Recorder):
    """A handler that refers back to its backend, as an agent's handler often holds its agent."""

    backend: OpenAIChatBackend | None = None


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_a_dropped_backend_and_its_handler_are_collected(server, model, stream):
    """A throwaway backend that ran with a handler is freed with it once dropped."""
    handler = HoldsItsBackend()
    backend = OpenAIChatBackend.default(
        model, AGENT, api_key=API_KEY, base_url=server.base_url, handlers=[handler], stream=stream
    )
    handler.backend = backend
    result = backend.run("one two")
    if stream:
        list(result)
    del result
    backend.client.close()
    assert handler.kinds[-1] == "end"
    gone = weakref.ref(backend), weakref.ref(handler)
    del backend, handler
    gc.collect()
    assert [ref() for ref in gone] == [None, None]


def test_a_removed_handler_is_collected(make_backend):
    """remove_handler lets go of the handler: the backend keeps running without holding it."""
    handler = Recorder()
    backend = make_backend(handlers=[handler])
    backend.run("heard")
    backend.remove_handler(handler)
    backend.run("not heard")
    assert handler.kinds == ["start", "token", "end"]
    gone = weakref.ref(handler)
    del handler
    gc.collect()
    assert gone() is None
    assert backend.handlers == []


def test_handlers_hear_a_run_in_the_order_they_were_added(make_backend):
    """Several handlers on one backend are called in the order they were added."""
    heard: list[str] = []

    class Named(BaseCallBackHandler):
        def __init__(self, name: str) -> None:
            self.name = name

        def on_llm_end(self, event: EndEvent) -> None:
            heard.append(self.name)

    names = [f"handler-{i}" for i in range(8)]
    make_backend(handlers=[Named(name) for name in names]).run("in order")
    assert heard == names
