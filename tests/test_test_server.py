"""Tests for the local OpenAI-compatible server, driven over real HTTP by the real SDK."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from synthora.testing.server import (
    Behaviour,
    OpenAICompatibleServer,
    RecordedRequest,
    ToolCallSpec,
)

USER_MESSAGE: Any = [{"role": "user", "content": "hello there world"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def shared_server() -> Iterator[OpenAICompatibleServer]:
    with OpenAICompatibleServer() as server:
        yield server


@pytest.fixture
def server(shared_server: OpenAICompatibleServer) -> OpenAICompatibleServer:
    shared_server.reset()
    return shared_server


@pytest.fixture
def client(server: OpenAICompatibleServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key="test-key", base_url=server.base_url, max_retries=0) as client:
        yield client


@pytest.fixture
def http(server: OpenAICompatibleServer) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=server.base_url) as http:
        yield http


def _port(server: OpenAICompatibleServer) -> int:
    return int(server.base_url.rsplit(":", 1)[1].split("/")[0])


def _read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> bytes:
    while marker not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed early")
        buffer += data
    end = buffer.index(marker) + len(marker)
    line = bytes(buffer[:end])
    del buffer[:end]
    return line


def _read_exactly(sock: socket.socket, buffer: bytearray, size: int) -> bytes:
    while len(buffer) < size:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed early")
        buffer += data
    out = bytes(buffer[:size])
    del buffer[:size]
    return out


def _raw_exchange(
    sock: socket.socket, buffer: bytearray, path: str, body: dict[str, Any]
) -> tuple[bytes, list[bytes]]:
    """Send one request and return the header block and the HTTP chunks (or the plain body)."""
    data = json.dumps(body).encode()
    sock.sendall(
        b"POST %b HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (path.encode(), len(data), data)
    )
    head = _read_until(sock, buffer, b"\r\n\r\n")
    lowered = head.lower()
    if b"transfer-encoding: chunked" not in lowered:
        length = int(lowered.split(b"content-length: ")[1].split(b"\r\n")[0])
        return head, [_read_exactly(sock, buffer, length)]
    chunks: list[bytes] = []
    while True:
        size = int(_read_until(sock, buffer, b"\r\n")[:-2], 16)
        chunk = _read_exactly(sock, buffer, size)
        assert _read_exactly(sock, buffer, 2) == b"\r\n"
        if size == 0:
            return head, chunks
        chunks.append(chunk)


def _chat_text(stream: Any) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def test_chat_json_reply_echoes_the_last_user_message(client: openai.OpenAI) -> None:
    """A non-streamed chat reply looks like OpenAI's and counts words as tokens."""
    reply = client.chat.completions.create(model="gpt-test", messages=USER_MESSAGE)

    assert reply.object == "chat.completion"
    assert reply.model == "gpt-test"
    assert reply.id.startswith("chatcmpl-")
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == "You said: hello there world"
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 6)
    assert reply.usage.total_tokens == 9


def test_json_reply_wire_shape(server: OpenAICompatibleServer, http: httpx2.Client) -> None:
    """JSON replies carry exactly OpenAI's keys; usage="none" and id_prefix are honoured."""
    server.behave("bare", Behaviour(usage="none", id_prefix="gen-", tokens=("x",)))
    chat = http.post("/chat/completions", json={"model": "m", "messages": USER_MESSAGE})
    bare = http.post("/chat/completions", json={"model": "bare", "messages": USER_MESSAGE})
    legacy = http.post("/completions", json={"model": "m", "prompt": "hi"})

    assert chat.headers["content-type"] == "application/json"
    assert chat.headers["x-request-id"].startswith("req_")
    reply = chat.json()
    assert set(reply) == {"id", "object", "created", "model", "choices", "usage"}
    assert reply["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "You said: hello there world"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert "usage" not in bare.json()
    assert bare.json()["id"].startswith("gen-")
    assert legacy.json()["choices"] == [
        {"text": " You wrote: hi", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]


def test_chat_stream_starts_with_null_content_and_reassembles(
    server: OpenAICompatibleServer, client: openai.OpenAI
) -> None:
    """A chat stream opens with a role-only chunk; the SDK's loop rebuilds the text."""
    server.behave("m", Behaviour(tokens=("Hel", "lo", " world")))
    chunks = list(client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True))

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content is None
    assert chunks[1].choices[0].delta.content == "Hel"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hello world"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].choices[0].delta.content is None
    assert all(c.object == "chat.completion.chunk" and c.model == "m" for c in chunks)
    assert all(c.choices and c.usage is None for c in chunks)


@pytest.mark.parametrize(
    ("usage", "include_usage", "where"),
    [
        ("separate", False, None),
        ("separate", True, "separate"),
        ("on_finish", False, "finish"),
        ("on_finish", True, "finish"),
        ("none", True, None),
    ],
)
def test_stream_usage_placement(
    server: OpenAICompatibleServer,
    client: openai.OpenAI,
    usage: Any,
    include_usage: bool,
    where: str | None,
) -> None:
    """Usage arrives in an empty-choices chunk only when asked, on the finish chunk, or never."""
    server.behave("m", Behaviour(tokens=("a", "b"), usage=usage))
    extra: Any = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(
        client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True, **extra)
    )

    with_usage = [c for c in chunks if c.usage is not None]
    if where is None:
        assert with_usage == []
        assert all(c.choices for c in chunks)
    elif where == "separate":
        assert with_usage == [chunks[-1]]
        assert chunks[-1].choices == []
        assert chunks[-2].choices[0].finish_reason == "stop"
    else:
        assert with_usage == [chunks[-1]]
        assert chunks[-1].choices[0].finish_reason == "stop"
    for chunk in with_usage:
        assert chunk.usage is not None
        assert (chunk.usage.prompt_tokens, chunk.usage.completion_tokens) == (3, 2)


def test_first_chunk_may_carry_content(
    server: OpenAICompatibleServer, client: openai.OpenAI
) -> None:
    """With first_content_null off, the role rides on the first content chunk."""
    server.behave("m", Behaviour(tokens=("A", "B"), first_content_null=False))
    chunks = list(client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True))

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == "A"
    assert _chat_text(chunks) == "AB"


def test_n_tokens_and_finish_reason(server: OpenAICompatibleServer, client: openai.OpenAI) -> None:
    """n_tokens generates " w0", " w1", ... and finish_reason is passed through."""
    server.behave("m", Behaviour(n_tokens=4, finish_reason="length"))
    reply = client.chat.completions.create(model="m", messages=USER_MESSAGE)
    chunks = list(client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True))

    assert reply.choices[0].message.content == " w0 w1 w2 w3"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 4
    assert _chat_text(chunks) == " w0 w1 w2 w3"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_default_reply_reads_text_parts_and_counts_all_messages(client: openai.OpenAI) -> None:
    """List content contributes its text parts; prompt tokens count every message's words."""
    messages: Any = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi there"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
    ]
    reply = client.chat.completions.create(model="m", messages=messages)

    assert reply.choices[0].message.content == "You said: hi there"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 4


def test_completions_json_reply(client: openai.OpenAI) -> None:
    """The legacy completions endpoint answers with a text_completion object."""
    reply = client.completions.create(model="davinci-test", prompt="the quick fox")

    assert reply.object == "text_completion"
    assert reply.model == "davinci-test"
    assert reply.id.startswith("cmpl-")
    assert reply.choices[0].text == " You wrote: the quick fox"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 6)


def test_completions_stream(client: openai.OpenAI) -> None:
    """A completions stream carries text pieces, then an empty finish chunk, then usage."""
    chunks = list(
        client.completions.create(
            model="m",
            prompt=["jumps over"],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    assert "".join(c.choices[0].text for c in chunks if c.choices) == " You wrote: jumps over"
    assert chunks[1].choices[0].text == " wrote"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-2].choices[0].text == ""
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5


def test_tool_call_deltas_reassemble_in_the_sdk(
    server: OpenAICompatibleServer, client: openai.OpenAI
) -> None:
    """Tool calls stream as name-then-argument-fragment deltas the SDK's stream helper joins."""
    arguments = '{"city": "Paris", "unit": "celsius"}'
    calls = (ToolCallSpec("get_weather", arguments), ToolCallSpec("noop", "{}", id="call_x"))
    server.behave("m", Behaviour(tool_calls=calls))

    with client.chat.completions.stream(
        model="m", messages=USER_MESSAGE, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    raw = list(
        client.chat.completions.create(
            model="m", messages=USER_MESSAGE, tools=[WEATHER_TOOL], stream=True
        )
    )

    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert not message.content
    assert message.tool_calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("call_0", "get_weather", arguments),
        ("call_x", "noop", "{}"),
    ]
    fragments = [
        d.function.arguments
        for c in raw
        if c.choices and c.choices[0].delta.tool_calls
        for d in c.choices[0].delta.tool_calls
        if d.index == 0 and d.function and d.function.arguments
    ]
    assert len(fragments) > 1
    assert "".join(fragments) == arguments
    assert all(c.choices[0].delta.content is None for c in raw if c.choices)


def test_tool_calls_in_json_reply(server: OpenAICompatibleServer, client: openai.OpenAI) -> None:
    """A non-streamed reply lists the tool calls with null content and counts one token each."""
    server.behave("m", Behaviour(tool_calls=(ToolCallSpec("get_weather", '{"city": "Oslo"}'),)))
    reply = client.chat.completions.create(model="m", messages=USER_MESSAGE, tools=[WEATHER_TOOL])

    message = reply.choices[0].message
    assert message.content is None
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_0",
        "get_weather",
        '{"city": "Oslo"}',
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 1


@pytest.mark.parametrize(
    "case",
    [
        (400, openai.BadRequestError, "invalid_request_error", None),
        (401, openai.AuthenticationError, "invalid_request_error", "invalid_api_key"),
        (429, openai.RateLimitError, "rate_limit_exceeded", 429),
        (500, openai.InternalServerError, "server_error", "server_error"),
        (503, openai.InternalServerError, "server_error", 503),
    ],
    ids=lambda case: str(case[0]),
)
def test_error_status_raises_matching_sdk_error(
    server: OpenAICompatibleServer,
    client: openai.OpenAI,
    case: tuple[int, type[openai.APIStatusError], str, str | int | None],
) -> None:
    """An error status maps to the SDK's exception class; integer codes survive in the body."""
    status, error_class, error_type, code = case
    behaviour = Behaviour(
        status=status, error_message="Slow down", error_type=error_type, error_code=code
    )
    server.behave("m", behaviour)

    for stream in (False, True):
        with pytest.raises(error_class) as caught:
            client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=stream)
        error = caught.value
        assert type(error) is error_class
        assert error.status_code == status
        assert error.message == f"Error code: {status} - Slow down"
        assert error.body == {
            "message": "Slow down",
            "type": error_type,
            "param": None,
            "code": code,
        }
        assert error.type == error_type
        # The SDK stringifies the code attribute, so only the body keeps the integer.
        assert error.code == (None if code is None else str(code))
        assert error.request_id is not None
        assert error.request_id.startswith("req_")


@pytest.mark.parametrize("status", [400, 422])
def test_reject_stream_options(
    server: OpenAICompatibleServer, client: openai.OpenAI, status: int
) -> None:
    """Servers that do not know stream_options refuse it, and answer normally without it."""
    server.behave("m", Behaviour(reject_stream_options=status, tokens=("ok",)))

    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="m",
            messages=USER_MESSAGE,
            stream=True,
            stream_options={"include_usage": True},
        )
    assert caught.value.status_code == status
    assert "stream_options" in caught.value.message
    text = _chat_text(client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True))
    assert text == "ok"


def test_break_after_raises_connection_error(
    server: OpenAICompatibleServer, client: openai.OpenAI
) -> None:
    """A stream cut without its terminating chunk surfaces as APIConnectionError from h11."""
    server.behave("m", Behaviour(tokens=("a", "b", "c", "d"), break_after=2))
    received: list[str | None] = []

    stream = client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
    with pytest.raises(openai.APIConnectionError) as caught:
        received.extend(chunk.choices[0].delta.content for chunk in stream)

    assert received == [None, "a", "b"]
    assert type(caught.value) is openai.APIConnectionError
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert "incomplete chunked read" in str(caught.value.__cause__)
    assert server.wait_for(lambda: server.active_streams == 0)
    assert server.aborted_streams == 0


def test_error_after_raises_api_error(
    server: OpenAICompatibleServer, client: openai.OpenAI
) -> None:
    """An error event inside a 200 stream makes the SDK raise APIError with its message."""
    behaviour = Behaviour(tokens=("a", "b", "c"), error_after=1, error_message="Model overloaded")
    server.behave("m", behaviour)
    received: list[str | None] = []

    stream = client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
    with pytest.raises(openai.APIError) as caught:
        received.extend(chunk.choices[0].delta.content for chunk in stream)

    assert received == [None, "a"]
    assert type(caught.value) is openai.APIError
    assert caught.value.message == "Model overloaded"
    assert caught.value.type == "server_error"


TRICKY_TOKENS = ("Ünï", "cödé", " ✓", ' "quoted"\n')


@pytest.mark.parametrize(
    ("behaviour", "marker"),
    [
        (Behaviour(tokens=TRICKY_TOKENS, crlf=True), b"\r\n\r\n"),
        (
            Behaviour(tokens=TRICKY_TOKENS, keepalive_comments=True),
            b": keep-alive\n\nevent: message\ndata: ",
        ),
        (Behaviour(tokens=TRICKY_TOKENS, split_events=True), b"data: "),
    ],
    ids=["crlf", "keepalive_comments", "split_events"],
)
def test_sse_framing_variants_parse_to_the_same_text(
    server: OpenAICompatibleServer,
    client: openai.OpenAI,
    http: httpx2.Client,
    behaviour: Behaviour,
    marker: bytes,
) -> None:
    """CRLF line ends, keep-alive comments and split events all decode to the same reply."""
    server.behave("m", behaviour)

    text = _chat_text(client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True))
    raw = http.post("/chat/completions", json={"model": "m", "stream": True}).content

    assert text == "".join(TRICKY_TOKENS)
    assert marker in raw
    assert raw.endswith(b"data: [DONE]" + (b"\r\n\r\n" if behaviour.crlf else b"\n\n"))
    assert (b"\r" in raw) == behaviour.crlf


def test_each_event_is_one_http_chunk(server: OpenAICompatibleServer) -> None:
    """Every SSE event travels as exactly one HTTP chunk, or two with split_events."""
    server.behave("whole", Behaviour(tokens=("a", "b")))
    server.behave("split", Behaviour(tokens=("a", "b"), split_events=True))
    buffer = bytearray()

    with socket.create_connection(("127.0.0.1", _port(server))) as sock:
        head, whole = _raw_exchange(
            sock, buffer, "/v1/chat/completions", {"model": "whole", "stream": True}
        )
        # Same connection: keep-alive works after a chunked response.
        _, split = _raw_exchange(
            sock, buffer, "/v1/chat/completions", {"model": "split", "stream": True}
        )

    assert head.startswith(b"HTTP/1.1 200")
    assert b"content-type: text/event-stream" in head.lower()
    assert b"transfer-encoding: chunked" in head.lower()
    assert len(whole) == 5  # role, a, b, finish, [DONE]
    assert all(c.startswith(b"data: ") and c.endswith(b"\n\n") for c in whole)
    assert whole[-1] == b"data: [DONE]\n\n"
    assert len(split) == 2 * len(whole)
    assert all(not c.endswith(b"\n\n") for c in split[::2])
    assert [a + b for a, b in zip(split[::2], split[1::2], strict=True)][-1] == whole[-1]


def test_zero_delay_stream_is_fast(server: OpenAICompatibleServer) -> None:
    """A 2,000-chunk stream with no delay is served quickly enough for benchmarks."""
    server.behave("big", Behaviour(n_tokens=2000))
    buffer = bytearray()

    with socket.create_connection(("127.0.0.1", _port(server))) as sock:
        started = time.perf_counter()
        _, chunks = _raw_exchange(
            sock, buffer, "/v1/chat/completions", {"model": "big", "stream": True}
        )
        elapsed = time.perf_counter() - started

    assert len(chunks) == 2003  # role + 2000 tokens + finish + [DONE]
    assert elapsed < 0.5


def test_abandoned_stream_counts_as_aborted(
    server: OpenAICompatibleServer, client: openai.OpenAI
) -> None:
    """Closing a slow stream early is noticed as an abort and the stream stops being active."""
    server.behave("slow", Behaviour(n_tokens=1000, delay_s=0.02))

    stream = client.chat.completions.create(model="slow", messages=USER_MESSAGE, stream=True)
    first = next(iter(stream))
    assert server.active_streams == 1
    stream.close()

    assert first.choices[0].delta.role == "assistant"
    assert server.wait_for(lambda: server.aborted_streams == 1 and server.active_streams == 0)


def test_headers_delay_triggers_client_timeout(
    server: OpenAICompatibleServer, client: openai.OpenAI
) -> None:
    """A server slow to send its status line makes the SDK raise APITimeoutError."""
    server.behave("stuck", Behaviour(headers_delay_s=30))

    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="stuck", messages=USER_MESSAGE, timeout=0.2)

    assert len(server.requests) == 1


def test_recorded_requests_carry_headers_and_body(
    server: OpenAICompatibleServer, client: openai.OpenAI
) -> None:
    """Each request is recorded in order with lower-cased headers and the parsed JSON body."""
    client.chat.completions.create(model="a", messages=USER_MESSAGE, temperature=0.5)
    client.completions.create(model="b", prompt="x", extra_headers={"X-Trace": "t-1"})

    first, second = server.requests
    assert isinstance(first, RecordedRequest)
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == "Bearer test-key"
    assert first.headers["content-type"] == "application/json"
    assert first.body == {"model": "a", "messages": USER_MESSAGE, "temperature": 0.5}
    assert second.path == "/v1/completions"
    assert second.headers["x-trace"] == "t-1"
    assert second.body["prompt"] == "x"

    server.reset()
    assert server.requests == []


def test_unknown_path_is_404(
    server: OpenAICompatibleServer, client: openai.OpenAI, http: httpx2.Client
) -> None:
    """Unknown URLs get an OpenAI-style 404 error body."""
    response = http.post("/images/generations", json={"model": "m", "prompt": "x"})

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/images/generations)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    with pytest.raises(openai.NotFoundError):
        client.models.list()
    assert [r.path for r in server.requests] == ["/v1/images/generations", "/v1/models"]


def test_malformed_json_is_400(http: httpx2.Client) -> None:
    """A body that is not a JSON object gets a 400 and the connection stays usable."""
    bad = http.post("/chat/completions", content=b"{nope")
    not_object = http.post("/chat/completions", content=b"[1, 2]")
    good = http.post("/chat/completions", json={"model": "m", "messages": USER_MESSAGE})

    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert not_object.status_code == 400
    assert good.status_code == 200


async def _open_streams(client: openai.AsyncOpenAI, model: str, count: int) -> list[Any]:
    return list(
        await asyncio.gather(
            *(
                client.chat.completions.create(model=model, messages=USER_MESSAGE, stream=True)
                for _ in range(count)
            )
        )
    )


async def _stream_text(stream: Any) -> str:
    return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])


async def test_two_hundred_concurrent_streams(server: OpenAICompatibleServer) -> None:
    """Two hundred concurrent streaming clients are all served correctly."""
    server.behave("m", Behaviour(tokens=("o", "k"), delay_s=0.01))
    async with openai.AsyncOpenAI(
        api_key="test-key", base_url=server.base_url, max_retries=0
    ) as client:
        streams = await _open_streams(client, "m", 200)
        texts = await asyncio.gather(*(_stream_text(stream) for stream in streams))

    assert texts == ["ok"] * 200
    assert len(server.requests) == 200
    assert server.wait_for(lambda: server.active_streams == 0)


async def test_two_hundred_streams_open_at_once_and_stop_releases_them() -> None:
    """Two hundred streams can be open simultaneously, and stop() cuts them all off."""
    server = OpenAICompatibleServer(default=Behaviour(n_tokens=5, delay_s=30)).start()
    try:
        async with openai.AsyncOpenAI(
            api_key="test-key", base_url=server.base_url, max_retries=0
        ) as client:
            streams = await _open_streams(client, "m", 200)
            all_open = await asyncio.to_thread(
                server.wait_for, lambda: server.active_streams == 200
            )
            await asyncio.to_thread(server.stop)
            outcomes = await asyncio.gather(
                *(_stream_text(stream) for stream in streams), return_exceptions=True
            )
    finally:
        server.stop()

    assert all_open
    assert all(isinstance(outcome, openai.APIConnectionError) for outcome in outcomes)
    assert (server.active_streams, server.aborted_streams) == (0, 0)


def test_wait_for_times_out() -> None:
    """wait_for reports False when the condition never becomes true."""
    server = OpenAICompatibleServer()
    assert server.wait_for(lambda: server.active_streams == 1, timeout=0.05) is False


def test_stop_is_prompt_with_a_stream_in_flight() -> None:
    """stop() wakes slow streams instead of waiting them out, and can be called twice."""
    server = OpenAICompatibleServer(default=Behaviour(n_tokens=10, delay_s=30)).start()
    with openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0) as client:
        stream = client.chat.completions.create(model="m", messages=USER_MESSAGE, stream=True)
        assert server.active_streams == 1

        started = time.perf_counter()
        server.stop()
        elapsed = time.perf_counter() - started
        with pytest.raises(openai.APIConnectionError):
            list(stream)
        stream.close()
    server.stop()

    assert elapsed < 1.0
    assert server.active_streams == 0
    assert server.aborted_streams == 0
    with (
        pytest.raises(openai.APIConnectionError),
        openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0) as late,
    ):
        late.chat.completions.create(model="m", messages=USER_MESSAGE, timeout=2)


def test_base_url_requires_start() -> None:
    """base_url is only known once the socket is bound by start()."""
    with pytest.raises(RuntimeError):
        _ = OpenAICompatibleServer().base_url


def test_cli_serves_until_sigterm() -> None:
    """The CLI prints one ready line, serves requests and exits 0 on SIGTERM."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "synthora.testing.server", "--n-tokens", "3", "--delay", "0"]

    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        try:
            line = process.stdout.readline()
            assert line.startswith("ready http://127.0.0.1:")
            base_url = line.split()[1]
            with openai.OpenAI(api_key="k", base_url=base_url, max_retries=0) as client:
                stream = client.chat.completions.create(
                    model="m", messages=USER_MESSAGE, stream=True
                )
                assert _chat_text(stream) == " w0 w1 w2"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.returncode is None:
                process.kill()
                process.wait()
        assert process.stdout.read() == ""
        assert "Traceback" not in process.stderr.read()
    assert base_url.endswith("/v1")
