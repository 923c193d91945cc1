"""Errors of the event log, one tree under Synthora's own::

    SynthoraError
     └── StorageError              (the log cannot be opened or used: bad URL, unwritable path)
          ├── SchemaVersionError   (the database was written by a newer Synthora)
          ├── RunNotFoundError     (no stored run has that id or prefix; also a KeyError)
          └── UnstorableEventsError (`EventLog.write` was given events it cannot store as given)

Driver errors are translated at the boundary (``raise StorageError(...) from exc``) and never
carry the database password.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from synthora.errors import SynthoraError

if TYPE_CHECKING:
    from synthora.storage.codec import Unstorable

__all__ = [
    "RunNotFoundError",
    "SchemaVersionError",
    "StorageError",
    "UnstorableEventsError",
    "error_line",
]


class StorageError(SynthoraError):
    """The event log cannot be opened, read or written as asked."""


class SchemaVersionError(StorageError):
    """The database holds a schema this version of Synthora does not know."""


class RunNotFoundError(StorageError, KeyError):
    """No stored run matches the given id or id prefix."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class UnstorableEventsError(StorageError):
    """Events that cannot be stored as given (a seq or timestamp beyond its column, say), each
    with the reason in ``unstorable``; none of the events given with them was written."""

    def __init__(self, unstorable: Sequence[Unstorable]) -> None:
        first = unstorable[0]
        super().__init__(
            f"{len(unstorable)} events cannot be stored as given, none was written; the first, "
            f"seq {first.event.seq} of run {first.event.run_id}: {first.error}"
        )
        self.unstorable = tuple(unstorable)


def error_line(error: BaseException) -> str:
    """`error` for a log line or a health report: its type and the first line of its message."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
