"""A real local HTTP server that speaks the OpenAI wire format.

Tests, examples and benchmarks need a backend that behaves like a real OpenAI-compatible server
on the wire -- status lines, chunked transfer encoding, SSE framing quirks, abrupt disconnects --
rather than a mock that short-circuits the HTTP client.  Mocks hide exactly the bugs an
observability layer has to survive (a stream dropped mid-way, usage arriving in an unexpected
chunk, an error event inside a 200 stream), so this server produces them for real.

It depends on the standard library only, so it can ship inside the package and users can test
their own agents offline.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import signal
import socket
import sys
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Literal

__all__ = [
    "Behaviour",
    "OpenAICompatibleServer",
    "RecordedRequest",
    "ToolCallSpec",
    "main",
]

_CHAT_PATH = "/v1/chat/completions"
_COMPLETIONS_PATH = "/v1/completions"
_RESPONSES_PATH = "/v1/responses"
_EMBEDDINGS_PATH = "/v1/embeddings"
_MESSAGES_PATH = "/v1/messages"
_EMBEDDING_DIMENSIONS = 8
# Real servers stream tool-call arguments in small fragments; clients must concatenate them.
_ARGUMENT_PIECE_CHARS = 8
# How long stop() waits for connection threads to notice their sockets were shut down.  They
# normally exit within milliseconds; the bound only keeps a wedged thread from hanging a test run.
_STOP_GRACE_S = 2.0
# The accept loop wakes at least this often to notice shutdown on platforms where shutting down
# the listening socket does not wake select().
_POLL_INTERVAL_S = 0.1
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)

_Kind = Literal["chat", "completion", "responses", "embeddings", "messages"]


@dataclass(frozen=True)
class ToolCallSpec:
    """A tool call the fake model makes; ``arguments`` is streamed split into several deltas."""

    name: str
    arguments: str
    id: str = ""


@dataclass(frozen=True)
class Behaviour:
    """How the server answers requests for one model name.

    Every field models a behaviour some real OpenAI-compatible server exhibits (vLLM, llama.cpp,
    OpenAI itself) so client code can be tested against each of them without a GPU.
    """

    # The reply's text pieces, one per stream chunk; None means the default echo reply.
    tokens: tuple[str, ...] | None = None
    # When tokens is None: reply with n pieces " w0", " w1", ... (sized benchmark payloads).
    n_tokens: int | None = None
    # Sleep before every streamed chunk except [DONE], and before a JSON reply.  Stream duration
    # is therefore about (number of chunks) * delay_s; the role chunk counts.
    delay_s: float = 0.0
    # Sleep before the status line, so clients can exercise their connect/read timeouts.
    headers_delay_s: float = 0.0
    # Answer every request with this HTTP status and an OpenAI error body.
    status: int | None = None
    # Answer only the first this-many requests for the model (since `behave`) with `status`
    # (500 if None), then as usual: a server that recovers while the client retries.
    fail_first: int = 0
    # Send Retry-After (as retry-after-ms) with every error status, so retrying clients wait
    # this long instead of their own backoff.
    retry_after_s: float | None = None
    error_message: str = "The server had an error while processing your request."
    error_type: str = "server_error"
    # Real servers send integer codes too (vLLM sends the status number).
    error_code: str | int | None = None
    # Stream: send this many payload chunks (content or tool-call deltas; the role chunk is not
    # counted), then close the connection without the zero-length chunk or [DONE].
    break_after: int | None = None
    # Stream: send this many payload chunks, then end the body cleanly but short: no finish
    # reason, no [DONE] (no response.completed, no message_stop), as a server stopped mid-answer
    # or a proxy's timeout sends it.
    end_after: int | None = None
    # Stream: after this many payload chunks send an {"error": ...} event, then [DONE] and a clean
    # end -- how vLLM reports failures after the 200 status line is out.
    error_after: int | None = None
    # Reject any request whose body has "stream_options" with this status (e.g. 400 or 422).
    reject_stream_options: int | None = None
    # separate: a last chunk with "choices": [] carries usage when stream_options.include_usage
    #   asked for it (OpenAI), and the other chunks carry "usage": null.
    # on_finish: usage sits on the finish-reason chunk, asked or not (vLLM, llama.cpp).
    # none: never any usage, not even in JSON replies.
    usage: Literal["separate", "on_finish", "none"] = "separate"
    # First chat chunk is {"role": "assistant", "content": null}; when False the role rides on
    # the first content chunk instead.
    first_content_null: bool = True
    # "stop" becomes "tool_calls" when tool_calls are given.
    finish_reason: str = "stop"
    # Chat only, and only for requests that offer tools (as a real model would); with tokens
    # None the reply then has no content at all.
    tool_calls: tuple[ToolCallSpec, ...] = ()
    # SSE framing variants that real servers and proxies produce.
    crlf: bool = False
    keepalive_comments: bool = False
    split_events: bool = False
    # Defaults to "chatcmpl-" / "cmpl-"; the id ends with the server's request number.
    id_prefix: str = ""
    # Answer with exactly these body pieces instead of a generated reply, one HTTP chunk each:
    # SSE bytes for a streamed request (no [DONE] is added), a JSON document for a plain one.
    # For wire-level tests and for replaying what a real server was captured sending.
    raw: tuple[bytes, ...] | None = None
    # Answer a streamed request as a plain one (the JSON reply, or the raw body, whole), as
    # servers that ignore "stream": true do.
    ignore_stream: bool = False
    # The Content-Type of a 200 reply in place of the usual one (a proxy's HTML page, a stream
    # labelled as JSON).
    content_type: str | None = None

    @property
    def cut_after(self) -> int | None:
        """The payload chunks after which a stream stops short (broken off or ended), if it does."""
        return self.break_after if self.break_after is not None else self.end_after


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, so tests can assert on what a client actually sent."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


_DEFAULT_BEHAVIOUR = Behaviour()


@dataclass(frozen=True)
class _Answer:
    """What the fake model "generated" for one request, shared by the JSON and SSE renderings."""

    pieces: tuple[str, ...]
    tool_calls: tuple[ToolCallSpec, ...]
    finish_reason: str
    usage: dict[str, int]


def _text_of(content: object) -> str:
    """Flatten message content; multimodal lists contribute their text parts only."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _answer(kind: _Kind, body: dict[str, Any], behaviour: Behaviour) -> _Answer:
    """Decide the reply; the default echoes the input so tests can tell requests apart."""
    tool_calls = behaviour.tool_calls if kind != "completion" and body.get("tools") else ()
    if kind != "completion":
        messages = body.get("input" if kind == "responses" else "messages")
        if isinstance(messages, str):  # a Responses input may be one string
            messages = [{"role": "user", "content": messages}]
        messages = (
            [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
        )
        texts = [_text_of(m.get("content")) for m in messages]
        user_texts = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
        echoed = user_texts[-1] if user_texts else ""
        opening: tuple[str, ...] = ("You", " said", ":")
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt:
            prompt = prompt[0]
        echoed = prompt if isinstance(prompt, str) else ""
        texts = [echoed]
        opening = (" You", " wrote", ":")

    if behaviour.tokens is not None:
        pieces = behaviour.tokens
    elif behaviour.n_tokens is not None:
        pieces = tuple(f" w{i}" for i in range(behaviour.n_tokens))
    elif tool_calls:
        pieces = ()
    else:
        pieces = opening + tuple(" " + word for word in echoed.split())

    finish_reason = behaviour.finish_reason
    if tool_calls and finish_reason == "stop":
        finish_reason = "tool_calls"
    prompt_tokens = max(1, sum(len(text.split()) for text in texts))
    completion_tokens = len(pieces) + len(tool_calls)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return _Answer(pieces, tool_calls, finish_reason, usage)


def _tool_call_id(spec: ToolCallSpec, index: int) -> str:
    return spec.id or f"call_{index}"


def _error_body(message: str, type_: str, code: str | int | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def _json_reply(
    kind: _Kind, answer: _Answer, behaviour: Behaviour, envelope: dict[str, Any]
) -> dict[str, Any]:
    text = "".join(answer.pieces)
    if kind == "chat":
        message: dict[str, Any] = {
            "role": "assistant",
            # OpenAI sends null content alongside tool calls rather than an empty string.
            "content": None if answer.tool_calls and not text else text,
        }
        if answer.tool_calls:
            message["tool_calls"] = [
                {
                    "id": _tool_call_id(spec, i),
                    "type": "function",
                    "function": {"name": spec.name, "arguments": spec.arguments},
                }
                for i, spec in enumerate(answer.tool_calls)
            ]
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": answer.finish_reason,
        }
        reply = {**envelope, "object": "chat.completion", "choices": [choice]}
    else:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": answer.finish_reason}
        reply = {**envelope, "object": "text_completion", "choices": [choice]}
    if behaviour.usage != "none":
        reply["usage"] = answer.usage
    return reply


def _dumps(value: object) -> bytes:
    # Default arguments on purpose: json.dumps() then reuses its cached encoder, and a plain
    # string goes straight to the C escaper -- this runs once per streamed token.
    return json.dumps(value).encode()


def _sse_events(
    kind: _Kind,
    answer: _Answer,
    behaviour: Behaviour,
    envelope: dict[str, Any],
    include_usage: bool,
) -> tuple[list[bytes], bool]:
    """Render a whole stream up front as SSE events (without ``[DONE]``).

    Rendering ahead of time keeps the write loop down to one ``write`` per chunk, which is what
    lets a 2,000-chunk stream go out in milliseconds.  Returns the events and whether the stream
    should end cleanly (``False`` means: drop the connection after the last event).
    """
    obj = b"chat.completion.chunk" if kind == "chat" else b"text_completion"
    head = b'{"id":%b,"object":"%b","created":%d,"model":%b,"choices":[' % (
        _dumps(envelope["id"]),
        obj,
        envelope["created"],
        _dumps(envelope["model"]),
    )
    # OpenAI puts "usage": null on every chunk once include_usage is asked for.
    separate_usage = behaviour.usage == "separate" and include_usage
    tail = b'],"usage":null}' if separate_usage else b"]}"

    def chat_choice(delta: bytes, finish: bytes) -> bytes:
        return b'{"index":0,"delta":%b,"logprobs":null,"finish_reason":%b}' % (delta, finish)

    def text_choice(text: bytes, finish: bytes) -> bytes:
        return b'{"text":%b,"index":0,"logprobs":null,"finish_reason":%b}' % (text, finish)

    chunks: list[bytes] = []
    payload: list[bytes] = []
    if kind == "chat":
        deltas = [b'{"content":%b}' % _dumps(piece) for piece in answer.pieces]
        for i, spec in enumerate(answer.tool_calls):
            call = {
                "index": i,
                "id": _tool_call_id(spec, i),
                "type": "function",
                "function": {"name": spec.name, "arguments": ""},
            }
            deltas.append(_dumps({"tool_calls": [call]}))
            for start in range(0, len(spec.arguments), _ARGUMENT_PIECE_CHARS):
                fragment = spec.arguments[start : start + _ARGUMENT_PIECE_CHARS]
                deltas.append(
                    _dumps({"tool_calls": [{"index": i, "function": {"arguments": fragment}}]})
                )
        if behaviour.first_content_null or not deltas:
            chunks.append(
                head + chat_choice(b'{"role":"assistant","content":null}', b"null") + tail
            )
        else:
            # Some servers put the role on the first chunk that already carries content; clients
            # that assume the first chunk is empty lose the first token.
            deltas[0] = b'{"role":"assistant",' + deltas[0][1:]
        payload = [head + chat_choice(delta, b"null") + tail for delta in deltas]
        finish = chat_choice(b"{}", _dumps(answer.finish_reason))
    else:
        payload = [head + text_choice(_dumps(piece), b"null") + tail for piece in answer.pieces]
        finish = text_choice(b'""', _dumps(answer.finish_reason))

    clean = True
    error_after, cut_after = behaviour.error_after, behaviour.cut_after
    if error_after is not None and (cut_after is None or error_after <= cut_after):
        error = _error_body(behaviour.error_message, behaviour.error_type, behaviour.error_code)
        chunks += [*payload[:error_after], _dumps(error)]
    elif cut_after is not None:
        chunks += payload[:cut_after]
        clean = behaviour.break_after is None
    else:
        chunks += payload
        if behaviour.usage == "on_finish":
            chunks.append(head + finish + b'],"usage":%b}' % _dumps(answer.usage))
        else:
            chunks.append(head + finish + tail)
        if separate_usage:
            chunks.append(head + b'],"usage":%b}' % _dumps(answer.usage))
    return [_frame_event(chunk, behaviour) for chunk in chunks], clean


def _frame_event(data: bytes, behaviour: Behaviour, name: bytes = b"") -> bytes:
    eol = b"\r\n" if behaviour.crlf else b"\n"
    prefix = b": keep-alive" + eol + eol if behaviour.keepalive_comments else b""
    if name or behaviour.keepalive_comments:
        prefix += b"event: " + (name or b"message") + eol
    return prefix + b"data: " + data + eol + eol


# -- OpenAI's Responses API: typed events, items instead of choices ------------------------------


def _responses_output(answer: _Answer, number: int) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if answer.pieces or not answer.tool_calls:
        text = "".join(answer.pieces)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        output.append(_message_item(number, [part], "completed"))
    output += [
        _function_item(spec, i, spec.arguments, "completed")
        for i, spec in enumerate(answer.tool_calls)
    ]
    return output


def _message_item(number: int, content: list[Any], status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{number}",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _function_item(spec: ToolCallSpec, index: int, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{index}",
        "call_id": _tool_call_id(spec, index),
        "name": spec.name,
        "arguments": arguments,
        "status": status,
    }


def _responses_reply(
    answer: _Answer, behaviour: Behaviour, envelope: dict[str, Any], number: int
) -> dict[str, Any]:
    """The whole response object, as ``POST /v1/responses`` returns it (and as the
    ``response.completed`` event carries it)."""
    incomplete = answer.finish_reason == "length"
    reply: dict[str, Any] = {
        "id": envelope["id"],
        "object": "response",
        "created_at": envelope["created"],
        "model": envelope["model"],
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": _responses_output(answer, number),
    }
    if behaviour.usage != "none":
        usage = answer.usage
        reply["usage"] = {
            "input_tokens": usage["prompt_tokens"],
            "output_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
            "input_tokens_details": {"cached_tokens": 0},
        }
    return reply


def _responses_events(
    answer: _Answer, behaviour: Behaviour, envelope: dict[str, Any], number: int
) -> tuple[list[bytes], bool]:
    """A Responses stream, as OpenAI documents it and llama.cpp sends it (no ``[DONE]``)."""
    started = {"id": envelope["id"], "object": "response", "status": "in_progress"}
    item_id = f"msg_{number}"
    opening: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
    ]
    payload: list[dict[str, Any]] = []
    closing: list[dict[str, Any]] = []
    if answer.pieces or not answer.tool_calls:
        text = "".join(answer.pieces)
        part = {"type": "output_text", "text": ""}
        opening += [
            {
                "type": "response.output_item.added",
                "item": _message_item(number, [], "in_progress"),
            },
            {"type": "response.content_part.added", "item_id": item_id, "part": part},
        ]
        payload += [
            {"type": "response.output_text.delta", "item_id": item_id, "delta": piece}
            for piece in answer.pieces
        ]
        done = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        closing += [
            {"type": "response.output_text.done", "item_id": item_id, "text": text},
            {"type": "response.content_part.done", "item_id": item_id, "part": done},
            {
                "type": "response.output_item.done",
                "item": _message_item(number, [done], "completed"),
            },
        ]
    for i, spec in enumerate(answer.tool_calls):
        item = _function_item(spec, i, "", "in_progress")
        payload.append({"type": "response.output_item.added", "item": item})
        for start in range(0, len(spec.arguments), _ARGUMENT_PIECE_CHARS):
            fragment = spec.arguments[start : start + _ARGUMENT_PIECE_CHARS]
            payload.append(
                {
                    "type": "response.function_call_arguments.delta",
                    "item_id": item["id"],
                    "delta": fragment,
                }
            )
        closing.append(
            {
                "type": "response.output_item.done",
                "item": _function_item(spec, i, spec.arguments, "completed"),
            }
        )
    clean = True
    events = opening
    error_after, cut_after = behaviour.error_after, behaviour.cut_after
    if error_after is not None and (cut_after is None or error_after <= cut_after):
        error = {"type": "error", "code": behaviour.error_code, "message": behaviour.error_message}
        events += [*payload[:error_after], error]
    elif cut_after is not None:
        events += payload[:cut_after]
        clean = behaviour.break_after is None
    else:
        completed = _responses_reply(answer, behaviour, envelope, number)
        done_type = (
            "response.incomplete" if completed["status"] == "incomplete" else "response.completed"
        )
        events += [*payload, *closing, {"type": done_type, "response": completed}]
    framed = [_frame_event(_dumps(e), behaviour, str(e["type"]).encode()) for e in events]
    return framed, clean


# -- Anthropic's Messages API: content blocks and their deltas -----------------------------------

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _anthropic_error(behaviour: Behaviour) -> dict[str, Any]:
    return {"type": behaviour.error_type, "message": behaviour.error_message}


def _messages_usage(answer: _Answer, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": answer.usage["prompt_tokens"],
        "output_tokens": output_tokens,
        "cache_read_input_tokens": 0,
    }


def _messages_reply(
    answer: _Answer, behaviour: Behaviour, envelope: dict[str, Any]
) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if answer.pieces or not answer.tool_calls:
        content.append({"type": "text", "text": "".join(answer.pieces)})
    content += [
        {
            "type": "tool_use",
            "id": _tool_call_id(spec, i),
            "name": spec.name,
            "input": json.loads(spec.arguments or "{}"),
        }
        for i, spec in enumerate(answer.tool_calls)
    ]
    reply: dict[str, Any] = {
        "id": envelope["id"],
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": envelope["model"],
        "stop_reason": _STOP_REASONS.get(answer.finish_reason, answer.finish_reason),
        "stop_sequence": None,
    }
    if behaviour.usage != "none":
        reply["usage"] = _messages_usage(answer, answer.usage["completion_tokens"])
    return reply


def _messages_events(
    answer: _Answer, behaviour: Behaviour, envelope: dict[str, Any]
) -> tuple[list[bytes], bool]:
    """A Messages stream, as Anthropic documents it and llama.cpp sends it."""
    message = {
        "id": envelope["id"],
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": envelope["model"],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _messages_usage(answer, 0),
    }
    events: list[dict[str, Any]] = [{"type": "message_start", "message": message}]
    payload: list[dict[str, Any]] = []
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if answer.pieces or not answer.tool_calls:
        deltas = [{"type": "text_delta", "text": piece} for piece in answer.pieces]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for i, spec in enumerate(answer.tool_calls):
        block = {"type": "tool_use", "id": _tool_call_id(spec, i), "name": spec.name, "input": {}}
        pieces = range(0, len(spec.arguments), _ARGUMENT_PIECE_CHARS)
        deltas = [
            {
                "type": "input_json_delta",
                "partial_json": spec.arguments[at : at + _ARGUMENT_PIECE_CHARS],
            }
            for at in pieces
        ]
        blocks.append((block, deltas))
    closing: list[dict[str, Any]] = []
    for index, (block, deltas) in enumerate(blocks):
        payload.append({"type": "content_block_start", "index": index, "content_block": block})
        payload += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        payload.append({"type": "content_block_stop", "index": index})
    stop = _STOP_REASONS.get(answer.finish_reason, answer.finish_reason)
    delta: dict[str, Any] = {"type": "message_delta", "delta": {"stop_reason": stop}}
    if behaviour.usage != "none":
        delta["usage"] = {"output_tokens": answer.usage["completion_tokens"]}
    closing += [delta, {"type": "message_stop"}]
    clean = True
    error_after, cut_after = behaviour.error_after, behaviour.cut_after
    counted = [e for e in payload if e["type"] == "content_block_delta"]
    if error_after is not None and (cut_after is None or error_after <= cut_after):
        cut = payload.index(counted[error_after]) if error_after < len(counted) else len(payload)
        error = {"type": "error", "error": _anthropic_error(behaviour)}
        events += [*payload[:cut], error]
    elif cut_after is not None:
        cut = payload.index(counted[cut_after]) if cut_after < len(counted) else len(payload)
        events += payload[:cut]
        clean = behaviour.break_after is None
    else:
        events += [*payload, *closing]
    framed = [_frame_event(_dumps(e), behaviour, str(e["type"]).encode()) for e in events]
    return framed, clean


def embedding_of(text: str) -> list[float]:
    """The test server's embedding of `text`: float32 values that depend on the text alone."""
    digest = hashlib.sha256(text.encode()).digest()
    return list(array("f", (b / 255 - 0.5 for b in digest[:_EMBEDDING_DIMENSIONS])))


def _embeddings_reply(body: dict[str, Any], model: str) -> dict[str, Any]:
    """``POST /v1/embeddings``: floats, or base64 float32 when asked (as the SDK asks)."""
    given = body.get("input")
    texts = [given] if isinstance(given, str) else [t for t in given or () if isinstance(t, str)]
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = embedding_of(text)
        encoded: Any = (
            base64.b64encode(array("f", vector).tobytes()).decode() if as_base64 else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(text.split()) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Benchmarks open hundreds of connections at once; the default backlog of 5 makes the
    # kernel drop SYNs and turns a latency benchmark into a retransmission-timeout benchmark.
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], owner: OpenAICompatibleServer) -> None:
        super().__init__(address, _Handler)
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client may vanish at any moment (timeouts, cancelled tasks, stop() shutting sockets);
        # that is routine for this server, not worth a traceback.  Anything else is a bug.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One small write per SSE event: Nagle would hold each one back waiting for an ACK.
    disable_nagle_algorithm = True
    server: _HTTPServer
    request_id: str

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: test output should show the code under test, not an access log."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self.server.owner
        path = self.path.partition("?")[0]
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            # The body's extent is unknown, so the connection cannot be reused after the 400.
            length = 0
            self.close_connection = True
        raw = self.rfile.read(length)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body: dict[str, Any] | None = parsed if isinstance(parsed, dict) else None
        headers = {name.lower(): value for name, value in self.headers.items()}
        number = owner._record(RecordedRequest(path, headers, body or {}))
        self.request_id = f"req_{number}"

        kind: _Kind
        if self.command == "POST" and path == _CHAT_PATH:
            kind = "chat"
        elif self.command == "POST" and path == _COMPLETIONS_PATH:
            kind = "completion"
        elif self.command == "POST" and path == _RESPONSES_PATH:
            kind = "responses"
        elif self.command == "POST" and path == _EMBEDDINGS_PATH:
            kind = "embeddings"
        elif self.command == "POST" and path == _MESSAGES_PATH:
            kind = "messages"
        else:
            message = f"Invalid URL ({self.command} {path})"
            self._send_json(404, _error_body(message, "invalid_request_error", None))
            return
        if body is None:
            message = "We could not parse the JSON body of your request."
            self._send_json(400, _error_body(message, "invalid_request_error", None))
            return
        self._respond(kind, body, number)

    def _respond(self, kind: _Kind, body: dict[str, Any], number: int) -> None:
        owner = self.server.owner
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        behaviour = owner._behaviour_for(model)
        if not owner._pause(behaviour.headers_delay_s):
            self.close_connection = True
            return
        status = behaviour.status
        if behaviour.fail_first:
            failing = owner._count_for(model) <= behaviour.fail_first
            status = (status or 500) if failing else None
        if status is not None:
            error = _error_body(behaviour.error_message, behaviour.error_type, behaviour.error_code)
            if kind == "messages":  # Anthropic's error shape
                error = {"type": "error", "error": _anthropic_error(behaviour)}
            retry_after = behaviour.retry_after_s
            headers = {} if retry_after is None else {"retry-after-ms": f"{retry_after * 1000:g}"}
            self._send_json(status, error, headers=headers)
            return
        if behaviour.reject_stream_options is not None and "stream_options" in body:
            message = "Unrecognized request argument supplied: stream_options"
            error = _error_body(message, "invalid_request_error", None)
            self._send_json(behaviour.reject_stream_options, error)
            return

        streamed = body.get("stream") is True and not behaviour.ignore_stream
        if behaviour.raw is not None:
            if streamed:
                self._stream(list(behaviour.raw), True, behaviour, done=False)
            else:
                self._send_bytes(200, b"".join(behaviour.raw), behaviour.content_type)
            return
        if kind == "embeddings":
            if owner._pause(behaviour.delay_s):
                self._send_json(200, _embeddings_reply(body, model), behaviour.content_type)
            else:
                self.close_connection = True
            return
        answer = _answer(kind, body, behaviour)
        prefix = behaviour.id_prefix or {"chat": "chatcmpl-", "completion": "cmpl-"}.get(
            kind, "resp_"
        )
        envelope = {"id": f"{prefix}{number}", "created": int(time.time()), "model": model}
        if kind in ("messages", "responses"):
            self._send_typed(
                kind, streamed, answer, behaviour=behaviour, envelope=envelope, number=number
            )
            return
        if streamed:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            events, clean = _sse_events(kind, answer, behaviour, envelope, include_usage)
            self._stream(events, clean, behaviour)
        elif owner._pause(behaviour.delay_s):
            self._send_json(
                200, _json_reply(kind, answer, behaviour, envelope), behaviour.content_type
            )
        else:
            self.close_connection = True

    def _send_typed(
        self,
        kind: _Kind,
        streamed: bool,
        answer: _Answer,
        *,
        behaviour: Behaviour,
        envelope: dict[str, Any],
        number: int,
    ) -> None:
        """The Responses and Messages APIs: a whole object, or typed events without [DONE]."""
        messages = kind == "messages"
        if messages:
            envelope = {**envelope, "id": f"msg_{number}"}
        if streamed:
            events, clean = (
                _messages_events(answer, behaviour, envelope)
                if messages
                else _responses_events(answer, behaviour, envelope, number)
            )
            self._stream(events, clean, behaviour, done=False)
        elif self.server.owner._pause(behaviour.delay_s):
            reply = (
                _messages_reply(answer, behaviour, envelope)
                if messages
                else _responses_reply(answer, behaviour, envelope, number)
            )
            self._send_json(200, reply, behaviour.content_type)
        else:
            self.close_connection = True

    def _send_json(
        self,
        status: int,
        payload: dict[str, Any],
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), content_type, headers)

    def _send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", self.request_id)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(
        self, events: list[bytes], clean: bool, behaviour: Behaviour, *, done: bool = True
    ) -> None:
        owner = self.server.owner
        owner._stream_started()
        try:
            self.send_response(200)
            content_type = behaviour.content_type or "text/event-stream; charset=utf-8"
            self.send_header("Content-Type", content_type)
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("x-request-id", self.request_id)
            self.end_headers()
            for event in events:
                if not owner._pause(behaviour.delay_s):
                    self.close_connection = True
                    return
                self._write_event(event, behaviour.split_events)
            if not clean:
                # Closing without the zero-length chunk is what a crashed upstream looks like.
                self.close_connection = True
                return
            if done and behaviour.end_after is None:
                self._write_event(_frame_event(b"[DONE]", behaviour), behaviour.split_events)
            self.wfile.write(b"0\r\n\r\n")
        except _CLIENT_GONE:
            self.close_connection = True
            owner._stream_aborted()
        finally:
            owner._stream_ended()

    def _write_event(self, event: bytes, split: bool) -> None:
        if split:
            cut = len(event) // 2
            self.wfile.write(b"%x\r\n%b\r\n" % (cut, event[:cut]))
            self.wfile.flush()
            event = event[cut:]
        self.wfile.write(b"%x\r\n%b\r\n" % (len(event), event))
        self.wfile.flush()


class OpenAICompatibleServer:
    """A real HTTP server on localhost answering ``/v1/chat/completions``, ``/v1/completions``,
    ``/v1/responses``, ``/v1/embeddings`` and Anthropic's ``/v1/messages``.

    Behaviour is chosen per request by the body's ``model`` so one server can play many
    backends at once (a healthy one, a flaky one, a slow one) in the same test.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, default: Behaviour = _DEFAULT_BEHAVIOUR
    ) -> None:
        self._host = host
        self._port = port
        self._default = default
        # One re-entrant condition guards all state, so wait_for() predicates may read the
        # public properties (which take the same lock) and every state change can wake waiters.
        self._cond = threading.Condition(threading.RLock())
        self._behaviours: dict[str, Behaviour] = {}
        self._requests: list[RecordedRequest] = []
        self._request_count = 0
        self._model_counts: dict[str, int] = {}
        self._active = 0
        self._aborted = 0
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None

    def start(self) -> OpenAICompatibleServer:
        """Bind and serve in a daemon thread; binding here (not in __init__) leaks no socket."""
        with self._cond:
            if self._httpd is not None:
                raise RuntimeError("server already started")
            self._stopping.clear()
            httpd = _HTTPServer((self._host, self._port), self)
            host, port = httpd.server_address[:2]
            self._address = (str(host), int(port))
            self._httpd = httpd
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL_S},
                name=f"synthora-test-server:{port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Shut down promptly even while streams are in flight; safe to call twice."""
        with self._cond:
            httpd, thread = self._httpd, self._thread
            if httpd is None or thread is None:
                return
            self._httpd = self._thread = None
            self._stopping.set()  # wakes every delay sleep
            connections = list(self._connections)
        # Makes the listening socket readable so serve_forever() notices shutdown at once instead
        # of after its poll interval (Linux; elsewhere the poll interval applies).
        _shutdown_quietly(httpd.socket)
        httpd.shutdown()
        httpd.server_close()
        thread.join()
        for connection in connections:
            _shutdown_quietly(connection)
        with self._cond:
            self._cond.wait_for(lambda: not self._connections, timeout=_STOP_GRACE_S)

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """Known only after start(), because port 0 lets the OS pick a free port."""
        if self._address is None:
            raise RuntimeError("server not started")
        host, port = self._address
        return f"http://{host}:{port}/v1"

    def behave(self, model: str, behaviour: Behaviour) -> None:
        """Keyed by model name because that is the one field every client lets tests choose.
        The model's request count starts again, for `Behaviour.fail_first`."""
        with self._cond:
            self._behaviours[model] = behaviour
            self._model_counts.pop(model, None)

    def reset(self) -> None:
        """Forget behaviours, recorded requests and the abort count, for a shared server fixture."""
        with self._cond:
            self._behaviours.clear()
            self._requests.clear()
            self._model_counts.clear()
            self._aborted = 0
            self._cond.notify_all()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy, so assertions never race with connection threads appending to it."""
        with self._cond:
            return list(self._requests)

    @property
    def active_streams(self) -> int:
        """Non-zero after a client is done means a stream was leaked rather than closed."""
        with self._cond:
            return self._active

    @property
    def aborted_streams(self) -> int:
        """Proves a client's cancellation actually reached the wire.

        Detected on the first failing write, so with long delays it lags the client's close by up
        to two chunk intervals.
        """
        with self._cond:
            return self._aborted

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate`` holds; re-checked on every request and stream state change."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # --- called from connection threads -------------------------------------------------------

    def _track(self, connection: socket.socket) -> None:
        with self._cond:
            self._connections.add(connection)
            if self._stopping.is_set():
                # Accepted while stop() was running, after it took its snapshot.
                _shutdown_quietly(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._cond:
            self._connections.discard(connection)
            self._cond.notify_all()

    def _record(self, request: RecordedRequest) -> int:
        with self._cond:
            self._requests.append(request)
            self._request_count += 1
            self._cond.notify_all()
            return self._request_count

    def _count_for(self, model: str) -> int:
        """How many requests for `model` have come, this one included."""
        with self._cond:
            count = self._model_counts[model] = self._model_counts.get(model, 0) + 1
            return count

    def _behaviour_for(self, model: str) -> Behaviour:
        with self._cond:
            return self._behaviours.get(model, self._default)

    def _pause(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; returns whether to carry on."""
        return not (seconds > 0 and self._stopping.wait(seconds))

    def _stream_started(self) -> None:
        with self._cond:
            self._active += 1
            self._cond.notify_all()

    def _stream_aborted(self) -> None:
        with self._cond:
            if not self._stopping.is_set():
                self._aborted += 1
            self._cond.notify_all()

    def _stream_ended(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()


def _shutdown_quietly(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock``; it may already be closed by its peer, which is fine."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Terminate(Exception):
    """Raised by the signal handler to unwind the CLI's main thread out of its wait."""


def _raise_terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminate


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, for benchmarks that need the server in another process."""
    parser = argparse.ArgumentParser(
        prog="python -m synthora.testing.server",
        description="Local OpenAI-compatible server for offline tests and benchmarks.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--n-tokens", type=int, default=None, help="reply with N tokens")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each chunk")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _raise_terminate)
    signal.signal(signal.SIGINT, _raise_terminate)
    default = Behaviour(n_tokens=args.n_tokens, delay_s=args.delay)
    try:
        with OpenAICompatibleServer(args.host, args.port, default) as server:
            print(f"ready {server.base_url}", flush=True)
            # Nothing sets this event: the wait ends when a signal handler raises _Terminate.
            threading.Event().wait()
    except _Terminate:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
