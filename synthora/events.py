"""The lifecycle events of a run: the one contract every part of Synthora shares.

Every run emits ``start``, then zero or more ``token``, then exactly one of ``end`` or ``error``,
with ``seq`` counting 0, 1, 2, … without gaps. Events are frozen msgspec Structs tagged by
``kind``: ~0.1 µs to build on the token hot path, and their dict form (`Event.to_dict`,
`event_from_dict`) is exactly what the event log stores and replay reads back.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

import msgspec

from synthora.messages import BaseMessage, ToolCallDelta
from synthora.types.node import Node

__all__ = [
    "EVENT_KINDS",
    "EVENT_SCHEMA_VERSION",
    "EVENT_TYPES",
    "EndEvent",
    "ErrorEvent",
    "Event",
    "EventKind",
    "FailedAttempt",
    "StartEvent",
    "TokenEvent",
    "Usage",
    "event_from_dict",
]

EVENT_SCHEMA_VERSION = 2
"""Bumped whenever a stored event's shape changes; readers upgrade older rows on read
(`synthora.storage.codec`). 2: ``provider`` on start events, ``chunks`` and ``vectors`` on
end events.

A field added with a default that reads an older row correctly needs no bump (older rows
decode to the default, and an older Synthora ignores the field): ``attempts`` and
``failed_attempts`` on end and error events, where an older row means "not retried"."""

Operation = Literal["chat", "text_completion", "embeddings", "invoke_agent", "execute_tool"]
ErrorStage = Literal["request", "stream", "scope"]


class Usage(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """Token counts as the server reported them; a count the server did not give stays None.

    ``input_tokens`` counts every input token, those read from or written to a provider's
    prompt cache included (as the GenAI conventions ask); the cache counts say how many."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class FailedAttempt(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One HTTP attempt of a run's request that failed, retried by the SDK or not.

    ``error_type`` follows OpenTelemetry's HTTP conventions for ``error.type``: the status code
    as a string when the server answered (``"503"``), else the name of the transport's
    exception (``ConnectError``). ``ts`` is when the attempt failed, in nanoseconds."""

    ts: int
    error_type: str
    status_code: int | None = None


class _Envelope(msgspec.Struct, frozen=True, gc=False, kw_only=True, tag_field="kind"):
    """The fields every event carries; ``(run_id, seq)`` is an event's identity."""

    kind: ClassVar[str]
    run_id: str
    seq: int
    ts: int
    node: Node
    parent_run_id: str | None = None
    trace_id: str = ""
    span_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The event as plain JSON-ready builtins, ``kind`` included: the stored form."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result


class StartEvent(_Envelope, frozen=True, gc=False, kw_only=True, tag="start"):
    """A run began: what was asked, of which model, by whom. Secrets are already removed.
    ``provider`` names the model's provider as the GenAI conventions do (``openai``)."""

    kind: ClassVar[str] = "start"
    operation: Operation
    provider: str = ""
    service: str = ""
    backend: str = ""
    model: str = ""
    stream: bool = False
    params: dict[str, Any] = {}
    messages: tuple[BaseMessage, ...] | None = None
    prompt: str | list[str] | None = None
    server_address: str | None = None
    server_port: int | None = None
    trace_sampled: bool | None = None
    """Whether the run's trace was sampled, and so exported: only then does the envelope carry
    its ids. None when the run was not traced (or was logged before this was recorded)."""


class TokenEvent(_Envelope, frozen=True, gc=False, kw_only=True, tag="token"):
    """A piece of output: a text delta and/or tool-call deltas; `index` counts from 0."""

    kind: ClassVar[str] = "token"
    index: int
    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()


class EndEvent(_Envelope, frozen=True, gc=False, kw_only=True, tag="end"):
    """The run finished; ``finish_reason`` is ``interrupted`` when the consumer stopped early,
    ``truncated`` when the server ended the stream without finishing it (no end marker, no
    finish reason). ``chunks`` counts the output chunks (token events) the run produced. An
    embeddings run has no output message but ``vectors``: one a text, packed
    (`synthora.models.vectors`). ``attempts`` counts the HTTP requests the run sent (1 unless
    one was retried), and ``failed_attempts`` says how each one before the last failed."""

    kind: ClassVar[str] = "end"
    output: BaseMessage | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    response_id: str | None = None
    response_model: str | None = None
    duration_s: float = 0.0
    time_to_first_token_s: float | None = None
    chunks: int = 0
    vectors: tuple[bytes, ...] | None = None
    attempts: int = 1
    failed_attempts: tuple[FailedAttempt, ...] = ()


class ErrorEvent(_Envelope, frozen=True, gc=False, kw_only=True, tag="error"):
    """The run failed; the caller received the original exception. ``attempts`` and
    ``failed_attempts`` as on `EndEvent`: when every attempt failed, each is listed."""

    kind: ClassVar[str] = "error"
    error_type: str
    message: str
    status_code: int | None = None
    code: str | None = None
    stage: ErrorStage = "request"
    partial_output: BaseMessage | None = None
    duration_s: float = 0.0
    attempts: int = 1
    failed_attempts: tuple[FailedAttempt, ...] = ()


Event = StartEvent | TokenEvent | EndEvent | ErrorEvent
"""Any lifecycle event; ``ev.kind`` tells which."""

EventKind = Literal["start", "token", "end", "error"]
"""The kinds, in a run's order. Code that treats kinds differently matches on them and ends
with `typing.assert_never`, so a new kind is a type error wherever it needs handling."""

EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
EVENT_TYPES: dict[str, type[Event]] = {cls.kind: cls for cls in get_args(Event)}
"""The event class of each kind: the one registry of them."""
assert tuple(EVENT_TYPES) == EVENT_KINDS, "EventKind and the Event union must name the same kinds"

_from_builtins_type: Any = Event


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from `Event.to_dict` output: ``event_from_dict(ev.to_dict()) == ev``."""
    event: Event = msgspec.convert(data, _from_builtins_type)
    return event
