"""The ``synthora`` command: list, show and trace stored runs.

Every subcommand reads the event log at ``--db`` (default ``SYNTHORA_DB``, else
``sqlite:///synthora.db``). A run id may be given as a unique prefix. Errors are one line on
stderr and a non-zero exit, never a traceback.

This is the one place in the core that imports `synthora.storage` and `synthora.telemetry`,
to wire them together for a person at a terminal.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from synthora.errors import SynthoraError

if TYPE_CHECKING:
    from synthora.storage import EventLog

__all__ = ["main"]

Command = Callable[[argparse.Namespace, TextIO], int]


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        command: Command = args.command
        return command(args, out)
    except (SynthoraError, OSError) as error:
        print(f"synthora: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthora", description="Inspect the runs stored in a Synthora event log."
    )
    parser.add_argument(
        "--db", help="event log URL (default: $SYNTHORA_DB or sqlite:///synthora.db)"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    runs = commands.add_parser("runs", help="list stored runs, newest first")
    runs.add_argument("--model")
    runs.add_argument("--node", help="a node name, path, or path prefix")
    runs.add_argument("--status", choices=["ok", "error", "interrupted", "running"])
    runs.add_argument("--since", type=_timestamp, help="ISO date or time, e.g. 2026-11-25")
    runs.add_argument("--errors-only", action="store_true")
    runs.add_argument("--limit", type=int, default=50, help="at most this many (0: all)")
    runs.add_argument("--json", action="store_true", help="JSON Lines instead of a table")
    runs.set_defaults(command=_runs)

    show = commands.add_parser("show", help="a run's transcript, usage, timings and trace")
    show.add_argument("run", help="run id or a unique prefix")
    show.add_argument("--jaeger", help="Jaeger UI URL for the trace link")
    show.set_defaults(command=_show)

    trace = commands.add_parser("trace", help="ask Jaeger whether a run's trace arrived")
    trace.add_argument("run", help="run id or a unique prefix")
    trace.add_argument("--jaeger", help="Jaeger URL (default: $SYNTHORA_JAEGER_URL or :16686)")
    trace.set_defaults(command=_trace)
    return parser


def _timestamp(text: str) -> datetime.datetime:
    try:
        value = datetime.datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from error
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def _open_log(args: argparse.Namespace) -> EventLog:
    from synthora.storage import EventLog  # noqa: PLC0415 - the CLI wires the parts together

    return EventLog(args.db)


def _runs(args: argparse.Namespace, out: TextIO) -> int:
    with _open_log(args) as log:
        summaries = log.runs(
            model=args.model,
            node=args.node,
            status=args.status,
            since=args.since,
            errors_only=args.errors_only,
            limit=args.limit or None,
        )
        if args.json:
            import msgspec  # noqa: PLC0415

            for summary in summaries:
                out.write(msgspec.json.encode(summary).decode() + "\n")
            return 0
        rows = [
            (
                s.run_id[:13],
                s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                s.status,
                s.operation,
                s.model or "-",
                "-" if s.duration_s is None else f"{s.duration_s:.2f}s",
                f"{s.input_tokens or 0}/{s.output_tokens or 0}",
                s.error_type or s.finish_reason or "",
                s.node_path,
            )
            for s in summaries
        ]
    header = (
        "RUN",
        "STARTED (UTC)",
        "STATUS",
        "OPERATION",
        "MODEL",
        "TIME",
        "IN/OUT",
        "END",
        "NODE",
    )
    _table(out, header, rows)
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    from synthora.telemetry.jaeger import DEFAULT_JAEGER_URL, trace_link  # noqa: PLC0415

    with _open_log(args) as log:
        transcript = log.transcript(args.run)
    run = transcript.run
    out.write(f"run      {run.run_id}  ({run.status})\n")
    out.write(f"node     {run.node_path}\n")
    out.write(f"model    {run.model or '-'}  {run.operation}  stream={run.stream}\n")
    out.write(f"started  {run.started_at.isoformat()}")
    if run.duration_s is not None:
        first = run.time_to_first_token_s
        out.write(f"  took {run.duration_s:.3f}s")
        out.write("" if first is None else f", first token after {first:.3f}s")
    out.write("\n")
    if transcript.params:
        out.write(f"params   {json.dumps(transcript.params, default=str)}\n")
    out.write("\n")
    for message in transcript.messages or ():
        out.write(f"[{message.role.value}] {message.text}\n")
    if transcript.prompt is not None:
        out.write(f"[prompt] {transcript.prompt}\n")
    if transcript.output is not None:
        out.write(f"[{transcript.output.role.value}] {transcript.output.text}\n")
        for call in transcript.output.tool_calls:
            out.write(f"  -> tool call {call.name}({call.arguments})  id={call.id}\n")
    out.write("\n")
    if transcript.usage is not None:
        usage = transcript.usage
        out.write(f"usage    {usage.input_tokens} in, {usage.output_tokens} out")
        out.write(f", {transcript.tokens} chunks\n")
    if transcript.error is not None:
        error = transcript.error
        status = f" (HTTP {error.status_code})" if error.status_code else ""
        out.write(f"error    {error.error_type}{status} during {error.stage}: {error.message}\n")
    if run.trace_id:
        link = trace_link(args.jaeger or DEFAULT_JAEGER_URL, run.trace_id)
        out.write(f"trace    {run.trace_id}  {link}\n")
    return 0


def _trace(args: argparse.Namespace, out: TextIO) -> int:
    from synthora.telemetry.jaeger import DEFAULT_JAEGER_URL, find_trace  # noqa: PLC0415

    with _open_log(args) as log:
        run = log.run(args.run)
    if not run.trace_id:
        raise _Failure(f"run {run.run_id} was not traced (enable synthora.telemetry)")
    jaeger = args.jaeger or DEFAULT_JAEGER_URL
    found = find_trace(jaeger, run.trace_id)
    if found is None:
        out.write(f"trace {run.trace_id} of run {run.run_id} is not in Jaeger at {jaeger} (yet)\n")
        return 1
    out.write(
        f"trace {found.trace_id}: {len(found.span_names)} spans from {', '.join(found.services)}\n"
    )
    out.write(f"{found.link}\n")
    return 0


class _Failure(SynthoraError):
    """A command that cannot do what was asked; its message is the one line the user sees."""


def _table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        out.write(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
            + "\n"
        )
