"""What the log's readers return: one run as the ``synthora_runs`` projection summarises it, and
one run as a transcript. Plain frozen values, apart from `synthora.storage.log` so that code
comparing or rendering runs (`synthora.storage.diff`) needs them without the log itself.
"""

from __future__ import annotations

import datetime
from typing import Any

import msgspec

from synthora.events import ErrorEvent, FailedAttempt, Usage
from synthora.messages import BaseMessage

__all__ = ["RunSummary", "Transcript"]


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One run as the ``synthora_runs`` projection holds it."""

    run_id: str
    parent_run_id: str | None
    status: str
    operation: str
    service: str
    backend: str
    model: str
    stream: bool
    node_name: str
    node_type: str
    node_path: str
    started_at: datetime.datetime
    ended_at: datetime.datetime | None
    duration_s: float | None
    time_to_first_token_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    error_type: str | None
    error_message: str | None
    status_code: int | None
    trace_id: str
    span_id: str
    attempts: int | None
    """HTTP requests the run sent (more than 1 when the SDK retried); None while it runs."""


class Transcript(msgspec.Struct, frozen=True, kw_only=True):
    """A stored run made readable: what went in, what came out, and how it ended."""

    run: RunSummary
    params: dict[str, Any]
    messages: tuple[BaseMessage, ...] | None
    prompt: str | list[str] | None
    output: BaseMessage | None
    usage: Usage | None
    tokens: int
    error: ErrorEvent | None
    failed_attempts: tuple[FailedAttempt, ...] = ()
    trace_sampled: bool | None = None
    """False when the sampler dropped the run's trace (so it has no trace id); see
    `StartEvent.trace_sampled`."""
