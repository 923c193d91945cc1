"""The SSE splitter finds exactly the data payloads the SDK's decoder finds in the same bytes."""

from __future__ import annotations

import json

import pytest
from openai._streaming import SSEDecoder as SDKDecoder

from synthora.models.sse import SSEDecoder

CHUNK = b'{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"hi"}}]}'
STREAMS = {
    "plain": b"data: " + CHUNK + b"\n\ndata: " + CHUNK + b"\n\ndata: [DONE]\n\n",
    "crlf": b"data: " + CHUNK + b"\r\n\r\ndata: [DONE]\r\n\r\n",
    "cr-only": b"data: " + CHUNK + b"\r\rdata: [DONE]\r\r",
    "comments-and-keepalive": b": keep-alive\n\n: ping\ndata: " + CHUNK + b"\n\n",
    "event-lines": b"event: message\ndata: " + CHUNK + b"\nid: 7\nretry: 100\n\n",
    "multi-line-data": b'data: {"id":"x",\ndata: "choices":[]}\n\n',
    "no-space-after-colon": b"data:" + CHUNK + b"\n\n",
    "no-final-blank-line": b"data: " + CHUNK + b"\n\ndata: " + CHUNK,
    "empty-data": b"data:\n\n",
}


def ours(pieces: list[bytes]) -> list[bytes]:
    decoder = SSEDecoder()
    payloads = [p for piece in pieces for p in decoder.feed(piece)]
    return payloads + decoder.flush()


def sdks(pieces: list[bytes]) -> list[bytes]:
    return [sse.data.encode() for sse in SDKDecoder().iter_bytes(iter(pieces))]


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("split", [None, 1, 7], ids=["whole", "every-byte", "every-7"])
def test_same_payloads_as_the_sdk(name: str, split: int | None) -> None:
    """However the bytes are cut into network reads, we find the SDK's payloads."""
    data = STREAMS[name]
    pieces = [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
    assert ours(pieces) == sdks(pieces)


def test_crlf_split_between_reads() -> None:
    """A CR at the end of one read and its LF at the start of the next are one line end."""
    assert ours([b"data: 1\r", b"\n\r", b"\ndata: 2\r\n\r\n"]) == [b"1", b"2"]


def test_complete_last_line_without_blank_line_is_kept() -> None:
    """Liberal where the SDK is strict: a whole last data line is delivered without a blank line."""
    assert sdks([b"data: 1\n\ndata: 2\n"]) == [b"1"]
    assert ours([b"data: 1\n\ndata: 2\n"]) == [b"1", b"2"]


def test_error_event_is_wrapped_as_an_error_object() -> None:
    """`event: error` with a bare error body reads like OpenAI's in-data error object."""
    (payload,) = ours([b'event: error\ndata: {"message": "overloaded"}\n\n'])
    assert json.loads(payload) == {"error": {"message": "overloaded"}}
