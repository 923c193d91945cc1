"""A backend for embeddings (``POST /v1/embeddings``): texts in, one vector per text out.

An embeddings run is a run like any other: a start event (the texts as its ``prompt``), no
tokens, and an end event carrying the vectors packed as float32 (`synthora.models.vectors`), so
the log can serve them again offline and ``store_content=False`` drops them with the texts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import openai

from synthora.errors import InvalidRequestError
from synthora.events import Usage
from synthora.models.openai_backend import OpenAIChatBackend
from synthora.models.protocol import ModelReply, ModelRequest
from synthora.models.request import sdk_params
from synthora.types.enums import ModelBackendType

__all__ = ["OpenAIEmbeddingBackend", "texts_to_embed"]


class OpenAIEmbeddingBackend(OpenAIChatBackend):
    """An embedding model behind any server speaking OpenAI's embeddings API.

    ``run(text)`` or ``run([text, ...])`` returns a list of vectors, one a text, in order.
    Built with `default`, as the chat backend is; it never streams.
    """

    backend_type = ModelBackendType.OPENAI_EMBEDDING
    operation = "embeddings"

    def _request(self, messages: Any, params: dict[str, Any]) -> ModelRequest:
        return ModelRequest(
            model=self.model_type,
            messages=[],
            params={**self.config, **params},
            stream=False,
            prompt=texts_to_embed(messages),
        )

    def _start_payload(self, request: ModelRequest) -> dict[str, Any]:
        return {**super()._start_payload(request), "messages": None, "prompt": request.prompt}

    def _resource(self, client: openai.OpenAI | openai.AsyncOpenAI) -> Any:
        return client.embeddings

    def _sdk_input(self, request: ModelRequest) -> dict[str, Any]:
        return {"input": request.prompt}

    # encoding_format: the SDK asks for base64 itself and hands back floats either way
    _wire_fields = frozenset({"model", "input", "stream", "encoding_format"})

    def _input_from_wire(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return {"messages": [], "prompt": texts_to_embed(body.get("input"))}

    def _sdk_params(self, request: ModelRequest) -> dict[str, Any]:
        return sdk_params(request.params)

    def _reply(self, reply: Any) -> ModelReply:
        ordered = sorted(reply.data, key=lambda item: item.index)
        usage = getattr(reply, "usage", None)
        return ModelReply(
            None,
            usage=None if usage is None else Usage(input_tokens=usage.prompt_tokens),
            response_model=reply.model,
            vectors=[list(item.embedding) for item in ordered],
        )


def texts_to_embed(value: object) -> list[str]:
    """The texts to embed: one string, or a list of strings; checked before anything is sent."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Iterable) or isinstance(value, bytes | Mapping):
        raise InvalidRequestError(
            f"an embeddings run takes a text or a list of texts, not a {type(value).__name__}"
        )
    texts = list(value)
    if not texts:
        raise InvalidRequestError("an embeddings run needs at least one text; got an empty list")
    for position, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidRequestError(
                f"text {position} to embed is a {type(text).__name__}, not a string"
            )
    return texts
