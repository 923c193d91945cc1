"""Runs as OpenTelemetry spans and metrics, fed from the event bus.

One span per run: CLIENT for a model run, named ``"{operation} {model}"``; INTERNAL for an agent
or tool scope, named ``"invoke_agent {name}"`` / ``"execute_tool {name}"``. The span is opened in
``before_run`` (so the run's events carry its trace and span ids, when the sampler keeps it) as
a child of the enclosing scope's span, or else of whatever span is current in the caller's
context, and it is never made current itself: a stream held open by the caller must not become
the parent of unrelated spans. It ends with the run's end or error event, at that event's
timestamp.

With ``EVENT_ONLY`` / ``SPAN_AND_EVENT`` content capture, a model run's conversation also goes
out as one ``gen_ai.client.inference.operation.details`` log record (an OpenTelemetry event),
emitted in the run span's context when the run ends.

Each HTTP attempt of the run's request that failed (the SDK retries some) is a span event,
``synthora.attempt.failed``, with its status code and ``error.type``, at the time it failed.

Nothing happens per token. The number of chunks a run streamed is its end event's ``seq`` minus
one (only tokens lie between start and end), so ``time_per_output_chunk`` is recorded once per
run, as the mean gap between chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from synthora import __version__, bus
from synthora.events import EndEvent, ErrorEvent, FailedAttempt, StartEvent
from synthora.runs import INTERRUPTED, TRUNCATED
from synthora.telemetry import semconv as sc
from synthora.telemetry.content import CaptureMode, capped_json, input_content, output_content
from synthora.types.node import Node

__all__ = ["SpanSubscriber"]

_SCOPES = {"invoke_agent": sc.GEN_AI_AGENT_NAME, "execute_tool": sc.GEN_AI_TOOL_NAME}


class _OpenRun:
    """A run whose span is open: the span and what its metrics are keyed by."""

    __slots__ = ("content", "metric_attributes", "replayed", "span", "stream")

    def __init__(self, span: Span, replayed: bool = False) -> None:
        self.span = span
        self.replayed = replayed
        self.metric_attributes: dict[str, Any] = {}
        self.stream = False
        self.content: dict[str, str] = {}


class SpanSubscriber:
    """Connects to the bus and keeps one span per open run."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        logger_provider: _logs.LoggerProvider | None = None,
        *,
        capture: CaptureMode | None = None,
        max_content_chars: int = 65_536,
    ) -> None:
        self._tracer = trace.get_tracer("synthora", __version__, tracer_provider)
        self._events = _logs.get_logger("synthora", __version__, logger_provider)
        meter = metrics.get_meter("synthora", __version__, meter_provider)
        histogram = _histograms(meter)
        self._duration = histogram(
            sc.METRIC_OPERATION_DURATION,
            "s",
            "GenAI operation duration, to the end of the stream",
            sc.DURATION_BUCKETS,
        )
        self._tokens = histogram(
            sc.METRIC_TOKEN_USAGE,
            "{token}",
            "Input and output tokens used, as the server reported them",
            sc.TOKEN_BUCKETS,
        )
        self._first_chunk = histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK,
            "s",
            "Time from the request to the first chunk of a stream",
            sc.DURATION_BUCKETS,
        )
        self._per_chunk = histogram(
            sc.METRIC_TIME_PER_OUTPUT_CHUNK,
            "s",
            "Mean time between the chunks of a stream after the first",
            sc.TIME_PER_CHUNK_BUCKETS,
        )
        self._capture = CaptureMode.from_environment() if capture is None else capture
        self._max_content = max_content_chars
        self._open: dict[str, _OpenRun] = {}
        self._connections = (
            (bus.before_run, self._before_run),
            (bus.on_start, self._on_start),
            (bus.on_end, self._on_end),
            (bus.on_error, self._on_error),
        )

    def connect(self) -> None:
        for signal, receiver in self._connections:
            signal.connect(receiver, weak=False)

    def disconnect(self) -> None:
        for signal, receiver in self._connections:
            signal.disconnect(receiver)

    # -- receivers -----------------------------------------------------------------------------

    def _before_run(
        self,
        sender: Any,
        /,
        *,
        run_id: str,
        parent_run_id: str | None,
        node: Node,
        operation: str,
        model: str,
        **_: Any,
    ) -> dict[str, str | bool] | None:
        parent = self._open.get(parent_run_id) if parent_run_id else None
        context = trace.set_span_in_context(parent.span) if parent else None
        span = self._start_span(operation, model, node, run_id, parent_run_id, context=context)
        self._open[run_id] = _OpenRun(span)
        ids = span.get_span_context()
        if not ids.is_valid:
            return None
        if not ids.trace_flags.sampled:  # never exported: no ids to look a trace up by
            return {"trace_sampled": False}
        return {
            "trace_id": format(ids.trace_id, "032x"),
            "span_id": format(ids.span_id, "016x"),
            "trace_sampled": True,
        }

    def _on_start(
        self, sender: Any, /, *, event: StartEvent, replayed: bool = False, **_: Any
    ) -> None:
        run = self._open_replay(event) if replayed else self._open.get(event.run_id)
        if run is None:
            return
        run.stream = event.stream
        if event.operation in _SCOPES:
            return
        attributes = _request_attributes(event)
        run.metric_attributes = {
            key: attributes[key]
            for key in (
                sc.GEN_AI_OPERATION_NAME,
                sc.GEN_AI_PROVIDER_NAME,
                sc.GEN_AI_REQUEST_MODEL,
                sc.SERVER_ADDRESS,
                sc.SERVER_PORT,
            )
            if key in attributes
        }
        if self._capture:
            system, messages = input_content(event)
            run.content[sc.GEN_AI_INPUT_MESSAGES] = capped_json(messages, self._max_content)
            if system:
                run.content[sc.GEN_AI_SYSTEM_INSTRUCTIONS] = capped_json(system, self._max_content)
            if self._capture & CaptureMode.SPAN_ONLY:
                attributes.update(run.content)
        run.span.set_attributes(attributes)

    def _on_end(self, sender: Any, /, *, event: EndEvent, replayed: bool = False, **_: Any) -> None:
        run = self._open.pop(_key(event.run_id, replayed), None)
        if run is None:
            return
        span = run.span
        _add_failed_attempts(span, event.failed_attempts)
        if event.finish_reason == INTERRUPTED:
            span.set_attribute(sc.SYNTHORA_INTERRUPTED, True)
        elif event.finish_reason == TRUNCATED:  # not an error: the caller got no exception
            span.set_attribute(sc.SYNTHORA_TRUNCATED, True)
        if run.metric_attributes:
            attributes = _response_attributes(event, run.stream)
            if self._capture:
                output = output_content(event.output, event.finish_reason)
                run.content[sc.GEN_AI_OUTPUT_MESSAGES] = capped_json(output, self._max_content)
                if self._capture & CaptureMode.SPAN_ONLY:
                    attributes[sc.GEN_AI_OUTPUT_MESSAGES] = run.content[sc.GEN_AI_OUTPUT_MESSAGES]
            span.set_attributes(attributes)
            if not run.replayed:  # a replay is not another call to the model
                self._record_metrics(run, event)
                self._emit_content(run, event.ts, attributes)
        span.end(end_time=event.ts)

    def _on_error(
        self, sender: Any, /, *, event: ErrorEvent, replayed: bool = False, **_: Any
    ) -> None:
        run = self._open.pop(_key(event.run_id, replayed), None)
        if run is None:
            return
        span = run.span
        _add_failed_attempts(span, event.failed_attempts)
        span.set_attributes({sc.ERROR_TYPE: event.error_type, sc.SYNTHORA_ERROR_STAGE: event.stage})
        span.add_event(
            "exception",
            {"exception.type": event.error_type, "exception.message": event.message},
            timestamp=event.ts,
        )
        span.set_status(Status(StatusCode.ERROR, event.message))
        if run.metric_attributes and not run.replayed:
            attributes = {**run.metric_attributes, sc.ERROR_TYPE: event.error_type}
            self._duration.record(event.duration_s, attributes)
            self._emit_content(run, event.ts, attributes)
        span.end(end_time=event.ts)

    def _emit_content(self, run: _OpenRun, ts: int, outcome: dict[str, Any]) -> None:
        """The content event: the conversation with the run's request and outcome attributes."""
        if not self._capture & CaptureMode.EVENT_ONLY or not run.content:
            return
        self._events.emit(
            timestamp=ts,
            context=trace.set_span_in_context(run.span),
            event_name=sc.EVENT_OPERATION_DETAILS,
            attributes={**run.metric_attributes, **outcome, **run.content},
        )

    def _open_replay(self, event: StartEvent) -> _OpenRun:
        """A replayed run gets a span of its own, marked as a replay and linked to the original."""
        links = []
        if event.trace_id and event.span_id:
            original = trace.SpanContext(
                int(event.trace_id, 16), int(event.span_id, 16), is_remote=True
            )
            links.append(trace.Link(original))
        span = self._start_span(
            event.operation,
            event.model,
            event.node,
            event.run_id,
            event.parent_run_id,
            links=links,
            replayed=True,
        )
        run = self._open[_key(event.run_id, True)] = _OpenRun(span, replayed=True)
        return run

    def _start_span(
        self,
        operation: str,
        model: str,
        node: Node,
        run_id: str,
        parent_run_id: str | None,
        *,
        context: Context | None = None,
        links: Sequence[trace.Link] = (),
        replayed: bool = False,
    ) -> Span:
        """A run's span: CLIENT ``"{operation} {model}"``, or INTERNAL for a scope."""
        scope = operation in _SCOPES
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.SYNTHORA_RUN_ID: run_id,
            sc.SYNTHORA_NODE_NAME: node.name,
            sc.SYNTHORA_NODE_TYPE: node.type.value,
            sc.SYNTHORA_NODE_PATH: node.path,
        }
        if parent_run_id:
            attributes[sc.SYNTHORA_PARENT_RUN_ID] = parent_run_id
        if scope:
            attributes[_SCOPES[operation]] = node.name
        if replayed:
            attributes[sc.SYNTHORA_REPLAYED] = True
        return self._tracer.start_span(
            f"{operation} {node.name if scope else model}".strip(),
            context=context,
            kind=SpanKind.INTERNAL if scope else SpanKind.CLIENT,
            links=links,
            attributes=attributes,
        )

    def _record_metrics(self, run: _OpenRun, event: EndEvent) -> None:
        attributes = dict(run.metric_attributes)
        if event.response_model:
            attributes[sc.GEN_AI_RESPONSE_MODEL] = event.response_model
        self._duration.record(event.duration_s, attributes)
        usage = event.usage
        if usage is not None:
            for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
                if count is not None:
                    self._tokens.record(count, {**attributes, sc.GEN_AI_TOKEN_TYPE: kind})
        first = event.time_to_first_token_s
        if run.stream and first is not None:
            self._first_chunk.record(first, attributes)
            chunks = event.chunks
            if chunks > 1:
                self._per_chunk.record((event.duration_s - first) / (chunks - 1), attributes)


def _histograms(meter: metrics.Meter) -> Callable[[str, str, str, Sequence[float]], Any]:
    """A histogram factory with the GenAI conventions' recommended buckets as advice."""

    def histogram(name: str, unit: str, description: str, buckets: Sequence[float]) -> Any:
        return meter.create_histogram(
            name,
            unit=unit,
            description=description,
            explicit_bucket_boundaries_advisory=list(buckets),
        )

    return histogram


def _add_failed_attempts(span: Span, failed: tuple[FailedAttempt, ...]) -> None:
    """A span event per failed attempt, named with the HTTP conventions' attributes."""
    for resends, attempt in enumerate(failed):
        attributes: dict[str, Any] = {sc.ERROR_TYPE: attempt.error_type}
        if attempt.status_code is not None:
            attributes[sc.HTTP_RESPONSE_STATUS_CODE] = attempt.status_code
        if resends:
            attributes[sc.HTTP_REQUEST_RESEND_COUNT] = resends
        span.add_event(sc.EVENT_ATTEMPT_FAILED, attributes, timestamp=attempt.ts)


def _key(run_id: str, replayed: bool) -> str:
    """Where an open run's span is kept: a replay of a run never shares its original's slot."""
    return f"replay:{run_id}" if replayed else run_id


def _request_attributes(event: StartEvent) -> dict[str, Any]:
    params = event.params
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: event.operation,
        sc.GEN_AI_PROVIDER_NAME: event.provider or sc.PROVIDER_UNKNOWN,
        sc.GEN_AI_REQUEST_MODEL: event.model,
        sc.GEN_AI_REQUEST_STREAM: event.stream,
    }
    for name, attribute in sc.REQUEST_PARAMETERS.items():
        value = params.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[attribute] = value
    max_tokens = params.get("max_tokens", params.get("max_completion_tokens"))
    if isinstance(max_tokens, int):
        attributes[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    stop = params.get("stop")
    if isinstance(stop, str):
        attributes[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attributes[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = stop
    response_format = params.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        attributes[sc.GEN_AI_OUTPUT_TYPE] = "text" if kind == "text" else "json"
    if event.server_address:
        attributes[sc.SERVER_ADDRESS] = event.server_address
    if event.server_port:
        attributes[sc.SERVER_PORT] = event.server_port
    return attributes


def _response_attributes(event: EndEvent, stream: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if event.response_id:
        attributes[sc.GEN_AI_RESPONSE_ID] = event.response_id
    if event.response_model:
        attributes[sc.GEN_AI_RESPONSE_MODEL] = event.response_model
    if event.finish_reason:
        attributes[sc.GEN_AI_RESPONSE_FINISH_REASONS] = [event.finish_reason]
    if stream and event.time_to_first_token_s is not None:
        attributes[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = event.time_to_first_token_s
    usage = event.usage
    if usage is not None:
        for attribute, count in (
            (sc.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens),
            (sc.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens),
            (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, usage.cache_read_input_tokens),
            (sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, usage.cache_creation_input_tokens),
        ):
            if count is not None:
                attributes[attribute] = count
    return attributes
