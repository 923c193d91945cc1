"""A stream closes its run exactly once, however the consumer leaves it, and frees the socket."""

from __future__ import annotations

import asyncio
import gc

import pytest

from synthora import bus
from synthora.events import EndEvent, ErrorEvent, Event
from synthora.testing.server import Behaviour

SLOW = Behaviour(n_tokens=200, delay_s=0.01)


def closing(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, EndEvent | ErrorEvent)]


def assert_interrupted_once(events: list[Event], seen: str) -> None:
    (end,) = closing(events)
    assert isinstance(end, EndEvent)
    assert end.finish_reason == "interrupted"
    assert end.output is not None
    assert end.output.text == seen
    assert [e.seq for e in events] == list(range(len(events)))


@pytest.fixture
def slow_stream(make_backend):
    """A backend whose streams last 2 seconds, so a test can leave one early."""
    return make_backend(behaviour=SLOW, stream=True)


@pytest.fixture
def released(server):
    """Call it while still holding the stream: the server must have seen the client leave."""
    aborted = server.aborted_streams

    def check() -> None:
        assert server.wait_for(lambda: server.aborted_streams == aborted + 1, timeout=1.5), (
            "the client did not release the HTTP stream it left"
        )

    return check


def test_break_and_drop_reports_interrupted(slow_stream, events, released):
    """Breaking out of a stream and dropping it ends the run as interrupted, with the text seen."""
    stream = slow_stream.run("go")
    for seen, chunk in enumerate(stream):  # noqa: B007
        if seen == 2:
            break
    text = chunk.content
    del stream, chunk
    gc.collect()
    assert_interrupted_once(events, text)
    released()


def test_close_reports_interrupted_once(slow_stream, events, released):
    """close() ends the run as interrupted and frees the connection; closing again adds nothing."""
    stream = slow_stream.run("go")
    first = next(stream)
    stream.close()
    released()
    stream.close()
    assert list(stream) == []
    assert_interrupted_once(events, first.content)


def test_with_block_closes_the_stream(slow_stream, events, released):
    """Leaving a `with` block early ends the run as interrupted and frees the connection."""
    with slow_stream.run("go") as stream:
        first = next(stream)
    released()
    assert stream.closed
    assert_interrupted_once(events, first.content)


def test_user_exception_inside_the_loop_propagates(slow_stream, events, released):
    """The consumer's own exception is not ours: it propagates, and the run is interrupted."""
    stream = slow_stream.run("go")

    def consume() -> None:
        for _ in stream:
            raise KeyError("consumer")

    with pytest.raises(KeyError, match="consumer"):
        consume()
    stream.close()
    released()
    assert_interrupted_once(events, stream.message.text)


def test_exhausted_stream_ends_once(make_backend, events):
    """Reading a stream to the end and closing it afterwards still gives exactly one end."""
    stream = make_backend(stream=True).run("short")
    chunks = list(stream)
    stream.close()
    (end,) = closing(events)
    assert isinstance(end, EndEvent)
    assert end.finish_reason == "stop"
    assert end.output is not None
    assert end.output.text == chunks[-1].content


async def test_async_break_and_drop_reports_interrupted(slow_stream, events, released):
    """An async stream abandoned mid-way is closed on the loop and reported as interrupted."""
    stream = await slow_stream.async_run("go")
    async for chunk in stream:
        text = chunk.content
        break
    ended = asyncio.Event()

    def on_end(sender, **_) -> None:
        ended.set()

    bus.on_end.connect(on_end, weak=False)
    try:
        del stream
        gc.collect()
        await asyncio.wait_for(ended.wait(), timeout=5)
    finally:
        bus.on_end.disconnect(on_end)
    assert_interrupted_once(events, text)
    await asyncio.to_thread(released)
    await slow_stream.async_client.close()


async def test_aclose_reports_interrupted(slow_stream, events, released):
    """aclose() ends an async stream as interrupted and frees the connection."""
    stream = await slow_stream.async_run("go")
    first = await anext(stream)
    await stream.aclose()
    await asyncio.to_thread(released)
    await stream.aclose()
    assert_interrupted_once(events, first.content)
    await slow_stream.async_client.close()


async def test_async_with_block_closes_the_stream(slow_stream, events, released):
    """Leaving an `async with` block early ends the run as interrupted."""
    async with await slow_stream.async_run("go") as stream:
        first = await anext(stream)
    await asyncio.to_thread(released)
    assert_interrupted_once(events, first.content)
    await slow_stream.async_client.close()


async def test_cancelled_task_reports_interrupted(slow_stream, events, released):
    """Cancelling the task that reads a stream ends the run as interrupted and re-raises."""
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in await slow_stream.async_run("go"):
            got_one.set()

    task = asyncio.create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(released)
    (end,) = closing(events)
    assert isinstance(end, EndEvent)
    assert end.finish_reason == "interrupted"
    assert end.output is not None
    assert end.output.text
    await slow_stream.async_client.close()
