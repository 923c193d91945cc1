"""Callback handlers: the seed API for hearing a backend's runs, fed from the bus.

A handler given to a backend (``handlers=[…]`` or `BaseModelBackend.add_handler`) hears only
that backend's runs. Each hook receives the typed event.

`AsyncCallBackHandler` hooks are coroutines. In ``async_run`` they are awaited on the caller's
event loop. In a sync ``run`` they are awaited one after another on a private background event
loop before the run moves on, so their order holds and no coroutine is ever left un-awaited; a
slow async hook therefore slows a sync run down as much as a slow sync hook would.
"""

from __future__ import annotations

from synthora.events import EndEvent, ErrorEvent, StartEvent, TokenEvent

__all__ = ["AsyncCallBackHandler", "BaseCallBackHandler"]


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
