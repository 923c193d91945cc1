"""`BaseModelBackend`: every run's lifecycle, whatever answers it.

A backend is a `Node` of type ``model`` under its ``source`` node, a stream flag, and its own
callback handlers. Handlers are connected to the bus with the backend as blinker's sender, so a
handler hears only the runs of the backend it was given to.

The base class owns the run: it validates the input into a `ModelRequest` before anything is
emitted, emits ``start``, asks the backend for a `ModelReply` (``_generate``) or a stream of
`ModelDelta` (``_stream``), turns either into ``token`` events and exactly one ``end`` or
``error``, and waits for the subscribers' durability barriers. A subclass implements only those
hooks (and their async twins), plus ``provider`` and ``operation``::

    class EchoBackend(BaseModelBackend):
        provider = "echo"
        def _generate(self, request):
            return ModelReply(assistant(request.messages[-1].text))
        def _stream(self, request):
            for word in request.messages[-1].text.split():
                yield ModelDelta(text=word + " ")

Handlers, spans, the event log and replay then work for it unchanged. A backend without async
hooks still serves ``async_run``: its sync hooks run in a worker thread. While a test replays
its cassette (`synthora.models.replaying`), a recorded run answers in place of these hooks,
inside the same lifecycle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Self

import anyio
from blinker import Signal

from synthora import bus
from synthora.callbacks import CallBackHandler, Receiver, hook_receivers
from synthora.errors import ConfigurationError
from synthora.events import Event
from synthora.messages import MessageChunk, MessageInput, coerce_messages
from synthora.models.output import OutputState
from synthora.models.protocol import ModelDelta, ModelReply, ModelRequest
from synthora.models.replaying import Answerer, recorded_answer
from synthora.models.request import check_json_request, event_params, register_credentials
from synthora.models.streams import (
    AsyncDeltaSource,
    AsyncRunStream,
    AsyncSource,
    DeltaSource,
    RunStream,
    Source,
)
from synthora.models.vectors import pack
from synthora.runs import DEFAULT_DURABLE_TIMEOUT, Run, register_secret, sending, service_name
from synthora.types.enums import NodeType
from synthora.types.node import Node

__all__ = [
    "BaseModelBackend",
    "CallBackHandler",
    "reply_events",
    "request_failed",
    "sdk_clients_server",
]


class BaseModelBackend:
    """A model that runs messages and reports every run as events on the bus.

    ``run`` returns the reply message, or (with `stream` on) an iterator of `MessageChunk`;
    ``async_run`` is its twin. Keyword arguments of ``run`` override ``config`` for that run.
    Subclasses implement `_generate` and `_stream` (and, to avoid a worker thread, their async
    twins), and usually a `default` factory.
    """

    provider: str = "unknown"
    """The provider as the GenAI conventions name it (``gen_ai.provider.name``)."""
    operation: str = "chat"
    """The operation a run performs (``gen_ai.operation.name``)."""
    backend_type: str = ""
    """The wire this backend speaks, as the log records it; the class name when empty."""
    requires_model: bool = True
    """Whether `model_type` must name a model; `ReplayBackend` takes "" for any model."""
    sends_json: bool = False
    """Whether requests go out as JSON (the SDK wires do): a request JSON cannot carry (NaN, a
    lone surrogate, a set) is then refused, naming the field, before its run starts."""

    def __init__(
        self,
        *,
        model_type: str,
        source: Node,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
        handlers: Iterable[CallBackHandler] = (),
        stream: bool = False,
        durable_timeout: float = DEFAULT_DURABLE_TIMEOUT,
    ) -> None:
        self._check_identity(model_type, source, name, config)
        self.model_type = model_type
        self.source = source
        self.config: dict[str, Any] = dict(config or {})
        self.name = name or type(self).__name__
        self.durable_timeout = durable_timeout
        # The original library's way to stream: config={"stream": True}, as set_stream(True).
        self._streaming = bool(self.config.pop("stream", stream))
        self._handlers: dict[int, tuple[CallBackHandler, list[tuple[Signal, Receiver]]]] = {}
        for handler in handlers:
            self.add_handler(handler)

    @classmethod
    def default(cls, *args: Any, **kwargs: Any) -> Self:
        """The usual way to build this backend; see each subclass for its options."""
        raise NotImplementedError(f"{cls.__name__} has no default() factory")

    @classmethod
    def _check_identity(
        cls, model_type: object, source: object, name: object, config: object
    ) -> None:
        """Refuse, when the backend is built, what names its runs wrongly: every event and
        stored row carries the model and the node, and a model of None or a source that is
        not a `Node` would fail only when the first run is stored."""
        if not isinstance(model_type, str) or (cls.requires_model and not model_type.strip()):
            raise ConfigurationError(
                f"{cls.__name__} needs model_type, the name of the model to run (a non-empty "
                f"string); got {model_type!r}"
            )
        node: object = source
        while node is not None:
            if not (
                isinstance(node, Node)
                and isinstance(node.name, str)
                and node.name
                and isinstance(node.type, NodeType)
            ):
                raise ConfigurationError(
                    f"{cls.__name__}'s source must be a Node with a name and a NodeType, and so "
                    "must its parents (for example Node(name='assistant', type=NodeType.AGENT)); "
                    f"got {node!r}"
                )
            node = node.parent
        if name is not None and not isinstance(name, str):
            raise ConfigurationError(
                f"{cls.__name__}'s name must be a string (the model node's name); "
                f"got {type(name).__name__}"
            )
        if config is not None and not isinstance(config, Mapping):
            raise ConfigurationError(
                f"config must be a mapping of request parameters, got {type(config).__name__}"
            )

    @property
    def node(self) -> Node:
        """This backend as a node: ``model:<name>`` under its source."""
        return Node(name=self.name, type=NodeType.MODEL, parent=self.source)

    @property
    def stream(self) -> bool:
        """Whether `run` streams: returns an iterator of chunks instead of a message."""
        return self._streaming

    def set_stream(self, stream: bool) -> None:
        self._streaming = stream

    @property
    def handlers(self) -> list[CallBackHandler]:
        """The callback handlers given to this backend, in the order they were added."""
        return [handler for handler, _ in self._handlers.values()]

    def add_handler(self, handler: CallBackHandler) -> None:
        """Let `handler` hear this backend's runs. Hooks it does not override are skipped, and
        each hook's style (events, or the original library's arguments) is read here, once."""
        if id(handler) in self._handlers:
            return
        connected: list[tuple[Signal, Receiver]] = []
        for kind, receiver in hook_receivers(handler):
            signal = bus.signals[kind]
            # Weakly: this backend holds the receiver, so the signal lets go of it (and of the
            # handler) with the backend, even when the handler refers back to the backend.
            signal.connect(receiver, sender=self)
            connected.append((signal, receiver))
        self._handlers[id(handler)] = (handler, connected)

    def remove_handler(self, handler: CallBackHandler) -> None:
        _, connected = self._handlers.pop(id(handler), (handler, []))
        for signal, receiver in connected:
            # From every sender, not ``sender=self``: blinker forgets only that pairing and keeps
            # the receiver itself, and this one was made for this backend alone.
            signal.disconnect(receiver)

    # -- the lifecycle: the two twins, around a validated request --------------------------------

    def run(self, messages: MessageInput | Iterable[MessageInput], /, **params: Any) -> Any:
        """The reply `BaseMessage`; with `stream` on, a `RunStream` of `MessageChunk`; for an
        embeddings backend, one vector per text."""
        request = self._checked_request(messages, params)
        return self._run(request, recorded_answer(self.operation, request))

    async def async_run(
        self, messages: MessageInput | Iterable[MessageInput], /, **params: Any
    ) -> Any:
        request = self._checked_request(messages, params)
        return await self._arun(request, recorded_answer(self.operation, request))

    def _checked_request(
        self, messages: MessageInput | Iterable[MessageInput], params: dict[str, Any]
    ) -> ModelRequest:
        """The run's request, refused before anything is emitted if it cannot be sent."""
        request = self._request(messages, params)
        if self.sends_json:
            check_json_request(request)
        return request

    def _run(self, request: ModelRequest, answerer: Answerer | None = None) -> Any:
        """Run `request` as this backend's run, answered by its own wire or by `answerer` (a
        recorded run, replayed)."""
        wire: Answerer = self if answerer is None else answerer
        run = self._new_run(request)
        run.emit(run.start(**self._start_payload(request)))
        sending_run = sending.set(run)
        try:
            if request.stream:
                return RunStream(run, wire._open_stream(run, request))
            reply = wire._generate(request)
        except BaseException as exc:
            run.emit(request_failed(run, exc))
            raise
        finally:
            sending.reset(sending_run)
        for event in reply_events(run, reply):
            run.emit(event)
        return self._result(reply)

    async def _arun(self, request: ModelRequest, answerer: Answerer | None = None) -> Any:
        wire: Answerer = self if answerer is None else answerer
        run = self._new_run(request)
        await run.emit_async(run.start(**self._start_payload(request)))
        sending_run = sending.set(run)
        try:
            if request.stream:
                return AsyncRunStream(run, await wire._aopen_stream(run, request))
            reply = await wire._agenerate(request)
        except BaseException as exc:
            await run.emit_async(request_failed(run, exc))
            raise
        finally:
            sending.reset(sending_run)
        for event in reply_events(run, reply):
            await run.emit_async(event)
        return self._result(reply)

    # -- what a backend implements --------------------------------------------------------------

    def _generate(self, request: ModelRequest) -> ModelReply:
        """Answer `request` whole."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _generate()")

    def _stream(self, request: ModelRequest) -> Iterator[ModelDelta]:
        """Answer `request` piece by piece."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _stream()")

    async def _agenerate(self, request: ModelRequest) -> ModelReply:
        """`_generate` for ``async_run``; by default `_generate` in a worker thread."""
        return await anyio.to_thread.run_sync(self._generate, request)

    async def _astream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        """`_stream` for ``async_run``; by default `_stream`, each step in a worker thread."""
        deltas = await anyio.to_thread.run_sync(self._stream, request)
        done = object()
        while (delta := await anyio.to_thread.run_sync(next, deltas, done)) is not done:
            assert isinstance(delta, ModelDelta)
            yield delta

    # -- hooks the built-in wires refine (no I/O) ------------------------------------------------

    def _request(
        self, messages: MessageInput | Iterable[MessageInput], params: dict[str, Any]
    ) -> ModelRequest:
        """The run's request, validated before anything is emitted or sent."""
        return ModelRequest(
            model=self.model_type,
            messages=list(coerce_messages(messages)),
            params={**self.config, **params},
            stream=self.stream,
        )

    def _start_payload(self, request: ModelRequest) -> dict[str, Any]:
        """The start event's fields: what was asked, of which model, by whom."""
        params = request.params
        register_credentials(params.get("extra_headers"), params.get("extra_query"))
        return {
            "operation": self.operation,
            "provider": self.provider,
            "service": service_name(),
            "backend": self.backend_type or type(self).__name__,
            "model": request.model,
            "stream": request.stream,
            "params": event_params(request.params),
            "messages": tuple(request.messages),
            **self._server_attributes(),
        }

    def _result(self, reply: ModelReply) -> Any:
        """What ``run`` returns for a whole reply: its message (an embeddings run: vectors)."""
        if self.operation == "embeddings":
            return reply.vectors or []
        assert reply.message is not None, f"{type(self).__name__}._generate gave no message"
        return reply.message

    def _server_attributes(self) -> dict[str, Any]:
        """``server_address`` and ``server_port`` of the server runs go to, where known."""
        return {}

    def _open_stream(self, run: Run, request: ModelRequest) -> Source:
        """Where a streamed run's chunks come from; the built-in wires read their bytes."""
        return DeltaSource(self._stream(request), OutputState(run.run_id))

    async def _aopen_stream(self, run: Run, request: ModelRequest) -> AsyncSource:
        return AsyncDeltaSource(self._astream(request), OutputState(run.run_id))

    def _new_run(self, request: ModelRequest) -> Run:
        return Run(
            self,
            self.node,
            operation=self.operation,
            model=request.model,
            durable_timeout=self.durable_timeout,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node.path} model={self.model_type!r}>"


def sdk_clients_server(client: Any, async_client: Any) -> dict[str, Any]:
    """For a wire over an SDK's sync and async clients: register their API keys as secrets
    (so no event ever carries them) and return the server the start event names."""
    for sdk_client in (client, async_client):
        if sdk_client.api_key:
            register_secret(sdk_client.api_key)
        register_credentials(
            getattr(sdk_client, "default_headers", None), getattr(sdk_client, "default_query", None)
        )
    url = client.base_url
    return {
        "server_address": url.host or None,
        "server_port": url.port or (443 if url.scheme == "https" else 80),
    }


def reply_events(run: Run, reply: ModelReply) -> list[Event | None]:
    """A whole reply as the events a stream would have given: one token, then end."""
    whole = ModelDelta.whole(reply)
    token = None
    if whole.text or whole.tool_call_deltas:
        chunk = MessageChunk(
            content=whole.text, delta=whole.text, tool_call_deltas=whole.tool_call_deltas
        )
        token = run.token(chunk)
    end = run.close_with_end(
        reply.message,
        reply.finish_reason,
        usage=reply.usage,
        response_id=reply.response_id,
        response_model=reply.response_model,
        vectors=None if reply.vectors is None else pack(reply.vectors),
    )
    return [token, end]


def request_failed(run: Run, exc: BaseException) -> Event | None:
    """The closing event of a run whose request never produced a reply or a stream."""
    if isinstance(exc, Exception):
        return run.close_with_error(exc, "request")
    return run.close_interrupted(None)
