"""What the pages show, computed from stored runs: sans-I/O, so each piece is tested on its own.

The log keeps every token with its arrival time, so a stream's page can say when the first token
came, how fast the rest followed and where the stream stalled; `Timeline` measures that and
`TimelineChart` draws it as SVG coordinates (no chart library: a polyline and a few marks).
`waterfall` lays a scope's runs out as a tree on one time axis.
"""

from __future__ import annotations

import datetime
import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from synthora.events import EndEvent, ErrorEvent, Event, StartEvent, TokenEvent
from synthora.storage.log import RunSummary

__all__ = [
    "Step",
    "Timeline",
    "TimelineChart",
    "as_json",
    "commands",
    "duration",
    "pretty_json",
    "structured_output",
    "waterfall",
]


def duration(seconds: float | None) -> str:
    """A span of time as a person reads it: ``840 ms``, ``2.31 s``, ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    milliseconds = seconds * 1000
    return f"{milliseconds:.{2 if milliseconds < 1 else 1 if milliseconds < 10 else 0}f} ms"


def as_json(value: Any) -> str:
    """A parameter's value as indented JSON (what was sent, in the wire's own notation)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def pretty_json(text: str) -> str:
    """JSON text indented for reading; anything else (a model's broken JSON) as it came."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


_STRUCTURED_FORMATS = ("json_object", "json_schema")


def structured_output(params: dict[str, Any], text: str) -> str | None:
    """The output as indented JSON when the run asked for JSON (``response_format`` on chat,
    ``text.format`` on the Responses API) and got it; None otherwise."""
    text_options = params.get("text")
    requested = params.get("response_format") or (
        text_options.get("format") if isinstance(text_options, dict) else None
    )
    if not isinstance(requested, dict) or requested.get("type") not in _STRUCTURED_FORMATS:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return None


def commands(run_id: str, db: str | None) -> dict[str, str]:
    """The command lines that show, export and compare this run in a terminal."""
    prefix = "synthora" if db is None else f"synthora --db {shlex.quote(db)}"
    return {
        "show": f"{prefix} show {run_id}",
        "export": f"{prefix} export {run_id} -o {run_id}.jsonl",
        "diff": f"{prefix} diff {run_id} <other>",
    }


@dataclass(frozen=True, slots=True)
class Timeline:
    """A run's output tokens on a time axis, in seconds after its start event.

    ``longest_gap`` is the longest wait between two tokens (the wait for the first one is
    ``first_token_s``), and ``stall_index`` the token that ended it: where the stream stalled.
    ``end_s`` is when the run closed (None while it runs), ``broke`` whether it closed with
    an error.
    """

    arrivals: tuple[float, ...]
    texts: tuple[str, ...]
    end_s: float | None
    broke: bool
    longest_gap: float
    stall_index: int | None

    @classmethod
    def of(cls, events: Iterable[Event]) -> Timeline:
        """The timeline of one run's events, in seq order."""
        start_ts: int | None = None
        arrivals: list[float] = []
        texts: list[str] = []
        end_s: float | None = None
        broke = False
        for event in events:
            match event:
                case StartEvent():
                    start_ts = event.ts
                case TokenEvent():
                    origin = event.ts if start_ts is None else start_ts
                    arrivals.append((event.ts - origin) / 1e9)
                    texts.append(event.text)
                case EndEvent() | ErrorEvent():
                    if start_ts is not None:
                        end_s = (event.ts - start_ts) / 1e9
                    broke = isinstance(event, ErrorEvent)
        longest, stall = 0.0, None
        for index in range(1, len(arrivals)):
            if arrivals[index] - arrivals[index - 1] > longest:
                longest, stall = arrivals[index] - arrivals[index - 1], index
        return cls(tuple(arrivals), tuple(texts), end_s, broke, longest, stall)

    @property
    def first_token_s(self) -> float | None:
        return self.arrivals[0] if self.arrivals else None

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens a second from the first token to the last: the decoding speed."""
        if len(self.arrivals) < 2 or self.arrivals[-1] <= self.arrivals[0]:
            return None
        return (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0])


@dataclass(frozen=True, slots=True)
class TimelineChart:
    """A `Timeline` drawn in a ``WIDTH`` x ``HEIGHT`` SVG box: tokens so far against time."""

    WIDTH = 800
    HEIGHT = 160
    PAD = 6

    points: str
    first_x: float | None
    gap: tuple[float, float] | None
    end_x: float | None
    broke: bool
    span_s: float

    @classmethod
    def of(cls, timeline: Timeline) -> TimelineChart:
        arrivals = timeline.arrivals
        span = max(timeline.end_s or 0.0, arrivals[-1] if arrivals else 0.0) or 1e-9
        inner_w, inner_h = cls.WIDTH - 2 * cls.PAD, cls.HEIGHT - 2 * cls.PAD

        def x(seconds: float) -> float:
            return round(cls.PAD + inner_w * seconds / span, 1)

        def y(count: int) -> float:
            return round(cls.HEIGHT - cls.PAD - inner_h * count / max(1, len(arrivals)), 1)

        steps = [f"{x(0)},{y(0)}"]
        for count, arrival in enumerate(arrivals, start=1):
            steps.append(f"{x(arrival)},{y(count - 1)} {x(arrival)},{y(count)}")
        if timeline.end_s is not None:
            steps.append(f"{x(timeline.end_s)},{y(len(arrivals))}")
        gap = None
        if timeline.stall_index is not None:
            stalled = timeline.stall_index
            gap = (x(arrivals[stalled - 1]), x(arrivals[stalled]))
        return cls(
            points=" ".join(steps),
            first_x=x(arrivals[0]) if arrivals else None,
            gap=gap,
            end_x=None if timeline.end_s is None else x(timeline.end_s),
            broke=timeline.broke,
            span_s=span,
        )


@dataclass(frozen=True, slots=True)
class Step:
    """One run of a scope's tree, placed on the scope's time axis (percent of its width)."""

    run: RunSummary
    depth: int
    offset_pct: float
    width_pct: float


def waterfall(root: RunSummary, runs: Sequence[RunSummary]) -> list[Step]:
    """`root` and the runs under it as a tree in depth-first order, children by start time.

    A run still going (or whose process died) reaches to the latest moment the tree knows.
    """
    children: dict[str | None, list[RunSummary]] = {}
    for run in sorted(runs, key=lambda r: (r.started_at, r.run_id)):
        children.setdefault(run.parent_run_id, []).append(run)
    everything = [root, *runs]
    begin = root.started_at
    end = max(_ended(run) or run.started_at for run in everything)
    span = (end - begin).total_seconds() or 1e-9

    def place(run: RunSummary, depth: int) -> Step:
        offset = (run.started_at - begin).total_seconds() / span
        width = ((_ended(run) or end) - run.started_at).total_seconds() / span
        return Step(run, depth, round(100 * offset, 2), round(max(100 * width, 0.3), 2))

    steps: list[Step] = []
    pending = [(root, 0)]
    while pending:
        run, depth = pending.pop()
        steps.append(place(run, depth))
        pending.extend((child, depth + 1) for child in reversed(children.get(run.run_id, [])))
    return steps


def _ended(run: RunSummary) -> datetime.datetime | None:
    if run.ended_at is not None:
        return run.ended_at
    if run.duration_s is not None:
        return run.started_at + datetime.timedelta(seconds=run.duration_s)
    return None
