"""Turning tracing on: `configure()` for "just trace my runs", `instrument()` for your providers.

`configure()` sets up traces, metrics and logs (content events, when asked for). It reads the
standard variables (``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``, ``OTEL_LOGS_EXPORTER``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_PROTOCOL`` ``http/protobuf`` (default) or
``grpc``, ``OTEL_SERVICE_NAME``, ``OTEL_SDK_DISABLED``), reuses the global providers when the
application already set some, and otherwise installs its own with batch export. Export is
bounded: one OTLP attempt waits at most 2 s, and at exit the last flush gets 2 s in all, so a
script run with no collector listening still exits promptly.

Exporters are chosen as the OpenTelemetry SDK's own configuration chooses them: by the names
installed packages register in the entry point groups ``opentelemetry_{signal}_exporter`` (the
SDK registers ``console``, the OTLP exporters ``otlp_proto_http`` and ``otlp_proto_grpc``),
``otlp`` meaning the one for the configured protocol and ``none`` no export at all.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Literal

from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider as SDKLoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from synthora.errors import ConfigurationError
from synthora.runs import service_name
from synthora.telemetry.content import DEFAULT_MAX_CHARS, CaptureMode
from synthora.telemetry.subscriber import SpanSubscriber

__all__ = ["configure", "instrument", "uninstrument"]

logger = logging.getLogger("synthora.telemetry")

EXPORT_TIMEOUT_S = 2.0
Provider = SDKTracerProvider | SDKMeterProvider | SDKLoggerProvider
Signal = Literal["traces", "metrics", "logs"]
Exporter = Callable[[], Any]
"""Makes one exporter (a metrics one may be a `MetricReader` itself, as pull exporters are)."""
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


def configure(
    *,
    traces_exporter: str | None = None,
    metrics_exporter: str | None = None,
    logs_exporter: str | None = None,
) -> None:
    """Set up export from the ``OTEL_*`` variables and trace every run. Idempotent.

    Each signal goes to the exporters its ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` /
    ``OTEL_LOGS_EXPORTER`` names: ``otlp`` (the default), ``console``, ``none``, another installed
    exporter, or several, comma-separated. An argument, in the same form, wins over its variable.
    A name nothing provides raises `ConfigurationError` naming the variable or argument, before
    anything is set up.
    """
    global _configured  # noqa: PLW0603
    with _lock:
        if _configured:
            return
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            _configured = True
            return
        span_exporters = _exporters("traces", traces_exporter)
        metric_exporters = _exporters("metrics", metrics_exporter)
        log_exporters = _exporters("logs", logs_exporter)
        _configured = True
    resource = Resource.create(
        {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name()}
    )
    owned: list[Provider] = []
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, SDKTracerProvider) and span_exporters:
        tracer_provider = SDKTracerProvider(resource=resource, shutdown_on_exit=False)
        for span_exporter in span_exporters:
            tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    span_exporter(),
                    schedule_delay_millis=1000,
                    export_timeout_millis=EXPORT_TIMEOUT_S * 1000,
                )
            )
        trace.set_tracer_provider(tracer_provider)
        owned.append(tracer_provider)
    meter_provider = metrics.get_meter_provider()
    if not isinstance(meter_provider, SDKMeterProvider) and metric_exporters:
        meter_provider = SDKMeterProvider(
            resource=resource,
            metric_readers=[_metric_reader(exporter()) for exporter in metric_exporters],
            shutdown_on_exit=False,
        )
        metrics.set_meter_provider(meter_provider)
        owned.append(meter_provider)
    logger_provider = _logs.get_logger_provider()
    if not isinstance(logger_provider, SDKLoggerProvider) and log_exporters:
        logger_provider = SDKLoggerProvider(resource=resource, shutdown_on_exit=False)
        for log_exporter in log_exporters:
            logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    log_exporter(), export_timeout_millis=EXPORT_TIMEOUT_S * 1000
                )
            )
        _logs.set_logger_provider(logger_provider)
        owned.append(logger_provider)
    instrument(tracer_provider, meter_provider, logger_provider)
    if owned:
        atexit.register(_shut_down, owned)


def _exporters(signal: Signal, argument: str | None) -> list[Exporter]:
    """The exporters `argument` names for `signal`, else its ``OTEL_*_EXPORTER`` variable.

    As the SDK reads them: a comma-separated list of entry point names, ``otlp`` by default,
    ``none`` alone for no export (an empty variable counts as unset, as the spec says).
    """
    source = f"OTEL_{signal.upper()}_EXPORTER"
    value = os.environ.get(source, "")
    if argument is not None:
        source, value = f"configure({signal}_exporter=...)", argument
    names = [name.strip().lower() for name in value.split(",") if name.strip()] or ["otlp"]
    if "none" in names:
        if len(names) > 1:
            raise ConfigurationError(
                f"{source}={value!r}: 'none' means no {signal} export and cannot be listed "
                "with other exporters"
            )
        return []
    return [_exporter(signal, name, source, value) for name in names]


_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


def _exporter(signal: Signal, name: str, source: str, value: str) -> Exporter:
    """The installed exporter registered as `name`; an OTLP one with the bounded timeout."""
    if name == "otlp":
        name = _OTLP_BY_PROTOCOL[_protocol(signal)]
    group = f"opentelemetry_{signal}_exporter"
    found = entry_points(group=group, name=name)
    if not found:
        installed = ", ".join(sorted({"none", "otlp", *entry_points(group=group).names}))
        raise ConfigurationError(
            f"{source}={value!r}: no {signal} exporter is named {name!r}; use one of "
            f"{installed}, or install the package that provides it"
        )
    exporter: Callable[..., Any] = next(iter(found)).load()
    if name in _OTLP_BY_PROTOCOL.values():
        return functools.partial(exporter, timeout=EXPORT_TIMEOUT_S)
    return exporter


def _metric_reader(exporter: Any) -> MetricReader:
    """A pull exporter is a reader itself; a push one is read periodically, as the SDK does."""
    if isinstance(exporter, MetricReader):
        return exporter
    return PeriodicExportingMetricReader(exporter, export_timeout_millis=EXPORT_TIMEOUT_S * 1000)


def _protocol(signal: Signal) -> str:
    value = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if value not in _OTLP_BY_PROTOCOL:
        logger.warning("synthora: OTLP protocol %r is not supported; using http/protobuf", value)
        return "http/protobuf"
    return value


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
