"""Events to rows and back, without I/O.

A write batch becomes rows for ``synthora_events`` (a run's consecutive token events packed into
one row) and upserts for the ``synthora_runs`` projection; a row read back becomes the events it
holds, equal to what the bus delivered. A token pack is msgpack: the envelope once, then per
token a timestamp delta and the text, so a token costs its text plus a few bytes.

What cannot be stored as given is stored as close as it can be, never dropped: lone surrogates
become U+FFFD, NaN becomes null (JSON has neither), and on PostgreSQL a NUL character becomes
U+FFFD (JSONB cannot hold one).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec

from synthora.events import (
    EVENT_SCHEMA_VERSION,
    EndEvent,
    ErrorEvent,
    Event,
    StartEvent,
    TokenEvent,
    event_from_dict,
)
from synthora.messages import BaseMessage, ToolCall, ToolCallDelta
from synthora.storage.errors import SchemaVersionError
from synthora.types.node import Node

__all__ = [
    "RunRows",
    "batch_rows",
    "events_from_row",
    "json_serializer",
    "without_content",
]

INTERRUPTED = "interrupted"


class TokenPack(msgspec.Struct, array_like=True, frozen=True):
    """A run's consecutive token events as stored; ``seq`` and ``index`` count up by one."""

    node: Node
    parent_run_id: str | None
    trace_id: str
    span_id: str
    first_index: int
    ts_deltas: list[int]
    texts: list[str]
    tool_calls: list[tuple[int, tuple[ToolCallDelta, ...]]] = []


_encode_pack = msgspec.msgpack.Encoder().encode
_decode_pack = msgspec.msgpack.Decoder(TokenPack).decode


class _PackBuilder:
    """Collects a run's consecutive tokens of one batch into one row."""

    __slots__ = ("first", "last", "texts", "tool_calls", "ts")

    def __init__(self, first: TokenEvent) -> None:
        self.first = self.last = first
        self.ts = [0]
        self.texts = [first.text]
        self.tool_calls: list[tuple[int, tuple[ToolCallDelta, ...]]] = []
        if first.tool_calls:
            self.tool_calls.append((0, first.tool_calls))

    def add(self, event: TokenEvent) -> bool:
        last = self.last
        if event.seq != last.seq + 1 or event.index != last.index + 1:
            return False
        if event.tool_calls:
            self.tool_calls.append((len(self.texts), event.tool_calls))
        self.ts.append(event.ts - last.ts)
        self.texts.append(event.text)
        self.last = event
        return True

    def row(self) -> dict[str, Any]:
        first = self.first
        pack = TokenPack(
            node=first.node,
            parent_run_id=first.parent_run_id,
            trace_id=first.trace_id,
            span_id=first.span_id,
            first_index=first.index,
            ts_deltas=self.ts,
            texts=self.texts,
            tool_calls=self.tool_calls,
        )
        try:
            encoded = _encode_pack(pack)
        except UnicodeEncodeError:
            encoded = _encode_pack(_sanitized(pack))
        return {
            **_envelope_columns(first),
            "seq": first.seq,
            "last_seq": self.last.seq,
            "kind": "tokens",
            "body": None,
            "pack": encoded,
        }


class RunRows(msgspec.Struct):
    """What one write batch does to the database, in order."""

    events: list[dict[str, Any]]
    started: list[dict[str, Any]]
    ended: list[dict[str, Any]]


def batch_rows(batch: Iterable[Event]) -> RunRows:
    """The rows for a batch of events, in emission order."""
    rows: list[dict[str, Any] | _PackBuilder] = []
    packs: dict[str, _PackBuilder] = {}
    started: list[dict[str, Any]] = []
    ended: list[dict[str, Any]] = []
    for event in batch:
        if isinstance(event, TokenEvent):
            builder = packs.get(event.run_id)
            if builder is None or not builder.add(event):
                builder = packs[event.run_id] = _PackBuilder(event)
                rows.append(builder)
            continue
        packs.pop(event.run_id, None)
        rows.append(
            {
                **_envelope_columns(event),
                "seq": event.seq,
                "last_seq": event.seq,
                "kind": event.kind,
                "body": event.to_dict(),
                "pack": None,
            }
        )
        if isinstance(event, StartEvent):
            started.append(_started_run(event))
        else:
            ended.append(_ended_run(event))
    return RunRows(
        events=[r.row() if isinstance(r, _PackBuilder) else r for r in rows],
        started=started,
        ended=ended,
    )


def events_from_row(row: Mapping[str, Any]) -> Iterator[Event]:
    """The events a stored row holds, in seq order."""
    if row["kind"] != "tokens":
        yield event_from_dict(_upcast(row["body"], row["schema_version"]))
        return
    pack = _decode_pack(row["pack"])
    calls = dict(pack.tool_calls)
    ts = row["ts"]
    run_id, seq = row["run_id"], row["seq"]
    for offset, (delta, text) in enumerate(zip(pack.ts_deltas, pack.texts, strict=True)):
        ts += delta
        yield TokenEvent(
            run_id=run_id,
            seq=seq + offset,
            ts=ts,
            node=pack.node,
            parent_run_id=pack.parent_run_id,
            trace_id=pack.trace_id,
            span_id=pack.span_id,
            index=pack.first_index + offset,
            text=text,
            tool_calls=calls.get(offset, ()),
        )


def _upcast(body: dict[str, Any], version: int) -> dict[str, Any]:
    """Older stored events, upgraded to the current shape (none yet: version 1 is the first)."""
    if version > EVENT_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"a stored event has schema version {version}, newer than this Synthora "
            f"({EVENT_SCHEMA_VERSION}); upgrade synthora to read it"
        )
    return body


def _envelope_columns(event: Event) -> dict[str, Any]:
    node = event.node
    return {
        "run_id": event.run_id,
        "ts": event.ts,
        "schema_version": EVENT_SCHEMA_VERSION,
        "node_name": node.name,
        "node_type": node.type.value,
        "node_path": node.path,
        "parent_run_id": event.parent_run_id,
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "model": event.model if isinstance(event, StartEvent) else None,
    }


def _utc(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC)


def _run_identity(event: Event) -> dict[str, Any]:
    node = event.node
    return {
        "run_id": event.run_id,
        "parent_run_id": event.parent_run_id,
        "node_name": node.name,
        "node_type": node.type.value,
        "node_path": node.path,
        "trace_id": event.trace_id,
        "span_id": event.span_id,
    }


def _started_run(event: StartEvent) -> dict[str, Any]:
    return {
        **_run_identity(event),
        "status": "running",
        "operation": event.operation,
        "service": event.service,
        "backend": event.backend,
        "model": event.model,
        "stream": event.stream,
        "started_at": _utc(event.ts),
    }


def _ended_run(event: EndEvent | ErrorEvent) -> dict[str, Any]:
    """The run's closing columns; the identity columns only matter if its start was not stored."""
    ended = {
        **_run_identity(event),
        "operation": "",
        "started_at": _utc(event.ts - int(event.duration_s * 1e9)),
        "ended_at": _utc(event.ts),
        "duration_s": event.duration_s,
        "time_to_first_token_s": None,
        "input_tokens": None,
        "output_tokens": None,
        "finish_reason": None,
        "error_type": None,
        "error_message": None,
        "status_code": None,
    }
    if isinstance(event, EndEvent):
        usage = event.usage
        ended |= {
            "status": INTERRUPTED if event.finish_reason == INTERRUPTED else "ok",
            "time_to_first_token_s": event.time_to_first_token_s,
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "finish_reason": event.finish_reason,
        }
    else:
        ended |= {
            "status": "error",
            "error_type": event.error_type,
            "error_message": event.message,
            "status_code": event.status_code,
        }
    return ended


CLOSING_COLUMNS = (
    "status",
    "ended_at",
    "duration_s",
    "time_to_first_token_s",
    "input_tokens",
    "output_tokens",
    "finish_reason",
    "error_type",
    "error_message",
    "status_code",
)
"""The ``synthora_runs`` columns an end or error event sets on its run."""


# -- content control ---------------------------------------------------------------------------


def without_content(event: Event) -> Event:
    """The event with every message text, prompt and tool argument removed."""
    replace = msgspec.structs.replace
    if isinstance(event, StartEvent):
        messages = None if event.messages is None else tuple(map(_blank, event.messages))
        return replace(event, messages=messages, prompt=None)
    if isinstance(event, TokenEvent):
        calls = tuple(replace(c, arguments="") for c in event.tool_calls)
        return replace(event, text="", tool_calls=calls)
    if isinstance(event, EndEvent):
        return replace(event, output=_blank(event.output))
    return replace(event, partial_output=_blank(event.partial_output))


def _blank(message: BaseMessage | None) -> Any:
    if message is None:
        return None
    calls = tuple(ToolCall(id=c.id, name=c.name, type=c.type) for c in message.tool_calls)
    return msgspec.structs.replace(message, content=None, tool_calls=calls)


# -- JSON for the body column ------------------------------------------------------------------


def json_serializer(dialect: str) -> Callable[[Any], str]:
    """The engine's JSON encoder: msgspec, with the fallbacks the module docstring lists.

    Module-level functions, not a closure: psycopg caches its JSON dumpers by function.
    """
    return _to_jsonb if dialect == "postgresql" else _to_json


def _to_json(value: Any) -> str:
    try:
        return msgspec.json.encode(value).decode()
    except UnicodeEncodeError:
        return msgspec.json.encode(_sanitized(value)).decode()


def _to_jsonb(value: Any) -> str:
    text = _to_json(value)
    return text.replace("\\u0000", "\\ufffd") if "\\u0000" in text else text


def _sanitized(value: Any) -> Any:
    """A copy whose strings are valid UTF-8 (lone surrogates replaced)."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, msgspec.Struct):
        return _sanitized(msgspec.to_builtins(value))
    if isinstance(value, Mapping):
        return {_sanitized(k): _sanitized(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitized(v) for v in value]
    return value
