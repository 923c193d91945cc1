"""Stream wrappers that report a run's end exactly once, whichever way the stream ends.

The wire is read through the SDK's ``with_streaming_response`` (the SDK still builds, signs,
retries the request and maps HTTP errors), then split by `SSEDecoder` and decoded by a
`StreamState`. A stream ends in one of four ways, and each emits exactly one closing event:

* exhausted: ``end`` with the server's finish reason and usage;
* the server's error, a broken or timed-out connection: ``error`` with the partial output, then
  the SDK's own exception (`openai.APIError`, `openai.APIConnectionError`,
  `openai.APITimeoutError`) reaches the consumer;
* closed early (``close()``/``aclose()``, ``with``, ``break`` then garbage collection, another
  thread calling ``close()``, the interpreter exiting), or its task cancelled: ``end`` with finish
  reason ``interrupted`` and the text seen so far.

The closing event is claimed before any I/O, so nothing (a cancellation, a read failing because
another thread closed the response) can report the run twice or not at all; once claimed, no
token follows. The HTTP response is released in every case. `RunStream` and `AsyncRunStream` are
line-parallel: they differ only where one awaits.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import ssl
import sys
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any, NoReturn, Self

import anyio
import httpx2
import openai
from openai._response import APIResponse, AsyncAPIResponse

from synthora.events import Usage
from synthora.messages import BaseMessage, MessageChunk
from synthora.models.chunks import StreamState
from synthora.models.sse import SSEDecoder
from synthora.runs import Run

__all__ = ["AsyncRunStream", "RunStream"]

logger = logging.getLogger("synthora")

_pending_closes: set[asyncio.Task[None]] = set()
_open_streams: weakref.WeakSet[_StreamCore] = weakref.WeakSet()


class _StreamCore:
    """What both wrappers share: the decoded payloads waiting, the state, the closing events."""

    __slots__ = ("__weakref__", "_decoder", "_eof", "_payloads", "_run", "_state")

    def __init__(self, run: Run, state: StreamState) -> None:
        self._run = run
        self._state = state
        self._decoder = SSEDecoder()
        self._payloads: deque[bytes] = deque()
        self._eof = False
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

    def _next_chunk(self) -> MessageChunk | None:
        """The next chunk from payloads already read; None when more bytes are needed."""
        payloads, state = self._payloads, self._state
        while payloads and not state.done:  # nothing after [DONE] counts, as in the SDK
            chunk = state.consume(payloads.popleft())
            if chunk is not None:
                return chunk
        return None

    def _exhausted(self) -> bool:
        return self._state.done or (self._eof and not self._payloads)

    def _feed(self, data: bytes) -> None:
        self._payloads.extend(self._decoder.feed(data))

    def _feed_eof(self) -> None:
        self._eof = True
        self._payloads.extend(self._decoder.flush())

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


class RunStream(_StreamCore, Iterator[MessageChunk]):
    """The iterator a streamed ``run()`` returns; also a context manager."""

    __slots__ = ("_reads", "_response")

    def __init__(self, run: Run, state: StreamState, response: APIResponse[Any]) -> None:
        super().__init__(run, state)
        self._response = response
        self._reads = response.http_response.iter_bytes()

    def __next__(self) -> MessageChunk:
        run = self._run
        try:
            while not run.closed:
                chunk = self._next_chunk()
                if chunk is not None:
                    run.emit(run.token(chunk))
                    return chunk
                if self._exhausted():
                    event = self._end()
                    self._response.close()
                    run.emit(event)
                    break
                self._read()
        except BaseException as exc:
            if run.closed and isinstance(exc, Exception):
                raise StopIteration from None  # closed meanwhile, e.g. from another thread
            event = self._closing_event(exc)
            self._response.close()
            run.emit(event)
            raise
        raise StopIteration

    def _read(self) -> None:
        try:
            self._feed(next(self._reads))
        except StopIteration:
            self._feed_eof()
        except Exception as exc:
            _raise_as_sdk_error(exc, self._response.http_request)

    def close(self) -> None:
        """Stop reading: the run ends as ``interrupted`` unless it had already ended.

        Safe from another thread than the consumer's, which then stops without an error.
        """
        event = self._interrupted()
        self._response.close()
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
        if hasattr(self, "_response") and not self._run.closed:
            try:
                self.close()
            except Exception:
                logger.exception("synthora: closing abandoned stream of run %s", self.run_id)


class AsyncRunStream(_StreamCore, AsyncIterator[MessageChunk]):
    """The async iterator a streamed ``async_run()`` returns; also an async context manager."""

    __slots__ = ("_reads", "_response")

    def __init__(self, run: Run, state: StreamState, response: AsyncAPIResponse[Any]) -> None:
        super().__init__(run, state)
        self._response = response
        self._reads = response.http_response.aiter_bytes()

    async def __anext__(self) -> MessageChunk:
        run = self._run
        try:
            while not run.closed:
                chunk = self._next_chunk()
                if chunk is not None:
                    await run.emit_async(run.token(chunk))
                    return chunk
                if self._exhausted():
                    await self._finish(self._end())
                    break
                await self._read()
        except BaseException as exc:
            if run.closed and isinstance(exc, Exception):
                raise StopAsyncIteration from None  # closed meanwhile, e.g. by aclose()
            await self._finish(self._closing_event(exc))
            raise
        raise StopAsyncIteration

    async def _read(self) -> None:
        try:
            self._feed(await anext(self._reads))
        except StopAsyncIteration:
            self._feed_eof()
        except Exception as exc:
            _raise_as_sdk_error(exc, self._response.http_request)

    async def _finish(self, event: Any) -> None:
        """Release the response, then report `event`, even if cancelled while releasing."""
        try:
            await self._response.close()
        finally:
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
        if not hasattr(self, "_response") or self._run.closed:
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


def _raise_as_sdk_error(exc: Exception, request: httpx2.Request) -> NoReturn:
    """Raise a transport failure of the raw stream as the SDK's own stream would."""
    timeouts: tuple[type[BaseException], ...] = (httpx2.TimeoutException,)
    failures: tuple[type[BaseException], ...] = (
        httpx2.RequestError,
        ssl.SSLError,
        anyio.EndOfStream,
    )
    legacy = sys.modules.get("httpx")
    if legacy is not None:
        timeouts += (legacy.TimeoutException,)
        failures += (legacy.RequestError,)
    if isinstance(exc, timeouts):
        raise openai.APITimeoutError(request=request) from exc
    if isinstance(exc, failures):
        raise openai.APIConnectionError(request=request) from exc
    raise exc
