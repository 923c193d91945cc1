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

import difflib
import hashlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Literal

import httpx2
import msgspec
import openai

from synthora.errors import SynthoraError
from synthora.events import EndEvent, ErrorEvent, Event, StartEvent, TokenEvent
from synthora.messages import MessageInput, assistant, prompt_of
from synthora.models.base import BaseModelBackend, CallBackHandler
from synthora.models.openai_embeddings import texts_to_embed
from synthora.models.output import OutputState
from synthora.models.protocol import ModelDelta, ModelReply, ModelRequest
from synthora.models.request import event_params
from synthora.models.streams import AsyncDeltaSource, AsyncSource, DeltaSource, Source
from synthora.models.vectors import unpack
from synthora.runs import Run
from synthora.storage.errors import StorageError
from synthora.storage.log import EventLog
from synthora.types.enums import ModelBackendType, NodeType
from synthora.types.node import Node

__all__ = [
    "RecordedRequests",
    "Recording",
    "ReplayBackend",
    "ReplayMissError",
    "ReplayedError",
    "replay_input",
]

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


class RecordedRequests:
    """The requests a log's runs of one operation answered, matched to new ones.

    Requests are compared by fingerprint (`_Request`): the input and tools always, the model and
    the parameters that change the answer when asked to. Identical requests take their recorded
    runs in recorded order, then the last one again. Thread-safe; the index is read lazily.
    """

    def __init__(
        self, log: EventLog, operation: str, *, match_model: bool, match_params: bool
    ) -> None:
        self.log = log
        self.operation = operation
        self._match_model = match_model
        self._match_params = match_params
        self._index: dict[str, deque[str]] | None = None
        self._last: dict[str, str] = {}
        self._requests: dict[str, _Request] = {}
        self._lock = threading.Lock()

    def request(self, request_input: Any, params: dict[str, Any], model: str | None) -> _Request:
        """A request as it is compared: `params` as the start event records them."""
        return _Request(
            operation=self.operation,
            input=request_input,
            tools=params.get("tools"),
            model=model if self._match_model else None,
            params={k: params[k] for k in ANSWER_PARAMETERS if k in params}
            if self._match_params
            else None,
        )

    def asked_in(self, start: StartEvent) -> _Request:
        """The request a recorded run's start event says it was asked."""
        return self.request(_input_of(start), start.params, start.model)

    def holds(self, request: _Request) -> bool:
        """Whether a recorded run answers `request` (without taking it)."""
        with self._lock:
            return request.key() in self._recorded()

    def take(self, request: _Request) -> str | None:
        """The id of the recorded run that answers `request`; None on a miss."""
        key = request.key()
        with self._lock:
            index = self._recorded()
            queue = index.get(key)
            if queue:
                self._last[key] = queue.popleft()
            return self._last.get(key)

    def explain(self, request: _Request) -> str:
        """Why `request` missed: the closest recorded request and how it differs."""
        with self._lock:
            self._recorded()
            recorded = list(self._requests.values())
        if not recorded:
            return f"the event log holds no recorded {self.operation} runs to replay"
        closest = max(recorded, key=lambda r: _likeness(request, r))
        return f"no recorded {self.operation} request matches; the closest differs: " + _difference(
            request, closest
        )

    def refresh(self, *, restart: bool = True) -> None:
        """Read the log's recorded requests again (after more runs were stored); `restart`
        also serves identical requests from their first recorded run again."""
        with self._lock:
            self._index = None
            if restart:
                self._last.clear()

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
                request = self.asked_in(start)
                key = request.key()
                self._index.setdefault(key, deque()).append(summary.run_id)
                self._requests.setdefault(key, request)
        return self._index


class ReplayBackend(BaseModelBackend):
    """A `BaseModelBackend` whose answers come from an event log, never from the network."""

    backend_type = ModelBackendType.REPLAY
    requires_model = False  # model_type "" answers for whatever model was recorded

    def __init__(
        self,
        log: EventLog,
        *,
        operation: Literal["chat", "text_completion", "embeddings"] = "chat",
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
        self._recorded = RecordedRequests(
            log, operation, match_model=model_type is not None, match_params=config is not None
        )

    # -- the twins: a recorded answer, or a miss ------------------------------------------------

    # -- the twins: the recorded run told again through the lifecycle, or a miss ---------------

    def run(self, messages: MessageInput | Iterable[MessageInput], /, **params: Any) -> Any:
        request = self._request(messages, params)
        if request.recording is not None:
            return self._run(request, request.recording)
        assert self.live is not None  # a miss without one has raised
        return self.live.run(messages, **params)

    async def async_run(
        self, messages: MessageInput | Iterable[MessageInput], /, **params: Any
    ) -> Any:
        request = self._request(messages, params)
        if request.recording is not None:
            return await self._arun(request, request.recording)
        assert self.live is not None
        return await self.live.async_run(messages, **params)

    # -- matching (no I/O but the index's first read) ------------------------------------------

    def _request(
        self, messages: MessageInput | Iterable[MessageInput], params: dict[str, Any]
    ) -> _Replaying:
        """The request, with the recorded run that answers it (none on a miss in record mode;
        a miss in strict mode raises `ReplayMissError`)."""
        prompt: str | list[str] | None = None
        match self.operation:
            case "text_completion":
                prompt = prompt_of(messages)
            case "embeddings":
                prompt = texts_to_embed(messages)
        asked = (
            super()._request(messages, params)
            if prompt is None
            else ModelRequest(
                model="",
                messages=[],
                params={**self.config, **params},
                stream=self.stream and self.operation != "embeddings",
            )
        )
        wire = [m.to_openai() for m in asked.messages] if prompt is None else prompt
        matched = self._recorded.request(wire, event_params(asked.params), self.model_type or None)
        recorded = self._recorded.take(matched)
        if recorded is None:
            self._miss(matched)
            return _Replaying(model="", messages=[], params={}, recording=None)
        events = list(self.log.events(recorded))
        original = events[0]
        return _Replaying(
            model=self.model_type or _model_of(events),
            messages=asked.messages,
            params=asked.params,
            stream=asked.stream,
            prompt=prompt,
            recording=Recording(events),
            provider=original.provider if isinstance(original, StartEvent) else "",
        )

    def _start_payload(self, request: ModelRequest) -> dict[str, Any]:
        assert isinstance(request, _Replaying)
        payload = {**super()._start_payload(request), "provider": request.provider}
        if request.prompt is not None:
            payload |= {"messages": None, "prompt": request.prompt}
        return payload

    def _miss(self, request: _Request) -> None:
        """Raise the miss, or in record mode let the live backend answer (and the log record)."""
        if self.mode == "record" and self.live is not None:
            self._recorded.refresh(restart=False)  # what the live run records is found next time
            return
        raise ReplayMissError(self._recorded.explain(request))

    def refresh(self) -> None:
        """Read the log's recorded requests again (after more runs were stored)."""
        self._recorded.refresh()


class Recording:
    """A recorded run as what answers a request: its pieces, then its end or its error.

    It is the `Answerer` of the run it answers, in place of the backend's wire: the lifecycle
    asks it for the whole reply or a stream, and reports what it gives as the backend's run.
    """

    __slots__ = ("_error", "closing", "run_id", "start", "tokens")

    def __init__(self, events: list[Event]) -> None:
        first = events[0] if events else None
        self.start = first if isinstance(first, StartEvent) else None
        self.run_id = first.run_id if first is not None else ""
        self.tokens = [e for e in events if isinstance(e, TokenEvent)]
        ends = [e for e in events if isinstance(e, EndEvent | ErrorEvent)]
        self.closing: EndEvent | ErrorEvent | None = ends[0] if ends else None
        failed = self.closing if isinstance(self.closing, ErrorEvent) else None
        self._error = None if failed is None else rebuild_error(failed)

    @property
    def text(self) -> str:
        return "".join(token.text for token in self.tokens)

    # -- as the answerer of a run --------------------------------------------------------------

    def _generate(self, request: ModelRequest) -> ModelReply:
        match self.closing:
            case ErrorEvent():
                assert self._error is not None  # rebuilt with the closing
                raise self._error
            case EndEvent() as end:
                return ModelReply(
                    end.output or (None if end.vectors is not None else assistant(self.text)),
                    end.finish_reason,
                    usage=end.usage,
                    response_id=end.response_id,
                    response_model=end.response_model,
                    vectors=None if end.vectors is None else unpack(end.vectors),
                )
            case None:  # the recorded run never ended (its process died)
                return ModelReply(assistant(self.text), "interrupted")

    async def _agenerate(self, request: ModelRequest) -> ModelReply:
        return self._generate(request)

    def _open_stream(self, run: Run, request: ModelRequest) -> Source:
        self.raise_request_error()  # as live: before the iterator is handed back
        return DeltaSource(self._stream(), OutputState(run.run_id))

    async def _aopen_stream(self, run: Run, request: ModelRequest) -> AsyncSource:
        self.raise_request_error()
        return AsyncDeltaSource(self._astream(), OutputState(run.run_id))

    def _stream(self) -> Iterator[ModelDelta]:
        yield from self.deltas()
        self.raise_error()

    async def _astream(self) -> AsyncIterator[ModelDelta]:
        for delta in self.deltas():
            yield delta
        self.raise_error()

    # -- its pieces, for any reply form ------------------------------------------------------

    def deltas(self) -> Iterator[ModelDelta]:
        for token in self.tokens:
            yield ModelDelta(text=token.text, tool_call_deltas=token.tool_calls)
        end = self.closing
        if isinstance(end, EndEvent):
            yield ModelDelta(
                finish_reason=end.finish_reason,
                usage=end.usage,
                response_id=end.response_id,
                response_model=end.response_model,
            )

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def raise_request_error(self) -> None:
        if isinstance(self.closing, ErrorEvent) and self.closing.stage == "request":
            self.raise_error()


class _Replaying(ModelRequest, frozen=True, kw_only=True):
    """A request with the recorded run that answers it."""

    recording: Recording | None
    provider: str = ""


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


def replay_input(request: ModelRequest) -> Any:
    """A request's input as replay compares it: its messages in the OpenAI format, or its
    prompt (a completion's, the texts to embed)."""
    if request.prompt is not None:
        return request.prompt
    return [m.to_openai() for m in request.messages]


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
    """Where `request` first differs from the recorded `closest`: which message (or text, or
    the prompt), which of its fields or which parameter, then both sides."""
    left, right = _items(request.input), _items(closest.input)
    for position, (asked, recorded) in enumerate(zip(left, right, strict=False)):
        if asked != recorded:
            return _item_difference(request.input, position, asked, recorded)
    if len(left) != len(right):
        noun = "messages" if _is_conversation(request.input) else "texts"
        longer = left if len(left) > len(right) else right
        extra = longer[min(len(left), len(right))]
        return f"asked {len(left)} {noun}, recorded {len(right)}" + _side_by_side(
            extra if longer is left else None, None if longer is left else extra
        )
    for field in ("tools", "model"):
        asked, recorded = getattr(request, field), getattr(closest, field)
        if asked != recorded:
            return field + _side_by_side(asked, recorded)
    asked_params, recorded_params = request.params or {}, closest.params or {}
    names = sorted(
        name
        for name in asked_params.keys() | recorded_params.keys()
        if asked_params.get(name, _ABSENT) != recorded_params.get(name, _ABSENT)
    )
    if names:
        return f"params {', '.join(map(repr, names))}" + _side_by_side(
            {name: asked_params[name] for name in names if name in asked_params},
            {name: recorded_params[name] for name in names if name in recorded_params},
        )
    return "only in what the match ignores"


_ABSENT = object()
_WINDOW = 100
"""Characters of a long text shown, from a little before where the two sides part."""


def _items(request_input: Any) -> list[Any]:
    return request_input if isinstance(request_input, list) else [request_input]


def _is_conversation(request_input: Any) -> bool:
    return isinstance(request_input, list) and any(isinstance(m, dict) for m in request_input)


def _item_difference(request_input: Any, position: int, asked: Any, recorded: Any) -> str:
    if not isinstance(request_input, list):
        return "prompt" + _side_by_side(asked, recorded)
    if not (isinstance(asked, dict) and isinstance(recorded, dict)):
        return f"text {position}" + _side_by_side(asked, recorded)
    fields = [
        key
        for key in sorted(asked.keys() | recorded.keys())
        if asked.get(key, _ABSENT) != recorded.get(key, _ABSENT)
    ]
    where = f"message {position} ({asked.get('role') or recorded.get('role')})"
    if len(fields) == 1:
        (field,) = fields
        return f"{where} {field}" + _side_by_side(asked.get(field), recorded.get(field))
    return f"{where} {', '.join(fields)}" + _side_by_side(asked, recorded)


def _side_by_side(asked: Any, recorded: Any) -> str:
    """Both sides on lines of their own, aligned: texts of several lines as a unified diff, a
    long line from a little before where the two part."""
    if isinstance(asked, str) and isinstance(recorded, str):
        if "\n" in asked or "\n" in recorded:
            lines = difflib.unified_diff(
                recorded.splitlines(), asked.splitlines(), "recorded", "asked", lineterm="", n=1
            )
            return "".join(f"\n  {line}" for line in lines)
        parted = next(
            (i for i, (a, r) in enumerate(zip(asked, recorded, strict=False)) if a != r),
            min(len(asked), len(recorded)),
        )
        skip = max(0, parted - _WINDOW // 2) if max(len(asked), len(recorded)) > _WINDOW else 0
        asked, recorded = _window(asked, skip), _window(recorded, skip)
    return f"\n  asked:    {_short(asked)}\n  recorded: {_short(recorded)}"


def _window(text: str, skip: int) -> str:
    shown = text[skip : skip + _WINDOW]
    return ("..." if skip else "") + shown + ("..." if len(text) > skip + _WINDOW else "")


def _short(value: Any) -> str:
    if value is None:
        return "(nothing)"
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 2 * _WINDOW else text[: 2 * _WINDOW - 3] + "..."
