"""The event bus: one blinker signal per lifecycle kind, in Synthora's own namespace.

Receivers are called as blinker users expect, ``receiver(sender, event=ev)``; the sender is the
backend that ran (a scope's own events are sent by its `Node`), so a handler connected with
``sender=backend`` hears only that backend. Replayed events add ``replayed=True`` to the call.

Dispatch differs from ``Signal.send`` on purpose:

* a receiver that raises is logged and counted, and the others still run: observability must
  never break the user's call;
* a receiver may be a coroutine function: `dispatch_async` awaits it; sync `dispatch` runs it to
  completion on one private background event loop, so no coroutine is ever left un-awaited.

``before_run`` is sent before a run's start event is built. A receiver may return a mapping
(``{"trace_id": …, "span_id": …}``) that is stamped into every event of that run. ``on_end`` and
``on_error`` receivers may return a `concurrent.futures.Future`: a durability barrier the run
waits for before it returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any

from blinker import NamedSignal, Namespace

__all__ = [
    "before_run",
    "dispatch",
    "dispatch_async",
    "on_end",
    "on_error",
    "on_start",
    "on_token",
    "subscriber_failures",
]

logger = logging.getLogger("synthora.bus")

signals = Namespace()
before_run: NamedSignal = signals.signal(
    "before_run", doc="Sent before a run starts; receivers may return a mapping to stamp."
)
on_start: NamedSignal = signals.signal(
    "start", doc="A run started: receivers get event=StartEvent."
)
on_token: NamedSignal = signals.signal("token", doc="A run produced output: event=TokenEvent.")
on_end: NamedSignal = signals.signal("end", doc="A run finished: event=EndEvent.")
on_error: NamedSignal = signals.signal("error", doc="A run failed: event=ErrorEvent.")

_failures = 0
_failures_lock = threading.Lock()


def subscriber_failures() -> int:
    """How many times a receiver has raised since the process started."""
    return _failures


def dispatch(signal: NamedSignal, sender: Any, /, **kwargs: Any) -> list[Any]:
    """Call every receiver of `signal` for `sender`; return their non-None results."""
    results: list[Any] = []
    for receiver in signal.receivers_for(sender):
        try:
            result = receiver(sender, **kwargs)
            if inspect.iscoroutine(result):
                result = _loop.run(result)
        except Exception:
            _record_failure(signal, receiver, kwargs)
            continue
        if result is not None:
            results.append(result)
    return results


async def dispatch_async(signal: NamedSignal, sender: Any, /, **kwargs: Any) -> list[Any]:
    """`dispatch` for async callers: coroutine receivers are awaited on the caller's loop."""
    results: list[Any] = []
    for receiver in signal.receivers_for(sender):
        try:
            result = receiver(sender, **kwargs)
            if inspect.iscoroutine(result):
                result = await result
        except Exception:
            _record_failure(signal, receiver, kwargs)
            continue
        if result is not None:
            results.append(result)
    return results


def _record_failure(signal: NamedSignal, receiver: Any, kwargs: dict[str, Any]) -> None:
    global _failures  # noqa: PLW0603 - a process-wide counter, guarded by its lock
    with _failures_lock:
        _failures += 1
    event = kwargs.get("event")
    logger.exception(
        "synthora: subscriber %s failed on %s of run %s; the run goes on",
        getattr(receiver, "__qualname__", repr(receiver)),
        signal.name,
        getattr(event, "run_id", "?"),
    )


class _PrivateLoop:
    """One daemon thread running an event loop, for async receivers called from sync code.

    Coroutines are run one at a time to completion, so a sync run's async handlers still see
    its events in order. A forked child starts its own thread instead of inheriting a dead one.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        loop = self._running_loop()
        if threading.current_thread() is self._thread:
            # A sync run made from inside an async handler: waiting on our own loop would
            # deadlock it, so this one coroutine gets a loop of its own on a helper thread.
            with concurrent.futures.ThreadPoolExecutor(1) as helper:
                return helper.submit(asyncio.run, coro).result()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=loop.run_forever, name="synthora-async-handlers", daemon=True
                )
                self._thread.start()
                self._loop = loop
            return self._loop

    def forget_after_fork(self) -> None:
        self._loop = None
        self._thread = None
        self._lock = threading.Lock()


_loop = _PrivateLoop()
os.register_at_fork(after_in_child=_loop.forget_after_fork)
