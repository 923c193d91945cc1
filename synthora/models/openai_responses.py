"""A backend for OpenAI's Responses API (``POST /v1/responses``), the one OpenAI now recommends.

The conversation goes out as the API takes it: system and developer messages as
``instructions``, the rest as ``input`` items (a tool call the model made as a ``function_call``
item, a tool's result as a ``function_call_output``); chat-format tools are sent in the
Responses format; ``max_completion_tokens`` / ``max_tokens`` become ``max_output_tokens``.
Streams are read off the wire and decoded with msgspec (`ResponsesStreamState`), as the chat
wire's are. Everything else, the client, retries, errors and the run's lifecycle, is the chat
backend's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import openai

from synthora.messages import BaseMessage, ToolCall, assistant, system, tool, user
from synthora.models.chunks import (
    ResponsesStreamState,
    StreamState,
    openai_usage,
    responses_finish_reason,
)
from synthora.models.openai_backend import OpenAIChatBackend
from synthora.models.protocol import ModelReply, ModelRequest
from synthora.models.request import sdk_params
from synthora.types.enums import MessageRole, ModelBackendType

__all__ = ["OpenAIResponsesBackend"]

_INSTRUCTIONS = (MessageRole.SYSTEM, MessageRole.DEVELOPER)


class OpenAIResponsesBackend(OpenAIChatBackend):
    """A chat model behind OpenAI's Responses API, or any server that speaks it (llama.cpp).

    ``run(messages)`` returns the reply `BaseMessage`; with `stream` on, a `RunStream` of
    `MessageChunk`. Built with `default`, as the chat backend is.
    """

    backend_type = ModelBackendType.OPENAI_RESPONSES
    _state_type: type[StreamState] = ResponsesStreamState
    _reply_type = openai.types.responses.Response
    _asks_stream_usage = False  # usage always comes in response.completed

    def _resource(self, client: openai.OpenAI | openai.AsyncOpenAI) -> Any:
        return client.responses

    def _sdk_input(self, request: ModelRequest) -> dict[str, Any]:
        instructions = [m.text for m in request.messages if m.role in _INSTRUCTIONS]
        items: list[dict[str, Any]] = []
        for message in request.messages:
            if message.role not in _INSTRUCTIONS:
                items += _input_items(message)
        sdk: dict[str, Any] = {"input": items}
        if instructions:
            sdk["instructions"] = "\n\n".join(instructions)
        return sdk

    _wire_fields = frozenset({"model", "input", "instructions", "stream"})

    def _input_from_wire(self, body: Mapping[str, Any]) -> dict[str, Any]:
        instructions = body.get("instructions")
        messages = [system(instructions)] if isinstance(instructions, str) and instructions else []
        return {"messages": messages + _messages_of(body.get("input"))}

    def _sdk_params(self, request: ModelRequest) -> dict[str, Any]:
        params = sdk_params(request.params)
        for name in ("max_completion_tokens", "max_tokens"):
            if name in params:
                params.setdefault("max_output_tokens", params.pop(name))
        if isinstance(params.get("tools"), list):
            params["tools"] = [_responses_tool(tool) for tool in params["tools"]]
        return params

    def _reply(self, reply: Any) -> ModelReply:
        texts: list[str] = []
        calls: list[ToolCall] = []
        for item in reply.output or ():
            if item.type == "message":
                texts += [part.text for part in item.content if part.type == "output_text"]
            elif item.type == "function_call":
                calls.append(ToolCall(id=item.call_id, name=item.name, arguments=item.arguments))
        text = "".join(texts)
        usage = reply.usage
        details = reply.incomplete_details
        return ModelReply(
            assistant(text if text or not calls else None, tool_calls=calls),
            responses_finish_reason(reply.status, details.reason if details else None, bool(calls)),
            usage=None if usage is None else openai_usage(usage),
            response_id=reply.id,
            response_model=reply.model,
        )


def _input_items(message: BaseMessage) -> list[dict[str, Any]]:
    """One chat message as Responses input items."""
    if message.role == MessageRole.TOOL:
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id,
                "output": message.text,
            }
        ]
    items: list[dict[str, Any]] = []
    if message.content is not None:
        items.append({"role": message.role.value, "content": message.content})
    items += [
        {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
        for c in message.tool_calls
    ]
    return items


def _messages_of(items: Any) -> list[BaseMessage]:
    """Responses input as chat messages: `_input_items` read backwards, a ``function_call``
    item joining the assistant message before it, as the chat format holds calls."""
    if isinstance(items, str):
        return [user(items)]
    messages: list[BaseMessage] = []
    for item in items or ():
        kind = item.get("type")
        if kind == "function_call_output":
            messages.append(
                tool(str(item.get("output", "")), tool_call_id=str(item.get("call_id") or ""))
            )
        elif kind == "function_call":
            call = ToolCall(
                id=str(item.get("call_id") or ""),
                name=str(item.get("name") or ""),
                arguments=str(item.get("arguments") or ""),
            )
            last = messages[-1] if messages else None
            if last is not None and last.role is MessageRole.ASSISTANT:
                messages[-1] = msgspec.structs.replace(last, tool_calls=(*last.tool_calls, call))
            else:
                messages.append(assistant(tool_calls=[call]))
        else:
            messages.append(BaseMessage.from_openai(item, role="user"))
    return messages


def _responses_tool(tool: Any) -> Any:
    """A chat-format tool (``{"type": "function", "function": {...}}``) in the Responses format,
    where the function's fields sit on the tool itself; any other tool as given."""
    if isinstance(tool, dict) and tool.get("type") == "function" and "function" in tool:
        return {"type": "function", **tool["function"]}
    return tool
