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
hooks still serves ``async_run``: its sync hooks run in a worker thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Self

import anyio
from blinker import Signal

from synthora import bus
from synthora.callbacks import CallBackHandler, Receiver, hook_receivers
from synthora.events import Event
from synthora.messages import (
    MessageChunk,
    MessageInput,
    ToolCallDelta,
    coerce_messages,
)
from synthora.models.output import OutputState
from synthora.models.protocol import ModelDelta, ModelReply, ModelRequest
from synthora.models.request import event_params, register_credentials
from synthora.models.streams import (
    AsyncDeltaSource,
    AsyncRunStream,
    AsyncSource,
    DeltaSource,
    RunStream,
    Source,
)
from synthora.models.vectors import pack
from synthora.runs import DEFAULT_DURABLE_TIMEOUT, Run, register_secret, service_name
from synthora.types.enums import NodeType
from synthora.types.node import Node

__all__ = ["BaseModelBackend", "CallBackHandler", "sdk_clients_server"]


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

    def __init__(
        self,
        *,
        model_type: str,
        source: Node,
        config: dict[str, Any] | None = None,
        name: str | None = None,
        handlers: Iterable[CallBackHandler] = (),
        stream: bool = False,
        durable_timeout: float = DEFAULT_DURABLE_TIMEOUT,
    ) -> None:
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
        return self._run(self._request(messages, params))

    async def async_run(
        self, messages: MessageInput | Iterable[MessageInput], /, **params: Any
    ) -> Any:
        return await self._arun(self._request(messages, params))

    def _run(self, request: ModelRequest) -> Any:
        run = self._new_run(request)
        run.emit(run.start(**self._start_payload(request)))
        try:
            if request.stream:
                return RunStream(run, self._open_stream(run, request))
            reply = self._generate(request)
        except BaseException as exc:
            run.emit(_request_failed(run, exc))
            raise
        for event in _reply_events(run, reply):
            run.emit(event)
        return self._result(reply)

    async def _arun(self, request: ModelRequest) -> Any:
        run = self._new_run(request)
        await run.emit_async(run.start(**self._start_payload(request)))
        try:
            if request.stream:
                return AsyncRunStream(run, await self._aopen_stream(run, request))
            reply = await self._agenerate(request)
        except BaseException as exc:
            await run.emit_async(_request_failed(run, exc))
            raise
        for event in _reply_events(run, reply):
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


def _reply_events(run: Run, reply: ModelReply) -> list[Event | None]:
    """A whole reply as the events a stream would have given: one token, then end."""
    message = reply.message
    token = None
    if message is not None:
        deltas = tuple(
            ToolCallDelta(index=i, id=call.id, name=call.name, arguments=call.arguments)
            for i, call in enumerate(message.tool_calls)
        )
        if message.text or deltas:
            chunk = MessageChunk(content=message.text, delta=message.text, tool_call_deltas=deltas)
            token = run.token(chunk)
    end = run.close_with_end(
        message,
        reply.finish_reason,
        usage=reply.usage,
        response_id=reply.response_id,
        response_model=reply.response_model,
        vectors=None if reply.vectors is None else pack(reply.vectors),
    )
    return [token, end]


def _request_failed(run: Run, exc: BaseException) -> Event | None:
    """The closing event of a run whose request never produced a reply or a stream."""
    if isinstance(exc, Exception):
        return run.close_with_error(exc, "request")
    return run.close_interrupted(None)
