"""A run's lifecycle, shared by model backends and scopes.

`Run` is sans-I/O: it numbers events and builds them, and knows whether the run is closed. Two
thin twins, `Run.emit` and `Run.emit_async`, hand the events to the bus; closing emissions also
wait for the durability barriers that ``on_end`` / ``on_error`` receivers return, so a run
returns only when its subscribers (the event log) say it is safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blinker import NamedSignal

from synthora import bus
from synthora.events import (
    EndEvent,
    ErrorEvent,
    ErrorStage,
    Event,
    FailedAttempt,
    StartEvent,
    TokenEvent,
    Usage,
)
from synthora.ids import new_run_id
from synthora.messages import BaseMessage, MessageChunk
from synthora.types.node import Node

__all__ = [
    "DEFAULT_DURABLE_TIMEOUT",
    "INTERRUPTED",
    "TRUNCATED",
    "Run",
    "ScopeFrame",
    "current_scope",
    "note_attempt",
    "raised",
    "register_secret",
    "sending",
    "service_name",
]

logger = logging.getLogger("synthora")

DEFAULT_DURABLE_TIMEOUT = 5.0
"""Seconds a run waits at most for its subscribers' durability barriers."""

INTERRUPTED = "interrupted"
"""The finish reason of a run whose consumer stopped reading before the end."""
TRUNCATED = "truncated"
"""The finish reason of a stream the server ended without finishing it: no end marker (``[DONE]``,
``response.completed``, ``message_stop``) and no finish reason. The caller's iteration just ends,
as the SDK's does, so only the run says the answer may be cut short."""


@dataclass(frozen=True, slots=True)
class ScopeFrame:
    """The innermost open scope of the current context: runs inside it become its children."""

    run_id: str
    node: Node


current_scope: ContextVar[ScopeFrame | None] = ContextVar("synthora_scope", default=None)

sending: ContextVar[Run | None] = ContextVar("synthora_sending", default=None)
"""The run whose request is being sent in this context: the one `note_attempt` counts for.
Set by the model lifecycle around a backend's request, so a wire reports the attempts its SDK
makes without passing the run through the SDK."""


def note_attempt(*, error_type: str | None = None, status_code: int | None = None) -> None:
    """Count one HTTP attempt of the request being sent; a failed one with what failed.

    Called from inside the SDK's retry loop, once per attempt; outside a run it does nothing.
    """
    run = sending.get()
    if run is not None:
        run.note_attempt(error_type, status_code)


_raising: ContextVar[tuple[ErrorEvent, BaseException] | None] = ContextVar(
    "synthora_raising", default=None
)


def raised(event: ErrorEvent) -> BaseException | None:
    """The exception behind `event` while its subscribers hear it: the very object the caller
    receives. None after that, and for an event replayed from a log (only its record is left)."""
    current = _raising.get()
    return current[1] if current is not None and current[0] is event else None


_secrets: set[str] = set()


def register_secret(secret: str) -> None:
    """Never let `secret` (an API key) appear in an event: every run's error text is scrubbed.

    Process-wide, because a key can surface in a run that never held it: a scope whose model
    run failed with the server echoing the key.
    """
    if len(secret) >= 8:
        _secrets.add(secret)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "[REDACTED]")
    return text


def service_name() -> str:
    """``OTEL_SERVICE_NAME``, else the program's name: what dashboards group runs by."""
    return os.environ.get("OTEL_SERVICE_NAME") or _program_name()


def _program_name() -> str:
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c") else None
    if program is None:
        return "python"
    return program.parent.name if program.stem == "__main__" else program.stem


class Run:
    """One run's identity, event numbering and closing state.

    Every event of the run carries the envelope built here; `close_with_end` and
    `close_with_error` return None once the run is closed, which is how a stream wrapper
    reports its end exactly once whichever way it finishes.
    """

    __slots__ = (
        "_closed_sent",
        "_closing",
        "_durable_timeout",
        "_envelope",
        "_exception",
        "_first_token_ns",
        "_started_ns",
        "_trace_sampled",
        "attempts",
        "closed",
        "failed_attempts",
        "node",
        "run_id",
        "sender",
        "seq",
        "tokens",
    )

    def __init__(
        self,
        sender: Any,
        node: Node,
        *,
        operation: str,
        model: str = "",
        durable_timeout: float = DEFAULT_DURABLE_TIMEOUT,
    ) -> None:
        frame = current_scope.get()
        self.sender = sender
        self.node = node.within(frame.node if frame else None)
        self.run_id = new_run_id()
        self.seq = 0
        self.tokens = 0
        self.attempts = 0
        self.failed_attempts: tuple[FailedAttempt, ...] = ()
        self.closed = False
        self._closing = threading.Lock()
        self._closed_sent = False
        self._exception: BaseException | None = None
        self._durable_timeout = durable_timeout
        parent_run_id = frame.run_id if frame else None
        stamp, self._trace_sampled = _stamp(
            bus.dispatch(
                bus.before_run,
                sender,
                run_id=self.run_id,
                parent_run_id=parent_run_id,
                node=self.node,
                operation=operation,
                model=model,
            )
        )
        self._envelope: dict[str, Any] = {
            "run_id": self.run_id,
            "node": self.node,
            "parent_run_id": parent_run_id,
            **stamp,
        }
        self._started_ns = time.perf_counter_ns()
        self._first_token_ns: int | None = None

    # -- building events (no I/O) ----------------------------------------------------------

    def note_attempt(self, error_type: str | None, status_code: int | None) -> None:
        """One more HTTP attempt; `error_type` says how it failed, None that it did not."""
        self.attempts += 1
        if error_type is not None:
            failed = FailedAttempt(
                ts=time.time_ns(), error_type=error_type, status_code=status_code
            )
            self.failed_attempts += (failed,)

    def start(self, **payload: Any) -> StartEvent:
        return StartEvent(
            seq=self._next_seq(),
            ts=time.time_ns(),
            trace_sampled=self._trace_sampled,
            **self._envelope,
            **payload,
        )

    def token(self, chunk: MessageChunk) -> TokenEvent | None:
        """The token event for a chunk, or None when nobody listens (the seq still advances)
        or the run is already closed (nothing follows its end)."""
        if self.closed:
            return None
        if self._first_token_ns is None:
            self._first_token_ns = time.perf_counter_ns()
        index = self.tokens
        self.tokens += 1
        seq = self._next_seq()
        if not bus.on_token.receivers:
            return None
        return TokenEvent(
            seq=seq,
            ts=time.time_ns(),
            index=index,
            text=chunk.delta,
            tool_calls=chunk.tool_call_deltas,
            **self._envelope,
        )

    def close_with_end(
        self,
        output: BaseMessage | None,
        finish_reason: str | None,
        *,
        usage: Usage | None = None,
        response_id: str | None = None,
        response_model: str | None = None,
        vectors: tuple[bytes, ...] | None = None,
    ) -> EndEvent | None:
        if not self._claim():
            return None
        now = time.perf_counter_ns()
        return EndEvent(
            seq=self._next_seq(),
            ts=time.time_ns(),
            output=output,
            finish_reason=finish_reason,
            usage=usage,
            response_id=response_id,
            response_model=response_model,
            duration_s=(now - self._started_ns) / 1e9,
            time_to_first_token_s=(
                None
                if self._first_token_ns is None
                else (self._first_token_ns - self._started_ns) / 1e9
            ),
            chunks=self.tokens,
            vectors=vectors,
            attempts=max(self.attempts, 1),
            failed_attempts=self.failed_attempts,
            **self._envelope,
        )

    def close_interrupted(self, partial: BaseMessage | None) -> EndEvent | None:
        return self.close_with_end(partial, INTERRUPTED)

    def close_with_error(
        self, exc: BaseException, stage: ErrorStage, partial: BaseMessage | None = None
    ) -> ErrorEvent | None:
        if not self._claim():
            return None
        exc.add_note(f"synthora run {self.run_id} ({self.node.path})")
        self._exception = exc
        code = getattr(exc, "code", None)
        status = getattr(exc, "status_code", None)
        return ErrorEvent(
            seq=self._next_seq(),
            ts=time.time_ns(),
            error_type=type(exc).__name__,
            message=scrub(str(exc)),
            status_code=status if isinstance(status, int) else None,
            code=None if code is None else scrub(str(code)),
            stage=stage,
            partial_output=partial,
            duration_s=(time.perf_counter_ns() - self._started_ns) / 1e9,
            attempts=max(self.attempts, 1),
            failed_attempts=self.failed_attempts,
            **self._envelope,
        )

    def _claim(self) -> bool:
        """Whether this caller gets to close the run: true exactly once, whatever the threads."""
        with self._closing:
            if self.closed:
                return False
            self.closed = True
            return True

    def _send_closing_once(self) -> bool:
        """Whether the closing event still has to be sent (a fallback path may try twice)."""
        with self._closing:
            sent, self._closed_sent = self._closed_sent, True
            return not sent

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = seq + 1
        return seq

    # -- the two emission twins ------------------------------------------------------------

    def emit(self, event: Event | None) -> None:
        """Send `event` to its signal's receivers; a closing event waits on their barriers."""
        if event is None:
            return
        signal = bus.signals[event.kind]
        if signal is not bus.on_end and signal is not bus.on_error:
            bus.dispatch(signal, self.sender, event=event)
            return
        if not self._send_closing_once():
            return
        raising = _raising.set(self._failure(event))
        try:
            results = bus.dispatch(signal, self.sender, event=event)
        finally:
            _raising.reset(raising)
        futures = _barriers(results)
        if futures:
            _, pending = concurrent.futures.wait(futures, timeout=self._durable_timeout)
            self._warn_if_pending(len(pending))

    async def emit_async(self, event: Event | None) -> None:
        """`emit` for async callers: barriers are awaited without blocking the loop.

        A closing event is delivered to every subscriber even if the caller is cancelled
        meanwhile: its dispatch is shielded, and the cancellation still reaches the caller.
        """
        if event is None:
            return
        signal = bus.signals[event.kind]
        if signal is bus.on_end or signal is bus.on_error:
            if self._send_closing_once():
                await asyncio.shield(self._close_async(signal, event))
        else:
            await bus.dispatch_async(signal, self.sender, event=event)

    async def _close_async(self, signal: NamedSignal, event: Event) -> None:
        _raising.set(self._failure(event))  # in the shielded task's own context
        results = await bus.dispatch_async(signal, self.sender, event=event)
        futures = _barriers(results)
        if futures:
            _, pending = await asyncio.wait(
                [asyncio.wrap_future(f) for f in futures], timeout=self._durable_timeout
            )
            self._warn_if_pending(len(pending))

    def _failure(self, event: Event) -> tuple[ErrorEvent, BaseException] | None:
        """`event` with the exception it records, for `raised`; the run lets go of it here."""
        exception, self._exception = self._exception, None
        if exception is None or not isinstance(event, ErrorEvent):
            return None
        return event, exception

    def _warn_if_pending(self, pending: int) -> None:
        if pending:
            logger.warning(
                "synthora: run %s returned before %d subscriber(s) confirmed it durable "
                "within %.1f s; its events stay queued",
                self.run_id,
                pending,
                self._durable_timeout,
            )


def _stamp(results: list[Any]) -> tuple[dict[str, str], bool | None]:
    """Merge what ``before_run`` receivers returned: the envelope's ids, and whether the run's
    trace was sampled (None if no receiver said)."""
    stamp: dict[str, str] = {}
    sampled: bool | None = None
    for result in results:
        if isinstance(result, Mapping):
            stamp.update(
                {key: str(result[key]) for key in ("trace_id", "span_id") if key in result}
            )
            if "trace_sampled" in result:
                sampled = bool(result["trace_sampled"])
    return stamp, sampled


def _barriers(results: list[Any]) -> list[concurrent.futures.Future[Any]]:
    return [r for r in results if isinstance(r, concurrent.futures.Future)]
