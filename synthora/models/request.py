"""Turning a backend's config into what the SDK is sent and what the start event records.

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
import uuid
from collections.abc import Mapping
from typing import Any

from openai.lib._parsing._completions import type_to_response_format_param

from synthora.runs import register_secret, scrub

__all__ = ["REDACTED", "event_params", "is_secret_key", "register_credentials", "sdk_params"]

REDACTED = "[REDACTED]"

_SECRET_WORDS = ("secret", "password", "passwd", "auth", "cookie", "signature", "credential")
_NOT_SECRET = frozenset({"prompt_cache_key", "idempotency_key"})

# Parameters that choose how Synthora calls the API, never forwarded as request fields.
_NOT_REQUEST_FIELDS = frozenset({"model", "messages", "prompt", "stream"})


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
