"""Reading a stream off the wire: SSE bytes decoded straight into chunks.

The request goes through the SDK's ``with_streaming_response`` (the SDK still builds, signs,
retries it and maps HTTP errors to its exceptions); the body is split by `SSEDecoder` and each
payload decoded by a `StreamState`, ~3 µs a chunk where the SDK's pydantic objects cost ~130 µs.
`SSESource` and `AsyncSSESource` differ only in how they read; a transport failure is raised as
the SDK's own stream would raise it. The same sources serve the Anthropic wire, whose SDK has the
same raw-response shape; the state names the SDK whose exceptions to raise.

A server may answer a streamed request without events: a whole JSON reply (it ignored
``stream: true``), or a proxy's error page. The SDKs' own streams then yield nothing and the
answer is lost; a source instead reads such a body whole (``or_whole_reply``) and hands the
reply the backend makes of it, or the backend's clear error. A body labelled as an event stream
is never sniffed, so a stream costs nothing more; an unlabelled one is told by its first line.

An observed client's stream (`synthora.observe`) is read by its SDK, not by a source: a
`ResponseTap` decodes the same bytes with the same states as the SDK pulls them.
"""

from __future__ import annotations

import json
import re
import ssl
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn, Protocol

import anyio
import httpx2

from synthora.errors import ResponseError
from synthora.events import Event
from synthora.messages import MessageChunk
from synthora.models.chunks import StreamState
from synthora.models.output import OutputState
from synthora.models.protocol import ModelDelta, ModelReply
from synthora.models.sse import SSEDecoder
from synthora.models.streams import (
    AsyncDeltaSource,
    AsyncSource,
    DeltaSource,
    Source,
    StreamCore,
)
from synthora.runs import Run

__all__ = [
    "UNREADABLE",
    "AsyncResponseTap",
    "AsyncSSESource",
    "RawResponse",
    "ResponseTap",
    "SSESource",
    "sdk_error",
    "sdk_reply",
    "unreadable_reply",
]

UNREADABLE = (ValueError, AttributeError, TypeError, KeyError, IndexError, ResponseError)
"""What reading a reply object that is not the endpoint's raises (broken JSON, ``null``, fields
of the wrong type): the backend turns these into its SDK's ``UnreadableReplyError``."""

_EVENT_STREAM = "text/event-stream"
_FIRST_LINE = 64
"""Bytes enough to tell events from a whole body, when no line ends sooner."""
_EVENT_LINE = re.compile(rb"(?:\xef\xbb\xbf)?[\r\n]*(?:data|event|id|retry|error)?:")
"""How an event stream begins (llama.cpp's ``error:`` lines included)."""


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


def _labelled_as_events(response: RawResponse) -> bool:
    return _EVENT_STREAM in response.http_response.headers.get("content-type", "").lower()


def _told(head: bytes) -> bool:
    """Whether the first bytes of a body are enough to tell whether it is events."""
    return len(head) >= _FIRST_LINE or b"\n" in head


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
                return self.state.finish()
            try:
                self._feed(next(self._reads))
            except StopIteration:
                self._feed_eof()
            except Exception as exc:
                _raise_as_sdk_error(exc, self._response.http_request, self.state.sdk)

    def or_whole_reply(self, read_reply: Callable[[bytes], ModelReply]) -> Source:
        """This source, or, when the body is not events, the reply `read_reply` makes of it,
        read whole (the response is then released)."""
        if _labelled_as_events(self._response):
            return self
        try:
            head = b""
            for data in self._reads:
                head += data
                if _told(head):
                    break
            if _EVENT_LINE.match(head):
                self._feed(head)
                return self
            body = head + b"".join(self._reads)
        except BaseException as exc:
            self.close()
            _raise_as_sdk_error(exc, self._response.http_request, self.state.sdk)
        self.close()
        delta = ModelDelta.whole(read_reply(body))
        return DeltaSource(iter((delta,)), OutputState(self.state.run_id))

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
                return self.state.finish()
            try:
                self._feed(await anext(self._reads))
            except StopAsyncIteration:
                self._feed_eof()
            except Exception as exc:
                _raise_as_sdk_error(exc, self._response.http_request, self.state.sdk)

    async def or_whole_reply(self, read_reply: Callable[[bytes], ModelReply]) -> AsyncSource:
        """`SSESource.or_whole_reply`, reading asynchronously."""
        if _labelled_as_events(self._response):
            return self
        try:
            head = b""
            async for data in self._reads:
                head += data
                if _told(head):
                    break
            if _EVENT_LINE.match(head):
                self._feed(head)
                return self
            body = head + b"".join([data async for data in self._reads])
        except BaseException as exc:
            await self.aclose()
            _raise_as_sdk_error(exc, self._response.http_request, self.state.sdk)
        await self.aclose()
        delta = ModelDelta.whole(read_reply(body))
        return AsyncDeltaSource(_once(delta), OutputState(self.state.run_id))

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
                last = payloads.state.finish()  # truncated, or a half-pair held back
                if last is not None:
                    events.append(run.token(last))
                events.append(self._end())
        except Exception as exc:
            events.append(run.close_with_error(exc, "stream", self._state.message()))
        return events

    def _failed(self, exc: BaseException) -> Event | None:
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


async def _once(delta: ModelDelta) -> AsyncIterator[ModelDelta]:
    yield delta


def sdk_reply(reply_type: Any, body: bytes) -> Any:
    """`body` as the SDK's reply object, built as the SDK builds a non-streamed reply
    (``construct``: nested objects built, nothing validated, so a lax server still reads)."""
    data = json.loads(body)
    if not isinstance(data, dict):
        raise TypeError(f"a JSON {type(data).__name__} where a reply object belongs")
    return reply_type.construct(**data)


def unreadable_reply(request: httpx2.Request, body: bytes, error: Exception) -> str:
    """What an ``UnreadableReplyError`` says: the request, what went wrong, what came."""
    return (
        f"the server's reply to {request.method} {request.url.path} cannot be read "
        f"({type(error).__name__}: {error}); it began {body[:200]!r}"
    )


def sdk_error(exc: BaseException, request: httpx2.Request, sdk: Any) -> BaseException:
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
        failure: BaseException = sdk.APITimeoutError(request=request)
    elif isinstance(exc, failures):
        failure = sdk.APIConnectionError(request=request)
    else:
        return exc
    failure.__cause__ = exc
    return failure


def _raise_as_sdk_error(exc: BaseException, request: httpx2.Request, sdk: Any) -> NoReturn:
    failure = sdk_error(exc, request, sdk)
    if failure is exc:
        raise exc
    raise failure from exc
