"""The hard ways out of a run: other threads, cancellation mid-report, loops that end, leaks."""

from __future__ import annotations

import asyncio
import threading

import openai
import pytest

from support import API_KEY
from synthora import (
    AsyncCallBackHandler,
    ConfigurationError,
    Node,
    NodeType,
    OpenAIChatBackend,
    bus,
    scope,
)
from synthora.events import EndEvent, ErrorEvent
from synthora.testing.server import Behaviour

SLOW = Behaviour(n_tokens=200, delay_s=0.01)


def closing(events):
    return [e for e in events if isinstance(e, EndEvent | ErrorEvent)]


def test_close_from_another_thread_stops_the_reader_quietly(make_backend, events):
    """A "stop generating" button: close() from another thread ends the run as interrupted,
    and the consuming thread simply stops, with no connection error."""
    stream = make_backend(behaviour=SLOW, stream=True).run("go")
    first = threading.Event()
    outcome: list[object] = []

    def consume() -> None:
        try:
            for _ in stream:
                first.set()
            outcome.append("stopped")
        except BaseException as exc:  # reported below
            outcome.append(exc)

    reader = threading.Thread(target=consume)
    reader.start()
    first.wait(5)
    stream.close()
    reader.join(5)
    assert outcome == ["stopped"]
    (end,) = closing(events)
    assert end.finish_reason == "interrupted"


async def test_cancelled_during_the_closing_report(make_backend, events):
    """Cancelled while an async subscriber handles the end: every subscriber still gets it."""
    slow_subscriber_started = asyncio.Event()
    release = asyncio.Event()
    sync_ends: list[EndEvent] = []

    async def slow_end(sender, *, event, **_):
        slow_subscriber_started.set()
        await release.wait()

    def count_end(sender, *, event, **_):
        sync_ends.append(event)

    bus.on_end.connect(slow_end, weak=False)
    bus.on_end.connect(count_end, weak=False)
    try:
        backend = make_backend()
        task = asyncio.create_task(backend.async_run("hi"))
        await slow_subscriber_started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        await asyncio.wait_for(_wait_until(lambda: bool(sync_ends)), 5)
    finally:
        bus.on_end.disconnect(slow_end)
        bus.on_end.disconnect(count_end)
    assert len(closing(events)) == 1
    await backend.async_client.close()


async def _wait_until(condition) -> None:
    while not condition():  # noqa: ASYNC110 - a subscriber's side effect, no event to wait on
        await asyncio.sleep(0.01)


def test_async_stream_abandoned_when_the_loop_ends(make_backend, events):
    """A stream dropped as asyncio.run() ends is still reported, exactly once."""
    backend = make_backend(behaviour=SLOW, stream=True)

    async def main() -> None:
        stream = await backend.async_run("go")
        await anext(stream)
        await backend.async_client.close()

    asyncio.run(main())
    (end,) = closing(events)
    assert end.finish_reason == "interrupted"


async def test_scope_left_in_another_task(events):
    """A scope entered in one task and left in another still reports its end."""
    step = scope(Node(name="planner", type=NodeType.AGENT))
    await step.__aenter__()
    await asyncio.create_task(step.__aexit__(None, None, None))
    assert [e.kind for e in events] == ["start", "end"]


def test_secrets_in_scope_errors_and_headers_are_redacted(make_backend, events):
    """A key echoed by the server is scrubbed from every event, the scope's error included;
    credential-like headers and query parameters are redacted by name."""
    backend = make_backend(
        behaviour=Behaviour(status=401, error_message=f"bad key {API_KEY}"),
        config={
            "extra_headers": {"Ocp-Apim-Subscription-Key": "abc123secret", "X-Trace": "t"},
            "extra_query": {"key": "abc123secret"},
        },
    )
    with pytest.raises(openai.AuthenticationError), scope(Node(name="a", type=NodeType.AGENT)):
        backend.run("x")
    dumped = repr([e.to_dict() for e in events])
    assert API_KEY not in dumped
    assert "abc123secret" not in dumped
    assert events[1].params["extra_headers"]["X-Trace"] == "t"
    assert len([e for e in events if isinstance(e, ErrorEvent)]) == 2


def test_callable_api_key_is_refused_clearly():
    """A key provider is refused by default() with a message saying what to do instead."""
    with pytest.raises(ConfigurationError, match="client="):
        OpenAIChatBackend.default("m", api_key=lambda: "k")  # type: ignore[arg-type]


def test_sync_run_inside_an_async_handler_does_not_deadlock(make_backend):
    """An async hook that itself makes a sync run (with async hooks) completes."""
    inner = make_backend()
    heard: list[str] = []

    class Inner(AsyncCallBackHandler):
        async def on_llm_end(self, event: EndEvent) -> None:
            heard.append("inner")

    class Outer(AsyncCallBackHandler):
        async def on_llm_end(self, event: EndEvent) -> None:
            inner.run("nested")
            heard.append("outer")

    inner.add_handler(Inner())
    outer = make_backend(handlers=[Outer()])
    done = threading.Thread(target=outer.run, args=("outer",), daemon=True)
    done.start()
    done.join(10)
    assert not done.is_alive(), "the private loop deadlocked"
    assert heard == ["inner", "outer"]


async def test_async_http_client_goes_to_the_async_sdk_client(server, events):
    """An async HTTP client given to default() serves async_run."""
    http_client = openai.DefaultAsyncHttpxClient()
    backend = OpenAIChatBackend.default(
        "m", api_key="k", base_url=server.base_url, http_client=http_client
    )
    reply = await backend.async_run("via my client")
    assert reply.text.endswith("via my client")
    await http_client.aclose()
    backend.client.close()
