"""Replay: re-serve stored runs to the same code, offline.

`ReplayBackend` answers ``run`` / ``async_run`` from an `EventLog`: a request is matched to a
recorded one by a fingerprint of the operation, the messages (or prompt) and the tools; given
``model_type=`` or ``config=``, the model and the parameters that change the answer join it.
Identical requests are answered in recorded order (then the last answer repeats). The answer is
the recorded one, chunk for chunk: the same token events, finish reason and usage, or the same
error raised as the SDK's own exception class. No network connection is ever opened.

A miss raises `ReplayMissError` naming the closest recorded request and how it differs; with
``mode="record"`` it falls through to a ``live`` backend instead, whose run the attached log
records, so the next identical request is answered offline (a cassette's "new episodes").
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, Self

import httpx2
import msgspec
import openai

from synthora.errors import SynthoraError
from synthora.events import EndEvent, ErrorEvent, Event, StartEvent, TokenEvent
from synthora.messages import (
    BaseMessage,
    MessageChunk,
    MessageInput,
    assistant,
    coerce_messages,
    prompt_of,
)
from synthora.models.base import BaseModelBackend, CallBackHandler
from synthora.models.request import event_params
from synthora.runs import Run, service_name
from synthora.storage.errors import StorageError
from synthora.storage.log import EventLog
from synthora.types.enums import ModelBackendType, NodeType
from synthora.types.node import Node

__all__ = ["ReplayBackend", "ReplayMissError", "ReplayedError"]

Mode = Literal["strict", "record"]

ANSWER_PARAMETERS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "n",
    "response_format",
    "tool_choice",
    "logit_bias",
)
"""Request parameters that change the answer; they join the match when ``config=`` is given."""

_REPLAY_URL = "http://replay.synthora.invalid/v1"


class ReplayMissError(StorageError):
    """No recorded run answers this request."""


class ReplayedError(SynthoraError):
    """A recorded failure whose exception type is not the SDK's: type and message as recorded."""


class _Request(msgspec.Struct, frozen=True):
    """A request as replay compares it."""

    operation: str
    input: Any
    tools: Any
    model: str | None = None
    params: dict[str, Any] | None = None

    def key(self) -> str:
        return hashlib.sha256(msgspec.json.encode(self, order="sorted")).hexdigest()


class ReplayBackend(BaseModelBackend):
    """A `BaseModelBackend` whose answers come from an event log, never from the network."""

    backend_type = ModelBackendType.REPLAY

    def __init__(
        self,
        log: EventLog,
        *,
        operation: Literal["chat", "text_completion"] = "chat",
        model_type: str | None = None,
        config: dict[str, Any] | None = None,
        mode: Mode = "strict",
        live: BaseModelBackend | None = None,
        source: Node = Node(name="replay", type=NodeType.AGENT),  # noqa: B008 - a frozen value
        name: str | None = None,
        handlers: Iterable[CallBackHandler] = (),
        stream: bool = False,
    ) -> None:
        if mode == "record" and live is None:
            raise StorageError("ReplayBackend(mode='record') needs live=, the backend to record")
        super().__init__(
            model_type=model_type or "",
            source=source,
            config=config,
            name=name,
            handlers=handlers,
            stream=stream,
        )
        self.log = log
        self.operation = operation
        self.mode = mode
        self.live = live
        self._match_model = model_type is not None
        self._match_params = config is not None
        self._index: dict[str, deque[str]] | None = None
        self._last: dict[str, str] = {}
        self._requests: dict[str, _Request] = {}
        self._lock = threading.Lock()

    # -- the twins -----------------------------------------------------------------------------

    def run(
        self, messages: MessageInput | Iterable[MessageInput], /, **params: Any
    ) -> BaseMessage | Any:
        request, start = self._prepare(messages, params)
        recorded = self._take(request)
        if recorded is None:
            return self._miss(request).run(messages, **params)
        answer, first = self._begin(start, recorded)
        run = answer.run
        run.emit(first)
        if self.stream:
            return ReplayStream(answer)
        for event in answer.tokens():
            run.emit(event)
        closing = answer.closing()
        run.emit(closing)
        return answer.result(closing)

    async def async_run(
        self, messages: MessageInput | Iterable[MessageInput], /, **params: Any
    ) -> BaseMessage | Any:
        request, start = self._prepare(messages, params)
        recorded = self._take(request)
        if recorded is None:
            return await self._miss(request).async_run(messages, **params)
        answer, first = self._begin(start, recorded)
        run = answer.run
        await run.emit_async(first)
        if self.stream:
            return AsyncReplayStream(answer)
        for event in answer.tokens():
            await run.emit_async(event)
        closing = answer.closing()
        await run.emit_async(closing)
        return answer.result(closing)

    def _begin(self, start: dict[str, Any], recorded: str) -> tuple[_Answer, Event]:
        """The new run that tells `recorded` again, and its start event (the recorded model
        stands in when the backend names none)."""
        events = list(self.log.events(recorded))
        original = events[0]
        provider = original.provider if isinstance(original, StartEvent) else ""
        start = {**start, "model": start["model"] or _model_of(events), "provider": provider}
        run = Run(self, self.node, operation=self.operation, model=start["model"])
        return _Answer(run, events), run.start(**start)

    # -- matching (no I/O but the index's first read) ------------------------------------------

    def _prepare(
        self, messages: MessageInput | Iterable[MessageInput], overrides: dict[str, Any]
    ) -> tuple[_Request, dict[str, Any]]:
        params = event_params({**self.config, **overrides})
        start: dict[str, Any] = {
            "operation": self.operation,
            "service": service_name(),
            "backend": self.backend_type.value,
            "model": self.model_type,
            "stream": self.stream,
            "params": params,
        }
        request_input: Any
        if self.operation == "text_completion":
            request_input = start["prompt"] = prompt_of(messages)
        else:
            coerced = coerce_messages(messages)
            start["messages"] = coerced
            request_input = [m.to_openai() for m in coerced]
        return self._replay_request(request_input, params, self.model_type or None), start

    def _replay_request(
        self, request_input: Any, params: dict[str, Any], model: str | None
    ) -> _Request:
        return _Request(
            operation=self.operation,
            input=request_input,
            tools=params.get("tools"),
            model=model if self._match_model else None,
            params={k: params[k] for k in ANSWER_PARAMETERS if k in params}
            if self._match_params
            else None,
        )

    def _take(self, request: _Request) -> str | None:
        key = request.key()
        with self._lock:
            index = self._recorded()
            queue = index.get(key)
            if queue:
                self._last[key] = queue.popleft()
            return self._last.get(key)

    def _recorded(self) -> dict[str, deque[str]]:
        if self._index is None:
            self._index = {}
            runs = sorted(
                (
                    s
                    for s in self.log.runs()
                    if s.operation == self.operation and s.status != "running"
                ),
                key=lambda s: (s.started_at, s.run_id),
            )
            for summary in runs:
                start = next(iter(self.log.events(summary.run_id)))
                if not isinstance(start, StartEvent):
                    continue
                request = self._replay_request(_input_of(start), start.params, start.model)
                key = request.key()
                self._index.setdefault(key, deque()).append(summary.run_id)
                self._requests.setdefault(key, request)
        return self._index

    def _miss(self, request: _Request) -> BaseModelBackend:
        if self.mode == "record" and self.live is not None:
            with self._lock:
                self._index = None  # what the live run records is found next time
            return self.live
        raise ReplayMissError(self._explain(request))

    def _explain(self, request: _Request) -> str:
        if not self._requests:
            return f"the event log holds no recorded {self.operation} runs to replay"
        closest = max(self._requests.values(), key=lambda r: _likeness(request, r))
        return f"no recorded {self.operation} request matches; the closest differs: " + _difference(
            request, closest
        )

    def refresh(self) -> None:
        """Read the log's recorded requests again (after more runs were stored)."""
        with self._lock:
            self._index = None
            self._last.clear()


class _Answer:
    """A recorded run, told again through a new run: tokens, then its end or its error."""

    __slots__ = ("_closing", "_error", "_position", "_recorded", "_text", "run")

    def __init__(self, run: Run, recorded: list[Event]) -> None:
        self.run = run
        self._recorded = [e for e in recorded if isinstance(e, TokenEvent)]
        self._position = 0
        self._text = ""
        closing = [e for e in recorded if isinstance(e, EndEvent | ErrorEvent)]
        self._closing: EndEvent | ErrorEvent | None = closing[0] if closing else None
        recorded_error = self._closing if isinstance(self._closing, ErrorEvent) else None
        self._error = None if recorded_error is None else rebuild_error(recorded_error)

    def next_chunk(self) -> MessageChunk | None:
        if self._position >= len(self._recorded):
            return None
        token = self._recorded[self._position]
        self._position += 1
        self._text += token.text
        return MessageChunk(
            content=self._text,
            delta=token.text,
            tool_call_deltas=token.tool_calls,
            run_id=self.run.run_id,
        )

    def tokens(self) -> Iterator[TokenEvent | None]:
        while (chunk := self.next_chunk()) is not None:
            yield self.run.token(chunk)

    def closing(self) -> Event | None:
        recorded = self._closing
        if isinstance(recorded, ErrorEvent):
            assert self._error is not None
            return self.run.close_with_error(self._error, recorded.stage, recorded.partial_output)
        if recorded is None:  # the recorded run never ended (its process died)
            return self.interrupted()
        return self.run.close_with_end(
            recorded.output,
            recorded.finish_reason,
            usage=recorded.usage,
            response_id=recorded.response_id,
            response_model=recorded.response_model,
        )

    def result(self, closing: Event | None) -> BaseMessage:
        """The reply to return, or the recorded error raised."""
        if self._error is not None:
            raise self._error
        output = closing.output if isinstance(closing, EndEvent) else None
        return output or assistant(self._text)

    def interrupted(self) -> Event | None:
        return self.run.close_interrupted(assistant(self._text))


class ReplayStream(Iterator[MessageChunk]):
    """A recorded stream, chunk by chunk; closing it early ends the run as interrupted."""

    def __init__(self, answer: _Answer) -> None:
        self._answer = answer

    @property
    def run_id(self) -> str:
        return self._answer.run.run_id

    def __next__(self) -> MessageChunk:
        run = self._answer.run
        if run.closed:
            raise StopIteration
        chunk = self._answer.next_chunk()
        if chunk is not None:
            run.emit(run.token(chunk))
            return chunk
        closing = self._answer.closing()
        run.emit(closing)
        self._answer.result(closing)
        raise StopIteration

    def close(self) -> None:
        self._answer.run.emit(self._answer.interrupted())

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
        if hasattr(self, "_answer") and not self._answer.run.closed:
            self.close()


class AsyncReplayStream(AsyncIterator[MessageChunk]):
    """The async twin of `ReplayStream`."""

    def __init__(self, answer: _Answer) -> None:
        self._answer = answer

    @property
    def run_id(self) -> str:
        return self._answer.run.run_id

    async def __anext__(self) -> MessageChunk:
        run = self._answer.run
        if run.closed:
            raise StopAsyncIteration
        chunk = self._answer.next_chunk()
        if chunk is not None:
            await run.emit_async(run.token(chunk))
            return chunk
        closing = self._answer.closing()
        await run.emit_async(closing)
        self._answer.result(closing)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        await self._answer.run.emit_async(self._answer.interrupted())

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
        if hasattr(self, "_answer") and not self._answer.run.closed:
            self._answer.run.emit(self._answer.interrupted())


def rebuild_error(event: ErrorEvent) -> Exception:
    """The exception a recorded run raised, rebuilt: the SDK's own class where it was one."""
    kind = getattr(openai, event.error_type, None)
    request = httpx2.Request("POST", f"{_REPLAY_URL}/chat/completions")
    body = {"message": event.message, "code": event.code}
    if isinstance(kind, type) and issubclass(kind, openai.APIStatusError) and event.status_code:
        response = httpx2.Response(event.status_code, request=request)
        return kind(event.message, response=response, body=body)
    if kind is openai.APITimeoutError:
        return openai.APITimeoutError(request=request)
    if kind is openai.APIConnectionError:
        return openai.APIConnectionError(request=request)
    if kind is openai.APIError:
        return openai.APIError(event.message, request, body=body)
    return ReplayedError(f"{event.error_type}: {event.message}")


def _input_of(start: StartEvent) -> Any:
    if start.messages is not None:
        return [m.to_openai() for m in start.messages]
    return start.prompt


def _model_of(events: list[Event]) -> str:
    start = events[0] if events else None
    return start.model if isinstance(start, StartEvent) else ""


def _likeness(a: _Request, b: _Request) -> tuple[int, int]:
    """How alike two requests are: equal leading messages first, then other equal fields."""
    left = a.input if isinstance(a.input, list) else [a.input]
    right = b.input if isinstance(b.input, list) else [b.input]
    leading = 0
    for x, y in zip(left, right, strict=False):
        if x != y:
            break
        leading += 1
    others = sum(getattr(a, f) == getattr(b, f) for f in ("tools", "model", "params"))
    return leading, others


def _difference(request: _Request, closest: _Request) -> str:
    left = request.input if isinstance(request.input, list) else [request.input]
    right = closest.input if isinstance(closest.input, list) else [closest.input]
    for position, (asked, recorded) in enumerate(zip(left, right, strict=False)):
        if asked != recorded:
            return f"message {position}: asked {_short(asked)}, recorded {_short(recorded)}"
    if len(left) != len(right):
        return f"asked {len(left)} messages, recorded {len(right)}"
    for field in ("tools", "model", "params"):
        asked, recorded = getattr(request, field), getattr(closest, field)
        if asked != recorded:
            return f"{field}: asked {_short(asked)}, recorded {_short(recorded)}"
    return "only in what the match ignores"


def _short(value: Any) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 120 else text[:117] + "..."
