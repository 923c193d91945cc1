"""Streamed chunks, decoded with msgspec and folded into the run's output, without I/O.

The `openai` SDK spends ~130 µs per chunk building pydantic objects; a msgspec typed decoder
reads the same payload in ~3 µs. The wire types below declare only the fields Synthora reads and
default everything, because OpenAI-compatible servers differ: ``content`` null in the first
chunk, ``choices`` empty or null, usage on a separate last chunk or on the finish chunk itself,
tool-call deltas without an ``index``, ``finish_reason`` absent until the last chunk.

A payload msgspec refuses takes a slow path: decoded again as the SDKs decode it (``json.loads``,
which also takes a lone half of a UTF-16 surrogate pair), its strings mended, then checked
against the wire type. That is how a pair split across two chunks (``"\\ud83d"`` then
``"\\ude00"``, as a server slicing UTF-16 text sends it) is read: the high half is held back
until the low half comes, so each token, the text and the stored run hold the one real character
(a half whose other half never comes is U+FFFD, as a UTF-8 decoder makes it). A payload msgspec
reads, almost all of them, pays nothing for this.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import msgspec
import openai

from synthora.events import Usage
from synthora.messages import MessageChunk, ToolCallDelta
from synthora.models.output import OutputState
from synthora.runs import TRUNCATED

__all__ = ["ChatStreamState", "CompletionStreamState", "StreamState"]


class _WireCached(msgspec.Struct):
    cached_tokens: int | None = None


class _WireUsage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _WireCached | None = None


class _WireFunction(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _WireToolCall(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    function: _WireFunction | None = None


class _WireDelta(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_WireToolCall] | None = None


class _WireChatChoice(msgspec.Struct):
    index: int = 0
    delta: _WireDelta | None = None
    finish_reason: str | None = None


class _WireChatChunk(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    choices: list[_WireChatChoice] | None = None
    usage: _WireUsage | None = None
    error: Any = None


class _WireCompletionChoice(msgspec.Struct):
    index: int = 0
    text: str | None = None
    finish_reason: str | None = None


class _WireCompletionChunk(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    choices: list[_WireCompletionChoice] | None = None
    usage: _WireUsage | None = None
    error: Any = None


def openai_usage(usage: Any) -> Usage:
    """An OpenAI usage object (chat's or the Responses API's, wire struct or SDK object): its
    input count already includes the cached tokens it details."""
    details = getattr(usage, "prompt_tokens_details", None) or getattr(
        usage, "input_tokens_details", None
    )
    cached = getattr(details, "cached_tokens", None)
    input_tokens = getattr(usage, "prompt_tokens", None)
    output_tokens = getattr(usage, "completion_tokens", None)
    if input_tokens is None and output_tokens is None:  # the Responses API's names
        input_tokens = getattr(usage, "input_tokens", None)
        output_tokens = getattr(usage, "output_tokens", None)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_input_tokens=cached if isinstance(cached, int) else None,
    )


_DONE = b"[DONE]"
_MALFORMED = (msgspec.DecodeError, msgspec.ValidationError)
_REPLACEMENT = "\ufffd"


class StreamState(OutputState):
    """An OpenAI stream's output so far; `consume` turns one payload into a chunk for the user.

    Only the first choice (``index`` 0) becomes output: a run is one answer.
    """

    __slots__ = ("_held", "done", "request")

    def __init__(self, run_id: str, request: httpx2.Request) -> None:
        super().__init__(run_id)
        self.request = request
        self.done = False
        self._held = ""  # the high half of a surrogate pair whose low half is yet to come

    _decoder: msgspec.json.Decoder[Any]  # of the wire chunk type, set by each subclass
    _decode: Any  # its decode method, looked up once

    def consume(self, payload: bytes) -> MessageChunk | None:
        """The chunk the user sees for `payload`, or None when it carries no output."""
        if payload.startswith(_DONE):
            self.done = True
            return None
        try:
            chunk = self._decode(payload)
        except _MALFORMED as error:
            chunk = self._decode_leniently(payload, error)
        self._note(chunk)
        for choice in chunk.choices or ():
            if choice.index == 0:
                if choice.finish_reason is not None:
                    self.finish_reason = choice.finish_reason
                return self._output(choice)
        return None

    def _output(self, choice: Any) -> MessageChunk | None:
        """What the first choice of a chunk adds to the output; None when nothing."""
        raise NotImplementedError

    def finish(self) -> MessageChunk | None:
        """At the end of the stream: a stream the server ended without its end marker or a
        finish reason is truncated; what is still held back is the last chunk, once."""
        if not self.done and self.finish_reason is None:
            self.finish_reason = TRUNCATED
        if not self._held:
            return None
        self._held = ""
        return self.add(_REPLACEMENT, None)

    def _decode_leniently(self, payload: bytes, error: Exception) -> Any:
        """The slow path, for a payload msgspec refused (see the module's docstring)."""
        try:
            return msgspec.convert(self._mend(json.loads(payload)), self._decoder.type)
        except ValueError:  # not JSON even so, or not the wire type (msgspec's errors too)
            raise self._malformed(payload, error) from error

    def _mend(self, value: Any) -> Any:
        """`value` with each string whole: a pair's halves joined across chunks, a lone half
        U+FFFD."""
        if isinstance(value, str):
            return self._mend_text(value)
        if isinstance(value, dict):
            return {key: self._mend(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._mend(item) for item in value]
        return value

    def _mend_text(self, text: str) -> str:
        if self._held and "\udc00" <= text[:1] <= "\udfff":
            text, self._held = self._held + text, ""
        if "\ud800" <= text[-1:] <= "\udbff":  # held back until the next chunk
            if self._held:  # the half held before never met its other one
                text = _REPLACEMENT + text
            text, self._held = text[:-1], text[-1]
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")

    sdk: Any = openai
    """The SDK whose exceptions this wire raises (``APIError``, ``APIConnectionError``, …)."""

    def _malformed(self, payload: bytes, error: Exception) -> Exception:
        failure: Exception = self.sdk.APIError(
            message=f"the server sent a chunk this wire cannot read ({error}): {payload[:200]!r}",
            request=self.request,
            body=None,
        )
        return failure

    def _stream_error(self, body: Any) -> Exception:
        """The exception the SDK's own stream raises for an error object in the stream."""
        message = body.get("message") if isinstance(body, dict) else None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            message = body["error"].get("message")  # Anthropic: {"type": "error", "error": {…}}
        if not isinstance(message, str) or not message:
            message = "An error occurred during streaming"
        failure: Exception = self.sdk.APIError(message=message, request=self.request, body=body)
        return failure

    def _note(self, chunk: _WireChatChunk | _WireCompletionChunk) -> None:
        if chunk.error is not None:
            raise self._stream_error(chunk.error)
        if self.response_id is None and chunk.id:
            self.response_id = chunk.id
        if chunk.model:
            self.response_model = chunk.model
        if chunk.usage is not None:
            self.usage = openai_usage(chunk.usage)


class ChatStreamState(StreamState):
    """Chat chunks: text deltas and tool-call deltas, assembled into calls by index."""

    __slots__ = ()
    _decoder = msgspec.json.Decoder(_WireChatChunk)
    _decode = _decoder.decode

    def _output(self, choice: _WireChatChoice) -> MessageChunk | None:
        delta = choice.delta
        if delta is None:
            return None
        text = delta.content or ""
        calls = () if not delta.tool_calls else self._add_calls(delta.tool_calls)
        if not text and not calls:
            return None
        return self.chunk(text, choice.finish_reason, calls)

    def _add_calls(self, wire_calls: list[_WireToolCall]) -> tuple[ToolCallDelta, ...]:
        deltas = []
        for call in wire_calls:  # one at a time: an index-less call's index depends on the last
            function = call.function or _WireFunction()
            delta = ToolCallDelta(
                index=self._index_of(call),
                id=call.id,
                name=function.name,
                arguments=function.arguments or "",
            )
            self.add_call(delta)
            deltas.append(delta)
        return tuple(deltas)

    def _index_of(self, call: _WireToolCall) -> int:
        """The call's index; servers that send none mark a new call by a new id."""
        if call.index is not None:
            return call.index
        last = self.last_call_index()
        if last is None:
            return 0
        return last + 1 if call.id and call.id != self.call_id(last) else last


class CompletionStreamState(StreamState):
    """Legacy completion chunks: ``choices[0].text``."""

    __slots__ = ()
    _decoder = msgspec.json.Decoder(_WireCompletionChunk)
    _decode = _decoder.decode

    def _output(self, choice: _WireCompletionChoice) -> MessageChunk | None:
        return self.add(choice.text, choice.finish_reason) if choice.text else None


# -- OpenAI's Responses API: typed stream events rather than choices ------------------------------


class _WireResponsesUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_tokens_details: _WireCached | None = None


class _WireIncomplete(msgspec.Struct):
    reason: str | None = None


class _WireItem(msgspec.Struct):
    type: str = ""
    id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class _WireResponse(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    status: str | None = None
    usage: _WireResponsesUsage | None = None
    incomplete_details: _WireIncomplete | None = None
    error: Any = None


class _WireResponsesEvent(msgspec.Struct):
    type: str = ""
    delta: str | None = None
    item_id: str | None = None
    item: _WireItem | None = None
    response: _WireResponse | None = None
    message: str | None = None
    code: Any = None
    error: Any = None  # an ``event: error`` whose data the SSE decoder wrapped as {"error": …}


def responses_finish_reason(status: str | None, reason: str | None, calls: bool) -> str | None:
    """A Responses status in the finish-reason words every other wire uses."""
    if status == "incomplete":
        return "length" if reason in (None, "max_output_tokens") else reason
    if status == "completed":
        return "tool_calls" if calls else "stop"
    return status


class ResponsesStreamState(StreamState):
    """Responses stream events: ``response.output_text.delta`` is text, a ``function_call``
    item and its ``function_call_arguments.delta`` events are a tool call, and
    ``response.completed`` (or ``incomplete``) ends the stream with the usage. Event types this
    does not know are skipped, as the API asks of clients."""

    __slots__ = ("_items",)
    _decoder = msgspec.json.Decoder(_WireResponsesEvent)
    _decode = _decoder.decode

    def __init__(self, run_id: str, request: httpx2.Request) -> None:
        super().__init__(run_id, request)
        self._items: dict[str, int] = {}

    def consume(self, payload: bytes) -> MessageChunk | None:
        if payload.startswith(_DONE):
            self.done = True
            return None
        try:
            event = self._decode(payload)
        except _MALFORMED as error:
            event = self._decode_leniently(payload, error)
        if event.error is not None:
            raise self._stream_error(event.error)
        match event.type:
            case "response.output_text.delta" if event.delta:
                return self.add(event.delta, None)
            case "response.output_item.added" if event.item and event.item.type == "function_call":
                item = event.item
                index = self._items.setdefault(item.id or str(len(self._items)), len(self._items))
                call = ToolCallDelta(
                    index=index, id=item.call_id, name=item.name, arguments=item.arguments or ""
                )
                return self.add("", None, (call,))
            case "response.function_call_arguments.delta" if event.delta:
                index = self._items.get(event.item_id or "", 0)
                return self.add("", None, (ToolCallDelta(index=index, arguments=event.delta),))
            case "response.created" | "response.in_progress" if event.response:
                self._note_response(event.response)
            case "response.completed" | "response.incomplete" if event.response:
                self._note_response(event.response)
                self.done = True
            case "response.failed" | "error":
                raise self._failure(event)
        return None

    def _note_response(self, response: _WireResponse) -> None:
        if response.id and self.response_id is None:
            self.response_id = response.id
        if response.model:
            self.response_model = response.model
        if response.usage is not None:
            self.usage = openai_usage(response.usage)
        if response.status in ("completed", "incomplete"):
            details = response.incomplete_details
            self.finish_reason = responses_finish_reason(
                response.status, details.reason if details else None, bool(self._items)
            )

    def _failure(self, event: _WireResponsesEvent) -> Exception:
        error = event.response.error if event.response else None
        body = error if error is not None else {"message": event.message, "code": event.code}
        return self._stream_error(body)


# -- Anthropic's Messages API: content blocks, started, filled by deltas, stopped -----------------


class _WireMessagesUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class _WireMessage(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    usage: _WireMessagesUsage | None = None


class _WireBlock(msgspec.Struct):
    type: str = ""
    id: str | None = None
    name: str | None = None
    text: str | None = None


class _WireBlockDelta(msgspec.Struct):
    type: str = ""
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _WireMessagesEvent(msgspec.Struct):
    type: str = ""
    index: int | None = None
    message: _WireMessage | None = None
    content_block: _WireBlock | None = None
    delta: _WireBlockDelta | None = None
    usage: _WireMessagesUsage | None = None
    error: Any = None


MESSAGES_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
"""Anthropic's stop reasons in the finish-reason words every other wire uses."""


def messages_usage(usage: Any, output_tokens: int | None) -> Usage:
    """A Messages request's usage: Anthropic counts the cached parts of the input apart, the
    GenAI conventions count them in (and say how many apart too)."""
    read = getattr(usage, "cache_read_input_tokens", None)
    created = getattr(usage, "cache_creation_input_tokens", None)
    given = (getattr(usage, "input_tokens", None), read, created)
    counts = [count for count in given if isinstance(count, int)]
    return Usage(
        input_tokens=sum(counts) if counts else None,
        output_tokens=output_tokens,
        cache_read_input_tokens=read if isinstance(read, int) else None,
        cache_creation_input_tokens=created if isinstance(created, int) else None,
    )


class MessagesStreamState(StreamState):
    """Anthropic Messages stream events: ``text_delta`` is text, a ``tool_use`` block and its
    ``input_json_delta`` pieces are a tool call, ``message_start`` and ``message_delta`` carry
    the usage and stop reason, ``message_stop`` ends the stream; ``ping`` and event types this
    does not know are skipped."""

    __slots__ = ("_input", "_tools", "sdk")
    _decoder = msgspec.json.Decoder(_WireMessagesEvent)
    _decode = _decoder.decode

    def __init__(self, run_id: str, request: Any, sdk: Any) -> None:
        super().__init__(run_id, request)
        self.sdk = sdk
        self._tools: dict[int, int] = {}
        self._input: _WireMessagesUsage | None = None

    def consume(self, payload: bytes) -> MessageChunk | None:
        try:
            event = self._decode(payload)
        except _MALFORMED as error:
            event = self._decode_leniently(payload, error)
        if event.error is not None:
            raise self._stream_error(event.error)
        match event.type:
            case "content_block_delta" if event.delta is not None:
                delta = event.delta
                if delta.type == "input_json_delta" and delta.partial_json:
                    index = self._tools.get(event.index or 0, 0)
                    call = ToolCallDelta(index=index, arguments=delta.partial_json)
                    return self.add("", None, (call,))
                if delta.text:
                    return self.add(delta.text, None)
            case "content_block_start" if event.content_block is not None:
                block = event.content_block
                if block.type == "tool_use":
                    index = self._tools.setdefault(event.index or 0, len(self._tools))
                    call = ToolCallDelta(index=index, id=block.id, name=block.name)
                    return self.add("", None, (call,))
                if block.text:
                    return self.add(block.text, None)
            case "message_start" if event.message is not None:
                message = event.message
                self.response_id = message.id
                self.response_model = message.model
                if message.usage is not None:
                    self._input = message.usage
                    self.usage = messages_usage(message.usage, message.usage.output_tokens)
            case "message_delta":
                if event.delta is not None and event.delta.stop_reason is not None:
                    reason = event.delta.stop_reason
                    self.finish_reason = MESSAGES_FINISH_REASONS.get(reason, reason)
                if event.usage is not None:
                    self.usage = messages_usage(self._input, event.usage.output_tokens)
            case "message_stop":
                self.done = True
        return None
