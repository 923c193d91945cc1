"""OpenTelemetry for Synthora runs: a span per run and the GenAI client metrics.

::

    import synthora.telemetry
    synthora.telemetry.configure()     # OTLP export from the OTEL_* variables; traces every run

or, with providers of your own, ``synthora.telemetry.instrument(tracer_provider, meter_provider)``.
"""

from synthora.telemetry.content import CaptureMode
from synthora.telemetry.setup import configure, instrument, uninstrument

__all__ = ["CaptureMode", "configure", "instrument", "uninstrument"]
