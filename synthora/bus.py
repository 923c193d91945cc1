"""The event bus: one blinker signal per lifecycle kind, in Synthora's own namespace.

Receivers are called as blinker users expect, ``receiver(sender, event=ev)``; the sender is the
backend that ran (a scope's own events are sent by its `Node`), so a handler connected with
``sender=backend`` hears only that backend. Replayed events add ``replayed=True`` to the call.

Dispatch differs from ``Signal.send`` on purpose:

* a receiver that raises is logged and counted, and the others still run: observability must
  never break the user's call;
* a receiver may be a coroutine function: `dispatch_async` awaits it; sync `dispatch` runs it to
  completion on one private background event loop, so no coroutine is ever left un-awaited;
* the receivers of a (signal, sender) pair are looked up once and remembered until a receiver
  connects or disconnects: blinker's ``receivers_for`` costs ~1.3 µs a call, too much per token.
  What blinker holds weakly stays weak there (`_Receivers`).

``before_run`` is sent before a run's start event is built. A receiver may return a mapping
(``{"trace_id": …, "span_id": …}``) that is stamped into every event of that run, and
``"trace_sampled"`` for its start event (a tracer whose sampler dropped the run returns only
``{"trace_sampled": False}``: no ids of a trace that is never exported). ``on_end`` and
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
import weakref
from collections.abc import Callable, Coroutine
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
"""Synthora's signals by name; each lifecycle signal is named for its events' kind, so
``signals[event.kind]`` is the signal an event goes out on."""
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


class _Receivers:
    """`Signal.receivers_for`, memoised per sender until the signal's receivers change.

    An entry holds each receiver as blinker holds it: one connected strongly as itself, a weak
    one (a backend's handler hooks) as blinker's own weak reference, which dispatch resolves
    and skips once dead. So remembering never keeps alive what blinker lets die: a backend's
    receivers, held by the backend, go with it even when its handler refers back to it.

    An entry holds its sender weakly where it can, is used only for that very object (a
    recycled ``id()`` never inherits another sender's receivers), and goes when the sender
    dies. Entries are in connection order, so a backend's handlers hear it in the order added.
    """

    __slots__ = ("_entries", "_signal")

    _MAX_ENTRIES = 4096

    def __init__(self, signal: NamedSignal) -> None:
        self._signal = signal
        self._entries: dict[int, tuple[Callable[[], Any], tuple[Any, ...]]] = {}
        signal.receiver_connected.connect(self._forget, weak=False)
        signal.receiver_disconnected.connect(self._forget, weak=False)

    def _forget(self, *_: Any, **__: Any) -> None:
        self._entries = {}

    def __call__(self, sender: Any) -> tuple[Any, ...]:
        """The receivers for `sender`; the weak ones as references to resolve."""
        entry = self._entries.get(id(sender))
        if entry is None or entry[0]() is not sender:
            entry = self._remember(sender)
        return entry[1]

    def _remember(self, sender: Any) -> tuple[Callable[[], Any], tuple[Any, ...]]:
        if len(self._entries) >= self._MAX_ENTRIES:
            self._entries = {}
        live = list(self._signal.receivers_for(sender))
        # a copy, taken in one step: another thread may connect a receiver, or blinker drop one
        # that died, while the comparisons below run
        connected = self._signal.receivers.copy().values()
        held = tuple(receiver for receiver in connected if _resolve(receiver) in live)
        entry = (self._reference(sender), held)
        self._entries[id(sender)] = entry
        return entry

    def _reference(self, sender: Any) -> Callable[[], Any]:
        """`sender`, weakly where it can be: its death drops its entry."""
        key = id(sender)

        def forget_sender(reference: weakref.ref[Any]) -> None:
            entry = self._entries.get(key)
            if entry is not None and entry[0] is reference:
                del self._entries[key]

        try:
            return weakref.ref(sender, forget_sender)
        except TypeError:  # None, ANY, a Node: kept by value, bounded by _MAX_ENTRIES
            return lambda: sender


def _resolve(held: Any) -> Any:
    """A receiver as `Signal.receivers` holds it, resolved (None if it died)."""
    return held() if isinstance(held, weakref.ref) else held


_RECEIVERS = {
    signal: _Receivers(signal) for signal in (before_run, on_start, on_token, on_end, on_error)
}


def dispatch(signal: NamedSignal, sender: Any, /, **kwargs: Any) -> list[Any]:
    """Call every receiver of `signal` for `sender`; return their non-None results."""
    results: list[Any] = []
    for held in _RECEIVERS[signal](sender):
        receiver = held() if isinstance(held, weakref.ref) else held
        if receiver is None:  # a weak receiver that died since
            continue
        try:
            result = receiver(sender, **kwargs)
            if result is None:
                continue
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
    for held in _RECEIVERS[signal](sender):
        receiver = held() if isinstance(held, weakref.ref) else held
        if receiver is None:  # a weak receiver that died since
            continue
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
