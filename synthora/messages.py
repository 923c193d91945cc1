"""Messages in, messages out: the OpenAI chat format as frozen values.

Messages are immutable because they end up inside events, and an event must never change after
the subscribers saw it. They convert to and from the OpenAI wire format; `MessageChunk` is what a
stream yields: the newest delta together with the text so far, so a consumer can render either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from synthora.errors import InvalidRequestError, MessageTypeError
from synthora.types.enums import MessageRole

__all__ = [
    "BaseMessage",
    "MessageChunk",
    "ToolCall",
    "ToolCallDelta",
    "assistant",
    "coerce_messages",
    "prompt_of",
    "system",
    "tool",
    "user",
]

_ROLES = frozenset(role.value for role in MessageRole)


class ToolCall(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A complete function call requested by the model; `arguments` is the model's JSON text."""

    id: str
    name: str
    arguments: str = ""
    type: str = "function"

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.name, "arguments": self.arguments},
        }


class ToolCallDelta(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One streamed piece of a tool call; pieces with the same `index` add up to a `ToolCall`."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class BaseMessage(msgspec.Struct, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """One message of a conversation, in the OpenAI chat format.

    `content` is text, or a list of OpenAI content parts (text, images) kept as given.
    """

    role: MessageRole
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        """The message's text: its content, or the text parts of a multi-part content."""
        if isinstance(self.content, list):
            return "".join(str(part.get("text", "")) for part in self.content)
        return self.content or ""

    def to_openai(self) -> dict[str, Any]:
        """The message as the OpenAI API expects it in ``messages``."""
        message: dict[str, Any] = {"role": self.role.value, "content": self.content}
        if self.name is not None:
            message["name"] = self.name
        if self.tool_calls:
            message["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message

    @classmethod
    def from_openai(cls, data: Mapping[str, Any] | Any, *, role: str | None = None) -> BaseMessage:
        """A message from the OpenAI format: a mapping, or an SDK object with ``model_dump``.

        `role` is the role to assume when the data has none (a server's reply may omit it).
        Tool calls of other types than ``function`` (``custom``) keep their name and input.
        """
        if not isinstance(data, Mapping):
            dump = getattr(data, "model_dump", None)
            if dump is None:
                raise MessageTypeError(
                    f"cannot read a message from {type(data).__name__}: expected a mapping in "
                    "the OpenAI format or an openai SDK message"
                )
            data = dump(exclude_none=True)
        role = data.get("role") or role
        if role not in _ROLES:
            raise InvalidRequestError(
                f"unknown message role {role!r}; expected one of {', '.join(sorted(_ROLES))}"
            )
        calls = tuple(_tool_call(call) for call in data.get("tool_calls") or ())
        return cls(
            role=MessageRole(role),
            content=data.get("content"),
            name=data.get("name"),
            tool_calls=calls,
            tool_call_id=data.get("tool_call_id"),
        )


def _tool_call(call: Mapping[str, Any]) -> ToolCall:
    kind = str(call.get("type") or "function")
    body = call.get(kind) or call.get("function") or {}
    return ToolCall(
        id=str(call.get("id") or ""),
        name=str(body.get("name") or ""),
        arguments=str(body.get("arguments") or body.get("input") or ""),
        type=kind,
    )


class MessageChunk(BaseMessage, frozen=True, gc=False, kw_only=True, omit_defaults=True):
    """What a streamed run yields: `delta` is new, `content` is all the text so far."""

    role: MessageRole = MessageRole.ASSISTANT
    delta: str = ""
    tool_call_deltas: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    run_id: str = ""


def user(content: str | list[dict[str, Any]], *, name: str | None = None) -> BaseMessage:
    """A user message."""
    return BaseMessage(role=MessageRole.USER, content=content, name=name)


def system(content: str, *, name: str | None = None) -> BaseMessage:
    """A system message (instructions for the model)."""
    return BaseMessage(role=MessageRole.SYSTEM, content=content, name=name)


def assistant(
    content: str | None = None, *, tool_calls: Sequence[ToolCall] = (), name: str | None = None
) -> BaseMessage:
    """An assistant message, as a model answered or as few-shot history."""
    return BaseMessage(
        role=MessageRole.ASSISTANT, content=content, tool_calls=tuple(tool_calls), name=name
    )


def tool(content: str, *, tool_call_id: str) -> BaseMessage:
    """The result of a tool call, answering the assistant's call `tool_call_id`."""
    return BaseMessage(role=MessageRole.TOOL, content=content, tool_call_id=tool_call_id)


MessageInput = BaseMessage | str | Mapping[str, Any]


def coerce_messages(value: MessageInput | Iterable[MessageInput]) -> tuple[BaseMessage, ...]:
    """Validate a run's input before any request: one message or a sequence of them.

    A plain string is a user message and a mapping is read in the OpenAI format, so code
    written for the bare SDK can pass its ``messages`` list unchanged.
    """
    items: Iterable[object]
    if isinstance(value, BaseMessage | str | Mapping):
        items = (value,)
    elif isinstance(value, Iterable):
        items = value
    else:
        raise MessageTypeError(
            f"expected a message, a string or a list of them, got {type(value).__name__}"
        )
    messages = tuple(_coerce_one(item, position) for position, item in enumerate(items))
    if not messages:
        raise InvalidRequestError("a run needs at least one message; got an empty list")
    return messages


def prompt_of(value: MessageInput | Iterable[MessageInput]) -> str:
    """A legacy completion's prompt: a string, or the text of exactly one message."""
    if isinstance(value, str):
        return value
    coerced = coerce_messages(value)
    if len(coerced) != 1:
        raise InvalidRequestError(
            f"a completion takes one prompt; got {len(coerced)} messages "
            "(use OpenAIChatBackend for a conversation)"
        )
    return coerced[0].text


def _coerce_one(item: object, position: int) -> BaseMessage:
    if isinstance(item, BaseMessage):
        if item.role not in _ROLES:
            raise InvalidRequestError(
                f"message {position} has unknown role {item.role!r}; "
                f"expected one of {', '.join(sorted(_ROLES))}"
            )
        return item
    if isinstance(item, str):
        return user(item)
    if isinstance(item, Mapping):
        return BaseMessage.from_openai(item)
    raise MessageTypeError(
        f"message {position} is a {type(item).__name__}; expected a BaseMessage "
        "(see synthora.messages.user/system/assistant), a string or an OpenAI-format dict"
    )
