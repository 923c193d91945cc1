"""The SSE splitter finds exactly the data payloads the SDK's decoder finds in the same bytes, and,
for an observed client, exactly the SDK's own events."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from anthropic._streaming import ServerSentEvent as AnthropicEvent
from anthropic._streaming import SSEDecoder as AnthropicDecoder
from openai._streaming import ServerSentEvent
from openai._streaming import SSEDecoder as SDKDecoder

from synthora.models.sse import SDKEvents, SSEDecoder, unended_payloads
from synthora.models.sse_stream import tapped_event

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
    return payloads + unended_payloads(decoder.rest())


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


SDKS = {"openai": (ServerSentEvent, SDKDecoder), "anthropic": (AnthropicEvent, AnthropicDecoder)}


def fields(event: Any) -> tuple[Any, ...]:
    return (event.event, event.data, event.id, event.retry, getattr(event, "raw", None))


def sdk_events_from_our_blocks(sdk: str, pieces: list[bytes]) -> list[tuple[Any, ...]]:
    """What an observed client's SDK reads: its events made from the blocks our splitter found."""
    decoder = SSEDecoder()
    events = SDKEvents(SDKS[sdk][0], decoder)
    found = [event for piece in pieces for event in events.of(decoder.blocks(piece))]
    found += events.at_end(decoder.rest())
    return [fields(event) for event in found]


def sdk_events_of_its_own(sdk: str, pieces: list[bytes]) -> list[tuple[Any, ...]]:
    return [fields(event) for event in SDKS[sdk][1]().iter_bytes(iter(pieces))]


ODD_STREAMS = {
    **STREAMS,
    "byte-order-mark": b"\xef\xbb\xbfdata: 1\n\ndata: 2\n\n",
    "ids-persist-and-dispatch-alone": b"id: 7\n\ndata: 1\n\n\n\ndata: 2\nid: 8\n\n\n\n",
    "id-with-nul-is-ignored": b"id: a\x00b\ndata: 1\n\n",
    "retry": b"retry: 100\ndata: 1\n\nretry: soon\ndata: 2\n\nretry: 5\n\n",
    "event-without-data": b"event: ping\n\nevent:\ndata: x\n\n",
    "unknown-fields-and-bare-names": b"foo: bar\ndata\ndata: 1\nerror: {}\n\n",
    "leading-blank-lines": b"\n\n\ndata: 1\n\n\n\n\n",
    "utf8-text": 'data: {"t": "héllo ✓"}\n\n'.encode(),
}


@pytest.mark.parametrize("sdk", SDKS)
@pytest.mark.parametrize("name", ODD_STREAMS)
@pytest.mark.parametrize("split", [None, 1, 5], ids=["whole", "every-byte", "every-5"])
def test_an_observed_client_reads_the_sdks_own_events(sdk: str, name: str, split: int | None):
    """The events made from our split are the SDK decoder's, field for field, quirks included."""
    data = ODD_STREAMS[name]
    pieces = [data] if split is None else [data[i : i + split] for i in range(0, len(data), split)]
    assert sdk_events_from_our_blocks(sdk, pieces) == sdk_events_of_its_own(sdk, pieces)


LINES = [
    b"data: 1",
    b"data:",
    b"data",
    b'data: {"a": [1]}',
    b"event: e",
    b"event:",
    b"id: 3",
    b"id:",
    b"retry: 9",
    b"retry: x",
    b": note",
    b"x: y",
    b"",
    b"\xc3\xa9: z",
]
ENDS = [b"\n", b"\r\n", b"\r"]


@pytest.mark.parametrize("sdk", SDKS)
@pytest.mark.parametrize("seed", range(300))
def test_the_sdks_events_for_any_stream_cut_anywhere(sdk: str, seed: int) -> None:
    """Random streams of every field kind, line end and blank-line run, cut at random places."""
    rng = random.Random(seed)
    data = b"".join(rng.choice(LINES) + rng.choice(ENDS) for _ in range(rng.randint(1, 30)))
    if rng.random() < 0.1:
        data = b"\xef\xbb\xbf" + data
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 8))))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert sdk_events_from_our_blocks(sdk, pieces) == sdk_events_of_its_own(sdk, pieces), data


def test_a_line_that_is_not_utf8_fails_after_the_events_before_it() -> None:
    """As in the SDK's decoder: the events before the bad line arrive, then the error."""
    data = b"data: 1\n\nevent: x\ndata: \xff\n\n"
    decoder = SSEDecoder()
    ours = SDKEvents(ServerSentEvent, decoder).of(decoder.blocks(data))
    theirs = SDKDecoder().iter_bytes(iter([data]))
    assert next(ours).data == next(theirs).data == "1"
    with pytest.raises(UnicodeDecodeError):
        next(ours)
    with pytest.raises(UnicodeDecodeError):
        next(theirs)


@pytest.mark.parametrize(
    "data",
    [CHUNK.decode(), '{"n": 123456789012345678901234567890, "x": -0.0}', '{"a": 1, "a": 2}',
     '{"v": NaN}', '{"t": "\\ud83d"}', '{"f": 1e400}', "", "[DONE]", '{"cut": '],
)  # fmt: skip
def test_an_observed_clients_events_read_their_json_as_the_sdks_do(data: str) -> None:
    """The tap's events read JSON with msgspec, falling back to ``json.loads`` where it refuses:
    the same values, or the same error, as the SDK's own event."""
    theirs, ours = ServerSentEvent(data=data), tapped_event(ServerSentEvent)(data=data)
    try:
        expected = theirs.json()
    except json.JSONDecodeError:
        with pytest.raises(json.JSONDecodeError):
            ours.json()
        return
    assert repr(ours.json()) == repr(expected)
