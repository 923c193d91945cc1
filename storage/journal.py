"""The journal: where a closing run's events are made durable before the database has them.

On SQLite a commit costs a short run ~300 µs of its caller's time, most of it SQLite's own work
on the pages a commit touches (the events, the runs projection and its indexes); the same work
for fifty runs at once costs little more than for one. So a closing caller appends its group of
events to a local file instead (one ``write``: durable against a crash of the process, as a
commit with ``synchronous=NORMAL`` is) and returns; the writer thread commits every group
journaled meanwhile in one transaction, then deletes that part of the journal. The database file
and the journal sit on the same machine: a journaled run is exactly as durable as a committed
one, and is in the database within one ``flush_interval``. Reads in this process first commit
what is journaled, so a run is readable as soon as ``run()`` returns.

A journal is a series of segments, one file each, named after the spool they sit beside, and
locked (``flock``) by their process while it may still commit them; a segment whose lock can be
taken was left by a process that died first, and the next log opened for the same database
commits it (every write is idempotent on ``(run_id, seq)``, and a segment's groups are stored
as the same rows whoever commits them). A segment is a sequence of frames: a length, then the
group's events as msgpack; a frame cut short by the crash is the end of its segment.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import msgspec

from synthora.events import Event

__all__ = ["Journal", "Segment", "orphaned_groups", "read_groups"]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[Event]).decode
_LENGTH = 4


class Segment:
    """One journal file, open and locked by this process until its groups are committed."""

    __slots__ = ("_descriptor", "path", "written")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new, so never held
        self.written = 0

    def append(self, frame: bytes) -> None:
        os.write(self._descriptor, frame)
        self.written += 1

    def discard(self) -> None:
        """Its groups are committed: the file goes, then the lock."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        """Keep the file (what it holds is not committed), release it to the next process."""
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1

    def forget(self) -> None:
        """In a forked child: the parent's segment, and its lock, stay the parent's."""
        with contextlib.suppress(OSError):
            os.close(self._descriptor)  # the parent's descriptor still holds the lock
        self._descriptor = -1


class Journal:
    """The journal segments of one log, next to its spool (`prefix` is the spool's path)."""

    __slots__ = ("_segment", "prefix")

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self._segment: Segment | None = None

    def append(self, events: list[Event]) -> None:
        """Make `events` durable as one group. Raises `OSError` if the file cannot be
        written, `msgspec.EncodeError` or `TypeError` if an event cannot be encoded."""
        payload = _encode(events)
        frame = len(payload).to_bytes(_LENGTH, "little") + payload
        segment = self._segment
        if segment is None:
            self.prefix.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            name = f"{self.prefix.name}.{os.getpid()}-{secrets.token_hex(4)}.journal"
            segment = self._segment = Segment(self.prefix.with_name(name))
        segment.append(frame)

    def cut(self) -> Segment | None:
        """The segment holding every group appended so far (None if none was); the next
        append starts another. The caller discards it once those groups are committed."""
        segment, self._segment = self._segment, None
        return segment

    def forget(self) -> None:
        if self._segment is not None:
            self._segment.forget()
            self._segment = None


def orphaned_groups(prefix: Path) -> Iterator[tuple[Path, list[list[Event]]]]:
    """The segments of this journal that no live process holds, with their groups. The
    segment stays locked by this process while the caller commits its groups, so that no other
    does so at the same time; the caller deletes it once they are committed."""
    for path in sorted(prefix.parent.glob(f"{prefix.name}.*.journal")):
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # committed and deleted by another process meanwhile
            continue
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process lives, and commits it itself
                continue
            if not path.exists():
                continue
            yield path, read_groups(path)
        finally:
            os.close(descriptor)


def read_groups(path: Path) -> list[list[Event]]:
    """The groups a segment holds, up to the first frame a crash cut short or damaged."""
    return list(_groups(path.read_bytes()))


def _groups(data: bytes) -> Iterator[list[Event]]:
    offset = 0
    while offset + _LENGTH <= len(data):
        length = int.from_bytes(data[offset : offset + _LENGTH], "little")
        payload = data[offset + _LENGTH : offset + _LENGTH + length]
        if len(payload) < length:  # cut short by the crash: never acknowledged
            return
        try:
            yield _decode(payload)
        except msgspec.DecodeError:  # a damaged frame: what follows cannot be trusted either
            return
        offset += _LENGTH + length
