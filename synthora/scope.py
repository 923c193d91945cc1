"""Agent and tool scopes: a step of an agent is itself a run, and the runs inside it its children.

``with scope(node):`` (or ``async with``) opens a run with operation ``invoke_agent`` (an agent
node) or ``execute_tool`` (a tool node): a start event now, and an end or error event when the
block exits. Runs started inside the block, in this thread or task, get the scope's run id as
their ``parent_run_id`` and the scope's node as an ancestor. The current scope lives in a
context variable, so threads and asyncio tasks never see each other's scopes.

A scope's own events are sent with its `Node` as sender: global subscribers (telemetry, the
event log) hear them, a backend's callback handlers do not.
"""

from __future__ import annotations

from contextvars import Token
from types import TracebackType
from typing import Self

from synthora.errors import ConfigurationError
from synthora.events import Event
from synthora.runs import Run, ScopeFrame, current_scope, service_name
from synthora.types.enums import NodeType
from synthora.types.node import Node

__all__ = ["SCOPE_OPERATIONS", "Scope", "scope"]

_OPERATIONS = {NodeType.AGENT: "invoke_agent", NodeType.TOOL: "execute_tool"}
SCOPE_OPERATIONS = frozenset(_OPERATIONS.values())
"""The operations of scope runs: a step of the caller's code, never a model's answer."""


class Scope:
    """The context manager `scope` returns; enter it once."""

    def __init__(self, node: Node) -> None:
        if not isinstance(node, Node) or node.type not in _OPERATIONS:
            raise ConfigurationError(
                f"scope() takes an agent or tool Node, got {node!r}; "
                "e.g. scope(Node(name='planner', type=NodeType.AGENT))"
            )
        self.node = node
        self.operation = _OPERATIONS[node.type]
        self._run: Run | None = None
        self._token: Token[ScopeFrame | None] | None = None
        self._outer: ScopeFrame | None = None

    @property
    def run_id(self) -> str | None:
        """The scope's own run id, once entered."""
        return self._run.run_id if self._run else None

    def _open(self) -> Event:
        if self._run is not None:
            raise ConfigurationError(f"scope {self.node.path} was already entered once")
        run = self._run = Run(self.node, self.node, operation=self.operation)
        self._outer = current_scope.get()
        self._token = current_scope.set(ScopeFrame(run.run_id, run.node))
        return run.start(operation=self.operation, service=service_name())

    def _close(self, exc: BaseException | None) -> Event | None:
        assert self._run is not None
        assert self._token is not None
        event: Event | None
        if exc is None:
            event = self._run.close_with_end(None, "stop")
        elif isinstance(exc, Exception):
            event = self._run.close_with_error(exc, "scope")
        else:
            event = self._run.close_interrupted(None)
        try:
            current_scope.reset(self._token)
        except ValueError:  # left in another context than entered (a task, an async generator)
            current_scope.set(self._outer)
        return event

    def __enter__(self) -> Self:
        event = self._open()
        assert self._run is not None
        self._run.emit(event)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        event = self._close(exc)
        assert self._run is not None
        self._run.emit(event)

    async def __aenter__(self) -> Self:
        event = self._open()
        assert self._run is not None
        await self._run.emit_async(event)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        event = self._close(exc)
        assert self._run is not None
        await self._run.emit_async(event)


def scope(node: Node) -> Scope:
    """Run the enclosed block as an agent or tool step: ``with scope(node): …``."""
    return Scope(node)
