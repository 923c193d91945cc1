"""A backend for Anthropic's Messages API (``POST /v1/messages``), through the ``anthropic`` SDK.

The ``anthropic`` package is an extra (``pip install 'synthora[anthropic]'``); this module
imports it only when a backend is built, so ``synthora.models`` works without it.

The conversation goes out as the API takes it: system messages as ``system``, a tool call the
model made as a ``tool_use`` block, a tool's result as a user ``tool_result`` block (consecutive
results in one message, as the API's alternation requires); chat-format tools become
``input_schema`` tools; ``max_tokens`` is required by the API, so it defaults to
`DEFAULT_MAX_TOKENS` (``max_completion_tokens`` is read as it). Config keys the installed SDK has
no argument for (some releases lack ``temperature``) go in the request body. Streams are read
off the wire and decoded with msgspec (`MessagesStreamState`), as the OpenAI wires' are; a whole
reply sent where a stream was asked is read as that reply.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any, Self

from synthora.errors import ConfigurationError
from synthora.messages import BaseMessage, ToolCall, assistant, system, tool
from synthora.models.attempts import counting_anthropic_attempts
from synthora.models.base import BaseModelBackend, CallBackHandler, sdk_clients_server
from synthora.models.chunks import (
    MESSAGES_FINISH_REASONS,
    MessagesStreamState,
    messages_usage,
)
from synthora.models.loops import LoopClients
from synthora.models.protocol import ModelReply, ModelRequest
from synthora.models.request import sdk_params
from synthora.models.sse_stream import UNREADABLE, AsyncSSESource, SSESource, sdk_reply
from synthora.models.streams import AsyncSource, Source
from synthora.runs import DEFAULT_DURABLE_TIMEOUT, Run
from synthora.types.enums import MessageRole, ModelBackendType, NodeType
from synthora.types.node import Node

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicBackend"]

DEFAULT_MAX_TOKENS = 4096
"""``max_tokens`` when the config gives none: the Messages API requires one."""

_DEFAULT_SOURCE = Node(name="app", type=NodeType.AGENT)


def _sdk() -> Any:
    try:
        import anthropic  # noqa: PLC0415 - an optional extra, imported when a backend is built
    except ImportError as error:
        raise ConfigurationError(
            "AnthropicBackend needs the anthropic SDK: pip install 'synthora[anthropic]'"
        ) from error
    return anthropic


class AnthropicBackend(BaseModelBackend):
    """A Claude model, or any server speaking Anthropic's Messages API (llama.cpp, vLLM).

    ``run(messages)`` returns the reply `BaseMessage`; with `stream` on, a `RunStream` of
    `MessageChunk`. Keyword arguments of ``run`` override ``config`` for that run.
    """

    backend_type = ModelBackendType.ANTHROPIC_MESSAGES
    provider = "anthropic"
    operation = "chat"
    sends_json = True

    def __init__(
        self,
        *,
        model_type: str,
        client: Any,
        async_client: Any,
        source: Node = _DEFAULT_SOURCE,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
        handlers: Iterable[CallBackHandler] = (),
        stream: bool = False,
        durable_timeout: float = DEFAULT_DURABLE_TIMEOUT,
    ) -> None:
        super().__init__(
            model_type=model_type,
            source=source,
            config=config,
            name=name,
            handlers=handlers,
            stream=stream,
            durable_timeout=durable_timeout,
        )
        self.client = client
        self.async_client = async_client
        self._anthropic = _sdk()
        self._async_clients = LoopClients(async_client, prepare=self._counting)
        self._server = sdk_clients_server(client, async_client)
        self._arguments = frozenset(inspect.signature(client.messages.create).parameters)

    @classmethod
    def default(
        cls,
        model_type: str,
        source: Node = _DEFAULT_SOURCE,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
        handlers: Iterable[CallBackHandler] | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int = 2,
        stream: bool = False,
        durable_timeout: float = DEFAULT_DURABLE_TIMEOUT,
    ) -> Self:
        """Build the backend and its SDK clients.

        `api_key` and `base_url` fall back to ``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL``;
        the base URL is the server's root, as the anthropic SDK takes it (no ``/v1``).
        """
        cls._check_identity(model_type, source, name, config)
        anthropic = _sdk()
        api_key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not api_key:
            raise ConfigurationError(
                f"{cls.__name__} needs an API key: pass api_key= or set ANTHROPIC_API_KEY "
                "(a local server that checks none accepts any placeholder)"
            )
        options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
            "max_retries": max_retries,
        }
        if timeout is not None:
            options["timeout"] = timeout
        backend = cls(
            model_type=model_type,
            source=source,
            config=config,
            name=name,
            handlers=handlers or (),
            client=anthropic.Anthropic(**options),
            async_client=anthropic.AsyncAnthropic(**options),
            stream=stream,
            durable_timeout=durable_timeout,
        )
        backend._async_clients = LoopClients(
            backend.async_client,
            functools.partial(anthropic.AsyncAnthropic, **options),
            backend._counting,
        )
        return backend

    # -- the wire ------------------------------------------------------------------------------

    @functools.cached_property
    def _counted(self) -> Any:
        """`client`, copied to count each run's attempts; made when a run is first sent (the
        async clients are counted as `LoopClients` hands them out)."""
        failed = self._anthropic.APIConnectionError
        return counting_anthropic_attempts(self.client, is_async=False, connection_error=failed)

    def _counting(self, async_client: Any) -> Any:
        failed = self._anthropic.APIConnectionError
        return counting_anthropic_attempts(async_client, is_async=True, connection_error=failed)

    def _generate(self, request: ModelRequest) -> ModelReply:
        raw = self._counted.messages.with_raw_response.create(**self._sdk_request(request))
        return self._body_reply(raw.http_request, raw.http_response.content)

    async def _agenerate(self, request: ModelRequest) -> ModelReply:
        client = await self._async_clients.get()
        raw = await client.messages.with_raw_response.create(**self._sdk_request(request))
        return self._body_reply(raw.http_request, raw.http_response.content)

    def _open_stream(self, run: Run, request: ModelRequest) -> Source:
        streaming = self._counted.messages.with_streaming_response
        response = streaming.create(**self._sdk_request(request), stream=True).__enter__()
        source = SSESource(response, self._stream_state(run.run_id, response.http_request))
        return source.or_whole_reply(functools.partial(self._body_reply, response.http_request))

    async def _aopen_stream(self, run: Run, request: ModelRequest) -> AsyncSource:
        client = await self._async_clients.get()
        streaming = client.messages.with_streaming_response
        response = await streaming.create(**self._sdk_request(request), stream=True).__aenter__()
        source = AsyncSSESource(response, self._stream_state(run.run_id, response.http_request))
        return await source.or_whole_reply(
            functools.partial(self._body_reply, response.http_request)
        )

    # -- no I/O below -------------------------------------------------------------------------

    def _server_attributes(self) -> dict[str, Any]:
        return self._server

    def _body_reply(self, request: Any, body: bytes) -> ModelReply:
        """A whole reply's body, read as the SDK reads one (also where a stream was asked and the
        server ignored ``stream: true``): what is not a Messages reply (a proxy's HTML page,
        ``null``) is the SDK's ``APIError`` class quoting it, not an AttributeError."""
        from synthora.models.anthropic_errors import (  # noqa: PLC0415 - the SDK is an extra
            UnreadableReplyError,
        )

        try:
            return self._reply(sdk_reply(self._anthropic.types.Message, body))
        except UNREADABLE as error:
            raise UnreadableReplyError.of(request, body, error) from error

    def _stream_state(self, run_id: str, http_request: Any) -> MessagesStreamState:
        return MessagesStreamState(run_id, http_request, self._anthropic)

    def _request_from_wire(self, body: Mapping[str, Any]) -> ModelRequest:
        """The request whose SDK call would send `body`: how an observed client's call
        (`synthora.observe`) becomes this backend's run, stored and replayed as one."""
        return ModelRequest(
            model=str(body.get("model") or ""),
            messages=_messages_of(body.get("system"), body.get("messages")),
            params={k: v for k, v in body.items() if k not in _WIRE_FIELDS},
            stream=bool(body.get("stream")),
        )

    def _reply(self, message: Any) -> ModelReply:
        texts = [block.text for block in message.content if block.type == "text"]
        calls = [
            ToolCall(id=block.id, name=block.name, arguments=json.dumps(block.input))
            for block in message.content
            if block.type == "tool_use"
        ]
        text = "".join(texts)
        usage = message.usage
        reason = message.stop_reason
        return ModelReply(
            assistant(text if text or not calls else None, tool_calls=calls),
            MESSAGES_FINISH_REASONS.get(reason, reason) if reason else None,
            usage=None if usage is None else messages_usage(usage, usage.output_tokens),
            response_id=message.id,
            response_model=message.model,
        )

    def _sdk_request(self, request: ModelRequest) -> dict[str, Any]:
        params = sdk_params(request.params)
        max_tokens = params.pop("max_tokens", None)
        max_tokens = params.pop("max_completion_tokens", max_tokens) or DEFAULT_MAX_TOKENS
        if isinstance(params.get("stop"), str | list):
            stop = params.pop("stop")
            params["stop_sequences"] = [stop] if isinstance(stop, str) else stop
        if isinstance(params.get("tools"), list):
            params["tools"] = [_anthropic_tool(tool) for tool in params["tools"]]
        sdk: dict[str, Any] = {
            "model": request.model,
            "max_tokens": max_tokens,
            "messages": _messages(request.messages),
        }
        system = [m.text for m in request.messages if m.role is MessageRole.SYSTEM]
        if system:
            sdk["system"] = "\n\n".join(system)
        body = dict(params.pop("extra_body", None) or {})
        for key, value in params.items():
            if key in self._arguments:
                sdk[key] = value
            else:
                body[key] = value  # an argument this SDK release lacks goes in the body
        if body:
            sdk["extra_body"] = body
        return sdk


def _messages(messages: list[BaseMessage]) -> list[dict[str, Any]]:
    """The conversation in the Messages format (system messages go apart, as ``system``)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role in (MessageRole.SYSTEM, MessageRole.DEVELOPER):
            continue
        if message.role is MessageRole.TOOL:
            result = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.text,
            }
            previous = out[-1] if out else None
            if previous and previous["role"] == "user" and isinstance(previous["content"], list):
                previous["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
            continue
        if not message.tool_calls:
            out.append({"role": message.role.value, "content": message.content or ""})
            continue
        blocks: list[dict[str, Any]] = []
        if message.text:
            blocks.append({"type": "text", "text": message.text})
        blocks += [
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": json.loads(call.arguments or "{}"),
            }
            for call in message.tool_calls
        ]
        out.append({"role": "assistant", "content": blocks})
    return out


_WIRE_FIELDS = frozenset({"model", "messages", "system", "stream"})
"""Body fields that carry the input or how it is sent, not parameters of the answer."""
_BLOCKS_READ = frozenset({"text", "tool_use", "tool_result"})


def _messages_of(system_prompt: Any, wire: Any) -> list[BaseMessage]:
    """A Messages conversation as chat messages: `_messages` read backwards. Content with
    other blocks (images, documents) is kept as given."""
    out: list[BaseMessage] = []
    if isinstance(system_prompt, list):
        system_prompt = "".join(str(block.get("text", "")) for block in system_prompt)
    if system_prompt:
        out.append(system(str(system_prompt)))
    for message in wire or ():
        role, content = message.get("role"), message.get("content")
        if not isinstance(content, list) or not all(
            block.get("type") in _BLOCKS_READ for block in content
        ):
            out.append(BaseMessage.from_openai({"role": role, "content": content}))
            continue
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in content:
            match block.get("type"):
                case "text":
                    texts.append(str(block.get("text", "")))
                case "tool_use":
                    arguments = json.dumps(block.get("input") or {})
                    calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
                case _:
                    result = block.get("content")
                    if isinstance(result, list):
                        result = "".join(str(part.get("text", "")) for part in result)
                    out.append(
                        tool(str(result or ""), tool_call_id=str(block.get("tool_use_id") or ""))
                    )
        if texts or calls:
            text = "".join(texts) if texts else None
            out.append(BaseMessage(role=MessageRole(role), content=text, tool_calls=tuple(calls)))
    return out


def _anthropic_tool(tool: Any) -> Any:
    """A chat-format tool as the Messages API takes it; any other tool as given."""
    if isinstance(tool, dict) and tool.get("type") == "function" and "function" in tool:
        function = tool["function"]
        converted = {
            "name": function["name"],
            "input_schema": function.get("parameters") or {"type": "object"},
        }
        if function.get("description"):
            converted["description"] = function["description"]
        return converted
    return tool
