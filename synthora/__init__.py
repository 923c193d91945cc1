"""Synthora: OpenAI-compatible model backends whose every run is an observable event stream.

Each ``run`` / ``async_run`` emits typed lifecycle events (start, token, end, error) on a
blinker bus (`synthora.bus`); callback handlers, OpenTelemetry (`synthora.telemetry`) and the
SQL event log (`synthora.storage`) listen to it.
"""

from typing import TYPE_CHECKING

from synthora.callbacks import AsyncCallBackHandler, BaseCallBackHandler
from synthora.errors import (
    ConfigurationError,
    InvalidRequestError,
    MessageTypeError,
    ResponseError,
    SynthoraError,
)
from synthora.events import EndEvent, ErrorEvent, Event, StartEvent, TokenEvent, event_from_dict
from synthora.lazy_exports import lazy_exports
from synthora.messages import BaseMessage, MessageChunk, ToolCall, assistant, system, tool, user
from synthora.scope import scope
from synthora.types import MessageRole, ModelBackendType, Node, NodeType

if TYPE_CHECKING:
    from synthora.models import BaseModelBackend, OpenAIChatBackend, OpenAICompletionBackend
    from synthora.observed import observe

__version__ = "0.1.0"

_LAZY = {
    "BaseModelBackend": "synthora.models",
    "OpenAIChatBackend": "synthora.models",
    "OpenAICompletionBackend": "synthora.models",
    "observe": "synthora.observed",
}
"""Names whose modules import the ``openai`` SDK (a third of a second): loaded when first used,
so what imports only part of Synthora (the pytest plugin, in every pytest session) does not pay."""


__all__ = [
    "AsyncCallBackHandler",
    "BaseCallBackHandler",
    "BaseMessage",
    "BaseModelBackend",
    "ConfigurationError",
    "EndEvent",
    "ErrorEvent",
    "Event",
    "InvalidRequestError",
    "MessageChunk",
    "MessageRole",
    "MessageTypeError",
    "ModelBackendType",
    "Node",
    "NodeType",
    "OpenAIChatBackend",
    "OpenAICompletionBackend",
    "ResponseError",
    "StartEvent",
    "SynthoraError",
    "TokenEvent",
    "ToolCall",
    "__version__",
    "assistant",
    "event_from_dict",
    "observe",
    "scope",
    "system",
    "tool",
    "user",
]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
