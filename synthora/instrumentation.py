"""`SynthoraInstrumentor`: every openai / anthropic client a program makes, observed.

An OpenTelemetry ``BaseInstrumentor``, registered under the ``opentelemetry_instrumentor`` entry
point ``synthora``, so ``opentelemetry-instrument python app.py`` traces an unmodified program
and ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=synthora`` leaves it out. `instrument()` makes every
``openai.OpenAI``/``AsyncOpenAI`` (Azure's included) and ``anthropic.Anthropic``/
``AsyncAnthropic`` constructed afterwards an observed client (`synthora.observe`) and traces the
runs: with the providers given, or else the global ones (`synthora.telemetry.configure`, which
exports over OTLP from the ``OTEL_*`` variables when nothing configured the SDK). Clients made
before `uninstrument()` stay observed; clients made after it are plain.

Other OpenAI instrumentations compose with it: ``opentelemetry-instrumentation-openai-v2`` and
OpenLLMetry wrap the SDK's ``create`` methods, while an observed client is seen underneath, where
its ``request`` goes out and its response is read, so both see every call.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

import synthora.telemetry
from synthora.observed import ObservingNewClients

__all__ = ["SynthoraInstrumentor"]


class SynthoraInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Observe every SDK client constructed while instrumented, and trace its runs."""

    _new_clients = ObservingNewClients()  # one per process, as the base's instance

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 3.0",)

    def _instrument(self, **kwargs: Any) -> None:
        providers = [kwargs.get(f"{kind}_provider") for kind in ("tracer", "meter", "logger")]
        if any(provider is not None for provider in providers):
            synthora.telemetry.instrument(*providers)
        else:
            synthora.telemetry.configure()
        self._new_clients.start()

    def _uninstrument(self, **kwargs: Any) -> None:
        self._new_clients.stop()
        synthora.telemetry.uninstrument()
