"""The committer: a process of its own that commits journaled groups to a busy log's SQLite file.

A journaled run costs its caller one ``write`` (`synthora.storage.journal`); what remains is the
writer thread's: making rows of the groups, and SQLite's work on the pages a commit touches. On
a process whose threads are bound by the GIL (eight threads making short runs, say), that work
takes its share of the one interpreter every caller waits for: 8-9% of their throughput, where
the callers' own journaling costs 2-3%. In a process of its own it runs beside them, on another
core. So once a log is busy (`Writer`), its writer thread stops committing journaled groups
itself: every round it journals what is still queued, cuts the journal, and hands the segments'
paths to the committer, waiting for the reply without holding the GIL.

The committer makes each segment's groups into rows exactly as the writer thread or the next
process after a crash would (`group_rows`), commits them in one transaction, and replies with
what it stored and what it could store only in another form. It owns no policy: should it
refuse (any error), die, or hang, the writer thread commits the same groups itself, with every
policy it has (isolating a bad event, spooling); the writes are idempotent on ``(run_id, seq)``.
The segments stay locked by the writer's process throughout, and are deleted by it, so a
crash of either process leaves them to the next log of the database, as before.

The two talk over a pipe each way, in msgpack frames (a length, then the message). The
committer exits when its request pipe closes: when the log closes, or its process dies.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from pathlib import Path

import msgspec

import synthora
from synthora.storage.codec import Unstorable, group_rows
from synthora.storage.engines import make_engines
from synthora.storage.errors import error_line
from synthora.storage.journal import read_groups
from synthora.storage.statements import WriteStatements

__all__ = ["Committed", "Committer", "Refused"]

_LENGTH = 4
_REPLY_TIMEOUT_S = 60.0
"""Longer than SQLite's busy timeout (30 s): a committer that says nothing for this long hangs."""
_EXIT_TIMEOUT_S = 5.0
_NICENESS = 10
"""Committing is background work: where the machine is busy, the application (and the model
server, on the same machine) comes first. Callers never wait on it; its backlog is bounded."""
_ENTRY = "import synthora.storage.committer as c; c.serve(0, 1)"
"""The committer's program (``-c``: this module, imported by the package first, is no ``-m``)."""


class _Open(msgspec.Struct, frozen=True):
    url: str


class _Commit(msgspec.Struct, frozen=True):
    paths: list[str]


class Committed(msgspec.Struct, tag=True, frozen=True):
    """The segments' groups are committed: ``stored`` events, and those stored in another
    form or set aside (as `batch_rows` lists them)."""

    stored: int
    unstorable: list[Unstorable]


class Refused(msgspec.Struct, tag=True, frozen=True):
    """Nothing of the request was committed (the transaction was rolled back), for `reason`."""

    reason: str


_encode = msgspec.msgpack.Encoder().encode
_decode_reply = msgspec.msgpack.Decoder(Committed | Refused).decode
_decode_opening = msgspec.msgpack.Decoder(_Open).decode
_decode_commit = msgspec.msgpack.Decoder(_Commit).decode


class Committer:
    """The writer's handle on its committer process."""

    __slots__ = ("_replies", "_requests", "pid")

    def __init__(self, url: str) -> None:
        """Start the process; it opens `url` while the first request is on its way."""
        to_committer, self._requests = os.pipe()
        self._replies, from_committer = os.pipe()
        environment = dict(os.environ)
        package_root = str(Path(synthora.__file__).parent.parent)  # where it imports from here
        environment["PYTHONPATH"] = os.pathsep.join(
            [package_root, *filter(None, [environment.get("PYTHONPATH")])]
        )
        try:
            self.pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-P", "-c", _ENTRY],
                environment,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, to_committer, 0),
                    (os.POSIX_SPAWN_DUP2, from_committer, 1),
                ],
                setpgroup=0,  # a Ctrl-C in the terminal interrupts the application, not its log
            )
        except BaseException:
            for descriptor in (self._requests, self._replies):
                os.close(descriptor)
            raise
        finally:
            os.close(to_committer)
            os.close(from_committer)
        try:
            _send(self._requests, _Open(url))
        except OSError:  # it exited at once
            self.close()
            raise

    def commit(self, paths: list[Path]) -> Committed | Refused | None:
        """Have the segments at `paths` committed: the reply, or None if the committer is gone
        (it exited, or said nothing for a minute and was ended); the caller then commits them."""
        try:
            _send(self._requests, _Commit([str(path) for path in paths]))
            payload = _receive(self._replies, time.monotonic() + _REPLY_TIMEOUT_S)
        except OSError:  # its end of the pipe is closed: it exited
            payload = None
        if payload is None:
            self.close()
            return None
        return _decode_reply(payload)

    def close(self) -> None:
        """End the process: it exits once its request pipe closes (ended if it does not)."""
        if self.pid <= 0:
            return
        os.close(self._requests)
        with contextlib.suppress(OSError):
            while _receive(self._replies, time.monotonic() + _EXIT_TIMEOUT_S) is not None:
                pass  # a reply nobody waits for any more
        os.close(self._replies)
        with contextlib.suppress(ChildProcessError):  # reaped already, by an os.wait() of the app
            if os.waitpid(self.pid, os.WNOHANG) == (0, 0):
                os.kill(self.pid, signal.SIGKILL)  # silent past its timeout: it hangs
                os.waitpid(self.pid, 0)
        self.pid = -1

    def forget(self) -> None:
        """In a forked child: the process is the parent's; only the pipes are let go."""
        if self.pid > 0:
            os.close(self._requests)
            os.close(self._replies)
            self.pid = -1


def _send(descriptor: int, message: msgspec.Struct) -> None:
    payload = _encode(message)
    data = memoryview(len(payload).to_bytes(_LENGTH, "little") + payload)
    while data:
        data = data[os.write(descriptor, data) :]


def _receive(descriptor: int, deadline: float | None) -> bytes | None:
    """One frame's payload; None at the end of the pipe, or once `deadline` has passed."""
    header = _read(descriptor, _LENGTH, deadline)
    if header is None:
        return None
    return _read(descriptor, int.from_bytes(header, "little"), deadline)


def _read(descriptor: int, size: int, deadline: float | None) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        if deadline is not None:
            ready, _, _ = select.select([descriptor], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
        chunk = os.read(descriptor, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def serve(requests: int, replies: int) -> None:
    """The committer's loop: open the log's database, then commit each request's segments,
    until the request pipe ends (or the reply pipe does: the log's process is gone)."""
    with contextlib.suppress(BrokenPipeError):
        _serve(requests, replies)


def _serve(requests: int, replies: int) -> None:
    os.nice(_NICENESS)
    payload = _receive(requests, None)
    if payload is None:
        return
    try:
        engine, reader = make_engines(_decode_opening(payload).url, "normal")
    except Exception as error:  # the writer thread commits instead, and is told why
        if _receive(requests, None) is not None:
            _send(replies, Refused(error_line(error)))
        return
    reader.dispose()
    statements = WriteStatements(engine)
    connection = None
    try:
        while (payload := _receive(requests, None)) is not None:
            request = _decode_commit(payload)
            reply: Committed | Refused
            try:
                rows = group_rows(
                    group for path in request.paths for group in read_groups(Path(path))
                )
                if connection is None:
                    connection = engine.raw_connection()
                statements.write(connection, rows)
                reply = Committed(rows.count, rows.unstorable)
            except Exception as error:
                reply = Refused(error_line(error))
                if connection is not None:
                    connection.invalidate()
                    connection = None
            _send(replies, reply)
    finally:
        if connection is not None:
            connection.close()
        engine.dispose()
