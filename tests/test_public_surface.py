"""The public names are a contract: this test fails when one appears or disappears."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import synthora
import synthora.bus
import synthora.events
from synthora.bus import before_run, on_end, on_error, on_start, on_token
from synthora.callbacks import AsyncCallBackHandler, BaseCallBackHandler
from synthora.messages import BaseMessage, assistant, system, user
from synthora.models import BaseModelBackend, OpenAIChatBackend, OpenAICompletionBackend
from synthora.types.enums import ModelBackendType, NodeType
from synthora.types.node import Node


def test_root_exports() -> None:
    """synthora's root re-exports exactly the everyday names."""
    assert synthora.__all__ == [
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
    for name in synthora.__all__:
        assert hasattr(synthora, name), name


def test_seed_import_paths() -> None:
    """The seed's import paths name the same objects as the root."""
    assert issubclass(OpenAICompletionBackend, OpenAIChatBackend)
    assert issubclass(OpenAIChatBackend, BaseModelBackend)
    assert (AsyncCallBackHandler, BaseCallBackHandler) == (
        synthora.AsyncCallBackHandler,
        synthora.BaseCallBackHandler,
    )
    assert (BaseMessage, Node, NodeType, ModelBackendType) == (
        synthora.BaseMessage,
        synthora.Node,
        synthora.NodeType,
        synthora.ModelBackendType,
    )
    assert (user, system, assistant) == (synthora.user, synthora.system, synthora.assistant)


def test_bus_signals() -> None:
    """One blinker signal per kind, plus before_run, in Synthora's own namespace."""
    names = [s.name for s in (before_run, on_start, on_token, on_end, on_error)]
    assert names == ["before_run", "start", "token", "end", "error"]
    assert set(synthora.bus.__all__) >= {"before_run", "on_start", "on_token", "on_end", "on_error"}
    assert set(synthora.events.__all__) >= {"Event", "StartEvent", "event_from_dict"}


def test_the_pytest_plugin_loads_without_the_sdks() -> None:
    """Every pytest session where Synthora is installed loads its plugin: the plugin, and the
    root package, import neither the openai SDK nor the event log until a backend is used."""
    probe = (
        "import sys, synthora.testing.pytest_plugin\n"
        "print(sorted(m for m in ('openai', 'sqlalchemy', 'anthropic') if m in sys.modules))\n"
        "import synthora\n"
        "print(synthora.OpenAIChatBackend.__name__, 'openai' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    assert done.stdout.splitlines() == ["[]", "OpenAIChatBackend True"]
