"""What a backend opens on an asyncio event loop stays with that loop, and closes with it.

An httpx connection belongs to the loop that opened it. Two things go wrong when it outlives it:

* an SDK async client whose pool served one ``asyncio.run()`` hands the next one a connection of
  a closed loop ("Event loop is closed"). So `LoopClients` gives each further loop a client of
  its own, closed as that loop shuts down: an async generator of ours, suspended until then, is
  one the loop closes in its shutdown (``loop.shutdown_asyncgens()``, which ``asyncio.run()``
  and ``asyncio.Runner`` call).
* a response still streaming at that point is closed there too, together with the nested
  generators reading it, all at once, which fails ("aclose(): asynchronous generator is already
  running"). So while a stream is open on a loop, a task of ours (`LoopGuard`) waits on it; as
  ``asyncio.run()`` ends it cancels every task before it shuts the generators down, and that
  task then closes, one by one, the streams no task is reading: each run ends as
  ``interrupted``, its handlers awaited, while the loop still runs.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["AsyncClient", "LoopClients", "LoopGuard", "LoopStream", "close_at_loop_end"]

logger = logging.getLogger("synthora")


class AsyncClient(Protocol):
    """An SDK async client (openai's, anthropic's): closing it closes its connections."""

    async def close(self) -> None: ...


Client = TypeVar("Client", bound=AsyncClient)


class LoopClients(Generic[Client]):
    """An SDK async client for the running event loop: `client` on the first loop that asks,
    on each other loop a new one from `fresh`, closed as that loop shuts down. Without `fresh`
    (a client the caller built, with settings only the caller can repeat) it is always
    `client`. What is handed out is each client as `prepare` makes it, once (the wires count
    attempts through a copy, `synthora.models.attempts`)."""

    __slots__ = ("_client", "_first", "_fresh", "_others", "_prepare", "_prepared")

    def __init__(
        self,
        client: Client,
        fresh: Callable[[], Client] | None = None,
        prepare: Callable[[Client], Client] | None = None,
    ) -> None:
        self._client = client
        self._fresh = fresh
        self._prepare = prepare
        self._prepared: Client | None = None
        self._first: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._others: dict[asyncio.AbstractEventLoop, tuple[Client, AsyncIterator[None]]] = {}

    async def get(self) -> Client:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio (trio through anyio): the client serves as it can
            return self._first_client()
        if self._fresh is None:
            return self._first_client()
        if self._first is None:
            self._first = weakref.ref(loop)
        if self._first() is loop:
            return self._first_client()
        found = self._others.get(loop)
        if found is None:
            client = self._fresh()
            closing = self._closed_at_shutdown(loop, client)
            await anext(closing)  # now the loop's to close
            found = self._others[loop] = (self._prepared_from(client), closing)
        return found[0]

    def _first_client(self) -> Client:
        if self._prepared is None:
            self._prepared = self._prepared_from(self._client)
        return self._prepared

    def _prepared_from(self, client: Client) -> Client:
        return client if self._prepare is None else self._prepare(client)

    async def _closed_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, client: Client
    ) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self._others.pop(loop, None)
            await client.close()


class LoopStream(Protocol):
    """A stream `close_at_loop_end` can close: ``idle`` when open and no task is reading it."""

    @property
    def idle(self) -> bool: ...

    async def aclose(self) -> None: ...


class LoopGuard:
    """The streams open on one loop, and the task that closes them if the loop ends first."""

    __slots__ = ("_all_closed", "_loop", "_streams")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._streams: weakref.WeakSet[LoopStream] = weakref.WeakSet()
        self._all_closed = asyncio.Event()
        loop.create_task(self._wait(), name="synthora: close streams at loop end")

    def add(self, stream: LoopStream) -> None:
        self._streams.add(stream)

    def discard(self, stream: LoopStream) -> None:
        """`stream` is closed; once all are, the task ends (a later stream starts another)."""
        self._streams.discard(stream)
        if not self._streams:
            self._all_closed.set()
            self._forget()

    async def _wait(self) -> None:
        try:
            await self._all_closed.wait()
        except asyncio.CancelledError:
            for stream in list(self._streams):
                if stream.idle:  # one being read is closed by its reader, cancelled too
                    try:
                        await stream.aclose()
                    except Exception:
                        logger.exception("synthora: closing a stream as its event loop ended")
            raise
        finally:
            self._forget()

    def _forget(self) -> None:
        if _guards.get(self._loop) is self:
            del _guards[self._loop]


_guards: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopGuard] = (
    weakref.WeakKeyDictionary()
)


def close_at_loop_end(stream: LoopStream) -> LoopGuard | None:
    """Have `stream` closed if the running loop ends while it is open and idle; the guard is to
    be told when it closes. None outside an asyncio loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    guard = _guards.get(loop)
    if guard is None:
        guard = _guards[loop] = LoopGuard(loop)
    guard.add(stream)
    return guard
