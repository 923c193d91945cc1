"""The Anthropic wire's own error, apart from its backend because the ``anthropic`` SDK is an
extra: the backend imports this module only once it is built, when the SDK is there."""

from __future__ import annotations

from typing import Self

import anthropic
import httpx2

from synthora.errors import ResponseError
from synthora.models.sse_stream import unreadable_reply

__all__ = ["UnreadableReplyError"]


class UnreadableReplyError(anthropic.APIError, ResponseError):
    """`synthora.models.openai_backend.UnreadableReplyError` for the Anthropic wire: a 200 reply
    that is not a Messages reply, as the anthropic SDK's error class, quoting what came."""

    @classmethod
    def of(cls, request: httpx2.Request, body: bytes, error: Exception) -> Self:
        return cls(unreadable_reply(request, body, error), request, body=None)
