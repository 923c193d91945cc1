"""Synthora's own errors.

Errors from the model server are the `openai` SDK's own exceptions, re-raised untouched (each
carries a note naming the Synthora run it ended). Synthora raises only misuse errors, and says
what to do about them::

    SynthoraError
     ├── ConfigurationError      (a backend that cannot work: no API key, a bad option)
     ├── InvalidRequestError     (a request refused before it was sent: ValueError)
     │    └── MessageTypeError   (something that is not a message where one is needed: TypeError)
     └── ResponseError           (the server answered with something that cannot be read)
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "InvalidRequestError",
    "MessageTypeError",
    "ResponseError",
    "SynthoraError",
]


class SynthoraError(Exception):
    """The base of every error Synthora itself raises."""


class ConfigurationError(SynthoraError):
    """A backend or subscriber was configured in a way that cannot work."""


class InvalidRequestError(SynthoraError, ValueError):
    """A run was refused before any request left the process."""


class MessageTypeError(InvalidRequestError, TypeError):
    """A value that is not a message (nor a string) was given where messages are expected."""


class ResponseError(SynthoraError):
    """The server's answer does not have the shape of the OpenAI wire format."""
