"""Replay from a log for backends and unmodified SDK code alike: `LogReplay`.

A request is matched as `ReplayBackend` matches one (`RecordedRequests`), with the model and the
parameters that change the answer. A backend's run (while a test replays its cassette,
`synthora.models.replaying`) is answered by the recorded run through the backend's own lifecycle.
An observed client's call (`synthora.observe(client, replay=log)`, or the same test) gets the
recorded run rendered as its endpoint's own reply (`synthora.models.wire_replies`), which the
client's HTTP client hands back in place of sending. The SDK then builds its own objects, raises
its own exceptions and runs its own stream parsing on it, as on a live reply; no socket is opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, Literal

import httpx2
import msgspec

from synthora.events import EndEvent, ErrorEvent, StartEvent
from synthora.models.protocol import ModelRequest
from synthora.models.request import event_params
from synthora.models.vectors import unpack
from synthora.models.wire_replies import RecordedAnswer, WireReply
from synthora.storage.log import EventLog
from synthora.storage.replay import (
    RecordedRequests,
    Recording,
    ReplayedError,
    ReplayMissError,
    replay_input,
)

__all__ = ["LogReplay", "Served"]


class LogReplay:
    """A log to answer from, one matcher per operation, shared by the backends and clients it
    answers (so identical requests take their recorded runs in order, whoever asks).

    A miss raises `ReplayMissError` naming the closest recorded request; with ``mode="record"``
    it returns None instead, to let the request go live (and an attached log record it).
    """

    def __init__(self, log: EventLog, mode: Literal["replay", "record"]) -> None:
        self.log = log
        self.mode = mode
        self._matchers: dict[str, RecordedRequests] = {}

    def recorded(self, operation: str, request: ModelRequest) -> Recording | None:
        """The recorded run that answers `request`; None on a miss in record mode."""
        matcher = self._matcher(operation)
        asked = matcher.request(replay_input(request), event_params(request.params), request.model)
        run_id = matcher.take(asked)
        if run_id is None:
            if self.mode == "record":
                matcher.refresh(restart=False)  # the live run, once stored, answers next time
                return None
            raise ReplayMissError(matcher.explain(asked))
        return Recording(list(self.log.events(run_id)))

    def answer(
        self,
        operation: str,
        request: ModelRequest,
        body: Mapping[str, Any],
        reply: WireReply,
        sdk: Any,
    ) -> Served | None:
        """The recorded answer to an observed call, as its endpoint's `reply` renders it."""
        recording = self.recorded(operation, request)
        if recording is None:
            return None
        return Served.of(recording, request, dict(body), reply, sdk)

    def answers(self, start: StartEvent) -> bool:
        """Whether a run of this log answers the request a (new) run's start event asked."""
        matcher = self._matcher(start.operation)
        return matcher.holds(matcher.asked_in(start))

    def _matcher(self, operation: str) -> RecordedRequests:
        matcher = self._matchers.get(operation)
        if matcher is None:
            matcher = RecordedRequests(self.log, operation, match_model=True, match_params=True)
            self._matchers[operation] = matcher
        return matcher


class Served:
    """A recorded answer as the HTTP response that gives it back, or the error to raise when
    the recorded request never got one (a connection that failed)."""

    __slots__ = ("body", "broken", "exception", "status", "stream")

    def __init__(
        self,
        status: int,
        body: bytes,
        *,
        stream: bool = False,
        broken: bool = False,
        exception: Exception | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.stream = stream
        self.broken = broken
        self.exception = exception

    @classmethod
    def of(
        cls,
        recording: Recording,
        request: ModelRequest,
        body: dict[str, Any],
        reply: WireReply,
        sdk: Any,
    ) -> Served:
        closing, start = recording.closing, recording.start
        if isinstance(closing, ErrorEvent) and closing.stage == "request":
            if closing.status_code is not None:
                error = {
                    "message": closing.message,
                    "type": closing.error_type,
                    "code": closing.code,
                }
                return cls(closing.status_code, msgspec.json.encode({"error": error}))
            return cls(0, b"", exception=_connection_error(closing, sdk))
        end = closing if isinstance(closing, EndEvent) else None
        answer = RecordedAnswer(
            model=(end.response_model if end else None) or (start.model if start else ""),
            response_id=(end.response_id if end else None) or f"replayed-{recording.run_id}",
            pieces=tuple(token.text for token in recording.tokens),
            output=end.output if end else None,
            finish_reason=end.finish_reason if end else None,
            usage=end.usage if end else None,
            vectors=unpack(end.vectors) if end and end.vectors is not None else None,
        )
        head, tail = reply(answer, request.stream, body)
        broken = isinstance(closing, ErrorEvent)  # the stream broke after what came
        return cls(200, head if broken else head + tail, stream=request.stream, broken=broken)

    def response(self, request: httpx2.Request) -> httpx2.Response:
        media = "text/event-stream" if self.stream else "application/json"
        headers = {"content-type": media, "x-should-retry": "false"}
        if self.broken:
            return httpx2.Response(
                self.status, headers=headers, stream=_BrokenBody(self.body), request=request
            )
        return httpx2.Response(self.status, headers=headers, content=self.body, request=request)


class _BrokenBody(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A recorded stream that broke: what came before the break, then the break."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self._data
        raise httpx2.RemoteProtocolError("the recorded stream broke here")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._data
        raise httpx2.RemoteProtocolError("the recorded stream broke here")


def _connection_error(event: ErrorEvent, sdk: Any) -> Exception:
    request = httpx2.Request("POST", "http://replay.synthora.invalid/")
    if event.error_type == "APITimeoutError":
        return sdk.APITimeoutError(request=request)  # type: ignore[no-any-return]
    if event.error_type == "APIConnectionError":
        return sdk.APIConnectionError(request=request)  # type: ignore[no-any-return]
    return ReplayedError(f"{event.error_type}: {event.message}")
