"""Turning a backend's config into what the SDK is sent and what the start event records.

A request the SDK could not encode (NaN, a lone surrogate, a set or another value JSON has no
form for) is refused before the run starts (`check_json_request`), naming the field: the SDK
would raise its own ``ValueError`` / ``TypeError`` only once the run had begun.

The two differ on purpose. The SDK gets the config as the user wrote it, with the values JSON
cannot carry put in their wire form (an enum's value, a date's ISO text, a pydantic object's
dump), and a pydantic class given as ``response_format`` becomes the JSON schema the SDK's own
``parse()`` would send; SDK options of other types (a ``timeout``) pass untouched.
The event gets a JSON-safe copy with secrets removed: a value that is not plain JSON (an enum,
a datetime, a pydantic class) is carried as a tagged representation, so storing or replaying the
run never fails on it and nothing is silently dropped.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import enum
import math
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from openai.lib._parsing._completions import type_to_response_format_param

from synthora.errors import InvalidRequestError
from synthora.messages import BaseMessage
from synthora.models.protocol import ModelRequest
from synthora.runs import register_secret, scrub

__all__ = [
    "REDACTED",
    "check_json_request",
    "event_params",
    "is_secret_key",
    "register_credentials",
    "sdk_params",
]

REDACTED = "[REDACTED]"

_SECRET_WORDS = ("secret", "password", "passwd", "auth", "cookie", "signature", "credential")
_NOT_SECRET = frozenset({"prompt_cache_key", "idempotency_key"})

# Parameters that choose how Synthora calls the API, never forwarded as request fields.
_NOT_REQUEST_FIELDS = frozenset({"model", "messages", "prompt", "stream"})
# The SDK's own options among the parameters: not part of the JSON body.
_SDK_OPTIONS = frozenset({"timeout", "extra_headers", "extra_query"})
_PLAIN = frozenset({int, bool, type(None)})
# Values the wire form (`_wire`) or the SDK turns into JSON itself (an iterator into a list).
_SDK_ENCODES = (
    datetime.datetime,
    datetime.date,
    datetime.time,
    decimal.Decimal,
    uuid.UUID,
    Iterator,
)


def is_secret_key(key: str) -> bool:
    """Whether a parameter, header or query name looks like it holds a credential.

    Broad on purpose (``X-Auth-Token``, ``Ocp-Apim-Subscription-Key``, ``key``), but
    ``max_tokens`` and friends are counts, not tokens of authentication.
    """
    name = key.lower().replace("-", "_")
    if name in _NOT_SECRET:
        return False
    return (
        any(word in name for word in _SECRET_WORDS)
        or "api_key" in name
        or "apikey" in name
        or name in ("key", "token")
        or name.endswith(("_key", "_token"))
    )


def register_credentials(*mappings: Any) -> None:
    """Register as secrets (scrubbed from every event) the values of credential-like headers or
    query parameters: a server may echo them in an error, and they must not reach the log."""
    for mapping in mappings:
        if not isinstance(mapping, Mapping):
            continue
        for key, value in mapping.items():
            if isinstance(key, str) and isinstance(value, str) and is_secret_key(key):
                register_secret(value)
                scheme, _, credential = value.partition(" ")  # "Bearer <token>"
                if credential and scheme.isalpha():
                    register_secret(credential)


def sdk_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments for the SDK's ``create``, minus those the backend sets itself."""
    return {key: _wire(value) for key, value in config.items() if key not in _NOT_REQUEST_FIELDS}


def check_json_request(request: ModelRequest) -> None:
    """Raise `InvalidRequestError` naming the first field of `request` that JSON, and so the
    SDK, cannot carry: a float that is not finite, a string with a lone surrogate (no UTF-8
    form), a set, bytes, or an object of no JSON type. An iterator is left to the SDK, which
    lists it where the API takes a list, and is never consumed here."""
    for position, message in enumerate(request.messages):
        _refuse_unsendable(f"message {position}", _message_problem(message))
    _refuse_unsendable("prompt", _json_problem(request.prompt))
    for key, value in request.params.items():
        if key not in _NOT_REQUEST_FIELDS and key not in _SDK_OPTIONS:
            _refuse_unsendable(f"parameter {key!r}", _json_problem(value))


def _refuse_unsendable(field: str, problem: tuple[str, str] | None) -> None:
    if problem is not None:
        where, what = problem
        raise InvalidRequestError(f"{field}{where} {what}; the request was not sent")


def _message_problem(message: BaseMessage) -> tuple[str, str] | None:
    for name, value in (
        ("content", message.content),
        ("name", message.name),
        ("tool_call_id", message.tool_call_id),
    ):
        problem = _json_problem(value)
        if problem is not None:
            return f" {name}{problem[0]}", problem[1]
    for position, call in enumerate(message.tool_calls):
        for name, value in (("id", call.id), ("name", call.name), ("arguments", call.arguments)):
            problem = _json_problem(value)
            if problem is not None:
                return f" tool call {position} {name}{problem[0]}", problem[1]
    return None


def _json_problem(value: Any) -> tuple[str, str] | None:
    """Where inside `value` JSON fails (a subscript path, "" for the value itself) and why;
    None when it encodes. The path is built only on failure: a good request costs one walk,
    where ASCII text, whole numbers and None (most of any request) cost no call of their own."""
    kind = type(value)
    if kind is str:
        return None if value.isascii() else _text_problem(value)
    if kind in _PLAIN:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else ("", f"is {value}, which JSON cannot encode")
    if isinstance(value, list | tuple):
        for position, item in enumerate(value):
            if type(item) in _PLAIN or (type(item) is str and item.isascii()):
                continue
            problem = _json_problem(item)
            if problem is not None:
                return f"[{position}]{problem[0]}", problem[1]
        return None
    if isinstance(value, Mapping):
        return _mapping_problem(value)
    if isinstance(value, str):
        return _json_problem(str(value))
    if isinstance(value, int):
        return None
    if isinstance(value, enum.Enum):
        return _json_problem(value.value)
    if isinstance(value, _SDK_ENCODES) or hasattr(value, "model_dump"):
        return None
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return None
    return "", f"is of type {type(value).__name__}, which JSON cannot encode"


def _mapping_problem(mapping: Mapping[Any, Any]) -> tuple[str, str] | None:
    for key, item in mapping.items():
        if type(key) is not str or not key.isascii():
            if isinstance(key, str):
                key_problem = _json_problem(key)
                if key_problem is not None:
                    return f" key {key!r}", key_problem[1]
            elif not (key is None or isinstance(key, int | float)):
                return "", f"has a key of type {type(key).__name__}, which JSON cannot encode"
        if type(item) in _PLAIN or (type(item) is str and item.isascii()):
            continue
        problem = _json_problem(item)
        if problem is not None:
            return f"[{key!r}]{problem[0]}", problem[1]
    return None


def _text_problem(text: str) -> tuple[str, str] | None:
    try:
        text.encode()
    except UnicodeEncodeError as error:
        bad = text[error.start]
        return "", f"has a lone surrogate {bad!r} at index {error.start}, which UTF-8 cannot encode"
    return None


def event_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-safe, secret-free copy of the request parameters, for the start event."""
    return {str(key): _safe(key, value) for key, value in params.items()}


def _wire(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _wire(value.value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return type_to_response_format_param(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {key: _wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_wire(item) for item in value]
    return value


def _safe(key: object, value: Any) -> Any:
    if isinstance(key, str) and is_secret_key(key):
        return REDACTED
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return {"$type": "enum", "class": _qualname(type(value)), "value": _jsonable(value.value)}
    if isinstance(value, str):
        return scrub(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(k): _safe(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return {"$type": type(value).__name__, "value": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"$type": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return {"$type": type(value).__name__.lower(), "value": str(value)}
    if isinstance(value, bytes):
        return {"$type": "bytes", "base64": base64.b64encode(value).decode()}
    if isinstance(value, type) and hasattr(value, "model_json_schema"):
        return _jsonable(type_to_response_format_param(value))
    if hasattr(value, "model_dump"):
        return _jsonable(value.model_dump(mode="json"))
    return {"$type": _qualname(type(value)), "repr": repr(value)}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
