"""Stream wrappers that report a run's end exactly once, whichever way the stream ends.

A wrapper reads chunks from a *source*: `DeltaSource` over a backend's `ModelDelta` iterator, or
a wire's own faster reader (`synthora.models.sse_stream` decodes SSE bytes straight into
chunks). Whatever the source, a stream ends in one of four ways, and each emits exactly one
closing event:

* exhausted: ``end`` with the finish reason and usage the source saw (a wire's stream that the
  server ended with neither its end marker nor a finish reason: ``truncated``);
* the source failing (a server's error, a broken or timed-out connection, a backend's own
  exception): ``error`` with the partial output, then that exception reaches the consumer;
* closed early (``close()``/``aclose()``, ``with``, ``break`` then garbage collection, another
  thread calling ``close()``, the interpreter exiting), or its task cancelled: ``end`` with finish
  reason ``interrupted`` and the text seen so far.

The closing event is claimed before any I/O, so nothing (a cancellation, a read failing because
another thread closed the source) can report the run twice or not at all; once claimed, no token
follows. The source is closed in every case. `RunStream` and `AsyncRunStream` are line-parallel:
they differ only where one awaits.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, Protocol, Self

from synthora.events import Usage
from synthora.messages import BaseMessage, MessageChunk
from synthora.models.loops import close_at_loop_end
from synthora.models.output import OutputState
from synthora.models.protocol import ModelDelta
from synthora.runs import Run

__all__ = [
    "AsyncDeltaSource",
    "AsyncRunStream",
    "AsyncSource",
    "DeltaSource",
    "RunStream",
    "Source",
    "StreamCore",
]

logger = logging.getLogger("synthora")

_pending_closes: set[asyncio.Task[None]] = set()
_open_streams: weakref.WeakSet[StreamCore] = weakref.WeakSet()


class Source(Protocol):
    """Where a `RunStream` reads chunks: None once exhausted; `state` is the output so far."""

    @property
    def state(self) -> OutputState: ...

    def next_chunk(self) -> MessageChunk | None: ...

    def close(self) -> None: ...


class AsyncSource(Protocol):
    """`Source`, for `AsyncRunStream`."""

    @property
    def state(self) -> OutputState: ...

    async def next_chunk(self) -> MessageChunk | None: ...

    async def aclose(self) -> None: ...


class DeltaSource:
    """A backend's `ModelDelta` iterator as a source; deltas without output are only noted."""

    __slots__ = ("_deltas", "state")

    def __init__(self, deltas: Iterator[ModelDelta], state: OutputState) -> None:
        self._deltas = deltas
        self.state = state

    def next_chunk(self) -> MessageChunk | None:
        for delta in self._deltas:
            chunk = self.state.add_delta(delta)
            if chunk is not None:
                return chunk
        return None

    def close(self) -> None:
        close = getattr(self._deltas, "close", None)
        if close is not None:
            # a generator another thread is running raises ValueError; it stops at its next yield
            with contextlib.suppress(ValueError):
                close()


class AsyncDeltaSource:
    """`DeltaSource` over an async iterator."""

    __slots__ = ("_deltas", "state")

    def __init__(self, deltas: AsyncIterator[ModelDelta], state: OutputState) -> None:
        self._deltas = deltas
        self.state = state

    async def next_chunk(self) -> MessageChunk | None:
        async for delta in self._deltas:
            chunk = self.state.add_delta(delta)
            if chunk is not None:
                return chunk
        return None

    async def aclose(self) -> None:
        close = getattr(self._deltas, "aclose", None)
        if close is not None:
            with contextlib.suppress(RuntimeError):  # an async generator another task runs
                await close()


class StreamCore:
    """What every stream wrapper shares: the run, the output state, the closing events; open
    ones are reported as interrupted at interpreter exit."""

    __slots__ = ("__weakref__", "_run", "_state")

    def __init__(self, run: Run, state: OutputState) -> None:
        self._run = run
        self._state = state
        _open_streams.add(self)

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def message(self) -> BaseMessage:
        """The output so far; the whole reply once the stream is exhausted."""
        return self._state.message()

    @property
    def finish_reason(self) -> str | None:
        return self._state.finish_reason

    @property
    def usage(self) -> Usage | None:
        return self._state.usage

    @property
    def closed(self) -> bool:
        return self._run.closed

    def _end(self) -> Any:
        state = self._state
        return self._run.close_with_end(
            state.message(),
            state.finish_reason,
            usage=state.usage,
            response_id=state.response_id,
            response_model=state.response_model,
        )

    def _closing_event(self, exc: BaseException) -> Any:
        """``error`` for a failure; ``end``/interrupted for cancellation or interpreter exit."""
        if isinstance(exc, Exception):
            return self._run.close_with_error(exc, "stream", self._state.message())
        return self._interrupted()

    def _interrupted(self) -> Any:
        return self._run.close_interrupted(self._state.message())

    def _abandon_at_exit(self) -> None:
        """Report a stream nobody closed before the interpreter exits (no loop to await on)."""
        self._run.emit(self._interrupted())


class RunStream(StreamCore, Iterator[MessageChunk]):
    """The iterator a streamed ``run()`` returns; also a context manager."""

    __slots__ = ("_source",)

    def __init__(self, run: Run, source: Source) -> None:
        super().__init__(run, source.state)
        self._source = source

    def __next__(self) -> MessageChunk:
        run = self._run
        try:
            if not run.closed:
                chunk = self._source.next_chunk()
                if chunk is not None:
                    run.emit(run.token(chunk))
                    return chunk
                event = self._end()
                self._source.close()
                run.emit(event)
        except BaseException as exc:
            if run.closed and isinstance(exc, Exception):
                raise StopIteration from None  # closed meanwhile, e.g. from another thread
            event = self._closing_event(exc)
            self._source.close()
            run.emit(event)
            raise
        raise StopIteration

    def close(self) -> None:
        """Stop reading: the run ends as ``interrupted`` unless it had already ended.

        Safe from another thread than the consumer's, which then stops without an error.
        """
        event = self._interrupted()
        self._source.close()
        self._run.emit(event)

    def _abandon_at_exit(self) -> None:
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if hasattr(self, "_source") and not self._run.closed:
            try:
                self.close()
            except Exception:
                logger.exception("synthora: closing abandoned stream of run %s", self.run_id)


class AsyncRunStream(StreamCore, AsyncIterator[MessageChunk]):
    """The async iterator a streamed ``async_run()`` returns; also an async context manager.

    Left open when its event loop ends (``asyncio.run()`` returning), it is closed then, while
    the loop still runs (`synthora.models.loops`).
    """

    __slots__ = ("_loop_guard", "_reading", "_source")

    def __init__(self, run: Run, source: AsyncSource) -> None:
        super().__init__(run, source.state)
        self._source = source
        self._reading = False
        self._loop_guard = close_at_loop_end(self)

    @property
    def idle(self) -> bool:
        """Open, and no task is inside ``__anext__``."""
        return not self._reading and not self._run.closed

    async def __anext__(self) -> MessageChunk:
        run = self._run
        self._reading = True
        try:
            if not run.closed:
                chunk = await self._source.next_chunk()
                if chunk is not None:
                    await run.emit_async(run.token(chunk))
                    return chunk
                await self._finish(self._end())
        except BaseException as exc:
            if run.closed and isinstance(exc, Exception):
                raise StopAsyncIteration from None  # closed meanwhile, e.g. by aclose()
            await self._finish(self._closing_event(exc))
            raise
        finally:
            self._reading = False
        raise StopAsyncIteration

    async def _finish(self, event: Any) -> None:
        """Release the source, then report `event`, even if cancelled while releasing."""
        try:
            await self._source.aclose()
        finally:
            if self._loop_guard is not None:
                self._loop_guard.discard(self)
            await self._run.emit_async(event)

    async def aclose(self) -> None:
        """Stop reading: the run ends as ``interrupted`` unless it had already ended."""
        await self._finish(self._interrupted())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        """Abandoned without ``aclose()``: close it on the running loop, or report it now.

        The closing event is claimed here, synchronously; if the loop cancels the closing task
        (``asyncio.run`` ending) before it reports, its done-callback reports instead.
        """
        if not hasattr(self, "_source") or self._run.closed:
            return
        run, event = self._run, self._interrupted()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            run.emit(event)
            return
        task = loop.create_task(self._finish(event))
        _pending_closes.add(task)

        def settled(task: asyncio.Task[None]) -> None:
            _pending_closes.discard(task)
            if task.cancelled():
                run.emit(event)

        task.add_done_callback(settled)


@atexit.register
def close_abandoned_streams() -> None:
    """Report every stream still open, as interrupted; subscribers still listen at this point."""
    for stream in list(_open_streams):
        if not stream.closed:
            try:
                stream._abandon_at_exit()
            except Exception:
                logger.exception("synthora: closing stream of run %s at exit", stream.run_id)
