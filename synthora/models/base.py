"""`BaseModelBackend`: what every backend shares, whatever answers its runs.

A backend is a `Node` of type ``model`` under its ``source`` node, a stream flag, and its own
callback handlers. Handlers are connected to the bus with the backend as blinker's sender, so a
handler hears only the runs of the backend it was given to.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, Self

from blinker import Signal

from synthora import bus
from synthora.callbacks import AsyncCallBackHandler, BaseCallBackHandler
from synthora.messages import BaseMessage, MessageChunk, MessageInput
from synthora.runs import DEFAULT_DURABLE_TIMEOUT
from synthora.types.enums import ModelBackendType, NodeType
from synthora.types.node import Node

__all__ = ["BaseModelBackend", "CallBackHandler"]

CallBackHandler = BaseCallBackHandler | AsyncCallBackHandler

_HOOKS: tuple[tuple[Signal, str], ...] = (
    (bus.on_start, "on_llm_start"),
    (bus.on_token, "on_llm_chunk"),
    (bus.on_end, "on_llm_end"),
    (bus.on_error, "on_llm_error"),
)


class BaseModelBackend:
    """A model that runs messages and reports every run as events on the bus.

    ``run`` returns the reply message, or (with `stream` on) an iterator of `MessageChunk`;
    ``async_run`` is its twin. Subclasses implement both and `default`.
    """

    backend_type: ModelBackendType

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
        self._stream = stream
        self._handlers: dict[int, tuple[CallBackHandler, list[tuple[Signal, _HookReceiver]]]] = {}
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
        return self._stream

    def set_stream(self, stream: bool) -> None:
        self._stream = stream

    @property
    def handlers(self) -> list[CallBackHandler]:
        """The callback handlers given to this backend, in the order they were added."""
        return [handler for handler, _ in self._handlers.values()]

    def add_handler(self, handler: CallBackHandler) -> None:
        """Let `handler` hear this backend's runs. Hooks it does not override are skipped."""
        if id(handler) in self._handlers:
            return
        base: type[CallBackHandler] = (
            AsyncCallBackHandler
            if isinstance(handler, AsyncCallBackHandler)
            else BaseCallBackHandler
        )
        connected = []
        for signal, hook in _HOOKS:
            if getattr(type(handler), hook, None) is getattr(base, hook):
                continue
            receiver = _HookReceiver(getattr(handler, hook))
            signal.connect(receiver, sender=self, weak=False)
            connected.append((signal, receiver))
        self._handlers[id(handler)] = (handler, connected)

    def remove_handler(self, handler: CallBackHandler) -> None:
        _, connected = self._handlers.pop(id(handler), (handler, []))
        for signal, receiver in connected:
            signal.disconnect(receiver, sender=self)

    def run(
        self, messages: MessageInput | Iterable[MessageInput], /, **params: Any
    ) -> BaseMessage | Iterator[MessageChunk]:
        raise NotImplementedError

    async def async_run(
        self, messages: MessageInput | Iterable[MessageInput], /, **params: Any
    ) -> BaseMessage | AsyncIterator[MessageChunk]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node.path} model={self.model_type!r}>"


class _HookReceiver:
    """A bus receiver that calls one handler hook with the event."""

    __slots__ = ("hook",)

    def __init__(self, hook: Callable[..., Any]) -> None:
        self.hook = hook

    def __call__(self, sender: Any, /, *, event: Any, **_: Any) -> Any:
        return self.hook(event)
