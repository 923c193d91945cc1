"""Backends for OpenAI-compatible servers: chat (`/v1/chat/completions`) and legacy completions.

Everything that does no I/O (validating input, building the request and the start event,
reading a response into events) is plain code shared by ``run`` and ``async_run``; the twins
differ only where they await. The completion backend is the chat backend with another
resource, another input and another chunk format.

Streamed runs ask for usage (``stream_options.include_usage``). Many OpenAI-compatible servers
reject that field with 400 or 422: the request is then sent once more without it, and a server
that answered the retry is remembered (per base URL and model, for the life of the process, since
one gateway often fronts servers of several kinds) so later runs do not pay for the extra round
trip. ``stream_usage=False`` turns the field off. A server that answers a streamed request with a
whole JSON reply (it ignores ``stream: true``) is read as that reply, one chunk then the end.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Self

import httpx2
import openai

from synthora.errors import ConfigurationError, ResponseError
from synthora.messages import BaseMessage, MessageInput, assistant, prompt_of
from synthora.models.attempts import counting_openai_attempts
from synthora.models.base import BaseModelBackend, CallBackHandler, sdk_clients_server
from synthora.models.chunks import (
    ChatStreamState,
    CompletionStreamState,
    StreamState,
    openai_usage,
)
from synthora.models.loops import LoopClients
from synthora.models.protocol import ModelReply, ModelRequest
from synthora.models.request import sdk_params
from synthora.models.sse_stream import (
    UNREADABLE,
    AsyncSSESource,
    SSESource,
    sdk_reply,
    unreadable_reply,
)
from synthora.models.streams import AsyncSource, Source
from synthora.runs import DEFAULT_DURABLE_TIMEOUT, Run
from synthora.types.enums import ModelBackendType, NodeType
from synthora.types.node import Node

__all__ = ["OpenAIChatBackend", "OpenAICompletionBackend", "UnreadableReplyError"]

_REJECTS_STREAM_OPTIONS: set[tuple[str, str]] = set()
"""(base URL, model) pairs whose server refused ``stream_options`` and answered without it."""

_DEFAULT_SOURCE = Node(name="app", type=NodeType.AGENT)


class UnreadableReplyError(openai.APIError, ResponseError):
    """A 200 reply that is not what the endpoint answers (HTML from a proxy, ``null``, broken
    JSON, fields of the wrong type), streamed or not: the SDK's error class, quoting what the
    server sent."""

    @classmethod
    def of(cls, request: httpx2.Request, body: bytes, error: Exception) -> Self:
        return cls(unreadable_reply(request, body, error), request, body=None)


class OpenAIChatBackend(BaseModelBackend):
    """A chat model behind any server speaking the OpenAI wire format.

    ``run(messages)`` returns the reply `BaseMessage`; with `stream` on, a `RunStream` of
    `MessageChunk`. Keyword arguments of ``run`` override ``config`` for that run.
    """

    backend_type = ModelBackendType.OPENAI_CHAT
    provider = "openai"
    operation = "chat"
    sends_json = True
    _state_type: type[StreamState] = ChatStreamState
    _reply_type: type[openai.BaseModel] = openai.types.chat.ChatCompletion
    _asks_stream_usage = True  # stream_options.include_usage, which some servers refuse

    def __init__(
        self,
        *,
        model_type: str,
        client: openai.OpenAI,
        async_client: openai.AsyncOpenAI,
        source: Node = _DEFAULT_SOURCE,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
        handlers: Iterable[CallBackHandler] = (),
        stream: bool = False,
        stream_usage: bool = True,
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
        self._async_clients = LoopClients(async_client, prepare=counting_openai_attempts)
        self.stream_usage = stream_usage
        self._base_url = str(client.base_url)
        self._server = sdk_clients_server(client, async_client)

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
        timeout: float | httpx2.Timeout | None = None,
        max_retries: int = openai.DEFAULT_MAX_RETRIES,
        http_client: Any = None,
        stream: bool = False,
        stream_usage: bool = True,
        durable_timeout: float = DEFAULT_DURABLE_TIMEOUT,
    ) -> Self:
        """Build the backend and its SDK clients.

        `api_key` and `base_url` fall back to ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``.
        `http_client` is given to the SDK client of its kind (an async client to the async one).
        """
        cls._check_identity(model_type, source, name, config)
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if callable(api_key):
            raise ConfigurationError(
                "default() takes the API key as a string; for a key provider, build "
                "openai.OpenAI/AsyncOpenAI clients yourself and pass client= and async_client="
            )
        if not api_key:
            raise ConfigurationError(
                f"{cls.__name__} needs an API key: pass api_key= or set OPENAI_API_KEY "
                "(a local server that checks none accepts any placeholder, such as 'EMPTY')"
            )
        options: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url or os.environ.get("OPENAI_BASE_URL") or None,
            "max_retries": max_retries,
        }
        if timeout is not None:
            options["timeout"] = timeout
        is_async_http = _is_async_http_client(http_client)
        sync_http = {} if http_client is None or is_async_http else {"http_client": http_client}
        async_http = {"http_client": http_client} if is_async_http else {}
        backend = cls(
            model_type=model_type,
            source=source,
            config=config,
            name=name,
            handlers=handlers or (),
            client=openai.OpenAI(**options, **sync_http),
            async_client=openai.AsyncOpenAI(**options, **async_http),
            stream=stream,
            stream_usage=stream_usage,
            durable_timeout=durable_timeout,
        )
        if not is_async_http:  # a client of the SDK's own making: one more for each event loop
            backend._async_clients = LoopClients(
                backend.async_client,
                functools.partial(openai.AsyncOpenAI, **options),
                counting_openai_attempts,
            )
        return backend

    # -- the wire ------------------------------------------------------------------------------

    @functools.cached_property
    def _counted(self) -> openai.OpenAI:
        """`client`, copied to count each run's attempts; made when a run is first sent (the
        async clients are counted as `LoopClients` hands them out)."""
        return counting_openai_attempts(self.client)

    def _generate(self, request: ModelRequest) -> ModelReply:
        sdk, _ = self._sdk_request(request)
        raw = self._resource(self._counted).with_raw_response.create(**sdk)
        try:
            return self._reply(raw.parse())
        except UNREADABLE as error:
            raise UnreadableReplyError.of(
                raw.http_request, raw.http_response.content, error
            ) from error

    async def _agenerate(self, request: ModelRequest) -> ModelReply:
        sdk, _ = self._sdk_request(request)
        client = await self._async_clients.get()
        raw = await self._resource(client).with_raw_response.create(**sdk)
        try:
            parsed = raw.parse()  # the SDK's raw response parses synchronously, already read
            return self._reply(await parsed if inspect.isawaitable(parsed) else parsed)
        except UNREADABLE as error:
            raise UnreadableReplyError.of(
                raw.http_request, raw.http_response.content, error
            ) from error

    def _open_stream(self, run: Run, request: ModelRequest) -> Source:
        """The response's bytes, decoded as they arrive: the SDK builds no chunk objects."""
        resource = self._resource(self._counted).with_streaming_response
        sdk, asked_usage = self._sdk_request(request)
        try:
            response = resource.create(**sdk).__enter__()
        except openai.APIStatusError as exc:
            retry = _without_usage_option(sdk, asked_usage, exc)
            if retry is None:
                raise
            response = resource.create(**retry).__enter__()
            _REJECTS_STREAM_OPTIONS.add((self._base_url, self.model_type))
        response = _raw(response)
        source = SSESource(response, self._stream_state(run.run_id, response.http_request))
        return source.or_whole_reply(functools.partial(self._body_reply, response.http_request))

    async def _aopen_stream(self, run: Run, request: ModelRequest) -> AsyncSource:
        client = await self._async_clients.get()
        resource = self._resource(client).with_streaming_response
        sdk, asked_usage = self._sdk_request(request)
        try:
            response = await resource.create(**sdk).__aenter__()
        except openai.APIStatusError as exc:
            retry = _without_usage_option(sdk, asked_usage, exc)
            if retry is None:
                raise
            response = await resource.create(**retry).__aenter__()
            _REJECTS_STREAM_OPTIONS.add((self._base_url, self.model_type))
        response = _raw(response)
        source = AsyncSSESource(response, self._stream_state(run.run_id, response.http_request))
        return await source.or_whole_reply(
            functools.partial(self._body_reply, response.http_request)
        )

    # -- no I/O below -------------------------------------------------------------------------

    def _server_attributes(self) -> dict[str, Any]:
        return self._server

    def _stream_state(self, run_id: str, http_request: httpx2.Request) -> StreamState:
        return self._state_type(run_id, http_request)

    def _request_from_wire(self, body: Mapping[str, Any]) -> ModelRequest:
        """The request whose SDK call would send `body`: how an observed client's call
        (`synthora.observe`) becomes this backend's run, stored and replayed as one."""
        return ModelRequest(
            model=str(body.get("model") or ""),
            params={k: v for k, v in body.items() if k not in self._wire_fields},
            stream=bool(body.get("stream")),
            **self._input_from_wire(body),
        )

    _wire_fields = frozenset({"model", "messages", "stream", "stream_options"})
    """Body fields that carry the input or how it is sent, not parameters of the answer."""

    def _input_from_wire(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"messages": [BaseMessage.from_openai(m) for m in body.get("messages") or ()]}

    def _sdk_request(self, request: ModelRequest) -> tuple[dict[str, Any], bool]:
        """The SDK's keyword arguments for `request`, and whether they ask for stream usage."""
        sdk = {"model": request.model, **self._sdk_input(request), **self._sdk_params(request)}
        asked_usage = False
        if request.stream:
            sdk["stream"] = True
            if (
                self.stream_usage
                and self._asks_stream_usage
                and "stream_options" not in request.params
                and (self._base_url, self.model_type) not in _REJECTS_STREAM_OPTIONS
            ):
                sdk["stream_options"] = {"include_usage": True}
                asked_usage = True
        return sdk, asked_usage

    def _resource(self, client: openai.OpenAI | openai.AsyncOpenAI) -> Any:
        return client.chat.completions

    def _sdk_input(self, request: ModelRequest) -> dict[str, Any]:
        return {"messages": [m.to_openai() for m in request.messages]}

    def _sdk_params(self, request: ModelRequest) -> dict[str, Any]:
        return sdk_params(request.params)

    def _read_reply(self, reply: Any) -> tuple[BaseMessage, str | None]:
        choice = _first_choice(reply)
        return BaseMessage.from_openai(choice.message, role="assistant"), choice.finish_reason

    def _body_reply(self, request: httpx2.Request, body: bytes) -> ModelReply:
        """A reply sent whole where a stream was asked (the server ignored ``stream: true``)."""
        try:
            return self._reply(sdk_reply(self._reply_type, body))
        except UNREADABLE as error:
            raise UnreadableReplyError.of(request, body, error) from error

    def _reply(self, reply: Any) -> ModelReply:
        message, finish_reason = self._read_reply(reply)
        usage = getattr(reply, "usage", None)
        return ModelReply(
            message,
            finish_reason,
            usage=None if usage is None else openai_usage(usage),
            response_id=reply.id,
            response_model=reply.model,
        )


class OpenAICompletionBackend(OpenAIChatBackend):
    """A legacy completion model (`/v1/completions`): a prompt in, text out.

    ``run`` takes a prompt string or a single message (its text is the prompt).
    ``max_completion_tokens`` is sent as ``max_tokens``, the only name this endpoint knows.
    """

    backend_type = ModelBackendType.OPENAI_COMPLETION
    operation = "text_completion"
    _state_type = CompletionStreamState
    _reply_type = openai.types.Completion

    def _resource(self, client: openai.OpenAI | openai.AsyncOpenAI) -> Any:
        return client.completions

    def _request(
        self, messages: MessageInput | Iterable[MessageInput], params: dict[str, Any]
    ) -> ModelRequest:
        return ModelRequest(
            model=self.model_type,
            messages=[],
            params={**self.config, **params},
            stream=self.stream,
            prompt=prompt_of(messages),
        )

    def _start_payload(self, request: ModelRequest) -> dict[str, Any]:
        return {**super()._start_payload(request), "messages": None, "prompt": request.prompt}

    def _sdk_input(self, request: ModelRequest) -> dict[str, Any]:
        return {"prompt": request.prompt}

    _wire_fields = frozenset({"model", "prompt", "stream", "stream_options"})

    def _input_from_wire(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"messages": [], "prompt": body.get("prompt")}

    def _sdk_params(self, request: ModelRequest) -> dict[str, Any]:
        params = sdk_params(request.params)
        if "max_completion_tokens" in params:
            params.setdefault("max_tokens", params.pop("max_completion_tokens"))
        return params

    def _read_reply(self, reply: Any) -> tuple[BaseMessage, str | None]:
        choice = _first_choice(reply)
        return assistant(choice.text or ""), choice.finish_reason


def _raw(response: Any) -> Any:
    """The SDK's raw streamed response, or a clear error when something replaced it.

    Another OpenAI instrumentation (``opentelemetry-instrumentation-openai-v2`` is one) wraps
    the SDK's ``create`` and hands back its own stream in place of the raw response Synthora
    reads. Synthora traces its runs itself, so the fix is to not instrument the SDK twice.
    """
    if hasattr(response, "http_response"):
        return response
    close = getattr(response, "close", None)
    if callable(close) and not inspect.iscoroutinefunction(close):
        close()
    raise ConfigurationError(
        f"the openai SDK returned a {type(response).__name__} where Synthora reads the raw "
        "response: another instrumentation wraps the SDK's create() (for example "
        "opentelemetry-instrumentation-openai-v2); uninstrument it, Synthora traces runs itself"
    )


def _without_usage_option(
    sdk: dict[str, Any], asked_usage: bool, exc: openai.APIStatusError
) -> dict[str, Any] | None:
    """The request to retry when the server refused the ``stream_options`` we added."""
    if not asked_usage or exc.status_code not in (400, 422):
        return None
    return {key: value for key, value in sdk.items() if key != "stream_options"}


def _first_choice(reply: Any) -> Any:
    if not reply.choices:
        raise ResponseError(f"the server's reply {reply.id!r} has no choices")
    return reply.choices[0]


def _is_async_http_client(client: Any) -> bool:
    async_types: tuple[type, ...] = (httpx2.AsyncClient,)
    legacy = sys.modules.get("httpx")
    if legacy is not None:
        async_types += (legacy.AsyncClient,)
    return isinstance(client, async_types)
