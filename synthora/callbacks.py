"""Callback handlers: the seed API for hearing a backend's runs, fed from the bus.

A handler given to a backend (``handlers=[…]`` or `BaseModelBackend.add_handler`) hears only
that backend's runs. Each hook receives the typed event.

`AsyncCallBackHandler` hooks are coroutines. In ``async_run`` they are awaited on the caller's
event loop. In a sync ``run`` they are awaited one after another on a private background event
loop before the run moves on, so their order holds and no coroutine is ever left un-awaited; a
slow async hook therefore slows a sync run down as much as a slow sync hook would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, assert_never

from synthora.events import EVENT_KINDS, EndEvent, ErrorEvent, EventKind, StartEvent, TokenEvent

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
        """A run finished (``event.finish_reason == "interrupted"`` if abandoned)."""

    def on_llm_error(self, event: ErrorEvent) -> None:
        """A run failed; the caller receives the exception."""


class AsyncCallBackHandler:
    """The async twin of `BaseCallBackHandler`."""

    async def on_llm_start(self, event: StartEvent) -> None:
        """A run started."""

    async def on_llm_chunk(self, event: TokenEvent) -> None:
        """A run produced a piece of output."""

    async def on_llm_end(self, event: EndEvent) -> None:
        """A run finished (``event.finish_reason == "interrupted"`` if abandoned)."""

    async def on_llm_error(self, event: ErrorEvent) -> None:
        """A run failed; the caller receives the exception."""


CallBackHandler = BaseCallBackHandler | AsyncCallBackHandler


def hook_receivers(handler: CallBackHandler) -> list[tuple[EventKind, Receiver]]:
    """The bus receivers that call `handler`'s own hooks.

    The caller keeps them: each is meant for one backend, and the bus may hold them weakly.
    """
    base: type[CallBackHandler] = (
        AsyncCallBackHandler if isinstance(handler, AsyncCallBackHandler) else BaseCallBackHandler
    )
    receivers: list[tuple[EventKind, Receiver]] = []
    for kind in EVENT_KINDS:
        name = _hook_for(kind)
        if getattr(type(handler), name, None) is not getattr(base, name):
            receivers.append((kind, _EventHook(getattr(handler, name))))
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


class _EventHook:
    """A bus receiver that calls one hook with the event."""

    __slots__ = ("__weakref__", "hook")

    def __init__(self, hook: Callable[..., Any]) -> None:
        self.hook = hook

    def __call__(self, sender: Any, /, *, event: Any, **_: Any) -> Any:
        return self.hook(event)
