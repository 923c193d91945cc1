"""Model backends: every run of one is reported on the bus."""

from synthora.models.base import BaseModelBackend
from synthora.models.openai_backend import OpenAIChatBackend, OpenAICompletionBackend
from synthora.models.streams import AsyncRunStream, RunStream

__all__ = [
    "AsyncRunStream",
    "BaseModelBackend",
    "OpenAIChatBackend",
    "OpenAICompletionBackend",
    "RunStream",
]
