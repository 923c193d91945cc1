"""What a backend implements: a request in, a reply or a stream of deltas out.

A backend says only how to answer; `BaseModelBackend` owns the run around it (events, closing
exactly once, durability, error reporting). These are plain frozen values, so a backend over
any provider's API, or a test double, builds them without touching Synthora's internals.
"""

from __future__ import annotations

from typing import Any

import msgspec

from synthora.events import Usage
from synthora.messages import BaseMessage, ToolCallDelta

__all__ = ["ModelDelta", "ModelReply", "ModelRequest"]


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One run's request: the model, the conversation, and the parameters.

    `params` is the backend's config merged with the run's keyword arguments (the run's win);
    `stream` says whether the caller iterates the reply. A completion-style operation is asked
    a `prompt` instead of `messages`.
    """

    model: str
    messages: list[BaseMessage]
    params: dict[str, Any]
    stream: bool = False
    prompt: str | list[str] | None = None


class ModelReply(msgspec.Struct, frozen=True):
    """A whole answer: the message and what the server said about it; an embeddings answer
    has no message but one vector per input text."""

    message: BaseMessage | None
    finish_reason: str | None = None
    usage: Usage | None = None
    response_id: str | None = None
    response_model: str | None = None
    vectors: list[list[float]] | None = None


class ModelDelta(msgspec.Struct, frozen=True):
    """One piece of a streamed answer. Every field is optional: a delta may carry only text,
    only tool-call pieces, or only the finish reason and usage a server sends last."""

    text: str = ""
    tool_call_deltas: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    response_id: str | None = None
    response_model: str | None = None

    @classmethod
    def whole(cls, reply: ModelReply) -> ModelDelta:
        """A whole reply as one delta: its text, its tool calls (numbered in order), and what
        the server said about it."""
        message = reply.message
        calls = tuple(
            ToolCallDelta(index=i, id=call.id, name=call.name, arguments=call.arguments)
            for i, call in enumerate(message.tool_calls if message is not None else ())
        )
        return cls(
            text="" if message is None else message.text,
            tool_call_deltas=calls,
            finish_reason=reply.finish_reason,
            usage=reply.usage,
            response_id=reply.response_id,
            response_model=reply.response_model,
        )
