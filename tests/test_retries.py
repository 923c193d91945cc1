"""Retries are visible: the SDK's own retries counted per run, in events, the log and spans.

The SDK over real HTTP retries as it always does (its backoff, Retry-After, the statuses it
retries); each run then says how many requests it sent and how each failed one failed.
"""

from __future__ import annotations

import asyncio
import io
import socket

import openai
import pytest
from sqlalchemy import create_engine, insert
from test_telemetry import STATUS_ERROR, Tracing, receiver  # noqa: F401 - a fixture

from support import AGENT, API_KEY
from synthora import OpenAIChatBackend
from synthora.cli import main
from synthora.events import EndEvent, ErrorEvent
from synthora.models import AnthropicBackend
from synthora.storage import EventLog
from synthora.storage.codec import batch_rows
from synthora.storage.migrate import upgrade
from synthora.storage.schema import events as events_table
from synthora.storage.schema import runs as runs_table
from synthora.telemetry import CaptureMode
from synthora.testing import capture_events
from synthora.testing.server import Behaviour

QUICKLY = 0.001  # the Retry-After the test server sends, so retries do not wait the backoff

STREAM = [pytest.param(False, id="whole"), pytest.param(True, id="streamed")]
TWIN = [pytest.param(False, id="sync"), pytest.param(True, id="async")]


async def run_once(backend, is_async: bool, text: str = "retry me"):
    """`run` or `async_run`, the stream (if any) read to its end."""
    if is_async:
        reply = await backend.async_run(text)
        return [chunk async for chunk in reply] if backend.stream else reply
    reply = backend.run(text)
    return list(reply) if backend.stream else reply


def closing(events) -> EndEvent | ErrorEvent:
    (event,) = [e for e in events if isinstance(e, EndEvent | ErrorEvent)]
    return event


@pytest.mark.parametrize("is_async", TWIN)
@pytest.mark.parametrize("stream", STREAM)
async def test_a_run_that_recovers_counts_its_attempts(
    log, make_backend, server, model, stream, is_async
):
    """Two 503s then an answer, with max_retries=2: the reply comes, and the run says it took
    three requests, the first two failing with 503, in its end event and its stored summary."""
    backend = make_backend(
        behaviour=Behaviour(fail_first=2, status=503, retry_after_s=QUICKLY),
        max_retries=2,
        stream=stream,
    )
    with capture_events() as events:
        await run_once(backend, is_async)
    await backend.async_client.close()
    end = closing(events)
    assert isinstance(end, EndEvent)
    assert end.finish_reason == "stop"
    assert end.attempts == 3
    assert [(a.status_code, a.error_type) for a in end.failed_attempts] == [(503, "503")] * 2
    sent = [r for r in server.requests if r.body.get("model") == model]
    retry_counts = [r.headers["x-stainless-retry-count"] for r in sent]
    assert retry_counts == ["0", "1", "2"], "the SDK retries exactly as it would on its own"
    log.flush()
    assert list(log.events(end.run_id)) == events
    (summary,) = log.runs()
    assert (summary.status, summary.attempts) == ("ok", 3)


@pytest.mark.parametrize("is_async", TWIN)
@pytest.mark.parametrize("stream", STREAM)
async def test_a_run_whose_every_attempt_fails(log, make_backend, model, stream, is_async):
    """A server that keeps failing: the error event counts max_retries + 1 attempts, each one
    listed, and the stored run says so."""
    backend = make_backend(
        behaviour=Behaviour(status=429, retry_after_s=QUICKLY), max_retries=2, stream=stream
    )
    with capture_events() as events, pytest.raises(openai.RateLimitError):
        await run_once(backend, is_async)
    await backend.async_client.close()
    error = closing(events)
    assert isinstance(error, ErrorEvent)
    assert (error.error_type, error.status_code, error.attempts) == ("RateLimitError", 429, 3)
    assert [a.status_code for a in error.failed_attempts] == [429, 429, 429]
    (summary,) = log.runs()
    assert (summary.status, summary.attempts, summary.status_code) == ("error", 3, 429)


def test_what_the_sdk_does_not_retry_is_one_attempt(make_backend, events):
    """A clean run is one attempt; a 400 is not retried by the SDK, so it is one failed one."""
    make_backend(max_retries=2).run("fine")
    assert (closing(events).attempts, closing(events).failed_attempts) == (1, ())
    events.clear()
    refused = make_backend(behaviour=Behaviour(status=400), max_retries=2)
    with pytest.raises(openai.BadRequestError):
        refused.run("bad")
    assert closing(events).attempts == 1
    assert [a.error_type for a in closing(events).failed_attempts] == ["400"]


def test_connection_failures_are_counted(events):
    """No server at all: each attempt fails in the transport, named by its exception."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAIChatBackend.default(
        "nobody", AGENT, api_key=API_KEY, base_url=f"http://127.0.0.1:{port}/v1", max_retries=1
    )
    with pytest.raises(openai.APIConnectionError):
        backend.run("anyone?")
    backend.client.close()
    error = closing(events)
    assert error.attempts == 2
    assert [(a.error_type, a.status_code) for a in error.failed_attempts] == [
        ("ConnectError", None),
        ("ConnectError", None),
    ]


def test_the_users_client_is_left_as_it_was(server, model):
    """A backend built on the user's own clients counts through copies: the clients the user
    holds, and so their other calls, are not changed."""
    client = openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=2)
    async_client = openai.AsyncOpenAI(api_key=API_KEY, base_url=server.base_url)
    before = dict(vars(client)), dict(vars(async_client))
    backend = OpenAIChatBackend(model_type=model, client=client, async_client=async_client)
    server.behave(model, Behaviour(fail_first=1, retry_after_s=QUICKLY))
    with capture_events() as events:
        backend.run("through the backend")
    assert closing(events).attempts == 2
    assert (dict(vars(client)), dict(vars(async_client))) == before
    client.close()


def test_an_error_before_sending_is_no_attempt(server, model, events):
    """The anthropic SDK builds each attempt's request inside its middleware chain: an error
    doing that (a header that is not text) sent nothing, so no attempt failed."""
    backend = AnthropicBackend.default(
        model, AGENT, api_key=API_KEY, base_url=server.base_url.removesuffix("/v1")
    )
    with pytest.raises(AttributeError):
        backend.run("hi", extra_headers={"X-Count": 5})
    backend.client.close()
    assert [r for r in server.requests if r.body.get("model") == model] == []
    assert (closing(events).attempts, closing(events).failed_attempts) == (1, ())


@pytest.mark.parametrize("is_async", TWIN)
@pytest.mark.parametrize("stream", STREAM)
async def test_anthropic_retries_are_counted(server, model, stream, is_async):
    """The Messages wire counts its SDK's retries too, through the SDK's middleware."""
    server.behave(model, Behaviour(fail_first=2, status=529, retry_after_s=QUICKLY))
    backend = AnthropicBackend.default(
        model, AGENT, api_key=API_KEY, base_url=server.base_url.removesuffix("/v1"), stream=stream
    )
    with capture_events() as events:
        await run_once(backend, is_async)
    backend.client.close()
    await backend.async_client.close()
    end = closing(events)
    assert end.attempts == 3
    assert [a.status_code for a in end.failed_attempts] == [529, 529]


@pytest.mark.parametrize("stream", STREAM)
def test_failed_attempts_are_span_events(receiver, make_backend, stream):  # noqa: F811
    """Each failed attempt is an event on the run's span, with the HTTP conventions'
    attributes; when every attempt fails, the last one is there too, before the exception."""
    tracing = Tracing(receiver, CaptureMode.NO_CONTENT)
    try:
        flaky = Behaviour(fail_first=2, status=503, retry_after_s=QUICKLY)
        asyncio.run(run_once(make_backend(behaviour=flaky, max_retries=2, stream=stream), False))
        broken = Behaviour(status=500, retry_after_s=QUICKLY)
        with pytest.raises(openai.InternalServerError):
            make_backend(behaviour=broken, max_retries=1, stream=stream).run("never")
        recovered, failed = tracing.spans()
    finally:
        tracing.close()
    first = {"error.type": "503", "http.response.status_code": 503}
    assert recovered.events == [
        ("synthora.attempt.failed", first),
        ("synthora.attempt.failed", {**first, "http.request.resend_count": 1}),
    ]
    assert recovered.status_code != STATUS_ERROR
    assert [name for name, _ in failed.events] == ["synthora.attempt.failed"] * 2 + ["exception"]
    statuses = [attributes.get("http.response.status_code") for _, attributes in failed.events]
    assert statuses == [500, 500, None]
    assert failed.status_code == STATUS_ERROR


def test_the_command_line_shows_attempts(make_backend, tmp_path):
    """`synthora runs` and `synthora show` say a run took several attempts, and which failed."""
    url = f"sqlite:///{tmp_path / 'retries.db'}"
    flaky = Behaviour(fail_first=2, status=503, retry_after_s=QUICKLY)
    with EventLog(url) as log:
        log.attach()
        make_backend(behaviour=flaky, max_retries=2).run("retried")
        (summary,) = log.runs()
    assert "stop (3 attempts)" in cli("--db", url, "runs")
    assert "attempts 3, failed: HTTP 503, HTTP 503" in cli("--db", url, "show", summary.run_id)


def cli(*argv: str) -> str:
    out = io.StringIO()
    assert main(list(argv), out=out) == 0
    return out.getvalue()


def test_runs_stored_before_attempts_were_counted(log_url):
    """A log an older Synthora wrote (schema 0001, end events without attempts) is upgraded
    when opened: its runs, and their events, read as sent once."""
    end = EndEvent(run_id="old-run", seq=1, ts=2_000_000_000, node=AGENT, finish_reason="stop")
    rows = batch_rows([end])
    ((event_row,), (run_row,)) = rows.events, rows.ended
    old_body = {k: v for k, v in end.to_dict().items() if k not in ("attempts", "failed_attempts")}
    engine = create_engine(log_url)
    upgrade(engine, to="0001")
    with engine.begin() as connection:
        connection.execute(insert(events_table), [{**event_row, "body": old_body}])
        del run_row["attempts"]
        connection.execute(insert(runs_table), [run_row])
    engine.dispose()
    with EventLog(log_url) as log:
        (summary,) = log.runs()
        assert list(log.events("old-run")) == [end]
    assert (summary.status, summary.attempts) == ("ok", 1)
    assert (end.attempts, end.failed_attempts) == (1, ())
