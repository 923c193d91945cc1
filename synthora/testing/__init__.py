"""Helpers for testing code built on Synthora: see what your agent emitted.

``capture_events()`` is to Synthora what structlog's ``capture_logs()`` is to logging::

    with capture_events() as events:
        backend.run([user("hi")])
    assert [e.kind for e in events] == ["start", "token", "end"]

`OpenAICompatibleServer` (in `synthora.testing.server`) is a real local HTTP server speaking the
OpenAI wire format, to run agents offline against scripted replies, errors and broken streams.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from synthora import bus
from synthora.events import Event

__all__ = ["capture_events"]


@contextmanager
def capture_events(*, include_replayed: bool = False) -> Iterator[list[Event]]:
    """Collect every event emitted on the bus, by any sender, while the block runs.

    Events arrive in emission order (each run's in ``seq`` order). Replayed events are left out
    unless `include_replayed` is set.
    """
    events: list[Event] = []

    def collect(sender: Any, /, *, event: Event, replayed: bool = False, **_: Any) -> None:
        if include_replayed or not replayed:
            events.append(event)

    signals = (bus.on_start, bus.on_token, bus.on_end, bus.on_error)
    for signal in signals:
        signal.connect(collect, weak=False)
    try:
        yield events
    finally:
        for signal in signals:
            signal.disconnect(collect)
