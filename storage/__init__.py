"""The SQL event log of Synthora runs: durable, idempotent, readable while it grows.

``EventLog(url).attach()`` stores every run on the bus; ``runs``, ``events``, ``transcript``,
``follow`` and ``diff`` read it back. See `synthora.storage.log`.
"""

from synthora.storage.diff import RunDiff
from synthora.storage.errors import (
    RunNotFoundError,
    SchemaVersionError,
    StorageError,
    UnstorableEventsError,
)
from synthora.storage.log import DEFAULT_URL, EventLog, RunSummary, Transcript
from synthora.storage.replay import ReplayBackend, ReplayedError, ReplayMissError
from synthora.storage.writer import LogHealth

__all__ = [
    "DEFAULT_URL",
    "EventLog",
    "LogHealth",
    "ReplayBackend",
    "ReplayMissError",
    "ReplayedError",
    "RunDiff",
    "RunNotFoundError",
    "RunSummary",
    "SchemaVersionError",
    "StorageError",
    "Transcript",
    "UnstorableEventsError",
]
