"""A recorded answer as each wire's server sends it: the bytes an SDK parses into its own types.

Replay for unmodified SDK code (`synthora.observe(client, replay=log)`) answers a call with the
recorded run re-served as its endpoint's reply (a JSON document, or the SSE stream a streamed
request gets), so the SDK builds its own objects from it and every SDK feature works on a replayed
call as on a live one. These renderers are the inverse of the decoders in `synthora.models.chunks`
and the backends' ``_reply``: what they read back from these bytes is what was recorded.
"""

from __future__ import annotations

import base64
from array import array
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from synthora.events import Usage
from synthora.messages import BaseMessage, ToolCall

__all__ = [
    "RecordedAnswer",
    "WireReply",
    "chat_reply",
    "completion_reply",
    "embeddings_reply",
    "messages_reply",
    "responses_reply",
]

_encode = msgspec.json.encode
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


WireReply = Callable[["RecordedAnswer", bool, dict[str, Any]], tuple[bytes, bytes]]
"""A renderer: given the answer, whether the request streams and the request's body, the reply
as the body up to its last piece of output and the rest (a stream's end; empty for a whole
reply), so a recorded broken stream is served as what came before the break."""


class RecordedAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """What a recorded run answered: its text pieces in order and how it ended."""

    model: str
    response_id: str
    pieces: tuple[str, ...] = ()
    output: BaseMessage | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    vectors: list[list[float]] | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces) if self.output is None else self.output.text

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return () if self.output is None else self.output.tool_calls


def _sse(events: Iterable[Any], *, named: bool = False, done: bool = False) -> bytes:
    """Events as an SSE body; `named` gives each its ``event:`` line (the typed wires)."""
    frames = [
        (b"event: " + event["type"].encode() + b"\n" if named else b"")
        + b"data: "
        + _encode(event)
        + b"\n\n"
        for event in events
    ]
    if done:
        frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


def _openai_usage(usage: Usage | None) -> dict[str, Any] | None:
    if usage is None:
        return None
    given = {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens}
    counts: dict[str, Any] = {key: n for key, n in given.items() if n is not None}
    counts["total_tokens"] = sum(counts.values())
    if usage.cache_read_input_tokens is not None:
        counts["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_input_tokens}
    return counts


def _call(call: ToolCall, index: int) -> dict[str, Any]:
    function = {"name": call.name, "arguments": call.arguments}
    return {"index": index, "id": call.id, "type": "function", "function": function}


def chat_reply(answer: RecordedAnswer, stream: bool, asked: dict[str, Any]) -> tuple[bytes, bytes]:
    """``POST /chat/completions``: a ``chat.completion``, or its chunks then ``[DONE]``."""
    envelope = {"id": answer.response_id, "created": 0, "model": answer.model}
    calls = [_call(call, i) for i, call in enumerate(answer.tool_calls)]
    if not stream:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
        if calls:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
        choice = {"index": 0, "message": message, "finish_reason": answer.finish_reason}
        reply = {**envelope, "object": "chat.completion", "choices": [choice]}
        return _encode({**reply, "usage": _openai_usage(answer.usage)}), b""
    chunk = {**envelope, "object": "chat.completion.chunk"}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": p} for p in answer.pieces]
    deltas += [{"tool_calls": [call]} for call in calls]
    chunks = [
        {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        for delta in deltas
    ]
    finish = {"index": 0, "delta": {}, "finish_reason": answer.finish_reason}
    closing = [{**chunk, "choices": [finish]}]
    if answer.usage is not None:
        closing.append({**chunk, "choices": [], "usage": _openai_usage(answer.usage)})
    return _sse(chunks), _sse(closing, done=True)


def completion_reply(
    answer: RecordedAnswer, stream: bool, asked: dict[str, Any]
) -> tuple[bytes, bytes]:
    """``POST /completions``: a ``text_completion``, or its chunks then ``[DONE]``."""
    envelope = {"id": answer.response_id, "created": 0, "model": answer.model}
    envelope["object"] = "text_completion"
    if not stream:
        choice = {"index": 0, "text": answer.text, "finish_reason": answer.finish_reason}
        return _encode({**envelope, "choices": [choice], "usage": _openai_usage(answer.usage)}), b""
    chunks = [
        {**envelope, "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
        for piece in answer.pieces
    ]
    finish = {"index": 0, "text": "", "finish_reason": answer.finish_reason}
    closing = {**envelope, "choices": [finish], "usage": _openai_usage(answer.usage)}
    return _sse(chunks), _sse([closing], done=True)


def embeddings_reply(
    answer: RecordedAnswer, stream: bool, asked: dict[str, Any]
) -> tuple[bytes, bytes]:
    """``POST /embeddings``: the vectors, as base64 float32 when asked (as the SDK asks)."""
    as_base64 = asked.get("encoding_format") == "base64"
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": base64.b64encode(array("f", vector).tobytes()).decode()
            if as_base64
            else vector,
        }
        for index, vector in enumerate(answer.vectors or ())
    ]
    tokens = (answer.usage.input_tokens if answer.usage else None) or 0
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return _encode({"object": "list", "data": data, "model": answer.model, "usage": usage}), b""


def _responses_response(answer: RecordedAnswer) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if answer.text or not answer.tool_calls:
        part = {"type": "output_text", "text": answer.text, "annotations": []}
        message = {"type": "message", "id": "msg_0", "role": "assistant", "content": [part]}
        output.append({**message, "status": "completed"})
    output += [
        {
            "type": "function_call",
            "id": f"fc_{index}",
            "call_id": call.id,
            "name": call.name,
            "arguments": call.arguments,
            "status": "completed",
        }
        for index, call in enumerate(answer.tool_calls)
    ]
    incomplete = answer.finish_reason == "length"
    usage = answer.usage
    return {
        "id": answer.response_id,
        "object": "response",
        "created_at": 0,
        "model": answer.model,
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": output,
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.input_tokens or 0,
            "output_tokens": usage.output_tokens or 0,
            "total_tokens": (usage.input_tokens or 0) + (usage.output_tokens or 0),
            "input_tokens_details": {"cached_tokens": usage.cache_read_input_tokens or 0},
        },
    }


def responses_reply(
    answer: RecordedAnswer, stream: bool, asked: dict[str, Any]
) -> tuple[bytes, bytes]:
    """``POST /responses``: the response object, or its typed events ending ``completed``."""
    response = _responses_response(answer)
    if not stream:
        return _encode(response), b""
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    events: list[dict[str, Any]] = [{"type": "response.created", "response": started}]
    events += [
        {"type": "response.output_text.delta", "item_id": "msg_0", "output_index": 0, "delta": p}
        for p in answer.pieces
    ]
    closing = [
        {"type": "response.output_item.done", "output_index": index, "item": item}
        for index, item in enumerate(response["output"])
    ]
    finished = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
    closing.append({"type": finished, "response": response})
    return _sse(events, named=True), _sse(closing, named=True)


def _messages_usage(usage: Usage | None, output_tokens: int | None) -> dict[str, Any]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": output_tokens or 0}
    cached = (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    counts: dict[str, Any] = {
        "input_tokens": (usage.input_tokens or 0) - cached,
        "output_tokens": output_tokens or 0,
    }
    if usage.cache_read_input_tokens is not None:
        counts["cache_read_input_tokens"] = usage.cache_read_input_tokens
    if usage.cache_creation_input_tokens is not None:
        counts["cache_creation_input_tokens"] = usage.cache_creation_input_tokens
    return counts


def messages_reply(
    answer: RecordedAnswer, stream: bool, asked: dict[str, Any]
) -> tuple[bytes, bytes]:
    """``POST /v1/messages``: a ``message``, or its events from ``message_start`` to
    ``message_stop``."""
    reason = answer.finish_reason
    blocks: list[dict[str, Any]] = []
    if answer.text or not answer.tool_calls:
        blocks.append({"type": "text", "text": answer.text})
    blocks += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": _arguments(call)}
        for call in answer.tool_calls
    ]
    output_tokens = answer.usage.output_tokens if answer.usage else None
    message = {
        "id": answer.response_id,
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": blocks,
        "stop_reason": _STOP_REASONS.get(reason, reason) if reason else None,
        "stop_sequence": None,
        "usage": _messages_usage(answer.usage, output_tokens),
    }
    if not stream:
        return _encode(message), b""
    opening = {**message, "content": [], "stop_reason": None}
    opening["usage"] = _messages_usage(answer.usage, 0)
    events: list[dict[str, Any]] = [{"type": "message_start", "message": opening}]
    for index, block in enumerate(blocks):
        empty = {**block, "text": ""} if block["type"] == "text" else {**block, "input": {}}
        events.append({"type": "content_block_start", "index": index, "content_block": empty})
        if block["type"] == "text":
            events += [
                {"type": "content_block_delta", "index": index, "delta": _text_delta(piece)}
                for piece in answer.pieces
            ]
        else:
            delta = {"type": "input_json_delta", "partial_json": _encode(block["input"]).decode()}
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    usage = {"output_tokens": output_tokens or 0}
    closing = [{"type": "message_delta", "delta": stop, "usage": usage}, {"type": "message_stop"}]
    return _sse(events, named=True), _sse(closing, named=True)


def _text_delta(piece: str) -> dict[str, str]:
    return {"type": "text_delta", "text": piece}


def _arguments(call: ToolCall) -> Any:
    try:
        return msgspec.json.decode(call.arguments or "{}")
    except msgspec.DecodeError:
        return {}
