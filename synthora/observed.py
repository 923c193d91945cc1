"""`observe`: unmodified ``openai`` / ``anthropic`` SDK code, observed as Synthora runs.

An observed client is the caller's own client, returned unchanged in type and behaviour. Only
its ``request`` method (the one every resource calls; the SDK's retry loop runs inside it) is
wrapped on the instance, so other clients, and the SDK classes, are untouched. Each call to an
endpoint that a built-in backend speaks becomes that backend's run: the backend reads the
request body into the same `ModelRequest` and start event (`_request_from_wire`), the SDK's
parsed reply into the same end event, and a stream's bytes, as the SDK pulls them, with the same
msgspec decoders (`ResponseTap`; the SDK then takes its events from the tap, split once for
both, `TapDecoder`). So handlers, spans, the event log and replay see an observed
call exactly as they see a backend's run, and the caller still gets the SDK's own objects, its
exceptions and its retries. Other endpoints (files, models, batches) pass through unobserved.

Observation never breaks the call: a body it cannot read is sent unobserved (logged at debug),
and the reply is the SDK's whatever happens to the run's events.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import httpx2
import openai

from synthora.errors import ConfigurationError
from synthora.events import Event
from synthora.models.anthropic_backend import AnthropicBackend
from synthora.models.attempts import count_anthropic_attempts, count_openai_attempts
from synthora.models.base import CallBackHandler, reply_events, request_failed
from synthora.models.chunks import StreamState
from synthora.models.openai_backend import OpenAIChatBackend, OpenAICompletionBackend
from synthora.models.openai_embeddings import OpenAIEmbeddingBackend
from synthora.models.openai_responses import OpenAIResponsesBackend
from synthora.models.protocol import ModelReply, ModelRequest
from synthora.models.replaying import Replayer, ServedReply, active_replayer
from synthora.models.sse_stream import AsyncResponseTap, ResponseTap, TapDecoder, tapped_event
from synthora.models.wire_replies import (
    WireReply,
    chat_reply,
    completion_reply,
    embeddings_reply,
    messages_reply,
    responses_reply,
)
from synthora.runs import Run, sending
from synthora.types.enums import NodeType
from synthora.types.node import Node

if TYPE_CHECKING:  # the event log is imported when a replay needs it, not with synthora
    from synthora.storage.log import EventLog

__all__ = ["ObservingNewClients", "observe"]

logger = logging.getLogger("synthora")

Client = TypeVar("Client")

_DEFAULT_SOURCE = Node(name="app", type=NodeType.AGENT)
_PER_CALL = "(per call)"
"""An observed endpoint's backend's model: never sent, each call names its own."""

Endpoints = Mapping[str, tuple[type[Any], WireReply]]
"""An SDK's endpoints that are runs: the backend whose run each call is, and its reply's form."""

_OPENAI_ENDPOINTS: Endpoints = {
    "/chat/completions": (OpenAIChatBackend, chat_reply),
    "/completions": (OpenAICompletionBackend, completion_reply),
    "/responses": (OpenAIResponsesBackend, responses_reply),
    "/embeddings": (OpenAIEmbeddingBackend, embeddings_reply),
}
_ANTHROPIC_ENDPOINTS: Endpoints = {"/v1/messages": (AnthropicBackend, messages_reply)}

Mode = Literal["replay", "record"]

_serving: ContextVar[ServedReply | None] = ContextVar("synthora_serving", default=None)
"""The recorded answer the HTTP client hands back, inside a replayed call."""


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
    replay: EventLog | None = None,
    mode: Mode = "replay",
) -> Client:
    """Observe every model call made through `client` (and the clients its ``with_options``
    makes): each one becomes a run with the events, spans and log entries the matching backend's
    run has. Returns `client` itself.

    `client` is an ``openai.OpenAI``/``AsyncOpenAI`` (Azure's included) or an
    ``anthropic.Anthropic``/``AsyncAnthropic``. Runs are nodes ``model:<name>`` under `source`
    (default ``agent:app``), `name` defaulting to the provider (``openai``, ``anthropic``);
    `handlers` hear this client's runs only. Observing a client twice changes nothing.

    With `replay`, calls are answered from that log without opening a connection: an identical
    request (the same input, tools, model and answer-changing parameters), recorded by a backend
    or an observed client, gets the recorded answer served as its endpoint's reply, so the SDK
    parses it into its own objects; identical requests take their recorded runs in order. A
    request no run answers raises `ReplayMissError` naming the closest recorded one and how it
    differs; with ``mode="record"`` it goes to the server instead, and the log, if attached,
    records its run for next time.
    """
    if getattr(client, "_synthora_observer", None) is not None:
        return client
    if mode not in ("replay", "record"):
        raise ConfigurationError(f"mode must be 'replay' or 'record', not {mode!r}")
    endpoints, provider, sdk = _endpoints_of(client)
    observer = _Observer(
        client,
        endpoints=endpoints,
        sdk=sdk,
        source=source or _DEFAULT_SOURCE,
        name=name or provider,
        handlers=handlers,
        replay=None if replay is None else _wire_replay(replay, mode),
    )
    _install(client, observer)
    return client


class ObservingNewClients:
    """While started, every openai / anthropic SDK client constructed is observed (`observe`):
    the SDK client classes' ``__init__`` is wrapped until `stop`. Clients made meanwhile stay
    observed. Starting again while started changes nothing."""

    def __init__(self) -> None:
        self._originals: dict[type, Callable[..., None]] = {}

    def start(self) -> None:
        for cls in _client_classes():
            if cls not in self._originals:
                self._originals[cls] = init = vars(cls)["__init__"]
                cls.__init__ = _observing_init(init)  # type: ignore[misc]

    def stop(self) -> None:
        for cls, init in self._originals.items():
            cls.__init__ = init  # type: ignore[misc]
        self._originals.clear()


def _client_classes() -> list[type]:
    """The SDK client classes there are to observe: openai's, and anthropic's if installed."""
    classes: list[type] = [openai.OpenAI, openai.AsyncOpenAI]
    try:
        import anthropic  # noqa: PLC0415 - the optional extra
    except ImportError:
        return classes
    return [*classes, anthropic.Anthropic, anthropic.AsyncAnthropic]


def _observing_init(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def observed_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        observe(self)

    return observed_init


def _endpoints_of(client: object) -> tuple[Endpoints, str, Any]:
    """The endpoints `client`'s SDK serves as runs, its provider, and the SDK's module."""
    if isinstance(client, openai.OpenAI | openai.AsyncOpenAI):
        return _OPENAI_ENDPOINTS, "openai", openai
    anthropic = sys.modules.get("anthropic")
    if anthropic is not None and isinstance(client, anthropic.Anthropic | anthropic.AsyncAnthropic):
        return _ANTHROPIC_ENDPOINTS, "anthropic", anthropic
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
        endpoints: Endpoints,
        sdk: Any,
        source: Node,
        name: str,
        handlers: Iterable[CallBackHandler],
        replay: Replayer | None,
    ) -> None:
        self.client = client
        self.source = source
        self.name = name
        self.handlers = tuple(handlers)
        self.replay = replay
        self._endpoints = endpoints
        self.sdk = sdk
        self._unset = (sdk.NotGiven, sdk.Omit)
        self._backends: dict[str, Any] = {}

    def open(self, options: Any, stream: bool) -> _Call | None:
        """The run of this call with its start event, not yet emitted, and its recorded answer
        when replaying; None for a call that is not a model run (another endpoint, or one inside
        a run's: an observed call's, or a backend's over an observed client). A replay miss
        raises here, before anything is emitted."""
        path, body = options.url, options.json_data
        endpoint = self._endpoints.get(path) if isinstance(path, str) else None
        if endpoint is None or not isinstance(body, Mapping) or sending.get() is not None:
            return None  # a request sent for a run already being sent is part of it
        kind, reply = endpoint
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
        served = None
        replay = self.replay if self.replay is not None else active_replayer()
        if replay is not None:
            served = replay.answer(backend.operation, request, body, reply, self.sdk)
        run = backend._new_run(request)
        return _Call(backend, run, run.start(**backend._start_payload(request)), stream, served)

    def of_copy(self, client: Any) -> _Observer:
        """The observer of a copy of this client (``with_options``): its runs are alike, and a
        replay goes on in the same recorded order."""
        return _Observer(
            client,
            endpoints=self._endpoints,
            sdk=self.sdk,
            source=self.source,
            name=self.name,
            handlers=self.handlers,
            replay=self.replay,
        )

    def _backend(self, path: str, kind: type[Any]) -> Any:
        backend = self._backends.get(path)
        if backend is None:
            backend = kind(
                model_type=_PER_CALL,
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

    __slots__ = ("backend", "run", "served", "start", "stream")

    def __init__(
        self, backend: _Wire, run: Run, start: Event, stream: bool, served: ServedReply | None
    ) -> None:
        self.backend = backend
        self.run = run
        self.start = start
        self.stream = stream
        self.served = served

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """While the SDK sends this call: its attempts count for the run, and a replayed answer
        is what the HTTP client hands back (a recorded failure to connect is raised here)."""
        serving, counting = _serving.set(self.served), sending.set(self.run)
        try:
            if self.served is not None and self.served.exception is not None:
                raise self.served.exception
            yield
        finally:
            sending.reset(counting)
            _serving.reset(serving)

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
    """Wrap `client`'s ``request`` (and make its copies observed too), on this instance only,
    and its HTTP client's ``send``, which hands back the recorded answer when a call is replayed
    (by the client's own replay, or a test's replaying every run)."""
    send = client.request
    asynchronous = inspect.iscoroutinefunction(send)
    wrap = _async_request if asynchronous else _sync_request
    client.request = wrap(send, observer)
    _read_events_off_taps(client, observer.sdk)
    if isinstance(client, openai.OpenAI | openai.AsyncOpenAI):
        count_openai_attempts(client)
    else:
        failed = observer.sdk.APIConnectionError
        count_anthropic_attempts(client, is_async=asynchronous, connection_error=failed)
    http = client._client
    if not getattr(http, "_synthora_serving", False):  # copies share their HTTP client
        http.send = (_async_serving if asynchronous else _sync_serving)(http.send)
        http._synthora_serving = True
    copy = client.copy

    def observed_copy(*args: Any, **kwargs: Any) -> Any:
        made = copy(*args, **kwargs)
        if getattr(made, "_synthora_observer", None) is None:
            _install(made, observer.of_copy(made))
        return made

    client.copy = client.with_options = observed_copy
    client._synthora_observer = observer


def _read_events_off_taps(client: Any, sdk: Any) -> None:
    """Have the SDK take a tapped stream's events from the tap (`TapDecoder`), which splits the
    bytes once for both. A client with a decoder of its own (a cloud's binary event stream), or
    a release without these hooks, reads its events itself."""
    streaming = getattr(sdk, "_streaming", None)
    event = getattr(streaming, "ServerSentEvent", None)
    make_decoder = getattr(client, "_make_sse_decoder", None)
    if event is None or make_decoder is None:
        return
    if type(make_decoder()) is not getattr(streaming, "SSEDecoder", None):
        return
    made = tapped_event(event)
    client._make_sse_decoder = lambda: TapDecoder(make_decoder(), made)


def _sync_request(send: Callable[..., Any], observer: _Observer) -> Callable[..., Any]:
    def request(cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None) -> Any:
        call = observer.open(options, stream)
        if call is None:
            return send(cast_to, options, stream=stream, stream_cls=stream_cls)
        run = call.run
        run.emit(call.start)
        try:
            with call.sending():
                result = send(cast_to, options, stream=stream, stream_cls=stream_cls)
        except BaseException as exc:
            run.emit(request_failed(run, exc))
            raise
        if call.stream:
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
        try:
            with call.sending():
                result = await send(cast_to, options, stream=stream, stream_cls=stream_cls)
        except BaseException as exc:
            await run.emit_async(request_failed(run, exc))
            raise
        if call.stream:
            call.tap(result, AsyncResponseTap)
        else:
            parsed = result.parse() if _is_raw(result) else result
            if inspect.isawaitable(parsed):
                parsed = await parsed
            for event in call.reply_events(parsed):
                await run.emit_async(event)
        return result

    return request


def _sync_serving(send: Callable[..., Any]) -> Callable[..., Any]:
    def serving(request: httpx2.Request, **kwargs: Any) -> Any:
        served = _serving.get()
        return send(request, **kwargs) if served is None else served.response(request)

    return serving


def _async_serving(send: Callable[..., Any]) -> Callable[..., Any]:
    async def serving(request: httpx2.Request, **kwargs: Any) -> Any:
        served = _serving.get()
        return await send(request, **kwargs) if served is None else served.response(request)

    return serving


def _wire_replay(log: EventLog, mode: Mode) -> Replayer:
    from synthora.storage.wire_replay import LogReplay  # noqa: PLC0415 - see TYPE_CHECKING

    return LogReplay(log, mode)


def _is_raw(result: Any) -> bool:
    """Whether the SDK handed back its raw-response wrapper (``with_raw_response``,
    ``with_streaming_response``), whose parsed reply it caches for the caller."""
    return hasattr(result, "http_response") and callable(getattr(result, "parse", None))
