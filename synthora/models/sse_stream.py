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
`ResponseTap` decodes the same bytes with the same states as the SDK pulls them, and hands an
SDK its server-sent events from the same split (`TapDecoder`).
"""

from __future__ import annotations

import functools
import json
import re
import ssl
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn, Protocol

import anyio
import httpx2
import msgspec

from synthora.errors import ResponseError
from synthora.events import Event
from synthora.messages import MessageChunk
from synthora.models.chunks import StreamState
from synthora.models.output import OutputState
from synthora.models.protocol import ModelDelta, ModelReply
from synthora.models.sse import SDKEvent, SDKEvents, SSEDecoder, payloads_of, unended_payloads
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
    "TapDecoder",
    "sdk_error",
    "sdk_reply",
    "tapped_event",
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

    __slots__ = ("_eof", "_payloads", "decoder", "state")

    def __init__(self, state: StreamState) -> None:
        self.state = state
        self.decoder = SSEDecoder()
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

    def _feed(self, data: bytes) -> list[bytes]:
        """Take in one read; the blocks of the events it completes, as split (`SDKEvents`)."""
        blocks = self.decoder.blocks(data)
        self._payloads.extend(payloads_of(blocks))
        return blocks

    def _feed_eof(self) -> bytes:
        """Take in the body's end; what no blank line ended, as split (`SDKEvents.at_end`)."""
        self._eof = True
        rest = self.decoder.rest()
        self._payloads.extend(unended_payloads(rest))
        return rest


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

    An observed client's SDK reads the body's events through `TapDecoder`, which takes them
    from the tap (`SDKEvents`) instead of splitting the same bytes a second time.
    """

    __slots__ = ("_blocks", "_payloads", "_reading", "_request", "_rest")

    def __init__(self, run: Run, response: Any, state: StreamState) -> None:
        super().__init__(run, state)
        self._payloads = _Payloads(state)
        self._request = response.request
        # True while a read is in flight: httpx closes the response itself when the body ends
        # or breaks, and that close is the read's outcome to report, not the caller leaving.
        self._reading = False
        self._blocks: list[bytes] = []  # the events the last read completed, as split
        self._rest = b""  # at the body's end, what no blank line ended

    def _events(self, data: bytes | None) -> list[Event | None]:
        """The events one read of the body adds; `data` None is the body's end."""
        run, payloads = self._run, self._payloads
        if data is None:
            self._blocks, self._rest = [], payloads._feed_eof()
        else:
            self._blocks = payloads._feed(data)
        if run.closed:
            return []
        events: list[Event | None] = []
        try:
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

    __slots__ = ("_close", "_read")

    def __init__(self, run: Run, response: Any, state: StreamState) -> None:
        super().__init__(run, response, state)
        self._read, self._close = response.iter_bytes, response.close
        response.iter_bytes, response.close = self._iter_bytes, self._closing

    def _iter_bytes(self, chunk_size: int | None = None) -> TappedReads:
        return TappedReads(self, self._read(chunk_size))

    def _next(self, reads: Iterator[bytes]) -> bytes:
        """The body's next read, once its events are emitted."""
        run = self._run
        self._reading = True
        try:
            data = next(reads, None)
        except Exception as exc:
            run.emit(self._failed(exc))
            raise
        finally:
            self._reading = False
        for event in self._events(data):
            run.emit(event)
        if data is None:
            raise StopIteration
        return data

    def _closing(self) -> None:
        self._close()
        if not self._reading:
            self._run.emit(self._interrupted())


class AsyncResponseTap(_ResponseTap):
    """`_ResponseTap` on an async response: its ``aiter_bytes`` and ``aclose`` are wrapped."""

    __slots__ = ("_close", "_read")

    def __init__(self, run: Run, response: Any, state: StreamState) -> None:
        super().__init__(run, response, state)
        self._read, self._close = response.aiter_bytes, response.aclose
        response.aiter_bytes, response.aclose = self._aiter_bytes, self._closing

    def _aiter_bytes(self, chunk_size: int | None = None) -> AsyncTappedReads:
        return AsyncTappedReads(self, self._read(chunk_size))

    async def _next(self, reads: AsyncIterator[bytes]) -> bytes:
        """`ResponseTap._next`, reading asynchronously."""
        run = self._run
        self._reading = True
        try:
            data = await anext(reads, None)
        except Exception as exc:
            await run.emit_async(self._failed(exc))
            raise
        finally:
            self._reading = False
        for event in self._events(data):
            await run.emit_async(event)
        if data is None:
            raise StopAsyncIteration
        return data

    async def _closing(self) -> None:
        await self._close()
        if not self._reading:
            await self._run.emit_async(self._interrupted())


class TappedReads(Iterator[bytes]):
    """A tapped body's reads: bytes to whoever iterates them (``iter_bytes``, ``iter_lines``);
    to `TapDecoder`, the SDK's server-sent events in them, from the blocks the tap split."""

    __slots__ = ("_reads", "_tap")

    def __init__(self, tap: ResponseTap, reads: Iterator[bytes]) -> None:
        self._tap, self._reads = tap, reads

    def __next__(self) -> bytes:
        return self._tap._next(self._reads)

    def server_sent_events(self, make: Callable[..., SDKEvent]) -> Iterator[SDKEvent]:
        tap = self._tap
        events = SDKEvents(make, tap._payloads.decoder)
        try:
            for _ in self:
                yield from events.of(tap._blocks)
            yield from events.at_end(tap._rest)
        except Exception as exc:  # one the SDK's decoder raises too: a line that is not UTF-8
            tap._run.emit(tap._failed(exc))
            raise


class AsyncTappedReads(AsyncIterator[bytes]):
    """`TappedReads` of an async body."""

    __slots__ = ("_reads", "_tap")

    def __init__(self, tap: AsyncResponseTap, reads: AsyncIterator[bytes]) -> None:
        self._tap, self._reads = tap, reads

    async def __anext__(self) -> bytes:
        return await self._tap._next(self._reads)

    async def server_sent_events(self, make: Callable[..., SDKEvent]) -> AsyncIterator[SDKEvent]:
        tap = self._tap
        events = SDKEvents(make, tap._payloads.decoder)
        try:
            async for _ in self:
                for event in events.of(tap._blocks):
                    yield event
            for event in events.at_end(tap._rest):
                yield event
        except Exception as exc:  # as in `TappedReads.server_sent_events`
            await tap._run.emit_async(tap._failed(exc))
            raise


class TapDecoder:
    """An observed client's SSE decoder (what its ``_make_sse_decoder`` makes): the
    events of a tapped body come from the tap, split once for the SDK and the run; any other
    body's from the SDK's own decoder."""

    __slots__ = ("_make", "_own")

    def __init__(self, own: Any, make: Callable[..., Any]) -> None:
        self._own, self._make = own, make

    def iter_bytes(self, iterator: Iterator[bytes]) -> Iterator[Any]:
        if isinstance(iterator, TappedReads):
            return iterator.server_sent_events(self._make)
        events: Iterator[Any] = self._own.iter_bytes(iterator)
        return events

    def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        if isinstance(iterator, AsyncTappedReads):
            return iterator.server_sent_events(self._make)
        events: AsyncIterator[Any] = self._own.aiter_bytes(iterator)
        return events


@functools.cache
def tapped_event(sdk_event: type[Any]) -> type[Any]:
    """The SDK's event class as a tap makes its events: their JSON msgspec reads into the same
    values as ``json.loads`` at a fifth of its cost; what msgspec refuses (``NaN``, a lone
    surrogate, ``1e400``) goes to ``json.loads``, which reads it or fails as the SDK's would."""

    def json_values(event: Any) -> Any:
        try:
            return _json_values(event.data)
        except msgspec.DecodeError:
            return json.loads(event.data)

    return type(sdk_event.__name__, (sdk_event,), {"json": json_values})


_json_values = msgspec.json.Decoder().decode


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
