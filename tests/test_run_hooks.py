"""The two run hooks other subscribers build on: before_run's stamp and the durability barrier."""

from __future__ import annotations

import concurrent.futures
import logging
import threading

import pytest

from synthora import Node, NodeType, bus, scope
from synthora.events import EndEvent, ErrorEvent
from synthora.testing.server import Behaviour


@pytest.fixture
def connected():
    """Connect receivers for the test only."""
    made = []

    def connect(signal, receiver):
        signal.connect(receiver, weak=False)
        made.append((signal, receiver))

    yield connect
    for signal, receiver in made:
        signal.disconnect(receiver)


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_before_run_stamp_reaches_every_event(make_backend, events, connected, stream):
    """A mapping returned from before_run is stamped into the envelope of every event of the run."""
    seen = {}

    def open_span(sender, *, run_id, parent_run_id, node, operation, model, **_):
        seen.update(run_id=run_id, node=node, operation=operation, model=model)
        return {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"}

    connected(bus.before_run, open_span)
    result = make_backend(stream=stream).run("stamp me")
    if stream:
        list(result)
    assert {(e.trace_id, e.span_id) for e in events} == {
        ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    }
    assert seen["run_id"] == events[0].run_id
    assert seen["operation"] == "chat"
    assert seen["node"] == events[0].node


def test_before_run_for_scopes(events, connected):
    """Scopes send before_run too, with their own operation."""
    operations = []
    connected(bus.before_run, lambda sender, *, operation, **_: operations.append(operation))
    with scope(Node(name="p", type=NodeType.AGENT)):
        pass
    assert operations == ["invoke_agent"]


@pytest.mark.parametrize("failing", [False, True], ids=["end", "error"])
def test_run_waits_for_the_durability_barrier(make_backend, connected, failing):
    """run() returns only once the future an end/error receiver returned has completed."""
    futures: list[concurrent.futures.Future[None]] = []

    def durable(sender, *, event, **_):
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        threading.Timer(0.05, future.set_result, args=(None,)).start()
        futures.append(future)
        return future

    connected(bus.on_error if failing else bus.on_end, durable)
    backend = make_backend(behaviour=Behaviour(status=500) if failing else None)
    try:
        backend.run("wait for me")
    except Exception:
        assert failing
    (future,) = futures
    assert future.done()


async def test_async_run_awaits_the_barrier(make_backend, connected):
    """async_run awaits the barrier without blocking its event loop."""
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    connected(bus.on_end, lambda sender, **_: future)
    backend = make_backend(stream=True)
    stream = await backend.async_run("async barrier")
    threading.Timer(0.05, future.set_result, args=(None,)).start()
    chunks = [c async for c in stream]
    assert chunks
    assert future.done()
    await backend.async_client.close()


def test_barrier_timeout_returns_with_a_warning(make_backend, events, connected, caplog):
    """A barrier that never completes holds the run for durable_timeout, then logs a warning."""
    never: concurrent.futures.Future[None] = concurrent.futures.Future()
    connected(bus.on_end, lambda sender, **_: never)
    with caplog.at_level(logging.WARNING, logger="synthora"):
        make_backend(durable_timeout=0.1).run("impatient")
    assert isinstance(events[-1], EndEvent | ErrorEvent)
    assert "confirmed it durable" in caplog.text
    assert events[-1].run_id in caplog.text
