"""Reading a stream off the wire: SSE bytes decoded straight into chunks.

The request goes through the SDK's ``with_streaming_response`` (the SDK still builds, signs,
retries it and maps HTTP errors to its exceptions); the body is split by `SSEDecoder` and each
payload decoded by a `StreamState`, ~3 µs a chunk where the SDK's pydantic objects cost ~130 µs.
`SSESource` and `AsyncSSESource` differ only in how they read; a transport failure is raised as
the SDK's own stream would raise it. The same sources serve the Anthropic wire, whose SDK has the
same raw-response shape; the state names the SDK whose exceptions to raise.
"""

from __future__ import annotations

import ssl
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, NoReturn, Protocol

import anyio
import httpx2

from synthora.events import Event
from synthora.messages import MessageChunk
from synthora.models.chunks import StreamState
from synthora.models.sse import SSEDecoder
from synthora.models.streams import StreamCore
from synthora.runs import Run

__all__ = [
    "AsyncResponseTap",
    "AsyncSSESource",
    "RawResponse",
    "ResponseTap",
    "SSESource",
    "sdk_error",
]


class RawResponse(Protocol):
    """A streamed response as the Stainless-built SDKs (openai, anthropic) hand it back from
    ``with_streaming_response``: the HTTP response to read, its request, and ``close``."""

    @property
    def http_response(self) -> Any: ...

    @property
    def http_request(self) -> Any: ...

    def close(self) -> Any: ...


class _Payloads:
    """The sans-I/O part both sources share: bytes in, payloads out, chunks from the state."""

    __slots__ = ("_decoder", "_eof", "_payloads", "state")

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self._decoder = SSEDecoder()
        self._payloads: deque[bytes] = deque()
        self._eof = False

    def _pending_chunk(self) -> MessageChunk | None:
        """The next chunk from payloads already read; None when more bytes are needed."""
        payloads, state = self._payloads, self.state
        while payloads and not state.done:  # nothing after [DONE] counts, as in the SDK
            chunk = state.consume(payloads.popleft())
            if chunk is not None:
                return chunk
        return None

    def _exhausted(self) -> bool:
        return self.state.done or (self._eof and not self._payloads)

    def _feed(self, data: bytes) -> None:
        self._payloads.extend(self._decoder.feed(data))

    def _feed_eof(self) -> None:
        self._eof = True
        self._payloads.extend(self._decoder.flush())


class SSESource(_Payloads):
    """A streamed response of the sync SDK, read as chunks."""

    __slots__ = ("_reads", "_response")

    def __init__(self, response: RawResponse, state: StreamState) -> None:
        super().__init__(state)
        self._response = response
        self._reads = response.http_response.iter_bytes()

    def next_chunk(self) -> MessageChunk | None:
        while True:
            chunk = self._pending_chunk()
            if chunk is not None:
                return chunk
            if self._exhausted():
                return None
            try:
                self._feed(next(self._reads))
            except StopIteration:
                self._feed_eof()
            except Exception as exc:
                _raise_as_sdk_error(exc, self._response.http_request, self.state.sdk)

    def close(self) -> None:
        self._response.close()


class AsyncSSESource(_Payloads):
    """A streamed response of the async SDK, read as chunks."""

    __slots__ = ("_reads", "_response")

    def __init__(self, response: RawResponse, state: StreamState) -> None:
        super().__init__(state)
        self._response = response
        self._reads = response.http_response.aiter_bytes()

    async def next_chunk(self) -> MessageChunk | None:
        while True:
            chunk = self._pending_chunk()
            if chunk is not None:
                return chunk
            if self._exhausted():
                return None
            try:
                self._feed(await anext(self._reads))
            except StopAsyncIteration:
                self._feed_eof()
            except Exception as exc:
                _raise_as_sdk_error(exc, self._response.http_request, self.state.sdk)

    async def aclose(self) -> None:
        await self._response.close()


class _ResponseTap(StreamCore):
    """A streamed response that the SDK itself reads (an observed client's ``Stream``): every
    piece of the body the SDK pulls is also decoded here into the run's events.

    The caller keeps the SDK's own objects; the tap only listens. Its decoding never raises into
    the SDK's read: a payload it cannot read closes the run with that error and the bytes flow
    on, so the SDK reports the failure its own way. The run ends at ``[DONE]`` (or the body's
    end), fails with the transport's error, or, when the SDK closes the response first (the
    caller left), ends ``interrupted`` — exactly once, as every stream wrapper does.
    """

    __slots__ = ("_payloads", "_reading", "_request")

    def __init__(self, run: Run, response: Any, state: StreamState) -> None:
        super().__init__(run, state)
        self._payloads = _Payloads(state)
        self._request = response.request
        # True while a read is in flight: httpx closes the response itself when the body ends
        # or breaks, and that close is the read's outcome to report, not the caller leaving.
        self._reading = False

    def _events(self, data: bytes | None) -> list[Event | None]:
        """The events one read of the body adds; `data` None is the body's end."""
        run, payloads = self._run, self._payloads
        if run.closed:
            return []
        events: list[Event | None] = []
        try:
            if data is None:
                payloads._feed_eof()
            else:
                payloads._feed(data)
            while (chunk := payloads._pending_chunk()) is not None:
                events.append(run.token(chunk))
            if payloads._exhausted():
                events.append(self._end())
        except Exception as exc:
            events.append(run.close_with_error(exc, "stream", self._state.message()))
        return events

    def _failed(self, exc: Exception) -> Event | None:
        event: Event | None = self._closing_event(
            sdk_error(exc, self._request, self._payloads.state.sdk)
        )
        return event

    def __del__(self) -> None:
        if hasattr(self, "_payloads") and not self._run.closed:
            self._run.emit(self._interrupted())


class ResponseTap(_ResponseTap):
    """`_ResponseTap` on a sync response: its ``iter_bytes`` and ``close`` are wrapped."""

    __slots__ = ()

    def __init__(self, run: Run, response: Any, state: StreamState) -> None:
        super().__init__(run, response, state)
        read, close = response.iter_bytes, response.close

        def iter_bytes(chunk_size: int | None = None) -> Iterator[bytes]:
            reads = read(chunk_size)
            while True:
                self._reading = True
                try:
                    data = next(reads)
                except StopIteration:
                    break
                except Exception as exc:
                    run.emit(self._failed(exc))
                    raise
                finally:
                    self._reading = False
                for event in self._events(data):
                    run.emit(event)
                yield data
            for event in self._events(None):
                run.emit(event)

        def closing() -> None:
            close()
            if not self._reading:
                run.emit(self._interrupted())

        response.iter_bytes, response.close = iter_bytes, closing


class AsyncResponseTap(_ResponseTap):
    """`_ResponseTap` on an async response: its ``aiter_bytes`` and ``aclose`` are wrapped."""

    __slots__ = ()

    def __init__(self, run: Run, response: Any, state: StreamState) -> None:
        super().__init__(run, response, state)
        read, close = response.aiter_bytes, response.aclose

        async def aiter_bytes(chunk_size: int | None = None) -> AsyncIterator[bytes]:
            reads = read(chunk_size)
            while True:
                self._reading = True
                try:
                    data = await anext(reads)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    await run.emit_async(self._failed(exc))
                    raise
                finally:
                    self._reading = False
                for event in self._events(data):
                    await run.emit_async(event)
                yield data
            for event in self._events(None):
                await run.emit_async(event)

        async def closing() -> None:
            await close()
            if not self._reading:
                await run.emit_async(self._interrupted())

        response.aiter_bytes, response.aclose = aiter_bytes, closing


def sdk_error(exc: Exception, request: httpx2.Request, sdk: Any) -> Exception:
    """A transport failure of a raw stream as the SDK's own stream reports it (`sdk` is the
    module whose ``APITimeoutError`` / ``APIConnectionError`` to use); other errors as they are."""
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
        failure: Exception = sdk.APITimeoutError(request=request)
    elif isinstance(exc, failures):
        failure = sdk.APIConnectionError(request=request)
    else:
        return exc
    failure.__cause__ = exc
    return failure


def _raise_as_sdk_error(exc: Exception, request: httpx2.Request, sdk: Any) -> NoReturn:
    failure = sdk_error(exc, request, sdk)
    if failure is exc:
        raise exc
    raise failure from exc
