"""Stream wrappers that report a run's end exactly once, whichever way the stream ends.

The wire is read through the SDK's ``with_streaming_response`` (the SDK still builds, signs,
retries the request and maps HTTP errors), then split by `SSEDecoder` and decoded by a
`StreamState`. A stream ends in one of four ways, and each emits exactly one closing event:

* exhausted: ``end`` with the server's finish reason and usage;
* the server's error, a broken or timed-out connection: ``error`` with the partial output, then
  the SDK's own exception (`openai.APIError`, `openai.APIConnectionError`,
  `openai.APITimeoutError`) reaches the consumer;
* closed early (``close()``/``aclose()``, ``with``, ``break`` then garbage collection), or its task
  cancelled: ``end`` with finish reason ``interrupted`` and the text seen so far.

The HTTP response is released in every case. `RunStream` and `AsyncRunStream` are line-parallel:
they differ only where one awaits.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
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


class _StreamCore:
    """What both wrappers share: the decoded payloads waiting, the state, the closing events."""

    __slots__ = ("__weakref__", "_decoder", "_eof", "_payloads", "_run", "_state")

    def __init__(self, run: Run, state: StreamState) -> None:
        self._run = run
        self._state = state
        self._decoder = SSEDecoder()
        self._payloads: deque[bytes] = deque()
        self._eof = False

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
        while payloads:
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
        return self._run.close_interrupted(self._state.message())


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
            while True:
                chunk = self._next_chunk()
                if chunk is not None:
                    run.emit(run.token(chunk))
                    return chunk
                if self._exhausted() or run.closed:
                    break
                try:
                    self._feed(next(self._reads))
                except StopIteration:
                    self._feed_eof()
                except Exception as exc:
                    _raise_as_sdk_error(exc, self._response.http_request)
        except BaseException as exc:
            self._response.close()
            run.emit(self._closing_event(exc))
            raise
        self._response.close()
        run.emit(self._end())
        raise StopIteration

    def close(self) -> None:
        """Stop reading: the run ends as ``interrupted`` unless it had already ended."""
        self._response.close()
        self._run.emit(self._run.close_interrupted(self._state.message()))

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
            while True:
                chunk = self._next_chunk()
                if chunk is not None:
                    await run.emit_async(run.token(chunk))
                    return chunk
                if self._exhausted() or run.closed:
                    break
                try:
                    self._feed(await anext(self._reads))
                except StopAsyncIteration:
                    self._feed_eof()
                except Exception as exc:
                    _raise_as_sdk_error(exc, self._response.http_request)
        except BaseException as exc:
            await self._response.close()
            await run.emit_async(self._closing_event(exc))
            raise
        await self._response.close()
        await run.emit_async(self._end())
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Stop reading: the run ends as ``interrupted`` unless it had already ended."""
        await self._response.close()
        await self._run.emit_async(self._run.close_interrupted(self._state.message()))

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
        """Abandoned without ``aclose()``: close it on the running loop, or report it now."""
        if not hasattr(self, "_response") or self._run.closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._run.emit(self._run.close_interrupted(self._state.message()))
            return
        task = loop.create_task(self.aclose())
        _pending_closes.add(task)
        task.add_done_callback(_pending_closes.discard)


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
