"""Model backends: every run of one is reported on the bus.

`BaseModelBackend` owns the run; a backend implements `_generate` / `_stream` (and their async
twins) over `ModelRequest`, answering with a `ModelReply` or `ModelDelta` pieces.
"""

from synthora.models.anthropic_backend import AnthropicBackend
from synthora.models.base import BaseModelBackend
from synthora.models.openai_backend import OpenAIChatBackend, OpenAICompletionBackend
from synthora.models.openai_embeddings import OpenAIEmbeddingBackend
from synthora.models.openai_responses import OpenAIResponsesBackend
from synthora.models.protocol import ModelDelta, ModelReply, ModelRequest
from synthora.models.streams import AsyncRunStream, RunStream

__all__ = [
    "AnthropicBackend",
    "AsyncRunStream",
    "BaseModelBackend",
    "ModelDelta",
    "ModelReply",
    "ModelRequest",
    "OpenAIChatBackend",
    "OpenAICompletionBackend",
    "OpenAIEmbeddingBackend",
    "OpenAIResponsesBackend",
    "RunStream",
]
