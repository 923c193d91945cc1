"""Callback handlers: the seed API for hearing a backend's runs, fed from the bus.

A handler given to a backend (``handlers=[…]`` or `BaseModelBackend.add_handler`) hears only
that backend's runs. Only the hooks it overrides are connected. A hook may be written in either
of two styles, told apart once, when the handler is added:

* **events** (this library's): the hook takes the typed event alone, e.g.
  ``def on_llm_end(self, event: EndEvent)``; everything about the run is on it.
* **the original library's**: ``on_llm_start(self, source, messages, stream=False, *args,
  **kwargs)``, ``on_llm_chunk(self, source, message, *args, **kwargs)``,
  ``on_llm_end(self, source, message, stream=False, *args, **kwargs)``,
  ``on_llm_error(self, source, error, stream=False, *args, **kwargs)``. `source` is the backend's
  `Node` (under its scopes), `messages` the run's input (a completion run's prompt),
  `message` the `MessageChunk` a stream yields (its delta and the text so far) or the reply
  `BaseMessage`, `error` the very exception the caller receives (for a replayed run, a
  `SynthoraError` with the recorded type and message), and `stream` whether the run streams;
  `stream` is passed by keyword, and only to a hook that takes it. As in the original library,
  ``on_llm_chunk`` hears streamed runs only.

A hook is in the original style when its first parameter is named ``source`` or it needs more
than one argument; any other hook gets the event.

`AsyncCallBackHandler` hooks are coroutines. In ``async_run`` they are awaited on the caller's
event loop. In a sync ``run`` they are awaited one after another on a private background event
loop before the run moves on, so their order holds and no coroutine is ever left un-awaited; a
slow async hook therefore slows a sync run down as much as a slow sync hook would.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, assert_never

from synthora.errors import SynthoraError
from synthora.events import EVENT_KINDS, EndEvent, ErrorEvent, EventKind, StartEvent, TokenEvent
from synthora.messages import MessageChunk
from synthora.runs import raised

__all__ = ["AsyncCallBackHandler", "BaseCallBackHandler", "CallBackHandler", "hook_receivers"]

Receiver = Callable[..., Any]
"""A bus receiver: called as ``receiver(sender, event=…)``."""


class BaseCallBackHandler:
    """Override the hooks you need; the others cost nothing (they are not even connected)."""

    def on_llm_start(self, event: StartEvent) -> None:
        """A run started."""

    def on_llm_chunk(self, event: TokenEvent) -> None:
        """A run produced a piece of output."""

    def on_llm_end(self, event: EndEvent) -> None:
        """A run finished (``event.finish_reason`` is ``"interrupted"`` if abandoned,
        ``"truncated"`` if the server ended its stream without finishing it)."""

    def on_llm_error(self, event: ErrorEvent) -> None:
        """A run failed; the caller receives the exception."""


class AsyncCallBackHandler:
    """The async twin of `BaseCallBackHandler`."""

    async def on_llm_start(self, event: StartEvent) -> None:
        """A run started."""

    async def on_llm_chunk(self, event: TokenEvent) -> None:
        """A run produced a piece of output."""

    async def on_llm_end(self, event: EndEvent) -> None:
        """A run finished (``event.finish_reason`` is ``"interrupted"`` if abandoned,
        ``"truncated"`` if the server ended its stream without finishing it)."""

    async def on_llm_error(self, event: ErrorEvent) -> None:
        """A run failed; the caller receives the exception."""


CallBackHandler = BaseCallBackHandler | AsyncCallBackHandler


def hook_receivers(handler: CallBackHandler) -> list[tuple[EventKind, Receiver]]:
    """The bus receivers that call `handler`'s own hooks, each in the style it is written in.

    The caller keeps them: each is meant for one backend, and the bus may hold them weakly.
    """
    base: type[CallBackHandler] = (
        AsyncCallBackHandler if isinstance(handler, AsyncCallBackHandler) else BaseCallBackHandler
    )
    receivers: list[tuple[EventKind, Receiver]] = []
    original: dict[EventKind, Callable[..., Any]] = {}
    for kind in EVENT_KINDS:
        name = _hook_for(kind)
        if getattr(type(handler), name, None) is getattr(base, name):
            continue
        hook = getattr(handler, name)
        if _takes_the_event(hook):
            receivers.append((kind, _event_receiver(hook)))
        else:
            original[kind] = hook
    if original:
        receivers += _OriginalStyle(original).receivers()
    return receivers


def _hook_for(kind: EventKind) -> str:
    """The handler method that hears events of `kind`."""
    match kind:
        case "start":
            return "on_llm_start"
        case "token":
            return "on_llm_chunk"
        case "end":
            return "on_llm_end"
        case "error":
            return "on_llm_error"
        case _:
            assert_never(kind)


def _takes_the_event(hook: Callable[..., Any]) -> bool:
    """Whether `hook` is written for events rather than in the original library's style."""
    try:
        signature = inspect.signature(hook)
    except (TypeError, ValueError):  # nothing to read (a builtin): the documented style
        return True
    parameters = list(signature.parameters.values())
    if parameters and parameters[0].name == "source":
        return False
    try:
        signature.bind(None)
    except TypeError:
        return False
    return True


def _with_stream(hook: Callable[..., Any]) -> Callable[..., Any]:
    """`hook`, callable as ``hook(source, value, stream=…)`` whether or not it takes `stream`."""
    parameters = inspect.signature(hook).parameters.values()
    if any(p.name == "stream" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return hook

    def without_stream(source: Any, value: Any, *, stream: bool) -> Any:
        return hook(source, value)

    return without_stream


def _event_receiver(hook: Callable[..., Any]) -> Receiver:
    """A bus receiver that calls `hook` with the event: a plain function, the cheapest callable
    to call on every token, named after the hook so a failure's log says whose it was."""

    def receiver(sender: Any, /, *, event: Any, **_: Any) -> Any:
        return hook(event)

    receiver.__qualname__ = getattr(hook, "__qualname__", receiver.__qualname__)
    return receiver


class _RunSoFar:
    """What the original style needs of a run that events after its start do not carry."""

    __slots__ = ("stream", "text")

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.text = ""


class _OriginalStyle:
    """A handler's hooks written in the original library's style, called as it called them.

    Each run's stream flag (and, for chunks, its text so far) is kept from its start to its end,
    since the later events do not carry them.
    """

    __slots__ = ("__weakref__", "_hooks", "_runs")

    def __init__(self, hooks: dict[EventKind, Callable[..., Any]]) -> None:
        self._hooks = hooks
        self._runs: dict[str, _RunSoFar] = {}
        for kind in ("start", "end", "error"):
            if kind in hooks:
                hooks[kind] = _with_stream(hooks[kind])

    def receivers(self) -> list[tuple[EventKind, Receiver]]:
        """Start, end and error always (they open and close a run's record); tokens if heard."""
        receivers: list[tuple[EventKind, Receiver]] = [
            ("start", self.start),
            ("end", self.end),
            ("error", self.error),
        ]
        if "token" in self._hooks:
            receivers.append(("token", self.token))
        return receivers

    def start(self, sender: Any, /, *, event: StartEvent, **_: Any) -> Any:
        self._runs[event.run_id] = _RunSoFar(event.stream)
        hook = self._hooks.get("start")
        if hook is None:
            return None
        messages = event.prompt if event.messages is None else list(event.messages)
        return hook(event.node, messages, stream=event.stream)

    def token(self, sender: Any, /, *, event: TokenEvent, **_: Any) -> Any:
        run = self._runs.get(event.run_id)
        if run is None or not run.stream:
            return None
        run.text += event.text
        chunk = MessageChunk(
            content=run.text,
            delta=event.text,
            tool_call_deltas=event.tool_calls,
            run_id=event.run_id,
        )
        return self._hooks["token"](event.node, chunk)

    def end(self, sender: Any, /, *, event: EndEvent, **_: Any) -> Any:
        run = self._runs.pop(event.run_id, None)
        hook = self._hooks.get("end")
        if hook is None:
            return None
        return hook(event.node, event.output, stream=run is not None and run.stream)

    def error(self, sender: Any, /, *, event: ErrorEvent, **_: Any) -> Any:
        run = self._runs.pop(event.run_id, None)
        hook = self._hooks.get("error")
        if hook is None:
            return None
        error = raised(event) or SynthoraError(f"{event.error_type}: {event.message}")
        return hook(event.node, error, stream=run is not None and run.stream)
