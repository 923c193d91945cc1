"""Message content in telemetry: opt-in, in the GenAI JSON shape, and never unbounded.

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` chooses where content goes:
``NO_CONTENT`` (the default), ``SPAN_ONLY``, ``EVENT_ONLY`` or ``SPAN_AND_EVENT``, in any case;
the older ``true`` means both. Content becomes the ``gen_ai.input.messages`` /
``gen_ai.output.messages`` / ``gen_ai.system_instructions`` JSON. A 128k-token context is ~500 KB,
more than Jaeger shows well, so each attribute is capped: the longest texts are cut first, with a
marker saying how much was cut, and the JSON always stays valid.
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Sequence
from typing import Any

from synthora.events import StartEvent
from synthora.messages import BaseMessage, ToolCall
from synthora.telemetry.semconv import CAPTURE_CONTENT_ENV
from synthora.types.enums import MessageRole

__all__ = ["DEFAULT_MAX_CHARS", "CaptureMode", "capped_json", "input_content", "output_content"]

DEFAULT_MAX_CHARS = 65_536
"""The size cap of one content attribute, in characters."""

_SYSTEM_ROLES = (MessageRole.SYSTEM, MessageRole.DEVELOPER)


class CaptureMode(enum.Flag):
    """Where message content is recorded."""

    NO_CONTENT = 0
    SPAN_ONLY = enum.auto()
    EVENT_ONLY = enum.auto()
    SPAN_AND_EVENT = SPAN_ONLY | EVENT_ONLY

    @classmethod
    def from_environment(cls) -> CaptureMode:
        value = os.environ.get(CAPTURE_CONTENT_ENV, "").strip().upper()
        if value == "TRUE":
            return cls.SPAN_AND_EVENT
        return cls.__members__.get(value, cls.NO_CONTENT)


Messages = list[dict[str, Any]]


def input_content(start: StartEvent) -> tuple[Messages, Messages]:
    """(system instructions as parts, input messages) of a run, in the GenAI JSON shape."""
    if start.messages is None:
        prompt = start.prompt if isinstance(start.prompt, str) else "\n".join(start.prompt or ())
        return [], [{"role": "user", "parts": [_text(prompt)]}]
    system = [_text(m.text) for m in start.messages if m.role in _SYSTEM_ROLES]
    chat = [_message(m) for m in start.messages if m.role not in _SYSTEM_ROLES]
    return system, chat


def output_content(message: BaseMessage | None, finish_reason: str | None) -> Messages:
    if message is None:
        return []
    return [{**_message(message), "finish_reason": finish_reason or ""}]


def _message(message: BaseMessage) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if message.role == MessageRole.TOOL:
        parts.append(
            {"type": "tool_call_response", "id": message.tool_call_id, "response": message.text}
        )
    elif message.text:
        parts.append(_text(message.text))
    parts.extend(_tool_call(call) for call in message.tool_calls)
    return {"role": message.role.value, "parts": parts}


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def _tool_call(call: ToolCall) -> dict[str, Any]:
    try:
        arguments: Any = json.loads(call.arguments) if call.arguments else {}
    except ValueError:
        arguments = call.arguments
    return {"type": "tool_call", "id": call.id, "name": call.name, "arguments": arguments}


def capped_json(messages: Sequence[dict[str, Any]], max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """`messages` as JSON of at most `max_chars`: long texts cut first, then oldest messages."""
    text = json.dumps(list(messages), ensure_ascii=False)
    if len(text) <= max_chars:
        return text
    limit = max_chars
    while limit >= 64:
        limit //= 2
        text = json.dumps([_cut_texts(m, limit) for m in messages], ensure_ascii=False)
        if len(text) <= max_chars:
            return text
    kept = [_cut_texts(m, 64) for m in messages]
    dropped = 0
    while kept and len(json.dumps(kept, ensure_ascii=False)) > max_chars - 100:
        kept.pop(0)
        dropped += 1
    marker = {"role": "user", "parts": [_text(f"[{dropped} earlier messages truncated]")]}
    return json.dumps([marker, *kept], ensure_ascii=False)


def _cut_texts(message: dict[str, Any], limit: int) -> dict[str, Any]:
    parts = message.get("parts")
    if parts is None:  # a bare part (system instructions)
        return _cut_part(message, limit)
    return {**message, "parts": [_cut_part(part, limit) for part in parts]}


def _cut_part(part: dict[str, Any], limit: int) -> dict[str, Any]:
    for key in ("content", "response"):
        value = part.get(key)
        if isinstance(value, str) and len(value) > limit:
            cut = len(value) - limit
            return {**part, key: f"{value[:limit]}…[truncated {cut} chars]"}
    return part
