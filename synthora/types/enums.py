"""Enumerations shared by nodes, messages and backends.

They are `StrEnum`s so that their stored and wire forms are the plain strings users read in the
event log, in span attributes and in dashboards.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["MessageRole", "ModelBackendType", "NodeType"]


class NodeType(StrEnum):
    """What kind of participant a `Node` is; the prefix of each segment of a node path."""

    AGENT = "agent"
    TOOL = "tool"
    MODEL = "model"
    WORKFLOW = "workflow"
    USER = "user"


class ModelBackendType(StrEnum):
    """Which wire API a backend speaks."""

    OPENAI_CHAT = "openai_chat"
    OPENAI_COMPLETION = "openai_completion"
    OPENAI_RESPONSES = "openai_responses"
    OPENAI_EMBEDDING = "openai_embedding"
    ANTHROPIC_MESSAGES = "anthropic_messages"
    REPLAY = "replay"


class MessageRole(StrEnum):
    """Roles of the OpenAI chat format (``developer`` is OpenAI's newer name for ``system``)."""

    SYSTEM = "system"
    DEVELOPER = "developer"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
