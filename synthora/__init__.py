"""Synthora: OpenAI-compatible model backends whose every run is an observable event stream.

Each ``run`` / ``async_run`` emits typed lifecycle events (start, token, end, error) on a
blinker bus (`synthora.bus`); callback handlers, OpenTelemetry (`synthora.telemetry`) and the
SQL event log (`synthora.storage`) listen to it.
"""

from synthora.callbacks import AsyncCallBackHandler, BaseCallBackHandler
from synthora.errors import (
    ConfigurationError,
    InvalidRequestError,
    MessageTypeError,
    ResponseError,
    SynthoraError,
)
from synthora.events import EndEvent, ErrorEvent, Event, StartEvent, TokenEvent, event_from_dict
from synthora.messages import BaseMessage, MessageChunk, ToolCall, assistant, system, tool, user
from synthora.models import BaseModelBackend, OpenAIChatBackend, OpenAICompletionBackend
from synthora.observed import observe
from synthora.scope import scope
from synthora.types import MessageRole, ModelBackendType, Node, NodeType

__version__ = "0.1.0"

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
