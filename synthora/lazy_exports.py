"""Names a package exports but imports only when first used (PEP 562).

A package whose names pull in a heavy module (the ``openai`` SDK through the model backends)
lists them here, so that what imports only part of it (the pytest plugin, the event log's
committer process) does not pay for the rest.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, lazy: dict[str, str], namespace: MutableMapping[str, Any], exported: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's ``__getattr__`` and ``__dir__``: each name of `lazy` is imported from its
    module when first asked for, then kept in the package's `namespace`."""

    def get(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def names() -> list[str]:
        return sorted({*namespace, *exported})

    return get, names
