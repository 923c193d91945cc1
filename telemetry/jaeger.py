"""Asking Jaeger (v2, query API v3) whether a run's trace arrived, and where to see it.

The API answers ``GET /api/v3/traces/{trace_id}`` with OTLP JSON (``{"result": {"resourceSpans":
[...]}}``, possibly as several newline-separated chunks) or a 404 with ``{"error": {...}}``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from synthora.errors import SynthoraError

__all__ = ["DEFAULT_JAEGER_URL", "JaegerError", "JaegerTrace", "find_trace", "trace_link"]

DEFAULT_JAEGER_URL = os.environ.get("SYNTHORA_JAEGER_URL", "http://localhost:16686")


class JaegerError(SynthoraError):
    """Jaeger could not be asked: not reachable, or an answer that is not its API's."""


@dataclass(frozen=True)
class JaegerTrace:
    """What Jaeger holds of a trace."""

    trace_id: str
    span_names: tuple[str, ...]
    services: tuple[str, ...]
    link: str


def trace_link(jaeger_url: str, trace_id: str) -> str:
    """The Jaeger UI page of a trace."""
    return f"{jaeger_url.rstrip('/')}/trace/{trace_id}"


def find_trace(jaeger_url: str, trace_id: str, *, timeout: float = 5.0) -> JaegerTrace | None:
    """The trace as Jaeger has it, or None when Jaeger does not (yet) know it."""
    url = f"{jaeger_url.rstrip('/')}/api/v3/traces/{trace_id}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise JaegerError(
            f"Jaeger at {jaeger_url} answered {error.code} for trace {trace_id}"
        ) from error
    except (urllib.error.URLError, OSError) as error:
        raise JaegerError(f"Jaeger is not reachable at {jaeger_url}: {error}") from error
    names: list[str] = []
    services: set[str] = set()
    for line in body.splitlines():
        if not line.strip():
            continue
        try:
            chunk = json.loads(line)
        except ValueError as error:
            raise JaegerError(f"Jaeger at {jaeger_url} sent something that is not JSON") from error
        for resource_spans in chunk.get("result", {}).get("resourceSpans", []):
            for attribute in resource_spans.get("resource", {}).get("attributes", []):
                if attribute.get("key") == "service.name":
                    services.add(attribute.get("value", {}).get("stringValue", ""))
            for scope_spans in resource_spans.get("scopeSpans", []):
                names.extend(span.get("name", "") for span in scope_spans.get("spans", []))
    if not names:
        return None
    return JaegerTrace(
        trace_id, tuple(names), tuple(sorted(services)), trace_link(jaeger_url, trace_id)
    )
