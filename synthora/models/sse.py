"""Server-sent events, split without I/O: bytes in, ``data`` payloads out.

The hot path of a streamed run. Almost every event of an OpenAI-compatible stream is one
``data: {…}`` line followed by a blank line; that case is one ``split`` and a slice. Everything
else the SSE format allows takes the slow path: CR and CRLF line ends (also when a CRLF is split
across two network reads), ``event:``/``id:``/``retry:`` fields, ``:`` comments and keep-alives,
multi-line ``data``, a payload split across reads (kept as pieces and joined once, so a
megabyte-long event costs linear time), a UTF-8 byte-order mark, and llama.cpp's ``error:`` field
lines (an error, not an unknown field to ignore). At the end of the stream, a last event whose
lines are complete but which lacks the closing blank line is still delivered (some servers end
that way, often with the usage chunk); a last line cut off mid-way is dropped, as the SSE
specification and the SDK's own decoder do.

An observed client's SDK reads its events from the same split (`SDKEvents`), by the SDK's rules.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

__all__ = ["SDKEvents", "SSEDecoder", "payloads_of", "unended_payloads"]

SDKEvent = TypeVar("SDKEvent")

_FAST_PREFIX = b"data: "
_BOM = b"\xef\xbb\xbf"
_ERROR_OBJECT = re.compile(rb'\s*\{\s*"error"\s*:')


class SSEDecoder:
    """Feed network reads; get back the complete events' ``data`` payloads, in order.

    An ``event: error`` whose data is a bare error object is returned wrapped as
    ``{"error": …}``, the shape OpenAI uses inside data lines, so one check catches both.
    """

    __slots__ = ("_cr_pending", "_pending", "_started", "began_with_bom")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._cr_pending = False
        self._started = False
        self.began_with_bom = False

    def feed(self, data: bytes) -> list[bytes]:
        return payloads_of(self.blocks(data))

    def blocks(self, data: bytes) -> list[bytes]:
        """The events `data` completes, each unparsed (its lines joined by LF, no blank line)."""
        if not self._started and data:
            self._started = True
            self.began_with_bom = data.startswith(_BOM)
            data = data.removeprefix(_BOM)
        if self._cr_pending and data[:1] == b"\n":
            data = data[1:]
        if not data:
            return []
        self._cr_pending = data[-1:] == b"\r"
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        pending = self._pending
        if pending:
            if b"\n\n" not in data and not (pending[-1][-1:] == b"\n" and data[:1] == b"\n"):
                pending.append(data)
                return []
            data = b"".join(pending) + data
            pending.clear()
        blocks = data.split(b"\n\n")
        rest = blocks.pop()
        if rest:
            pending.append(rest)
        return blocks

    def rest(self) -> bytes:
        """At the end of the stream: what no blank line ended (taken, so only once)."""
        rest = b"".join(self._pending)
        self._pending.clear()
        return rest


def unended_payloads(rest: bytes) -> list[bytes]:
    """The payload of a last event whose lines are whole but which no blank line ended."""
    if not rest.endswith(b"\n"):
        return []
    payload = _parse_block(rest.rstrip(b"\n"))
    return [] if payload is None else [payload]


def payloads_of(blocks: list[bytes]) -> list[bytes]:
    """The ``data`` payloads of events split by `SSEDecoder.blocks`, in order."""
    found = []
    for block in blocks:
        if block.startswith(_FAST_PREFIX) and b"\n" not in block:
            found.append(block[6:])
        else:
            payload = _parse_block(block)
            if payload is not None:
                found.append(payload)
    return found


def _parse_block(block: bytes) -> bytes | None:
    data: list[bytes] = []
    event = b""
    for line in block.split(b"\n"):
        if not line or line[:1] == b":":
            continue
        name, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value
        elif name == b"error":  # llama.cpp: "error: {...}" instead of an error event
            data.append(value)
            event = b"error"
    if not data:
        return None
    payload = b"\n".join(data)
    if event == b"error" and not _ERROR_OBJECT.match(payload):
        payload = b'{"error":' + payload + b"}"
    return payload


class SDKEvents(Generic[SDKEvent]):
    """The events an SDK's own decoder finds in the same bytes, as its own objects, made from the
    blocks `SSEDecoder` split; so an observed client's stream is split once, here, for both the
    SDK and the run (the SDK's line-by-line decoder costs ~5 µs an event). The ``openai`` and
    ``anthropic`` decoders share their rules; anthropic's events also keep their lines (``raw``:
    every line since the last blank one, comments and unknown fields included).

    Its rules, not the SSE specification's where they differ, since the caller must get what the
    SDK would give: a leading byte-order mark is part of the first field's name (so that field
    is ignored), an event with no data but a last event id is still an event, a last event no
    blank line follows is dropped (though its blank lines and fields count), and a line that is
    not UTF-8 raises `UnicodeDecodeError`.
    """

    __slots__ = ("_bom", "_decoder", "_last_id", "_make", "_raw")

    def __init__(self, make: Callable[..., SDKEvent], decoder: SSEDecoder) -> None:
        self._make = make  # the SDK's ServerSentEvent
        self._decoder = decoder  # the splitter whose blocks these are
        self._raw = _keeps_lines(make)
        self._last_id: str | None = None
        self._bom: bool | None = None  # whether to prefix the first block with one; unknown yet

    def of(self, blocks: list[bytes]) -> Iterator[SDKEvent]:
        """The SDK's events for `blocks`, which the decoder has just split; one at a time, as the
        SDK's decoder yields them, so a line it cannot decode fails after the events before it."""
        if self._bom is None and blocks:
            blocks = [self._first(blocks[0]), *blocks[1:]]
        for block in blocks:
            if not block.startswith(_FAST_PREFIX) or b"\n" in block:
                yield from self._parse((*block.split(b"\n"), b""))  # with its ending blank line
            elif self._raw:
                line = block.decode()
                yield self._make(data=line[6:], id=self._last_id, raw=[line])
            else:
                yield self._make(data=block[6:].decode(), id=self._last_id)

    def at_end(self, rest: bytes) -> Iterator[SDKEvent]:
        """The SDK's events in `rest` (`SSEDecoder.rest`): its whole lines, its last line not
        (nothing ends that line, so the SDK's decoder dispatches nothing after it)."""
        if self._bom is None and rest:
            rest = self._first(rest)
        yield from self._parse(rest.split(b"\n")[:-1])

    def _first(self, block: bytes) -> bytes:
        self._bom = self._decoder.began_with_bom
        return _BOM + block if self._bom else block

    def _parse(self, lines: Iterable[bytes]) -> Iterator[SDKEvent]:
        event: str | None = None
        data: list[str] = []
        retry: int | None = None
        kept: list[str] = []
        for raw in lines:
            line = raw.decode()  # line by line, as the SDK decodes
            if not line:
                if event or data or self._last_id or retry is not None:
                    fields = {"raw": kept} if self._raw else {}
                    yield self._make(
                        event=event, data="\n".join(data), id=self._last_id, retry=retry, **fields
                    )
                event, data, retry, kept = None, [], None, []
                continue
            kept.append(line)
            if line[:1] == ":":
                continue
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                if "\0" not in value:
                    self._last_id = value
            elif name == "retry":
                with contextlib.suppress(ValueError):  # the SDK's int(), not the spec's digits
                    retry = int(value)


@functools.cache
def _keeps_lines(make: Callable[..., object]) -> bool:
    """Whether an SDK's event class keeps the lines it was decoded from (anthropic's does)."""
    return "raw" in inspect.signature(make).parameters
