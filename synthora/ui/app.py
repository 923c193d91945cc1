"""The viewer's pages: the runs of an event log, and one run, as an ASGI app (Starlette).

Pages are rendered on the server with Jinja2, every value escaped (model output is untrusted),
under a Content-Security-Policy that runs only the viewer's own script. ``/`` lists runs through
`EventLog.runs` with the filters of ``synthora runs``; ``/live`` streams the newest page again
(server-sent events) whenever the log's `EventLog.follow` sees a run start or end;
``/runs/<run_id>`` shows one run. Each response says its server time in ``Server-Timing``.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import jinja2
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synthora.storage import EventLog, RunNotFoundError, RunSummary, StorageError
from synthora.storage.engines import safe_url
from synthora.storage.log import RUN_STATUSES, parse_time
from synthora.telemetry.jaeger import DEFAULT_JAEGER_URL, trace_link
from synthora.ui.views import (
    Timeline,
    TimelineChart,
    as_json,
    commands,
    duration,
    pretty_json,
    structured_output,
    waterfall,
)

__all__ = ["LOOPBACK_NAMES", "create_app"]

PAGE_SIZE = 50
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
_KEEPALIVE_S = 10.0
"""A live page's stream sends its position this often when nothing happens, so proxies and
the browser keep it open, and a stream whose page has gone is noticed."""
_CLOSING_CHECK_S = 0.5
"""How soon a live stream notices that the viewer is closing (it must end before the server's
graceful shutdown runs out, or the server cuts it)."""
_LIVE_STREAMS = 8
"""Live streams each wait in a worker thread; they get their own few, so pages always answer."""

_DEEPEST_SCOPE = 64
"""How many enclosing scopes a run page names at most: a damaged log could link runs in a loop."""

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@dataclass(frozen=True, slots=True)
class RunFilters:
    """The filters of ``synthora runs``, read from a page's query string."""

    model: str | None = None
    node: str | None = None
    status: str | None = None
    since: datetime.datetime | None = None
    errors_only: bool = False

    @classmethod
    def of(cls, request: Request) -> RunFilters:
        query = request.query_params

        def given(name: str) -> str | None:
            return query.get(name, "").strip() or None

        status = given("status")
        if status is not None and status not in RUN_STATUSES:
            raise HTTPException(400, f"unknown status {status!r}: one of {', '.join(RUN_STATUSES)}")
        since_text = given("since")
        try:
            since = None if since_text is None else parse_time(since_text)
        except ValueError as error:
            raise HTTPException(400, str(error)) from error
        return cls(given("model"), given("node"), status, since, query.get("errors") == "1")

    def arguments(self) -> dict[str, Any]:
        """As `EventLog.runs` takes them."""
        return {
            "model": self.model,
            "node": self.node,
            "status": self.status,
            "since": self.since,
            "errors_only": self.errors_only,
        }

    def query(self) -> dict[str, str]:
        """As a query string takes them (what a link to the same listing carries)."""
        values = {
            "model": self.model,
            "node": self.node,
            "status": self.status,
            "since": None if self.since is None else self.since.isoformat(),
            "errors": "1" if self.errors_only else None,
        }
        return {name: value for name, value in values.items() if value is not None}


class LiveStreams:
    """The live pages' streams: each waits for the log in a worker thread of its own few (so
    pages always get a thread), and all of them end, threads included, when the viewer stops."""

    def __init__(self) -> None:
        self.threads = anyio.CapacityLimiter(_LIVE_STREAMS)
        self.closing = threading.Event()
        self._waiting = 0
        self._done = threading.Condition()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Count a thread waiting for the log, so `close` can wait for it."""
        with self._done:
            self._waiting += 1
        try:
            yield
        finally:
            with self._done:
                self._waiting -= 1
                self._done.notify_all()

    def close(self, timeout: float = 5.0) -> bool:
        """End every stream and wait until no thread reads the log for one (the log may be
        closed next); False if one still does after `timeout`."""
        self.closing.set()
        with self._done:
            return self._done.wait_for(lambda: self._waiting == 0, timeout)


class Viewer:
    """The app's state: the log it reads, and how it links out."""

    def __init__(
        self, log: EventLog, *, jaeger_url: str, db_option: str | None, page_size: int
    ) -> None:
        self.log = log
        self.page_size = page_size
        self.jaeger_url = jaeger_url
        self.db_option = db_option
        self.streams = LiveStreams()
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("synthora.ui", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["duration"] = duration
        self.templates.filters["pretty_json"] = pretty_json
        self.templates.filters["as_json"] = as_json
        self.templates.globals["database"] = safe_url(log.url)

    def render(self, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.templates.get_template(name).render(context), status_code)

    # -- the runs ------------------------------------------------------------------------------

    def runs_page(self, request: Request) -> Response:
        filters = RunFilters.of(request)
        before = request.query_params.get("before") or None
        head = self.log.head()  # before the listing: a run stored meanwhile reaches the page live
        size = self.page_size
        summaries = list(self.log.runs(**filters.arguments(), before=before, limit=size + 1))
        older = summaries[size - 1].run_id if len(summaries) > size else None
        return self.render(
            "runs.html",
            runs=summaries[:size],
            filters=filters,
            statuses=RUN_STATUSES,
            query=filters.query(),
            older=older,
            newest_page=before is None,
            head=head,
        )

    async def live(self, request: Request) -> Response:
        """The newest page's rows, again each time runs start or end (``event: runs``).

        Each message carries the log position it reached as its id, so a browser that
        reconnects (``Last-Event-ID``) goes on from there rather than from its page's `after`.
        """
        filters = RunFilters.of(request)
        try:
            after = int(request.headers.get("last-event-id") or request.query_params["after"])
        except (KeyError, ValueError) as error:
            raise HTTPException(400, "after= takes a log position, a whole number") from error

        async def changes() -> AsyncIterator[str]:
            position = after
            gone = threading.Event()  # the page went away: its waiting thread stops too
            try:
                while not self.streams.closing.is_set():
                    position, changed = await anyio.to_thread.run_sync(
                        self._next_change,
                        position,
                        gone,
                        limiter=self.streams.threads,
                        abandon_on_cancel=True,
                    )
                    if not changed:
                        yield f"id: {position}\n\n"  # a keep-alive: no event, only the position
                        continue
                    rows = await anyio.to_thread.run_sync(self._rows, filters)
                    data = "".join(f"data: {line}\n" for line in rows.splitlines())
                    yield f"event: runs\nid: {position}\n{data}\n"
            finally:
                gone.set()

        return StreamingResponse(
            changes(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    def _next_change(self, after: int, gone: threading.Event) -> tuple[int, bool]:
        """Wait for a run to start or end after `after`, then read on to the end of the log, so
        a burst of runs is one update; returns the position reached, and whether runs changed.

        It gives up after a keep-alive, or within `_CLOSING_CHECK_S` of the viewer closing or
        the page going away.
        """
        position = after
        deadline = time.monotonic() + _KEEPALIVE_S
        with self.streams.waiting():
            while not (self.streams.closing.is_set() or gone.is_set()):
                if time.monotonic() >= deadline:
                    break
                for found, event in self.log.follow(position, idle_timeout=_CLOSING_CHECK_S):
                    position = found
                    if event.kind != "token":
                        for found_later, _ in self.log.follow(position, idle_timeout=0):
                            position = found_later
                        return position, True
        return position, False

    def _rows(self, filters: RunFilters) -> str:
        summaries = self.log.runs(**filters.arguments(), limit=self.page_size)
        return self.templates.get_template("rows.html").render(runs=list(summaries))

    # -- one run -------------------------------------------------------------------------------

    def run_page(self, request: Request) -> Response:
        transcript = self.log.transcript(request.path_params["run_id"])
        run = transcript.run
        timeline = Timeline.of(self.log.events(run.run_id)) if transcript.tokens else None
        steps = self.log.descendants(run.run_id)
        output_text = transcript.output.text if transcript.output is not None else ""
        return self.render(
            "run.html",
            run=run,
            transcript=transcript,
            ancestors=list(self._ancestors(run)),
            structured=structured_output(transcript.params, output_text),
            timeline=timeline,
            chart=None if timeline is None else TimelineChart.of(timeline),
            steps=waterfall(run, steps) if steps else [],
            commands=commands(run.run_id, self.db_option),
            trace_link=trace_link(self.jaeger_url, run.trace_id) if run.trace_id else None,
        )

    def _ancestors(self, run: RunSummary) -> Iterator[RunSummary]:
        """The scopes a run sits in, outermost first."""
        chain: list[RunSummary] = []
        parent = run.parent_run_id
        while parent is not None and len(chain) < _DEEPEST_SCOPE:
            try:
                summary = self.log.run(parent)
            except RunNotFoundError:  # pruned, or its start never stored: the chain stops here
                break
            chain.append(summary)
            parent = summary.parent_run_id
        return reversed(chain)

    # -- failures ------------------------------------------------------------------------------

    def failure(self, request: Request, error: Exception) -> Response:
        if isinstance(error, HTTPException):
            status, message = error.status_code, str(error.detail)
        elif isinstance(error, RunNotFoundError):
            status, message = 404, str(error)
        else:
            status, message = 503, str(error)
        return self.render("failure.html", status, status=status, message=message)


def create_app(
    log: EventLog,
    *,
    jaeger_url: str = DEFAULT_JAEGER_URL,
    db_option: str | None = None,
    page_size: int = PAGE_SIZE,
    hosts: Collection[str] | None = LOOPBACK_NAMES,
) -> Starlette:
    """The viewer over `log`. `db_option` is the ``--db`` its copied commands should carry;
    leave it None when the database is the default one or its URL holds a password.

    `hosts` are the names a request may address the viewer by (None: any). Served on loopback,
    it answers only to loopback names, so a web page cannot read the runs through a DNS name
    it points at 127.0.0.1 (DNS rebinding).
    """
    viewer = Viewer(log, jaeger_url=jaeger_url, db_option=db_option, page_size=page_size)
    # follow_symlink: an editable install links the package's files from the source tree
    static = StaticFiles(packages=[("synthora.ui", "static")], follow_symlink=True)
    routes = [
        Route("/", viewer.runs_page),
        Route("/live", viewer.live),
        Route("/runs/{run_id}", viewer.run_page),
        Mount("/static", static, name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: viewer.failure,
            RunNotFoundError: viewer.failure,
            StorageError: viewer.failure,
        },
    )
    app.add_middleware(_Headers, hosts=None if hosts is None else frozenset(hosts))
    app.state.live = viewer.streams  # synthora.ui.server ends the streams when it stops
    return app


class _Headers:
    """Requests only for the viewer's own host names; security headers and the server time on
    every response."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        if self.hosts is not None:
            host = Headers(scope=scope).get("host", "")
            name = host if host.endswith("]") else host.rpartition(":")[0] or host
            if name not in self.hosts:
                refusal = PlainTextResponse(f"not a name of this viewer: {host!r}", 421)
                await refusal(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                spent = (time.perf_counter() - began) * 1000
                message["headers"] = [
                    *message.get("headers", []),
                    (b"content-security-policy", _CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"server-timing", f"app;dur={spent:.1f}".encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
