"""A streamed answer folded into the output so far, without I/O: every wire's accumulator.

Text deltas add up to the text; tool-call pieces with the same index add up to one call (the id
from whichever piece has it, names and arguments concatenated). The finish reason, usage and
response identity are whatever the stream said last.
"""

from __future__ import annotations

from synthora.events import Usage
from synthora.messages import BaseMessage, MessageChunk, ToolCall, ToolCallDelta, assistant
from synthora.models.protocol import ModelDelta

__all__ = ["OutputState"]


class OutputState:
    """What a stream has said so far; `add` turns one piece into the chunk the user sees."""

    __slots__ = (
        "_calls",
        "finish_reason",
        "response_id",
        "response_model",
        "run_id",
        "text",
        "usage",
    )

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.text = ""
        self._calls: dict[int, list[str]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.response_id: str | None = None
        self.response_model: str | None = None

    def add(
        self, text: str, finish_reason: str | None, calls: tuple[ToolCallDelta, ...] = ()
    ) -> MessageChunk:
        """Add `text` and tool-call pieces to the output so far; the chunk carries both."""
        for call in calls:
            self.add_call(call)
        return self.chunk(text, finish_reason, calls)

    def add_call(self, call: ToolCallDelta) -> None:
        slot = self._calls.setdefault(call.index, ["", "", ""])
        if call.id:
            slot[0] = call.id
        if call.name:
            slot[1] += call.name
        slot[2] += call.arguments

    def chunk(
        self, text: str, finish_reason: str | None, calls: tuple[ToolCallDelta, ...] = ()
    ) -> MessageChunk:
        """Add `text` to the output so far (`calls` already added); the chunk carries both."""
        self.text += text
        return MessageChunk(
            content=self.text,
            delta=text,
            tool_call_deltas=calls,
            finish_reason=finish_reason,
            run_id=self.run_id,
        )

    def add_delta(self, delta: ModelDelta) -> MessageChunk | None:
        """A backend's delta: noted, and the chunk it makes, or None when it adds no output."""
        if delta.finish_reason is not None:
            self.finish_reason = delta.finish_reason
        if delta.usage is not None:
            self.usage = delta.usage
        if delta.response_id is not None and self.response_id is None:
            self.response_id = delta.response_id
        if delta.response_model is not None:
            self.response_model = delta.response_model
        if not delta.text and not delta.tool_call_deltas:
            return None
        return self.add(delta.text, delta.finish_reason, delta.tool_call_deltas)

    def last_call_index(self) -> int | None:
        return max(self._calls) if self._calls else None

    def call_id(self, index: int) -> str:
        return self._calls[index][0]

    def message(self) -> BaseMessage:
        """The output so far, as one message (the final output once the stream is done)."""
        calls = tuple(
            ToolCall(id=call_id, name=name, arguments=arguments)
            for _, (call_id, name, arguments) in sorted(self._calls.items())
        )
        return assistant(self.text if self.text or not calls else None, tool_calls=calls)
