"""Two stored runs compared: what each was asked, what each answered, how long each took.

`compare` does no I/O: it takes two `RunTree` values (a run's transcript and the runs inside it,
as `EventLog.diff` reads them from SQLite or PostgreSQL alike) and returns a `RunDiff` holding,
for every aspect, both values and whether they differ::

    d = log.diff(run_a, run_b)
    d.differences              # ("messages", "output"): the aspects of substance that differ
    d.output.a, d.output.b     # the two output texts
    d.duration_s.differs       # measured: shown, never counted

The aspects of substance are the request (`REQUEST`) and the outcome (`OUTCOME`). What differs
between any two runs is kept but never counted: run ids and start times (in the summaries `a` and
`b`) and the measurements (`MEASURED`: usage, duration, time to first token, chunks), which vary
with the server's load and its prompt cache. Servers mint new tool call ids on every run, so tool
calls, and the messages that quote them, are compared with each id replaced by its order of
appearance in the run.

A scope's runs (its agent and tool steps and the model runs in them) are paired in the order
they started and compared pair by pair; the runs one scope has beyond the other's are listed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import msgspec

from synthora.events import ErrorEvent, Usage
from synthora.messages import BaseMessage, ToolCall
from synthora.storage.projections import RunSummary, Transcript

__all__ = ["MEASURED", "OUTCOME", "REQUEST", "RunDiff", "RunTree", "Sides", "compare"]

T = TypeVar("T")

REQUEST = ("operation", "model", "stream", "params", "tools", "messages", "prompt")
"""The aspects of what was asked; ``params`` are the request parameters but the tools."""
OUTCOME = ("output", "tool_calls", "finish_reason", "status", "error")
"""The aspects of what came back; ``output`` is the text (a failed run's: what came before)."""
MEASURED = ("usage", "duration_s", "time_to_first_token_s", "chunks")
"""The aspects shown but never counted as a difference."""


class Sides(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One aspect of two runs: run A's value, run B's, and whether they differ."""

    a: T
    b: T
    differs: bool


class RunTree(msgspec.Struct, frozen=True):
    """A stored run and the runs inside it (for a scope), in the order they started."""

    transcript: Transcript
    children: tuple[RunTree, ...] = ()


class RunDiff(msgspec.Struct, frozen=True, kw_only=True):
    """How run B differs from run A, aspect by aspect; for scopes, their runs' diffs in pairs.

    `differences` names the aspects of substance that differ (``"children"`` when the scopes'
    runs do); it is empty when the two runs asked and answered the same.
    """

    a: RunSummary
    b: RunSummary
    operation: Sides[str]
    model: Sides[str]
    stream: Sides[bool]
    params: Sides[dict[str, Any]]
    tools: Sides[Any]
    messages: Sides[tuple[BaseMessage, ...] | None]
    prompt: Sides[str | list[str] | None]
    output: Sides[str]
    tool_calls: Sides[tuple[ToolCall, ...]]
    finish_reason: Sides[str | None]
    status: Sides[str]
    error: Sides[str | None]
    usage: Sides[Usage | None]
    duration_s: Sides[float | None]
    time_to_first_token_s: Sides[float | None]
    chunks: Sides[int]
    children: tuple[RunDiff, ...] = ()
    only_in_a: tuple[RunSummary, ...] = ()
    only_in_b: tuple[RunSummary, ...] = ()
    differences: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Derived here rather than passed in, so it cannot disagree with the aspects.
        found = tuple(name for name in REQUEST + OUTCOME if self.aspect(name).differs)
        if self.only_in_a or self.only_in_b or any(child.differs for child in self.children):
            found += ("children",)
        msgspec.structs.force_setattr(self, "differences", found)

    @property
    def differs(self) -> bool:
        """Whether the runs differ in substance: request, outcome, or a scope's runs."""
        return bool(self.differences)

    def aspect(self, name: str) -> Sides[Any]:
        """The aspect called `name`, one of `REQUEST`, `OUTCOME` or `MEASURED`."""
        if name not in _ASPECTS:
            raise ValueError(f"no aspect {name!r}; aspects are {', '.join(_ASPECTS)}")
        sides: Sides[Any] = getattr(self, name)
        return sides


_ASPECTS = frozenset(REQUEST + OUTCOME + MEASURED)


def compare(a: RunTree, b: RunTree) -> RunDiff:
    """How run `b` differs from run `a`; their runs inside, paired in order, likewise."""
    left, right = a.transcript, b.transcript
    left_calls, right_calls = _calls_by_position(left), _calls_by_position(right)
    paired = min(len(a.children), len(b.children))
    return RunDiff(
        a=left.run,
        b=right.run,
        operation=_sides(left.run.operation, right.run.operation),
        model=_sides(left.run.model, right.run.model),
        stream=_sides(left.run.stream, right.run.stream),
        params=_sides(_params(left), _params(right)),
        tools=_sides(left.params.get("tools"), right.params.get("tools")),
        messages=Sides(
            a=left.messages,
            b=right.messages,
            differs=_masked_messages(left, left_calls) != _masked_messages(right, right_calls),
        ),
        prompt=_sides(left.prompt, right.prompt),
        output=_sides(_text(left.output), _text(right.output)),
        tool_calls=Sides(
            a=_tool_calls(left.output),
            b=_tool_calls(right.output),
            differs=_masked_calls(_tool_calls(left.output), left_calls)
            != _masked_calls(_tool_calls(right.output), right_calls),
        ),
        finish_reason=_sides(left.run.finish_reason, right.run.finish_reason),
        status=_sides(left.run.status, right.run.status),
        error=_sides(_error(left.error), _error(right.error)),
        usage=_sides(left.usage, right.usage),
        duration_s=_sides(left.run.duration_s, right.run.duration_s),
        time_to_first_token_s=_sides(
            left.run.time_to_first_token_s, right.run.time_to_first_token_s
        ),
        chunks=_sides(left.tokens, right.tokens),
        children=tuple(compare(x, y) for x, y in zip(a.children, b.children, strict=False)),
        only_in_a=tuple(child.transcript.run for child in a.children[paired:]),
        only_in_b=tuple(child.transcript.run for child in b.children[paired:]),
    )


def _sides(a: T, b: T) -> Sides[T]:
    return Sides(a=a, b=b, differs=a != b)


def _params(transcript: Transcript) -> dict[str, Any]:
    return {key: value for key, value in transcript.params.items() if key != "tools"}


def _text(output: BaseMessage | None) -> str:
    return "" if output is None else output.text


def _tool_calls(output: BaseMessage | None) -> tuple[ToolCall, ...]:
    return () if output is None else output.tool_calls


def _error(error: ErrorEvent | None) -> str | None:
    """A failure as one comparable line (the event itself carries ids and times)."""
    if error is None:
        return None
    status = f" (HTTP {error.status_code})" if error.status_code else ""
    return f"{error.error_type}{status} during {error.stage}: {error.message}"


def _calls_by_position(transcript: Transcript) -> Callable[[str], str]:
    """Each tool call id of a run, as its order of first appearance: ``call#0``, ``call#1``…"""
    labels: dict[str, str] = {}

    def label(call_id: str) -> str:
        return labels.setdefault(call_id, f"call#{len(labels)}")

    for message in transcript.messages or ():  # the input first, so labels follow the run
        for call in message.tool_calls:
            label(call.id)
        if message.tool_call_id is not None:
            label(message.tool_call_id)
    return label


def _masked_calls(calls: Iterable[ToolCall], label: Callable[[str], str]) -> tuple[ToolCall, ...]:
    return tuple(msgspec.structs.replace(call, id=label(call.id)) for call in calls)


def _masked_messages(
    transcript: Transcript, label: Callable[[str], str]
) -> tuple[BaseMessage, ...] | None:
    if transcript.messages is None:
        return None
    return tuple(
        msgspec.structs.replace(
            message,
            tool_calls=_masked_calls(message.tool_calls, label),
            tool_call_id=None if message.tool_call_id is None else label(message.tool_call_id),
        )
        for message in transcript.messages
    )
