"""Turning tracing on: `configure()` for "just trace my runs", `instrument()` for your providers.

`configure()` sets up traces, metrics and logs (content events, when asked for). It reads the
standard variables (``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_PROTOCOL`` ``http/protobuf`` (default) or ``grpc``, ``OTEL_SERVICE_NAME``,
``OTEL_SDK_DISABLED``), reuses the global providers when the application already set some, and
otherwise installs its own with batch export over OTLP. Export is bounded: one attempt waits at
most 2 s, and at exit the last flush gets 2 s in all, so a script run with no collector listening
still exits promptly.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import threading
from typing import Any

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider as SDKLoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from synthora.runs import service_name
from synthora.telemetry.content import DEFAULT_MAX_CHARS, CaptureMode
from synthora.telemetry.subscriber import SpanSubscriber

__all__ = ["configure", "instrument", "uninstrument"]

logger = logging.getLogger("synthora.telemetry")

EXPORT_TIMEOUT_S = 2.0
Provider = SDKTracerProvider | SDKMeterProvider | SDKLoggerProvider
_lock = threading.Lock()
_subscriber: SpanSubscriber | None = None
_configured = False


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    logger_provider: _logs.LoggerProvider | None = None,
    *,
    capture: CaptureMode | None = None,
    max_content_chars: int = DEFAULT_MAX_CHARS,
) -> None:
    """Trace every run on the bus with the given providers (the global ones by default).

    Calling it again replaces the previous instrumentation. `capture` overrides
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``; content events go to the
    `logger_provider`.
    """
    global _subscriber  # noqa: PLW0603 - one instrumentation per process, guarded by its lock
    with _lock:
        if _subscriber is not None:
            _subscriber.disconnect()
        _subscriber = SpanSubscriber(
            tracer_provider,
            meter_provider,
            logger_provider,
            capture=capture,
            max_content_chars=max_content_chars,
        )
        _subscriber.connect()


def uninstrument() -> None:

    global _subscriber  # noqa: PLW0603
    with _lock:
        if _subscriber is not None:
            _subscriber.disconnect()
            _subscriber = None


def configure() -> None:
    """Set up OTLP export from the ``OTEL_*`` variables and trace every run. Idempotent."""
    global _configured  # noqa: PLW0603
    with _lock:
        if _configured:
            return
        _configured = True
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name()}
    )
    owned: list[Provider] = []
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, SDKTracerProvider):
        tracer_provider = SDKTracerProvider(resource=resource, shutdown_on_exit=False)
        tracer_provider.add_span_processor(
            BatchSpanProcessor(
                _span_exporter(),
                schedule_delay_millis=1000,
                export_timeout_millis=EXPORT_TIMEOUT_S * 1000,
            )
        )
        trace.set_tracer_provider(tracer_provider)
        owned.append(tracer_provider)
    meter_provider = metrics.get_meter_provider()
    if not isinstance(meter_provider, SDKMeterProvider):
        reader = PeriodicExportingMetricReader(
            _metric_exporter(), export_timeout_millis=EXPORT_TIMEOUT_S * 1000
        )
        meter_provider = SDKMeterProvider(
            resource=resource, metric_readers=[reader], shutdown_on_exit=False
        )
        metrics.set_meter_provider(meter_provider)
        owned.append(meter_provider)
    logger_provider = _logs.get_logger_provider()
    if not isinstance(logger_provider, SDKLoggerProvider):
        logger_provider = SDKLoggerProvider(resource=resource, shutdown_on_exit=False)
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(_log_exporter(), export_timeout_millis=EXPORT_TIMEOUT_S * 1000)
        )
        _logs.set_logger_provider(logger_provider)
        owned.append(logger_provider)
    instrument(tracer_provider, meter_provider, logger_provider)
    if owned:
        atexit.register(_shut_down, owned)


def _protocol(signal: str) -> str:
    value = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if value not in ("grpc", "http/protobuf"):
        logger.warning("synthora: OTLP protocol %r is not supported; using http/protobuf", value)
        return "http/protobuf"
    return value


_EXPORTERS = {
    # signal: (module under opentelemetry.exporter.otlp.proto.<protocol>, class name)
    "TRACES": ("trace_exporter", "OTLPSpanExporter"),
    "METRICS": ("metric_exporter", "OTLPMetricExporter"),
    "LOGS": ("_log_exporter", "OTLPLogExporter"),
}


def _exporter(signal: str) -> Any:
    """The OTLP exporter of `signal` for the configured protocol, imported only when used."""
    module, name = _EXPORTERS[signal]
    protocol = "grpc" if _protocol(signal) == "grpc" else "http"
    exporters = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{protocol}.{module}")
    return getattr(exporters, name)(timeout=EXPORT_TIMEOUT_S)


def _span_exporter() -> SpanExporter:
    exporter: SpanExporter = _exporter("TRACES")
    return exporter


def _metric_exporter() -> MetricExporter:
    exporter: MetricExporter = _exporter("METRICS")
    return exporter


def _log_exporter() -> LogRecordExporter:
    exporter: LogRecordExporter = _exporter("LOGS")
    return exporter


def _shut_down(providers: list[Provider]) -> None:
    """Flush and stop our providers, giving up after `EXPORT_TIMEOUT_S` in all."""

    def shut_down() -> None:
        for provider in providers:
            try:
                provider.shutdown()
            except Exception:
                logger.debug("synthora: telemetry shutdown failed", exc_info=True)

    worker = threading.Thread(target=shut_down, name="synthora-telemetry-shutdown", daemon=True)
    worker.start()
    worker.join(EXPORT_TIMEOUT_S)
