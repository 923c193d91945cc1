"""Runs answered from recorded ones, process-wide: what a test replaying its cassette switches on.

A backend's run is answered by an `Answerer`: normally the backend itself (its ``_generate`` /
``_open_stream`` and their async twins), or, while a `Replayer` is installed with `replaying`, a
recorded run the replayer matched to the request. The lifecycle around the answer stays the
backend's, so a replayed run has the node, handlers (the backend is the sender) and start payload
the live run would have. An observed SDK client asks the same replayer for the recorded answer
served as its endpoint's HTTP reply.

The switch is process-wide rather than per context, as an HTTP cassette is: a run the code under
test makes in a worker thread is answered too, where a context variable would let it reach the
network. One test runs at a time in a pytest process (pytest-xdist runs workers as processes).
With no replayer installed, a run pays one global read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import httpx2

from synthora.models.protocol import ModelReply, ModelRequest
from synthora.models.streams import AsyncSource, Source
from synthora.models.wire_replies import WireReply
from synthora.runs import Run

__all__ = ["Answerer", "Replayer", "ServedReply", "active_replayer", "recorded_answer", "replaying"]


class Answerer(Protocol):
    """What answers a run's request inside the lifecycle: a backend's wire, or a recorded run."""

    def _generate(self, request: ModelRequest) -> ModelReply: ...

    async def _agenerate(self, request: ModelRequest) -> ModelReply: ...

    def _open_stream(self, run: Run, request: ModelRequest) -> Source: ...

    async def _aopen_stream(self, run: Run, request: ModelRequest) -> AsyncSource: ...


class ServedReply(Protocol):
    """A recorded answer as the HTTP reply an observed client's call gets, or the exception its
    recorded call raised without a reply (a connection that failed)."""

    exception: Exception | None

    def response(self, request: httpx2.Request) -> httpx2.Response: ...


class Replayer(Protocol):
    """Recorded runs answering new requests (`synthora.storage.wire_replay.LogReplay`).

    Both methods return None to let the request go live (to be recorded), and raise
    `ReplayMissError` when nothing recorded answers it and it may not go live.
    """

    def recorded(self, operation: str, request: ModelRequest) -> Answerer | None:
        """The recorded run that answers a backend's `request`."""
        ...

    def answer(
        self,
        operation: str,
        request: ModelRequest,
        body: Mapping[str, Any],
        reply: WireReply,
        sdk: Any,
    ) -> ServedReply | None:
        """The recorded run that answers an observed call, as its endpoint's `reply`."""
        ...


_replayer: Replayer | None = None


def active_replayer() -> Replayer | None:
    """The replayer installed with `replaying`, if any."""
    return _replayer


def recorded_answer(operation: str, request: ModelRequest) -> Answerer | None:
    """The recorded answer to a backend's `request` while a replayer is installed; None to let
    the backend answer it."""
    __tracebackhide__ = True  # pytest shows a test's replay miss from the backend's run
    return None if _replayer is None else _replayer.recorded(operation, request)


@contextmanager
def replaying(replayer: Replayer) -> Iterator[None]:
    """Answer every backend run and observed call in the process from `replayer` in the block."""
    global _replayer  # noqa: PLW0603 - process-wide on purpose, see the module docstring
    outer, _replayer = _replayer, replayer
    try:
        yield
    finally:
        _replayer = outer
