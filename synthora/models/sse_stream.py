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
from typing import Any, NoReturn, Protocol

import anyio
import httpx2

from synthora.messages import MessageChunk
from synthora.models.chunks import StreamState
from synthora.models.sse import SSEDecoder

__all__ = ["AsyncSSESource", "RawResponse", "SSESource"]


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


def _raise_as_sdk_error(exc: Exception, request: httpx2.Request, sdk: Any) -> NoReturn:
    """Raise a transport failure of the raw stream as the SDK's own stream would (`sdk` is
    the module whose ``APITimeoutError`` / ``APIConnectionError`` to raise)."""
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
        raise sdk.APITimeoutError(request=request) from exc
    if isinstance(exc, failures):
        raise sdk.APIConnectionError(request=request) from exc
    raise exc
