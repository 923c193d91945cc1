"""The SQL event log of Synthora runs: durable, idempotent, readable while it grows.

``EventLog(url).attach()`` stores every run on the bus; ``runs``, ``events``, ``transcript``,
``follow`` and ``diff`` read it back. See `synthora.storage.log`.
"""

from typing import TYPE_CHECKING

from synthora.lazy_exports import lazy_exports
from synthora.storage.diff import RunDiff
from synthora.storage.errors import (
    RunNotFoundError,
    SchemaVersionError,
    StorageError,
    UnstorableEventsError,
)
from synthora.storage.writer import LogHealth

if TYPE_CHECKING:
    from synthora.storage.log import DEFAULT_URL, EventLog, RunSummary, Transcript
    from synthora.storage.replay import ReplayBackend, ReplayedError, ReplayMissError

_LAZY = {
    "DEFAULT_URL": "synthora.storage.log",
    "EventLog": "synthora.storage.log",
    "RunSummary": "synthora.storage.log",
    "Transcript": "synthora.storage.log",
    "ReplayBackend": "synthora.storage.replay",
    "ReplayMissError": "synthora.storage.replay",
    "ReplayedError": "synthora.storage.replay",
}
"""Names whose modules import the model backends, and with them the ``openai`` SDK: loaded when
first used, so that the committer process (`synthora.storage.committer`), which needs only the
write path, starts in a fraction of the time and memory."""


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

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
