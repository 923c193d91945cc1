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

import functools
from collections.abc import Callable, Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

import synthora.telemetry
from synthora.observed import observe

__all__ = ["SynthoraInstrumentor"]


class SynthoraInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Observe every SDK client constructed while instrumented, and trace its runs."""

    _originals: dict[type, Callable[..., None]] = {}  # noqa: RUF012 - one per process, as the base's instance

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 3.0",)

    def _instrument(self, **kwargs: Any) -> None:
        providers = [kwargs.get(f"{kind}_provider") for kind in ("tracer", "meter", "logger")]
        if any(provider is not None for provider in providers):
            synthora.telemetry.instrument(*providers)
        else:
            synthora.telemetry.configure()
        for cls in _client_classes():
            if cls not in self._originals:
                self._originals[cls] = init = vars(cls)["__init__"]
                cls.__init__ = _observing_init(init)  # type: ignore[misc]

    def _uninstrument(self, **kwargs: Any) -> None:
        for cls, init in self._originals.items():
            cls.__init__ = init  # type: ignore[misc]
        self._originals.clear()
        synthora.telemetry.uninstrument()


def _client_classes() -> list[type]:
    """The SDK client classes there are to observe: openai's, and anthropic's if installed."""
    import openai  # noqa: PLC0415 - imported when instrumenting, as instrumentors do

    classes: list[type] = [openai.OpenAI, openai.AsyncOpenAI]
    try:
        import anthropic  # noqa: PLC0415 - the optional extra
    except ImportError:
        return classes
    return [*classes, anthropic.Anthropic, anthropic.AsyncAnthropic]


def _observing_init(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def observed_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        observe(self)

    return observed_init
