"""Runs as JSON Lines: to move a log between databases, to attach a failing conversation to a
bug report, or to replay it in a test (a pytest cassette is such a file). One line per event (its
`Event.to_dict` form, keys sorted: PostgreSQL's JSONB keeps its own key order, SQLite the one it
was given), runs oldest first, each in seq order, so the same runs export to the same bytes from
any database."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import msgspec

from synthora.events import Event, event_from_dict
from synthora.storage.codec import upcast_v1_v2
from synthora.storage.errors import StorageError
from synthora.storage.log import EventLog

__all__ = ["export_runs", "import_runs", "read_events", "replacing"]

Progress = Callable[[int], None]


def export_runs(
    log: EventLog,
    out: TextIO,
    run_ids: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the runs (all, or `run_ids`) to `out`; returns how many runs were written."""
    if run_ids is None:
        ordered = sorted(log.runs(), key=lambda s: (s.started_at, s.run_id))
        run_ids = [summary.run_id for summary in ordered]
    encode = msgspec.json.Encoder(order="sorted").encode  # one key order whatever the database
    count = 0
    for run_id in run_ids:
        for event in log.events(log.resolve(run_id)):
            out.write(encode(event.to_dict()).decode())
            out.write("\n")
        count += 1
        if progress is not None:
            progress(count)
    return count


@contextmanager
def replacing(path: Path) -> Iterator[TextIO]:
    """A text file to write that becomes `path` only once the block completes: written aside
    (in the same folder, made if missing) and renamed over it, so a failure, or a reader at the
    same time, never sees half a file, and a failure leaves the old file be."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, aside = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as target:
            yield target
        os.replace(aside, path)
    finally:
        Path(aside).unlink(missing_ok=True)


def read_events(lines: Iterable[str]) -> list[Event]:
    """Every event of an export, all checked before any is written: a bad line names itself."""
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(event_from_dict(upcast_v1_v2(msgspec.json.decode(line))))
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise StorageError(f"line {number} is not a Synthora event: {error}") from None
    return events


def import_runs(log: EventLog, lines: Iterable[str]) -> int:
    """Store the events of an export (idempotently); returns how many runs they hold."""
    events = read_events(lines)
    log.write(events)
    return len({event.run_id for event in events})
