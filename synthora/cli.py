"""The ``synthora`` command: list, show, compare, trace, replay, export and import stored runs.

Every subcommand reads the event log at ``--db`` (default ``SYNTHORA_DB``, else
``sqlite:///synthora.db``). A run id may be given as a unique prefix. Errors are one line on
stderr and a non-zero exit, never a traceback.

This is the one place in the core that imports `synthora.storage` and `synthora.telemetry`,
to wire them together for a person at a terminal.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

from synthora.errors import SynthoraError

if TYPE_CHECKING:
    from synthora.events import Usage
    from synthora.messages import BaseMessage, ToolCall
    from synthora.storage import EventLog, RunDiff

__all__ = ["main"]

Command = Callable[[argparse.Namespace, TextIO], int]

SHORT_ID = 23
"""How much of a run id the tables show: past its UUIDv7 millisecond timestamp (13 characters)
into 28 random bits, since runs started in the same millisecond share the timestamp."""

NOT_SAMPLED = "not sampled: the tracer's sampler dropped its trace, so none was exported"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        command: Command = args.command
        return command(args, out)
    except BrokenPipeError:  # `synthora runs | head -1`: the reader has all it wanted
        _quiet_broken_pipe()
        return 0
    except (SynthoraError, OSError) as error:
        print(f"synthora: {error}", file=sys.stderr)
        return int(getattr(args, "failure_status", 1))
    except KeyboardInterrupt:
        return 130


def _quiet_broken_pipe() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthora", description="Inspect the runs stored in a Synthora event log."
    )
    parser.add_argument(
        "--db", help="event log URL (default: $SYNTHORA_DB or sqlite:///synthora.db)"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_reading_commands(commands)
    _add_keeping_commands(commands)
    return parser


def _add_reading_commands(commands: _Commands) -> None:
    """The commands that read runs: list, show, compare, trace, replay."""
    from synthora.storage.log import RUN_STATUSES  # noqa: PLC0415 - the CLI wires it up

    runs = commands.add_parser("runs", help="list stored runs, newest first")
    runs.add_argument("--model")
    runs.add_argument("--node", help="a node name, path, or path prefix")
    runs.add_argument("--status", choices=RUN_STATUSES)
    runs.add_argument("--since", type=_timestamp, help="ISO date or time, e.g. 2026-11-25")
    runs.add_argument("--errors-only", action="store_true")
    runs.add_argument("--limit", type=int, default=50, help="at most this many (0: all)")
    runs.add_argument("--json", action="store_true", help="JSON Lines instead of a table")
    runs.set_defaults(command=_runs)

    show = commands.add_parser("show", help="a run's transcript, usage, timings and trace")
    show.add_argument("run", help="run id or a unique prefix")
    show.add_argument("--jaeger", help="Jaeger UI URL for the trace link")
    show.set_defaults(command=_show)

    diff = commands.add_parser(
        "diff",
        help="how two runs differ: request, messages, output, usage, timing",
        description="Compare two runs (a run and its replay, two models, a prompt before and "
        "after a change); for two scopes, their runs paired in order. Exit status: 0 when "
        "they asked and answered the same, 1 when they differ, 2 on trouble.",
    )
    diff.add_argument("run_a", metavar="RUN_A", help="run id or a unique prefix")
    diff.add_argument("run_b", metavar="RUN_B", help="run id or a unique prefix")
    diff.add_argument("--json", action="store_true", help="the comparison as one JSON document")
    diff.set_defaults(command=_diff, failure_status=2)  # as diff(1): 1 means "they differ"

    trace = commands.add_parser("trace", help="ask Jaeger whether a run's trace arrived")
    trace.add_argument("run", help="run id or a unique prefix")
    trace.add_argument("--jaeger", help="Jaeger URL (default: $SYNTHORA_JAEGER_URL or :16686)")
    trace.set_defaults(command=_trace)

    replay = commands.add_parser("replay", help="re-emit a run: its text at the recorded pace")
    replay.add_argument("run", help="run id or a unique prefix")
    replay.add_argument("--speed", type=float, default=1.0, help="pace factor (0: at once)")
    replay.set_defaults(command=_replay)


def _add_keeping_commands(commands: _Commands) -> None:
    """The commands that move, keep and serve the log: export, import, prune, ui, and the rest."""
    export = commands.add_parser("export", help="runs as JSON Lines (oldest first)")
    export.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="only these runs, a scope with the runs inside it (default: all)",
    )
    export.add_argument("-o", "--output", help="write to this file instead of stdout")
    export.set_defaults(command=_export)

    load = commands.add_parser("import", help="store the runs of a JSON Lines export")
    load.add_argument("file", help="an export file, or - for stdin")
    load.set_defaults(command=_import)

    prune = commands.add_parser("prune", help="delete the runs started before a date")
    prune.add_argument("--before", type=_timestamp, required=True, help="ISO date or time")
    prune.set_defaults(command=_prune)

    ui = commands.add_parser("ui", help="browse the stored runs in a local web viewer")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    ui.add_argument("--port", type=int, default=8765, help="port to listen on (default: 8765)")
    ui.add_argument("--jaeger", help="Jaeger UI URL for trace links")
    ui.set_defaults(command=_ui)

    demo = commands.add_parser("demo", help="a small agent conversation, replayed offline")
    demo.set_defaults(command=_demo)

    migrate = commands.add_parser("migrate", help="create or upgrade the event log's schema")
    migrate.set_defaults(command=_migrate)

    doctor = commands.add_parser("doctor", help="is the viewing stack up and wired?")
    doctor.add_argument("--jaeger", help="Jaeger URL (default: $SYNTHORA_JAEGER_URL or :16686)")
    doctor.add_argument(
        "--grafana", default=os.environ.get("SYNTHORA_GRAFANA_URL", "http://localhost:3000")
    )
    doctor.set_defaults(command=_doctor)


def _timestamp(text: str) -> datetime.datetime:
    from synthora.storage.log import parse_time  # noqa: PLC0415

    try:
        return parse_time(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _open_log(args: argparse.Namespace, *, create: bool = False) -> EventLog:
    """The log at ``--db``; a SQLite file that does not exist is an error unless `create`."""
    from sqlalchemy import make_url  # noqa: PLC0415
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    from synthora.storage import DEFAULT_URL, EventLog  # noqa: PLC0415 - the CLI wires it up

    url = args.db or os.environ.get("SYNTHORA_DB") or DEFAULT_URL
    try:
        parsed = make_url(url)
    except ArgumentError:
        parsed = None
    if not create and parsed is not None and parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not Path(database).exists():
            raise _Failure(f"no event log at {database} (give --db, or set SYNTHORA_DB)")
    return EventLog(url)


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
                s.run_id[:SHORT_ID],
                s.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                s.status,
                s.operation,
                s.model or "-",
                "-" if s.duration_s is None else f"{s.duration_s:.2f}s",
                f"{s.input_tokens or 0}/{s.output_tokens or 0}",
                _ending(s.error_type or s.finish_reason or "", s.attempts),
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


def _ending(end: str, attempts: int | None) -> str:
    """How a run ended, and after how many attempts when the SDK retried."""
    return f"{end} ({attempts} attempts)" if attempts and attempts > 1 else end


def _show(args: argparse.Namespace, out: TextIO) -> int:
    from synthora.telemetry.jaeger import DEFAULT_JAEGER_URL, trace_link  # noqa: PLC0415

    with _open_log(args) as log:
        transcript = log.transcript(args.run)
        steps = log.scope_transcripts(transcript.run.run_id)
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
        out.writelines(line + "\n" for line in _message_lines(message))
    if transcript.prompt is not None:
        out.write(f"[prompt] {transcript.prompt}\n")
    if transcript.output is not None:
        out.writelines(line + "\n" for line in _message_lines(transcript.output))
    out.write("\n")
    if transcript.usage is not None:
        out.write(f"usage    {_usage_text(transcript.usage)}, {transcript.tokens} chunks\n")
    if transcript.failed_attempts:
        failures = ", ".join(
            f"HTTP {a.status_code}" if a.status_code else a.error_type
            for a in transcript.failed_attempts
        )
        out.write(f"attempts {run.attempts}, failed: {failures}\n")
    if transcript.error is not None:
        error = transcript.error
        status = f" (HTTP {error.status_code})" if error.status_code else ""
        out.write(f"error    {error.error_type}{status} during {error.stage}: {error.message}\n")
    if run.trace_id:
        link = trace_link(args.jaeger or DEFAULT_JAEGER_URL, run.trace_id)
        out.write(f"trace    {run.trace_id}  {link}\n")
    elif transcript.trace_sampled is False:
        out.write(f"trace    {NOT_SAMPLED}\n")
    if steps:
        out.write(f"\n{len(steps)} runs inside this {run.operation}, in order:\n")
    for step in steps:
        summary = step.run
        out.write(f"\n-- {summary.run_id[:SHORT_ID]}  {summary.operation} {summary.node_path}")
        out.write(f"  ({summary.status})\n")
        if step.messages:
            out.write(f"   [{step.messages[-1].role.value}] {step.messages[-1].text}\n")
        if step.output is not None:
            calls = ", ".join(call.name for call in step.output.tool_calls)
            out.write(f"   [{step.output.role.value}] {step.output.text or '-> ' + calls}\n")
        if step.error is not None:
            out.write(f"   error {step.error.error_type}: {step.error.message}\n")
    return 0


def _message_lines(message: BaseMessage) -> list[str]:
    """A message as a transcript prints it: its role and text, then one line per tool call."""
    return [
        f"[{message.role.value}] {message.text}",
        *(f"  -> tool call {_tool_call_text(call)}" for call in message.tool_calls),
    ]


def _tool_call_text(call: ToolCall) -> str:
    return f"{call.name}({call.arguments})  id={call.id}"


def _usage_text(usage: Usage) -> str:
    text = f"{usage.input_tokens} in, {usage.output_tokens} out"
    if usage.cache_read_input_tokens:
        text += f" ({usage.cache_read_input_tokens} in read from cache)"
    return text


_CELL = 60
"""The widest value a diff shows in a side-by-side row; a longer one gets a row of its own."""
_ASPECT_LABELS = {
    "duration_s": "duration",
    "time_to_first_token_s": "first token",
    "children": "runs inside",
}


def _diff(args: argparse.Namespace, out: TextIO) -> int:
    with _open_log(args) as log:
        diff = log.diff(args.run_a, args.run_b)
    if args.json:
        import msgspec  # noqa: PLC0415

        out.write(msgspec.json.encode(diff).decode() + "\n")
    else:
        runs = [
            (
                side,
                s.run_id,
                s.status,
                f"{s.started_at:%Y-%m-%d %H:%M:%S.%f}"[:-3],
                s.backend,
                s.node_path,
            )
            for side, s in (("A", diff.a), ("B", diff.b))
        ]
        _table(out, ("", "RUN", "STATUS", "STARTED (UTC)", "BACKEND", "NODE"), runs)
        _write_run_diff(out, diff)
        out.write("\nRun ids, start times, backends, nodes, usage and timings are shown, ")
        out.write("never counted as differences.\n")
        verdict = ", ".join(_aspect_label(name) for name in diff.differences)
        out.write(f"A and B differ in: {verdict}\n" if verdict else "A and B are the same.\n")
    return 1 if diff.differs else 0


def _write_run_diff(out: TextIO, diff: RunDiff, number: str = "") -> None:
    """One line for the aspects two runs share; those that differ side by side, or as a unified
    diff when they span lines; the measurements, differences starred; then a scope's runs."""
    from synthora.storage.diff import MEASURED, OUTCOME, REQUEST  # noqa: PLC0415

    aspects = [(name, diff.aspect(name)) for name in REQUEST + OUTCOME]
    shared = [
        _aspect_label(name)
        for name, sides in aspects
        if not sides.differs and not _is_empty(sides.a)
    ]
    out.write(f"\nthe same  {', '.join(shared) or '-'}\n")
    if diff.differences:
        out.write(f"differ    {', '.join(_aspect_label(n) for n in diff.differences)}\n")
    short: list[tuple[str, str, str]] = []
    long: list[str] = []
    for name, sides in aspects:
        if not sides.differs:
            continue
        label = _aspect_label(name)
        a, b = _aspect_lines(name, sides.a), _aspect_lines(name, sides.b)
        if len(a) > 1 or len(b) > 1:
            lines = list(difflib.unified_diff(a, b, f"A {label}", f"B {label}", lineterm=""))
            long += lines or [f"{label}: the same text; they differ in content parts or names"]
            long.append("")
            continue
        (a_line,), (b_line,) = a or ['""'], b or ['""']
        if len(a_line) <= _CELL and len(b_line) <= _CELL:
            short.append((label, a_line, b_line))
        else:
            long += [label, f"  A  {a_line}", f"  B  {b_line}", ""]
    if short:
        out.write("\n")
        _table(out, ("", "A", "B"), short)
    out.write("\n")
    out.writelines(line + "\n" for line in long)
    measured = [
        (
            "*" if sides.differs else "",
            _aspect_label(name),
            " ".join(_aspect_lines(name, sides.a)),
            " ".join(_aspect_lines(name, sides.b)),
        )
        for name in MEASURED
        for sides in (diff.aspect(name),)
    ]
    _table(out, ("", "MEASURED", "A", "B"), measured)
    _write_scope_pairs(out, diff, number)


def _write_scope_pairs(out: TextIO, diff: RunDiff, number: str) -> None:
    """Two scopes' runs: a pair that is the same in one line, one that differs in full."""
    pairs, unpaired = diff.children, (("A", diff.only_in_a), ("B", diff.only_in_b))
    if not pairs and not diff.only_in_a and not diff.only_in_b:
        return
    counts = [f"{len(pairs)} paired in the order they started"]
    counts += [f"{len(runs)} only in {side}" for side, runs in unpaired if runs]
    out.write(f"\nruns inside: {', '.join(counts)}\n")
    for position, child in enumerate(pairs, start=1):
        label = f"{number}.{position}" if number else str(position)
        out.write(
            f"\n== {label}  {child.a.operation} {child.a.node_path}  "
            f"A {child.a.run_id[:SHORT_ID]}  B {child.b.run_id[:SHORT_ID]}"
        )
        out.write("\n" if child.differs else "  the same\n")
        if child.differs:
            _write_run_diff(out, child, label)
    for side, runs in unpaired:
        for summary in runs:
            out.write(
                f"\nonly in {side}: {summary.run_id[:SHORT_ID]}  {summary.operation} "
                f"{summary.node_path}  ({summary.status})\n"
            )


def _aspect_label(name: str) -> str:
    return _ASPECT_LABELS.get(name, name.replace("_", " "))


def _is_empty(value: object) -> bool:
    return value is None or value in ("", (), [], {})


def _aspect_lines(name: str, value: Any) -> list[str]:
    """An aspect's value as lines: texts line by line, structures as JSON (indented if long)."""
    if value is None:
        return ["-"]
    match name:
        case "messages":
            text = "\n".join(line for message in value for line in _message_lines(message))
        case "tool_calls":
            text = "\n".join(_tool_call_text(call) for call in value)
        case "output" | "prompt":
            text = value if isinstance(value, str) else "\n".join(value)
        case "params" | "tools":
            text = json.dumps(value, sort_keys=True, default=str)
            if len(text) > _CELL:
                text = json.dumps(value, sort_keys=True, default=str, indent=2)
        case "usage":
            text = _usage_text(value)
        case "duration_s" | "time_to_first_token_s":
            text = f"{value:.3f}s"
        case _:
            text = str(value)
    return text.splitlines()


def _trace(args: argparse.Namespace, out: TextIO) -> int:
    from synthora.telemetry.jaeger import DEFAULT_JAEGER_URL, find_trace  # noqa: PLC0415

    with _open_log(args) as log:
        transcript = log.transcript(args.run)
    run, sampled = transcript.run, transcript.trace_sampled
    if not run.trace_id:
        if sampled is False:
            raise _Failure(f"run {run.run_id} was {NOT_SAMPLED}")
        raise _Failure(f"run {run.run_id} was not traced (enable synthora.telemetry)")
    jaeger = args.jaeger or DEFAULT_JAEGER_URL
    found = find_trace(jaeger, run.trace_id)
    if found is None:
        # A log written before sampling was recorded may hold ids of traces never exported.
        why = "yet" if sampled else "yet, or it was not sampled"
        out.write(
            f"trace {run.trace_id} of run {run.run_id} is not in Jaeger at {jaeger} ({why})\n"
        )
        return 1
    out.write(
        f"trace {found.trace_id}: {len(found.span_names)} spans from {', '.join(found.services)}\n"
    )
    out.write(f"{found.link}\n")
    return 0


def _replay(args: argparse.Namespace, out: TextIO) -> int:
    from synthora.bus import on_token  # noqa: PLC0415

    _trace_to_collector()

    def show(sender: object, /, *, event: Any, **_: Any) -> None:
        out.write(event.text)
        out.flush()

    with _open_log(args) as log:
        run = log.run(args.run)
        out.write(f"replaying {run.run_id} ({run.operation} {run.model}, {run.status})\n")
        on_token.connect(show, weak=False)
        try:
            log.replay(run.run_id, speed=args.speed or None)
        finally:
            on_token.disconnect(show)
    out.write(f"\n-- {run.status}, {run.finish_reason or run.error_type or ''}\n")
    return 0


def _export(args: argparse.Namespace, out: TextIO) -> int:
    from synthora.storage.transfer import export_runs, replacing  # noqa: PLC0415

    with _open_log(args) as log:
        # a scope comes with the runs inside it: the whole conversation, replayable in a test
        chosen = [s.run_id for run in args.runs for s in log.conversation(run)]
        run_ids = list(dict.fromkeys(chosen)) or None
        if args.output is None:
            export_runs(log, out, run_ids)
            return 0
        with replacing(Path(args.output)) as target:
            total = len(run_ids) if run_ids else sum(1 for _ in log.runs())
            count = export_runs(log, target, run_ids, _progress("exported", total))
    print(f"\rexported {count} runs to {args.output}", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace, out: TextIO) -> int:
    from synthora.storage.transfer import import_events, read_events  # noqa: PLC0415

    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(args.file, "rb") as source:
            data = source.read()
    events = read_events(data.splitlines())  # every line checked before the database is touched
    with _open_log(args, create=True) as log:
        report = import_events(log, events, lambda done, total: _progress("imported", total)(done))
    again = (
        f" ({report.already_stored} already stored as they are)" if report.already_stored else ""
    )
    out.write(f"imported {_runs_count(report.imported)} into {_shown(log)}{again}\n")
    if not report.refused:
        return 0
    reasons = "; ".join(
        f"{refusal.reason} ({_runs_count(refusal.runs)}; first at line {refusal.first_line}: "
        f"{refusal.detail})"
        for refusal in report.refused
    )
    refused = sum(refusal.runs for refusal in report.refused)
    raise _Failure(
        f"{_runs_count(refused)} not imported (stored runs left as they were): {reasons}"
    )


def _shown(log: EventLog) -> str:
    """The log's URL as output may show it: without its password."""
    from synthora.storage.engines import safe_url  # noqa: PLC0415

    return safe_url(log.url)


def _runs_count(count: int) -> str:
    return f"{count} run" if count == 1 else f"{count} runs"


def _prune(args: argparse.Namespace, out: TextIO) -> int:
    with _open_log(args) as log:
        count = log.prune(args.before)
    out.write(f"deleted {count} runs started before {args.before.isoformat()}\n")
    return 0


def _ui(args: argparse.Namespace, out: TextIO) -> int:
    """Serve the viewer until Ctrl-C."""
    try:
        from synthora.ui import LOOPBACK_NAMES, bind, create_app, serve  # noqa: PLC0415
    except ImportError as error:
        raise _Failure(
            f"synthora ui needs the ui extra: pip install 'synthora[ui]' ({error})"
        ) from error
    from synthora.storage.engines import safe_url  # noqa: PLC0415
    from synthora.telemetry.jaeger import DEFAULT_JAEGER_URL  # noqa: PLC0415
    from synthora.ui.server import url_of  # noqa: PLC0415

    with _open_log(args) as log:
        listener = bind(args.host, args.port)
        loopback = ipaddress.ip_address(listener.getsockname()[0]).is_loopback
        # the copied commands name the database only when its URL holds no secret to show
        db_option = args.db if args.db and safe_url(args.db) == args.db else None
        app = create_app(
            log,
            jaeger_url=args.jaeger or DEFAULT_JAEGER_URL,
            db_option=db_option,
            hosts=LOOPBACK_NAMES if loopback else None,
        )
        if not loopback:
            print(
                f"synthora: the viewer has no login: whoever reaches {args.host} sees every run",
                file=sys.stderr,
            )
        out.write(f"viewing {safe_url(log.url)} at {url_of(listener)}/ (Ctrl-C stops)\n")
        out.flush()
        serve(app, listener)
    return 0


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    """The demo agent, offline: ReplayBackend over the shipped log, with everything on."""
    import tempfile  # noqa: PLC0415
    from importlib.resources import files  # noqa: PLC0415

    import synthora.telemetry  # noqa: PLC0415
    from synthora.demo import MODEL, PLANNER, PrintStream, converse  # noqa: PLC0415
    from synthora.storage import EventLog, ReplayBackend  # noqa: PLC0415
    from synthora.storage.transfer import import_runs  # noqa: PLC0415

    _trace_to_console_or_collector()
    recording = files("synthora").joinpath("demo.jsonl").read_bytes()
    with (
        tempfile.TemporaryDirectory() as folder,
        EventLog(f"sqlite:///{folder}/demo-recording.db") as recorded,
    ):
        import_runs(recorded, recording.splitlines())
        out.write("Replaying a conversation recorded against Synthora's local test server\n")
        out.write("(no network, no API key); its runs are stored in the event log below.\n")
        out.flush()
        with _open_log(args, create=True) as log:
            log.attach()
            backend = ReplayBackend(
                recorded,
                model_type=MODEL,
                source=PLANNER,
                name="ChatBackend",
                handlers=[PrintStream()],
            )
            converse(backend)
            log.flush()
            url, shown = log.url, _shown(log)
    synthora.telemetry.uninstrument()
    out.write(f"\nStored in {shown}; `synthora runs`:\n\n")
    out.flush()
    return _runs(_parser().parse_args(["--db", url, "runs", "--limit", "5"]), out)


def _migrate(args: argparse.Namespace, out: TextIO) -> int:
    from synthora.storage.schema import SCHEMA_REVISION  # noqa: PLC0415

    with _open_log(args, create=True) as log:  # opening a log migrates it
        out.write(f"{_shown(log)} is at schema revision {SCHEMA_REVISION}\n")
    return 0


def _doctor(args: argparse.Namespace, out: TextIO) -> int:
    """Check each part of the stack; one line each, exit 1 if any is not right."""
    from synthora.telemetry.jaeger import DEFAULT_JAEGER_URL  # noqa: PLC0415

    checks = [
        _check_log(args),
        _check_jaeger(args.jaeger or DEFAULT_JAEGER_URL),
        _check_grafana(args.grafana.rstrip("/")),
    ]
    for ok, line in checks:
        out.write(f"{'ok' if ok else 'NO'}  {line}\n")
    return 0 if all(ok for ok, _ in checks) else 1


def _check_log(args: argparse.Namespace) -> tuple[bool, str]:
    from synthora.storage.schema import SCHEMA_REVISION  # noqa: PLC0415

    try:
        with _open_log(args, create=True) as log:
            log.flush(timeout=30)  # opening a log stores what earlier processes left
            health = log.health()
            stored = "runs stored" if any(True for _ in log.runs(limit=1)) else "no runs yet"
    except SynthoraError as error:
        return False, f"event log: {error}"
    line = f"event log {_shown(log)}: schema {SCHEMA_REVISION}, {stored}"
    if health.stored:
        line += (
            f", stored {health.stored} events that earlier processes left (spooled or journaled)"
        )
    if health.spooled:
        return False, f"{line}; {health.spooled} events still wait in {health.spool}"
    return True, line


def _check_jaeger(jaeger: str) -> tuple[bool, str]:
    from synthora.runs import service_name  # noqa: PLC0415

    service = service_name()
    try:
        services = _get_json(f"{jaeger.rstrip('/')}/api/v3/services").get("services") or []
    except OSError as error:
        return False, f"Jaeger {jaeger}: not reachable ({error})"
    seen = f"receiving from {service}" if service in services else f"no spans from {service} yet"
    return True, f"Jaeger {jaeger}: up, {len(services)} services, {seen}"


def _check_grafana(grafana: str) -> tuple[bool, str]:
    try:
        health = _get_json(f"{grafana}/api/health")
        found = _get_json(f"{grafana}/api/search?query=Synthora", auth=_grafana_auth())
    except OSError as error:
        return False, f"Grafana {grafana}: not reachable ({error})"
    listed = found if isinstance(found, list) else []
    provisioned = any(item.get("uid") == "synthora-runs" for item in listed)
    state = "dashboard provisioned" if provisioned else "the Synthora dashboard is missing"
    return provisioned, f"Grafana {grafana}: database {health.get('database', '?')}, {state}"


def _grafana_auth() -> tuple[str, str]:
    return (
        os.environ.get("GRAFANA_ADMIN_USER", "admin"),
        os.environ.get("GRAFANA_ADMIN_PASSWORD", "synthora"),
    )


def _get_json(url: str, auth: tuple[str, str] | None = None) -> Any:
    """GET a JSON document; any failure (refused, HTTP error, not JSON) is an OSError."""
    import base64  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        try:
            return json.loads(response.read())
        except ValueError as error:
            raise OSError(f"{url} did not answer JSON") from error


def _trace_to_collector() -> bool:
    """Trace over OTLP when a collector is set (``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
    import synthora.telemetry  # noqa: PLC0415

    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    synthora.telemetry.configure()
    return True


def _trace_to_console_or_collector() -> None:
    """OTLP when a collector is set; otherwise one line per span on stderr."""
    import synthora.telemetry  # noqa: PLC0415

    if _trace_to_collector():
        return
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    def one_line(span: ReadableSpan) -> str:
        context = span.get_span_context()
        trace_id = format(context.trace_id, "032x") if context else "?"
        return f"  [span] {span.name}  trace {trace_id}\n"

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(
        SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr, formatter=one_line))
    )
    synthora.telemetry.instrument(provider)


def _progress(verb: str, total: int) -> Callable[[int], None]:
    """A one-line progress counter on stderr, for operations over many runs; the line is
    ended when the count is, so what is printed next starts a line of its own."""

    def report(done: int) -> None:
        if total >= 20 and (done % max(1, total // 100) == 0 or done == total):
            end = "\n" if done == total else ""
            print(f"\r{verb} {done}/{total} runs", end=end, file=sys.stderr, flush=True)

    return report


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
