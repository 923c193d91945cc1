"""Helpers shared by test modules (conftest.py holds the fixtures)."""

from __future__ import annotations

import io

from synthora import BaseCallBackHandler, Node, NodeType
from synthora.cli import main
from synthora.events import EndEvent, ErrorEvent, StartEvent, TokenEvent

API_KEY = "test-key-synthora-do-not-log-4f1c9e"
AGENT = Node(name="assistant", type=NodeType.AGENT)


def cli(*argv: str) -> tuple[int, str]:
    """Run the command line in this process: its exit status and what it wrote to stdout."""
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


class Recorder(BaseCallBackHandler):
    """A handler that records the kinds of event it hears, in order."""

    def __init__(self) -> None:
        self.kinds: list[str] = []

    def on_llm_start(self, event: StartEvent) -> None:
        self.kinds.append(event.kind)

    def on_llm_chunk(self, event: TokenEvent) -> None:
        self.kinds.append(event.kind)

    def on_llm_end(self, event: EndEvent) -> None:
        self.kinds.append(event.kind)

    def on_llm_error(self, event: ErrorEvent) -> None:
        self.kinds.append(event.kind)
