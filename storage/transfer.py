"""Runs as JSON Lines: to move a log between databases, to attach a failing conversation to a
bug report, or to replay it in a test (a pytest cassette is such a file). One line per event (its
`Event.to_dict` form, keys sorted: PostgreSQL's JSONB keeps its own key order, SQLite the one it
was given), runs oldest first, each in seq order, so the same runs export to the same bytes from
any database.

An import never changes what is stored, and stores whole runs only. A line that is not an event
refuses the whole file, before anything is written. A run that is not whole and in order (a
negative seq, a gap, no start, an event after its end) or that differs from the stored run of
the same id is refused, and the file's other runs are imported; `ImportReport` says which were
refused and why. A run equal to the stored one, or extending it (a run stored while it was still
streaming), is not a conflict: importing the same file twice is harmless.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import msgspec

from synthora.events import EndEvent, ErrorEvent, Event, StartEvent, event_from_dict
from synthora.storage.codec import upcast_v1_v2
from synthora.storage.errors import StorageError, UnstorableEventsError
from synthora.storage.log import EventLog

__all__ = [
    "ImportReport",
    "NumberedEvent",
    "Refusal",
    "export_runs",
    "import_events",
    "import_runs",
    "read_events",
    "replacing",
]

Progress = Callable[[int], None]
"""Told how many runs are done so far."""

ImportProgress = Callable[[int, int], None]
"""Told how many runs are written so far, and how many there are to write."""

NumberedEvent = tuple[int, Event]
"""An event of an export and the number of its line."""

_WRITE_BATCH = 5000
"""Events an import writes in one transaction."""


class Refusal(msgspec.Struct, frozen=True):
    """The runs of an import refused for one reason: how many, and the first line that shows it
    (``detail`` says how)."""

    reason: str
    runs: int
    first_line: int
    detail: str


class ImportReport(msgspec.Struct, frozen=True):
    """What an import did: ``imported`` runs are now stored as the file has them (of which
    ``already_stored`` were already, event for event); the ``refused`` ones were left out."""

    imported: int
    already_stored: int
    refused: tuple[Refusal, ...]


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


def import_runs(
    log: EventLog,
    lines: Iterable[str | bytes],
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Store the runs of an export: `import_events` of `read_events`."""
    return import_events(log, read_events(lines), progress)


def read_events(lines: Iterable[str | bytes]) -> list[NumberedEvent]:
    """Every event of an export with its line number. Raises `StorageError` naming the first
    line that is not an event (bytes that are not UTF-8 included).

    The caller splits lines on line ends only: a JSON string may hold U+2028 and the other
    characters `str.splitlines` also breaks at.
    """
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append((number, event_from_dict(upcast_v1_v2(msgspec.json.decode(line)))))
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise StorageError(f"line {number} is not a Synthora event: {error}") from None
    return events


def import_events(
    log: EventLog,
    events: Iterable[NumberedEvent],
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Store the runs of `read_events`, as the module docstring says."""
    runs: dict[str, list[NumberedEvent]] = {}
    for number, event in events:
        runs.setdefault(event.run_id, []).append((number, event))
    refused: list[_Refused] = []
    whole: dict[str, list[NumberedEvent]] = {}
    for run_id, numbered in runs.items():
        try:
            whole[run_id] = _whole_run(numbered)
        except _Refused as refusal:
            refused.append(refusal)
    stored = log._events_by_run(list(whole))
    new_events: list[list[NumberedEvent]] = []
    for run_id, ordered in whole.items():
        kept = {event.seq: event for event in stored.get(run_id, ())}
        try:
            new_events.append(_beyond(kept, ordered) if kept else ordered)
        except _Refused as refusal:
            refused.append(refusal)
    to_write = [run for run in new_events if run]
    unstorable = _write_runs(log, to_write, progress)
    return ImportReport(
        imported=len(new_events) - len(unstorable),
        already_stored=len(new_events) - len(to_write),
        refused=_grouped(refused + unstorable),
    )


class _Refused(Exception):
    """A run left out of an import: why, and the line that shows it."""

    def __init__(self, reason: str, line: int, detail: str) -> None:
        super().__init__(reason, line, detail)
        self.reason, self.line, self.detail = reason, line, detail


def _whole_run(numbered: list[NumberedEvent]) -> list[NumberedEvent]:
    """A run's numbered events in seq order, each once, if they make one run in order; else
    raises `_Refused`. A run may stop before its end (its process died), not begin late."""
    by_seq: dict[int, NumberedEvent] = {}
    for number, event in numbered:
        if event.seq < 0:
            raise _Refused("a negative seq", number, f"seq {event.seq}")
        if by_seq.setdefault(event.seq, (number, event))[1] != event:
            raise _Refused("two different events with one seq", number, f"seq {event.seq}")
    ordered = [by_seq[seq] for seq in sorted(by_seq)]
    number, start = ordered[0]
    if start.seq != 0 or not isinstance(start, StartEvent):
        raise _Refused("no start event", number, f"it begins with {start.kind} seq {start.seq}")
    closed = False
    for expected, (number, event) in enumerate(ordered):
        if event.seq != expected:
            raise _gap(numbered, expected, (number, event))
        if closed or (expected and isinstance(event, StartEvent)):
            detail = f"{event.kind} seq {event.seq}"
            raise _Refused("an event after its end, or a second start", number, detail)
        closed = isinstance(event, EndEvent | ErrorEvent)
    return ordered


def _gap(numbered: list[NumberedEvent], due: int, after: NumberedEvent) -> _Refused:
    """A run missing seq `due`, shown on the line a reader would look at: where, in the file's
    order, `due` was next and another seq came instead (an edited seq, on its own line); else
    `after`, the first event after the gap."""
    number, event = after
    previous = -1
    for line, candidate in numbered:
        if previous == due - 1 and candidate.seq != due:
            number, event = line, candidate
            break
        previous = candidate.seq
    return _Refused("a gap in its seq", number, f"seq {event.seq} where {due} is due")


def _beyond(kept: dict[int, Event], ordered: list[NumberedEvent]) -> list[NumberedEvent]:
    """The events of a run the log holds part or all of that it does not hold yet; raises
    `_Refused` where one it holds differs."""
    for number, event in ordered:
        if event.seq in kept and kept[event.seq] != event:
            detail = f"its {event.kind} event, seq {event.seq}, differs"
            raise _Refused("a conflict with the stored run of the same id", number, detail)
    return [(number, event) for number, event in ordered if event.seq not in kept]


def _write_runs(
    log: EventLog,
    runs: list[list[NumberedEvent]],
    progress: ImportProgress | None,
) -> list[_Refused]:
    """Write `runs` a few thousand events at a time, leaving out (and returning) those with an
    event the log cannot store as given."""
    refused: list[_Refused] = []
    batch: list[list[NumberedEvent]] = []
    size = 0
    for done, run in enumerate(runs, start=1):
        batch.append(run)
        size += len(run)
        if size >= _WRITE_BATCH or done == len(runs):
            refused += _write_whole_runs(log, batch)
            batch, size = [], 0
            if progress is not None:
                progress(done, len(runs))
    return refused


def _write_whole_runs(log: EventLog, runs: list[list[NumberedEvent]]) -> list[_Refused]:
    try:
        log.write(event for run in runs for _, event in run)
    except UnstorableEventsError as error:
        line_of = {(e.run_id, e.seq): number for run in runs for number, e in run}
        refused: dict[str, _Refused] = {}
        for found in error.unstorable:
            event = found.event
            line = line_of[event.run_id, event.seq]
            detail = found.error
            refused.setdefault(
                event.run_id, _Refused("an event the log cannot store", line, detail)
            )
        log.write(event for run in runs for _, event in run if event.run_id not in refused)
        return list(refused.values())
    return []


def _grouped(refused: list[_Refused]) -> tuple[Refusal, ...]:
    """One `Refusal` a reason, the reasons in the order their first lines come in the file."""
    by_reason: dict[str, list[_Refused]] = {}
    for refusal in sorted(refused, key=lambda refusal: refusal.line):
        by_reason.setdefault(refusal.reason, []).append(refusal)
    return tuple(
        Refusal(reason, len(group), group[0].line, group[0].detail)
        for reason, group in by_reason.items()
    )
