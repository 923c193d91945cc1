"""`observe`: unmodified ``openai`` / ``anthropic`` SDK code, observed as Synthora runs.

An observed client is the caller's own client, returned unchanged in type and behaviour. Only
its ``request`` method (the one every resource calls; the SDK's retry loop runs inside it) is
wrapped on the instance, so other clients, and the SDK classes, are untouched. Each call to an
endpoint that a built-in backend speaks becomes that backend's run: the backend reads the
request body into the same `ModelRequest` and start event (`_request_from_wire`), the SDK's
parsed reply into the same end event, and a stream's bytes, as the SDK pulls them, with the same
msgspec decoders (`ResponseTap`). So handlers, spans, the event log and replay see an observed
call exactly as they see a backend's run, and the caller still gets the SDK's own objects, its
exceptions and its retries. Other endpoints (files, models, batches) pass through unobserved.

Observation never breaks the call: a body it cannot read is sent unobserved (logged at debug),
and the reply is the SDK's whatever happens to the run's events.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

import openai

from synthora.errors import ConfigurationError
from synthora.events import Event
from synthora.models.anthropic_backend import AnthropicBackend
from synthora.models.base import CallBackHandler, reply_events, request_failed
from synthora.models.chunks import StreamState
from synthora.models.openai_backend import OpenAIChatBackend, OpenAICompletionBackend
from synthora.models.openai_embeddings import OpenAIEmbeddingBackend
from synthora.models.openai_responses import OpenAIResponsesBackend
from synthora.models.protocol import ModelReply, ModelRequest
from synthora.models.sse_stream import AsyncResponseTap, ResponseTap
from synthora.runs import Run
from synthora.types.enums import NodeType
from synthora.types.node import Node

__all__ = ["observe"]

logger = logging.getLogger("synthora")

Client = TypeVar("Client")

_DEFAULT_SOURCE = Node(name="app", type=NodeType.AGENT)

_OPENAI_ENDPOINTS: dict[str, type[OpenAIChatBackend]] = {
    "/chat/completions": OpenAIChatBackend,
    "/completions": OpenAICompletionBackend,
    "/responses": OpenAIResponsesBackend,
    "/embeddings": OpenAIEmbeddingBackend,
}
_ANTHROPIC_ENDPOINTS: dict[str, type[AnthropicBackend]] = {"/v1/messages": AnthropicBackend}

_observing: ContextVar[bool] = ContextVar("synthora_observing", default=False)
"""Set inside an observed call, so a request the SDK makes within it is not a second run."""


class _Wire(Protocol):
    """What an endpoint's backend gives an observed call: a built-in SDK wire."""

    def _request_from_wire(self, body: Mapping[str, Any]) -> ModelRequest: ...

    def _stream_state(self, run_id: str, http_request: Any) -> StreamState: ...

    def _reply(self, reply: Any) -> ModelReply: ...


def observe(
    client: Client,
    *,
    source: Node | None = None,
    name: str | None = None,
    handlers: Iterable[CallBackHandler] = (),
) -> Client:
    """Observe every model call made through `client` (and the clients its ``with_options``
    makes): each one becomes a run with the events, spans and log entries the matching backend's
    run has. Returns `client` itself.

    `client` is an ``openai.OpenAI``/``AsyncOpenAI`` (Azure's included) or an
    ``anthropic.Anthropic``/``AsyncAnthropic``. Runs are nodes ``model:<name>`` under `source`
    (default ``agent:app``), `name` defaulting to the provider (``openai``, ``anthropic``);
    `handlers` hear this client's runs only. Observing a client twice changes nothing.
    """
    if getattr(client, "_synthora_observer", None) is not None:
        return client
    endpoints, provider, unset = _endpoints_of(client)
    observer = _Observer(
        client,
        endpoints=endpoints,
        unset=unset,
        source=source or _DEFAULT_SOURCE,
        name=name or provider,
        handlers=handlers,
    )
    _install(client, observer)
    return client


def _endpoints_of(client: object) -> tuple[Mapping[str, type[Any]], str, tuple[type, ...]]:
    """The endpoints `client`'s SDK serves as runs, its provider, and its "not given" types."""
    if isinstance(client, openai.OpenAI | openai.AsyncOpenAI):
        return _OPENAI_ENDPOINTS, "openai", (openai.NotGiven, openai.Omit)
    anthropic = sys.modules.get("anthropic")
    if anthropic is not None and isinstance(client, anthropic.Anthropic | anthropic.AsyncAnthropic):
        return _ANTHROPIC_ENDPOINTS, "anthropic", (anthropic.NotGiven, anthropic.Omit)
    raise ConfigurationError(
        f"synthora.observe() takes an openai.OpenAI/AsyncOpenAI or anthropic.Anthropic/"
        f"AsyncAnthropic client, not a {type(client).__name__}"
    )


class _Observer:
    """One observed client's runs: a backend for each endpoint it calls, made when first used."""

    def __init__(
        self,
        client: Any,
        *,
        endpoints: Mapping[str, type[Any]],
        unset: tuple[type, ...],
        source: Node,
        name: str,
        handlers: Iterable[CallBackHandler],
    ) -> None:
        self.client = client
        self.source = source
        self.name = name
        self.handlers = tuple(handlers)
        self._endpoints = endpoints
        self._unset = unset
        self._backends: dict[str, Any] = {}

    def open(self, options: Any, stream: bool) -> _Call | None:
        """The run of this call with its start event, not yet emitted; None for a call that is
        not a model run (another endpoint, or one inside an observed call)."""
        path, body = options.url, options.json_data
        kind = self._endpoints.get(path) if isinstance(path, str) else None
        if kind is None or not isinstance(body, Mapping) or _observing.get():
            return None
        extra = getattr(options, "extra_json", None)
        if isinstance(extra, Mapping):  # extra_body=: sent in the body, so part of the request
            body = {**body, **extra}
        # some releases strip arguments left out only when they build the HTTP request
        body = {key: value for key, value in body.items() if not isinstance(value, self._unset)}
        backend = self._backend(path, kind)
        try:
            request = backend._request_from_wire(body)
        except Exception:
            logger.debug("synthora: a %s request it cannot read is sent unobserved", path)
            return None
        run = backend._new_run(request)
        return _Call(backend, run, run.start(**backend._start_payload(request)), stream)

    def _backend(self, path: str, kind: type[Any]) -> Any:
        backend = self._backends.get(path)
        if backend is None:
            backend = kind(
                model_type="",
                client=self.client,
                async_client=self.client,
                source=self.source,
                name=self.name,
                handlers=self.handlers,
            )
            self._backends[path] = backend
        return backend


class _Call:
    """One observed call's run: its start, then its reply or its stream's tap."""

    __slots__ = ("backend", "run", "start", "stream")

    def __init__(self, backend: _Wire, run: Run, start: Event, stream: bool) -> None:
        self.backend = backend
        self.run = run
        self.start = start
        self.stream = stream

    def reply_events(self, parsed: Any) -> list[Event | None]:
        """The SDK's parsed reply as the run's closing events (an error if it cannot be read:
        the caller still gets the reply, as the SDK gave it)."""
        try:
            reply = self.backend._reply(parsed)
        except Exception as exc:
            return [self.run.close_with_error(exc, "request")]
        return reply_events(self.run, reply)

    def tap(self, result: Any, tap: type[ResponseTap | AsyncResponseTap]) -> None:
        """Decode the streamed response the SDK will read, as it reads it."""
        response = getattr(result, "response", None) or getattr(result, "http_response", None)
        if response is None:  # no SDK release hands back a stream without its response
            logger.debug("synthora: an observed stream without a response: %r", result)
            return
        tap(self.run, response, self.backend._stream_state(self.run.run_id, response.request))


def _install(client: Any, observer: _Observer) -> None:
    """Wrap `client`'s ``request`` (and make its copies observed too), on this instance only."""
    send = client.request
    if inspect.iscoroutinefunction(send):
        client.request = _async_request(send, observer)
    else:
        client.request = _sync_request(send, observer)
    copy = client.copy

    def observed_copy(*args: Any, **kwargs: Any) -> Any:
        return observe(
            copy(*args, **kwargs),
            source=observer.source,
            name=observer.name,
            handlers=observer.handlers,
        )

    client.copy = client.with_options = observed_copy
    client._synthora_observer = observer


def _sync_request(send: Callable[..., Any], observer: _Observer) -> Callable[..., Any]:
    def request(cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None) -> Any:
        call = observer.open(options, stream)
        if call is None:
            return send(cast_to, options, stream=stream, stream_cls=stream_cls)
        run = call.run
        run.emit(call.start)
        inside = _observing.set(True)
        try:
            result = send(cast_to, options, stream=stream, stream_cls=stream_cls)
        except BaseException as exc:
            run.emit(request_failed(run, exc))
            raise
        finally:
            _observing.reset(inside)
        if stream:
            call.tap(result, ResponseTap)
        else:
            parsed = result.parse() if _is_raw(result) else result
            for event in call.reply_events(parsed):
                run.emit(event)
        return result

    return request


def _async_request(send: Callable[..., Any], observer: _Observer) -> Callable[..., Any]:
    async def request(
        cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None
    ) -> Any:
        call = observer.open(options, stream)
        if call is None:
            return await send(cast_to, options, stream=stream, stream_cls=stream_cls)
        run = call.run
        await run.emit_async(call.start)
        inside = _observing.set(True)
        try:
            result = await send(cast_to, options, stream=stream, stream_cls=stream_cls)
        except BaseException as exc:
            await run.emit_async(request_failed(run, exc))
            raise
        finally:
            _observing.reset(inside)
        if stream:
            call.tap(result, AsyncResponseTap)
        else:
            parsed = result.parse() if _is_raw(result) else result
            if inspect.isawaitable(parsed):
                parsed = await parsed
            for event in call.reply_events(parsed):
                await run.emit_async(event)
        return result

    return request


def _is_raw(result: Any) -> bool:
    """Whether the SDK handed back its raw-response wrapper (``with_raw_response``,
    ``with_streaming_response``), whose parsed reply it caches for the caller."""
    return hasattr(result, "http_response") and callable(getattr(result, "parse", None))
