"""Events to rows and back, without I/O.

A write batch becomes rows for ``synthora_events`` (a run's consecutive token events packed into
one row) and upserts for the ``synthora_runs`` projection; a row read back becomes the events it
holds, equal to what the bus delivered. A token pack is msgpack: the envelope once, then per
token a timestamp delta and the text, so a token costs its text plus a few bytes.

What cannot be stored as given is stored as close as it can be, never dropped: lone surrogates
become U+FFFD, NaN becomes null (JSON has neither). On PostgreSQL, whose JSONB cannot hold a NUL
character, a body's strings holding one are stored escaped (`synthora.storage.schema.escape_nul`)
and read back as they were.
"""

from __future__ import annotations

import datetime
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Literal

import msgspec
from sqlalchemy import BigInteger, Integer, String, Table
from sqlalchemy.types import TypeEngine

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
from synthora.runs import INTERRUPTED, TRUNCATED
from synthora.storage.errors import SchemaVersionError, error_line
from synthora.storage.schema import NUL_ESCAPE, escape_nul, events, runs, unescape_nul
from synthora.types.node import Node

__all__ = [
    "EVENT_COLUMNS",
    "RUN_COLUMNS",
    "RunRows",
    "Unstorable",
    "batch_rows",
    "events_from_row",
    "group_rows",
    "json_deserializer",
    "json_serializer",
    "without_content",
]

EVENT_COLUMNS = tuple(column.name for column in events.c if column.name != "position")
"""Every row `batch_rows` makes for ``synthora_events`` has exactly these keys."""
RUN_COLUMNS = tuple(column.name for column in runs.c)
"""Every ``synthora_runs`` row it makes, started or ended, has exactly these keys."""

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
    "attempts",
)
"""The ``synthora_runs`` columns an end or error event sets on its run."""

_RUNNING: dict[str, Any] = {**dict.fromkeys(CLOSING_COLUMNS), "status": "running"}
_UNSTARTED: dict[str, Any] = {
    "operation": "",
    "service": "",
    "backend": "",
    "model": "",
    "stream": False,
}


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


_UNENCODABLE = (TypeError, ValueError, OverflowError)
"""What encoding a value msgspec, the standard library or a column cannot hold raises."""

_encode_pack = msgspec.msgpack.Encoder().encode
_decode_pack = msgspec.msgpack.Decoder(TokenPack).decode


class Unstorable(msgspec.Struct, frozen=True, gc=False):
    """An event that could not be stored as given, and what was stored instead.

    ``stored_as`` is ``"repr"`` (values msgspec cannot encode were stored as their ``repr``),
    ``"without content"`` (its message text was left out), or None: it was set aside, not stored.
    """

    event: Event
    error: str
    stored_as: Literal["repr", "without content"] | None


class _PackBuilder:
    """Collects a run's consecutive tokens of one batch into one row."""

    __slots__ = ("tokens",)

    def __init__(self, first: TokenEvent) -> None:
        self.tokens = [first]

    def add(self, event: TokenEvent) -> bool:
        last = self.tokens[-1]
        if event.seq != last.seq + 1 or event.index != last.index + 1:
            return False
        self.tokens.append(event)
        return True

    def rows(self, unstorable: list[Unstorable]) -> list[dict[str, Any]]:
        """One packed row; should the pack not encode, a row per token, each stored as it can be."""
        tokens = self.tokens
        first = tokens[0]
        previous = first.ts
        deltas: list[int] = []
        for token in tokens:
            deltas.append(token.ts - previous)
            previous = token.ts
        pack = TokenPack(
            node=first.node,
            parent_run_id=first.parent_run_id,
            trace_id=first.trace_id,
            span_id=first.span_id,
            first_index=first.index,
            ts_deltas=deltas,
            texts=[token.text for token in tokens],
            tool_calls=[(i, t.tool_calls) for i, t in enumerate(tokens) if t.tool_calls],
        )
        try:
            try:
                encoded = _encode_pack(pack)
            except UnicodeEncodeError:
                encoded = _encode_pack(_sanitized(pack))
            return [_event_row(first, "tokens", tokens[-1].seq, None, encoded)]
        except _UNENCODABLE:
            return [row for token in tokens if (row := _token_row(token, unstorable)) is not None]


class RunRows(msgspec.Struct):
    """What one write batch does to the database, in order, and what it could not store."""

    events: list[dict[str, Any]]
    started: list[dict[str, Any]]
    ended: list[dict[str, Any]]
    count: int = 0
    """How many events the rows hold (a packed row holds many)."""
    unstorable: list[Unstorable] = []

    def one_by_one(self) -> Iterator[RunRows]:
        """Each event row with the projection row it implies: the unit a refused batch is
        retried in, so one row the database refuses costs only its own event, and a run's
        projection never disagrees with its stored events."""
        started = {row["run_id"]: row for row in self.started}
        ended = {row["run_id"]: row for row in self.ended}
        for row in self.events:
            run_id = row["run_id"]
            match row["kind"]:
                case "start":
                    opened = started.get(run_id) or ended[run_id] | _RUNNING
                    yield RunRows([row], [opened], [], 1)
                case "end" | "error":
                    yield RunRows([row], [], [ended[run_id]], 1)
                case "tokens" | "token":
                    yield RunRows([row], [], [], row["last_seq"] - row["seq"] + 1)
                case kind:
                    raise AssertionError(f"unknown row kind {kind!r}")


def batch_rows(batch: Iterable[Event]) -> RunRows:
    """The rows for a batch of events, in emission order; a run started and ended within the
    batch gets one projection row, written once.

    An event that cannot be encoded as given is stored as close as it can be (see `Unstorable`)
    or, failing that, left out; either way it is listed in ``unstorable`` and the rest of the
    batch is unaffected.
    """
    rows: list[dict[str, Any] | _PackBuilder] = []
    packs: dict[str, _PackBuilder] = {}
    started: dict[str, dict[str, Any]] = {}
    ended: list[dict[str, Any]] = []
    unstorable: list[Unstorable] = []
    for event in batch:
        if isinstance(event, TokenEvent):
            builder = packs.get(event.run_id)
            if builder is None or not builder.add(event):
                builder = packs[event.run_id] = _PackBuilder(event)
                rows.append(builder)
            continue
        packs.pop(event.run_id, None)
        try:
            row = _body_row(event, unstorable)
            if row is None:
                continue
            if isinstance(event, StartEvent):
                started[event.run_id] = _started_run(event)
            else:  # one row, one upsert, for a run started and ended in this batch
                closing = _closing_columns(event)
                run = started.pop(event.run_id, None) or _unstarted_run(event)
                run.update(closing)
                ended.append(run)
        except _UNENCODABLE as error:  # e.g. a timestamp past year 9999: only this event
            unstorable.append(Unstorable(event, error_line(error), None))
            continue
        rows.append(row)
    flat: list[dict[str, Any]] = []
    for made in rows:
        if isinstance(made, _PackBuilder):
            flat += made.rows(unstorable)
        else:
            flat.append(made)
    count = sum(row["last_seq"] - row["seq"] + 1 for row in flat)
    return RunRows(flat, list(started.values()), ended, count, unstorable)


def group_rows(groups: Iterable[list[Event]]) -> RunRows:
    """The rows of several groups, each made on its own by `batch_rows`: whoever commits a
    journaled group (its process's writer, the committer process, or the next process after a
    crash) then stores the same rows, and the writes are idempotent on them."""
    rows = RunRows(events=[], started=[], ended=[], count=0, unstorable=[])
    for group in groups:
        made = batch_rows(group)
        rows.events += made.events
        rows.started += made.started
        rows.ended += made.ended
        rows.count += made.count
        rows.unstorable += made.unstorable
    return rows


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


def _body_row(event: Event, unstorable: list[Unstorable]) -> dict[str, Any] | None:
    """`event` as a row with its dict in ``body``, as close to it as can be encoded."""
    try:
        if isinstance(event, EndEvent | ErrorEvent) and not math.isfinite(event.duration_s):
            raise ValueError(f"duration_s is {event.duration_s}, which JSON cannot hold")
        body = event.to_dict()
    except _UNENCODABLE as error:
        found = _storable_body(event, error)
        unstorable.append(found[1])
        if found[0] is None:
            return None
        body = found[0]
    return _event_row(event, event.kind, event.seq, body, None)


def _token_row(token: TokenEvent, unstorable: list[Unstorable]) -> dict[str, Any] | None:
    """A token that cannot ride in a pack, as a row of its own, or set aside."""
    try:
        return _body_row(token, unstorable)
    except _UNENCODABLE as error:
        unstorable.append(Unstorable(token, error_line(error), None))
        return None


def _storable_body(event: Event, error: Exception) -> tuple[dict[str, Any] | None, Unstorable]:
    """The closest body that encodes and reads back: unencodable values as their ``repr``,
    else the event without its content, else none."""
    reason = error_line(error)
    attempts: tuple[tuple[Literal["repr", "without content"], Callable[[], Any]], ...] = (
        ("repr", lambda: msgspec.to_builtins(event, enc_hook=repr)),
        ("without content", lambda: without_content(event).to_dict()),
    )
    for stored_as, attempt in attempts:
        try:
            body: dict[str, Any] = attempt()
            event_from_dict(msgspec.json.decode(_to_json(body)))  # reads back as stored
        except _UNENCODABLE:
            continue
        return body, Unstorable(event, reason, stored_as)
    return None, Unstorable(event, reason, None)


_NODE_COLUMNS = ("node_name", "node_type", "node_path")
"""Fitted once per node (`_node_columns`), not in every row."""
_OWN_WORDS = ("kind", "status")
"""Columns that hold only this module's own words (event kinds, run statuses): they fit."""


def _text_limits(table: Table) -> dict[str, int]:
    """The bounded text columns of `table` that may be shortened to fit (ids never are)."""
    return {
        column.name: column.type.length
        for column in table.c
        if isinstance(column.type, String)
        and column.type.length
        and not column.name.endswith("_id")
    }


def _open_texts(
    limits: dict[str, int], among: Callable[[str], bool] = lambda name: True
) -> tuple[tuple[str, int], ...]:
    """The bounded text columns a row must fit itself: any but the node's and our own words."""
    fitted_elsewhere = (*_NODE_COLUMNS, *_OWN_WORDS)
    return tuple(
        (name, limit)
        for name, limit in limits.items()
        if name not in fitted_elsewhere and among(name)
    )


def _count_columns(table: Table) -> tuple[str, ...]:
    """The nullable 32-bit integer columns of `table`: counts and statuses a server reports."""
    return tuple(
        column.name
        for column in table.c
        if column.nullable and type(column.type) is Integer and not column.primary_key
    )


_INT4 = range(-(2**31), 2**31)
_INT8 = range(-(2**63), 2**63)


def _integer_ranges(table: Table) -> tuple[tuple[str, range], ...]:
    """The non-null integer columns of `table` a row gives, with the values each can hold."""
    sizes: dict[type[TypeEngine[int]], range] = {Integer: _INT4, BigInteger: _INT8}
    return tuple(
        (column.name, sizes[type(column.type)])
        for column in table.c
        if type(column.type) in sizes and not column.nullable and not column.primary_key
    )


_EVENT_LIMITS = _text_limits(events)
_RUN_LIMITS = _text_limits(runs)
_NODE_LIMITS = {
    name: min(limits[name] for limits in (_EVENT_LIMITS, _RUN_LIMITS) if name in limits)
    for name in _NODE_COLUMNS
    if name in _EVENT_LIMITS or name in _RUN_LIMITS
}
_EVENT_TEXTS = _open_texts(_EVENT_LIMITS)
_EVENT_INTEGERS = _integer_ranges(events)
_STARTED_TEXTS = _open_texts(_RUN_LIMITS, lambda name: name not in CLOSING_COLUMNS)
_CLOSING_TEXTS = _open_texts(_RUN_LIMITS, lambda name: name in CLOSING_COLUMNS)
_RUN_COUNTS = _count_columns(runs)


def _fitted(
    row: dict[str, Any], texts: tuple[tuple[str, int], ...], counts: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`row` made to fit its columns on every database: a text longer than its column is cut
    to it, a count outside a 32-bit integer (no server counts that far) is stored as NULL. The
    event's body keeps the exact values; only the indexed columns are fitted."""
    for name, limit in texts:
        value = row[name]
        if value is not None and len(value) > limit:
            row[name] = value[:limit]
    for name in counts:
        value = row[name]
        if value is not None and value not in _INT4:
            row[name] = None
    return row


def _check_integers(row: dict[str, Any]) -> None:
    """Raise OverflowError if an event row's seq or timestamp does not fit its column, which
    only a hand-made event's can fail to do (an edited export, say)."""
    for name, bounds in _EVENT_INTEGERS:
        if row[name] not in bounds:
            raise OverflowError(f"{name} {row[name]} is beyond what the log can store")


def _upcast(body: dict[str, Any], version: int) -> dict[str, Any]:
    """Older stored events, upgraded to the current shape."""
    if version > EVENT_SCHEMA_VERSION:
        raise SchemaVersionError(
            f"a stored event has schema version {version}, newer than this Synthora "
            f"({EVENT_SCHEMA_VERSION}); upgrade synthora to read it"
        )
    if version < 2:
        body = upcast_v1_v2(body)
    return body


def upcast_v1_v2(body: dict[str, Any]) -> dict[str, Any]:
    """Version 1 knew only OpenAI backends, and an end's seq was its run's chunk count + 1."""
    match body.get("kind"):
        case "start" if "provider" not in body:
            backend = body.get("backend", "")
            return {**body, "provider": "openai" if backend.startswith("openai") else ""}
        case "end" if "chunks" not in body:
            return {**body, "chunks": max(0, body["seq"] - 1)}
        case _:
            return body


@functools.lru_cache(maxsize=1024)
def _node_columns(node: Node) -> tuple[str, str, str]:
    """Name, type and path of a node, fitted to their columns: every event of a run carries
    the same node, so this is done once, not in every row."""
    fitted = _fitted(
        {"node_name": node.name, "node_type": node.type.value, "node_path": node.path},
        tuple(_NODE_LIMITS.items()),
    )
    return fitted["node_name"], fitted["node_type"], fitted["node_path"]


def _event_row(
    event: Event, kind: str, last_seq: int, body: dict[str, Any] | None, pack: bytes | None
) -> dict[str, Any]:
    """A ``synthora_events`` row: `event`'s envelope, from its seq to `last_seq`."""
    name, type_, path = _node_columns(event.node)
    row = _fitted(
        {
            "run_id": event.run_id,
            "seq": event.seq,
            "last_seq": last_seq,
            "kind": kind,
            "ts": event.ts,
            "schema_version": EVENT_SCHEMA_VERSION,
            "node_name": name,
            "node_type": type_,
            "node_path": path,
            "parent_run_id": event.parent_run_id,
            "trace_id": event.trace_id,
            "span_id": event.span_id,
            "model": event.model if isinstance(event, StartEvent) else None,
            "body": body,
            "pack": pack,
        },
        _EVENT_TEXTS,
    )
    _check_integers(row)
    return row


def _utc(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC)


def _run_identity(event: Event) -> dict[str, Any]:
    name, type_, path = _node_columns(event.node)
    return {
        "run_id": event.run_id,
        "parent_run_id": event.parent_run_id,
        "node_name": name,
        "node_type": type_,
        "node_path": path,
        "trace_id": event.trace_id,
        "span_id": event.span_id,
    }


def _started_run(event: StartEvent) -> dict[str, Any]:
    row = _run_identity(event)
    row.update(_RUNNING)
    row["operation"] = event.operation
    row["service"] = event.service
    row["backend"] = event.backend
    row["model"] = event.model
    row["stream"] = event.stream
    row["started_at"] = _utc(event.ts)
    return _fitted(row, _STARTED_TEXTS)


def _unstarted_run(event: EndEvent | ErrorEvent) -> dict[str, Any]:
    """The row of a run whose start is not in the batch, before its closing columns: the
    other columns only matter if its start was never stored."""
    duration = _duration(event)
    row = _run_identity(event)
    row.update(_UNSTARTED)
    row["started_at"] = _utc(event.ts - int(duration * 1e9) if duration else event.ts)
    return row


def _duration(event: EndEvent | ErrorEvent) -> float | None:
    """The run's duration as the column holds it: NaN or infinity (a hand-made event's) as NULL."""
    return event.duration_s if math.isfinite(event.duration_s) else None


def _status_of(finish_reason: str | None) -> str:
    """An ended run's status: ``ok``, unless the consumer left (``interrupted``) or the server
    ended the stream without finishing it (``truncated``)."""
    return finish_reason if finish_reason in (INTERRUPTED, TRUNCATED) else "ok"


def _closing_columns(event: EndEvent | ErrorEvent) -> dict[str, Any]:
    """The `CLOSING_COLUMNS` an end or error sets on its run."""
    if isinstance(event, EndEvent):
        usage = event.usage
        closing: dict[str, Any] = {
            "status": _status_of(event.finish_reason),
            "time_to_first_token_s": event.time_to_first_token_s,
            "input_tokens": usage.input_tokens if usage else None,
            "output_tokens": usage.output_tokens if usage else None,
            "finish_reason": event.finish_reason,
            "error_type": None,
            "error_message": None,
            "status_code": None,
        }
    else:
        closing = {
            "status": "error",
            "time_to_first_token_s": None,
            "input_tokens": None,
            "output_tokens": None,
            "finish_reason": None,
            "error_type": event.error_type,
            "error_message": event.message,
            "status_code": event.status_code,
        }
    closing["ended_at"] = _utc(event.ts)
    closing["duration_s"] = _duration(event)
    closing["attempts"] = event.attempts
    return _fitted(closing, _CLOSING_TEXTS, _RUN_COUNTS)


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
        return replace(event, output=_blank(event.output), vectors=None)
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


def json_deserializer(dialect: str) -> Callable[[str | bytes], Any]:
    """The engine's JSON decoder, which undoes what `json_serializer` escaped."""
    return _from_jsonb if dialect == "postgresql" else msgspec.json.decode


def _to_json(value: Any) -> str:
    try:
        return msgspec.json.encode(value).decode()
    except UnicodeEncodeError:
        return msgspec.json.encode(_sanitized(value)).decode()


def _to_jsonb(value: Any) -> str:
    text = _to_json(value)
    # JSON writes NUL as \u0000, a text found also in a user's literal "\u0000" (written
    # \\u0000), which escape_nul leaves as it is
    if "\\u0000" in text or NUL_ESCAPE in text:
        return _to_json(_each_string(value, escape_nul))
    return text


_ESCAPE_BYTES = NUL_ESCAPE.encode()


def _from_jsonb(data: str | bytes) -> Any:
    """psycopg hands over bytes; other drivers may hand over text."""
    value = msgspec.json.decode(data)
    escaped = _ESCAPE_BYTES in data if isinstance(data, bytes) else NUL_ESCAPE in data
    return _each_string(value, unescape_nul) if escaped else value


def _sanitized(value: Any) -> Any:
    """A copy whose strings are valid UTF-8 (lone surrogates replaced)."""
    return _each_string(value, _valid_utf8)


def _valid_utf8(text: str) -> str:
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _each_string(value: Any, change: Callable[[str], str]) -> Any:
    """A copy of `value` (as builtins) with `change` applied to every string, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, msgspec.Struct):
        return _each_string(msgspec.to_builtins(value), change)
    if isinstance(value, Mapping):
        return {_each_string(k, change): _each_string(v, change) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_each_string(v, change) for v in value]
    return value
