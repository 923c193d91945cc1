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
"""

from __future__ import annotations

import re

__all__ = ["SSEDecoder"]

_FAST_PREFIX = b"data: "
_BOM = b"\xef\xbb\xbf"
_ERROR_OBJECT = re.compile(rb'\s*\{\s*"error"\s*:')


class SSEDecoder:
    """Feed network reads; get back the complete events' ``data`` payloads, in order.

    An ``event: error`` whose data is a bare error object is returned wrapped as
    ``{"error": …}``, the shape OpenAI uses inside data lines, so one check catches both.
    """

    __slots__ = ("_cr_pending", "_pending", "_started")

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._cr_pending = False
        self._started = False

    def feed(self, data: bytes) -> list[bytes]:
        if not self._started and data:
            self._started = True
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
        payloads = []
        for block in blocks:
            if block.startswith(_FAST_PREFIX) and b"\n" not in block:
                payloads.append(block[6:])
            else:
                payload = _parse_block(block)
                if payload is not None:
                    payloads.append(payload)
        return payloads

    def flush(self) -> list[bytes]:
        """At the end of the stream: a complete last event that no blank line followed."""
        block = b"".join(self._pending)
        self._pending.clear()
        if not block.endswith(b"\n"):
            return []
        payload = _parse_block(block.rstrip(b"\n"))
        return [] if payload is None else [payload]


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
