"""One test's cassette: the recorded runs that answer it, and the runs it records.

The pytest plugin (`synthora.testing.pytest_plugin`) opens a `Cassette` around each marked test.
The cassette file is a ``synthora export`` (JSON Lines of events); while the test runs, it lives
in a temporary SQLite event log. The record modes mean what pytest-recording (VCR.py) gives them:

=============  =====================================  ==========================================
mode           a request the cassette answers         any other request
=============  =====================================  ==========================================
none           replayed                               fails the test (`ReplayMissError`)
once           replayed, if the file exists; with no  fails the test
               file, every request goes live and the
               cassette is written
new_episodes   replayed                               goes live; appended to the cassette
all            goes live: the cassette is written     goes live
               anew
=============  =====================================  ==========================================

Recording attaches a temporary log to every run for the test's duration (the test's own runs:
one test runs at a time in a pytest process), then writes the cassette when the test is done,
aside and renamed over the file, so a worker or a crash never leaves half a cassette. With
``new_episodes`` the file keeps its bytes and gains the runs that went live, with the scopes they
ran in; a test that went live for nothing leaves it untouched. Events carry no secrets (API keys
and credential headers are scrubbed when each event is built), so neither does a cassette.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from synthora.events import Event, StartEvent
from synthora.models.protocol import ModelRequest
from synthora.models.replaying import replaying
from synthora.observed import ObservingNewClients
from synthora.scope import SCOPE_OPERATIONS
from synthora.storage.errors import StorageError
from synthora.storage.log import EventLog, RunSummary
from synthora.storage.replay import Recording, ReplayMissError
from synthora.storage.transfer import export_runs, read_events, replacing
from synthora.storage.wire_replay import LogReplay

if TYPE_CHECKING:
    from synthora.testing.pytest_plugin import RecordMode

__all__ = ["Cassette"]


class Cassette:
    """A test's cassette file in one record mode; `playing` runs the test with it.

    Every miss of the test's runs is kept in `misses`, so the test fails even where the code
    under test caught the error.
    """

    def __init__(self, path: Path, mode: RecordMode, *, shown: str) -> None:
        self.path = path
        self.mode = mode
        self.shown = shown
        """The file's name as the test's failures show it (relative to the rootdir)."""
        self.misses: list[ReplayMissError] = []
        self._exists = path.exists()
        self._replays = mode in ("none", "new_episodes") or (mode == "once" and self._exists)
        self._records = mode in ("new_episodes", "all") or (mode == "once" and not self._exists)

    @contextmanager
    def playing(self) -> Iterator[EventLog]:
        """Answer and record the runs of the block as the mode says; write the cassette after.

        Yields the cassette as an event log: the recorded runs that answer the test, or, when
        nothing is replayed (``once`` with no file yet, ``all``), the runs being recorded.
        """
        with ExitStack() as stack:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="synthora-")))
            old = ""
            replay = recorded = recording = None
            if self._replays:
                recorded = stack.enter_context(_temporary_log(folder / "cassette.db"))
                if self._exists:
                    old = self.path.read_text(encoding="utf-8")
                    recorded.write(self._events(old))
                replay = _CassetteReplay(self, recorded)
                stack.enter_context(replaying(replay))
            if self._records:
                recording = stack.enter_context(_temporary_log(folder / "recording.db"))
                recording.attach()
            new_clients = ObservingNewClients()
            new_clients.start()
            stack.callback(new_clients.stop)
            played = recorded if recorded is not None else recording
            assert played is not None  # every mode replays, records, or both
            yield played
            if recording is not None:
                recording.detach()
                recording.flush()
                self._write(recording, old, replay)

    def missed(self, miss: ReplayMissError) -> ReplayMissError:
        """A miss as the test reports it, naming the cassette; kept in `misses`."""
        if self._exists:
            missed = ReplayMissError(
                f"{miss}\ncassette {self.shown}: --synthora-record=new_episodes adds the "
                "request to it, --synthora-record=all records it anew"
            )
        else:
            missed = ReplayMissError(
                f"no cassette {self.shown} to answer the test's requests: record it with "
                "--synthora-record=once"
            )
        self.misses.append(missed)
        return missed

    def _events(self, text: str) -> list[Event]:
        try:  # split at line ends only: a JSON string may hold U+2028, which str.splitlines splits
            return [event for _, event in read_events(text.encode().split(b"\n"))]
        except StorageError as error:
            raise StorageError(f"cassette {self.shown}: {error}") from None

    def _write(self, recording: EventLog, old: str, replay: LogReplay | None) -> None:
        """Write what the test recorded: all of it, or (new episodes) after the old runs, the
        runs that went live and the scopes they ran in. Nothing recorded, nothing written."""
        runs = sorted(recording.runs(), key=lambda s: (s.started_at, s.run_id))
        if replay is not None:
            runs = _went_live(runs, recording, replay)
        if not runs:
            return
        with replacing(self.path) as target:
            if old.strip():
                target.write(old if old.endswith("\n") else old + "\n")
            export_runs(recording, target, [summary.run_id for summary in runs])


class _CassetteReplay(LogReplay):
    """The cassette's runs answering every run of the test (`synthora.models.replaying`), its
    backends' and its observed clients' alike; a miss goes live in ``new_episodes``."""

    def __init__(self, cassette: Cassette, log: EventLog) -> None:
        super().__init__(log, "record" if cassette.mode == "new_episodes" else "replay")
        self._cassette = cassette

    def recorded(self, operation: str, request: ModelRequest) -> Recording | None:
        __tracebackhide__ = True  # a miss shows the test's call, not the replayer's inside
        try:
            return super().recorded(operation, request)
        except ReplayMissError as miss:
            raise self._cassette.missed(miss) from None


def _went_live(runs: list[RunSummary], recording: EventLog, replay: LogReplay) -> list[RunSummary]:
    """The model runs of `runs` the cassette did not answer, with the scopes they ran in."""
    parents = {summary.run_id: summary.parent_run_id for summary in runs}
    kept: set[str] = set()
    for summary in runs:
        if summary.operation in SCOPE_OPERATIONS:
            continue
        start = next(iter(recording.events(summary.run_id)))
        if isinstance(start, StartEvent) and replay.answers(start):
            continue
        run_id: str | None = summary.run_id
        while run_id is not None and run_id not in kept:
            kept.add(run_id)
            run_id = parents.get(run_id)
    return [summary for summary in runs if summary.run_id in kept]


@contextmanager
def _temporary_log(path: Path) -> Iterator[EventLog]:
    """An event log in a SQLite file of the test's, with no spool in the user's cache."""
    with EventLog(f"sqlite:///{path}", spool=False) as log:
        yield log
