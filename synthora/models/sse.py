"""Server-sent events, split without I/O: bytes in, ``data`` payloads out.

The hot path of a streamed run. Almost every event of an OpenAI-compatible stream is one
``data: {…}`` line followed by a blank line; that case is one ``split`` and a slice. Everything
else the SSE format allows takes the slow path: CR and CRLF line ends (also when a CRLF is split
across two network reads), ``event:``/``id:``/``retry:`` fields, ``:`` comments and keep-alives,
multi-line ``data``, a payload split across reads. At the end of the stream, a last event whose
lines are complete but which lacks the closing blank line is still delivered (some servers end
that way, often with the usage chunk); a last line cut off mid-way is dropped, as the SSE
specification and the SDK's own decoder do.
"""

from __future__ import annotations

__all__ = ["SSEDecoder"]

_FAST_PREFIX = b"data: "


class SSEDecoder:
    """Feed network reads; get back the complete events' ``data`` payloads, in order.

    An ``event: error`` whose data is a bare error object is returned wrapped as
    ``{"error": …}``, the shape OpenAI uses inside data lines, so one check catches both.
    """

    __slots__ = ("_buffer", "_cr_pending")

    def __init__(self) -> None:
        self._buffer = b""
        self._cr_pending = False

    def feed(self, data: bytes) -> list[bytes]:
        if self._cr_pending and data[:1] == b"\n":
            data = data[1:]
        self._cr_pending = data[-1:] == b"\r"
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = (self._buffer + data).split(b"\n\n")
        self._buffer = blocks.pop()
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
        block, self._buffer = self._buffer, b""
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
    if not data:
        return None
    payload = b"\n".join(data)
    if event == b"error" and not payload.lstrip().startswith(b'{"error"'):
        payload = b'{"error":' + payload + b"}"
    return payload
