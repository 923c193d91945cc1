"""Errors of the event log, one tree under Synthora's own::

    SynthoraError
     └── StorageError              (the log cannot be opened or used: bad URL, unwritable path)
          ├── SchemaVersionError   (the database was written by a newer Synthora)
          └── RunNotFoundError     (no stored run has that id or prefix; also a KeyError)

Driver errors are translated at the boundary (``raise StorageError(...) from exc``) and never
carry the database password.
"""

from __future__ import annotations

from synthora.errors import SynthoraError

__all__ = ["RunNotFoundError", "SchemaVersionError", "StorageError"]


class StorageError(SynthoraError):
    """The event log cannot be opened, read or written as asked."""


class SchemaVersionError(StorageError):
    """The database holds a schema this version of Synthora does not know."""


class RunNotFoundError(StorageError, KeyError):
    """No stored run matches the given id or id prefix."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"
