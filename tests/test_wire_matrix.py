"""One behaviour matrix for every wire: {sync, async} x {whole, streamed} x {answered, server
error, broken stream, abandoned stream}, for the chat, completion, Responses and Messages wires,
ReplayBackend (serving offline what a live run met) and a user's own backend. Each must give the
caller the same shape of outcome and the bus the same run: start, tokens, then exactly one end
or error."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
from test_custom_backend import EchoBackend, Unavailable

from support import AGENT, API_KEY
from synthora import OpenAIChatBackend, OpenAICompletionBackend
from synthora.events import EndEvent, ErrorEvent, TokenEvent
from synthora.models import AnthropicBackend, BaseModelBackend, OpenAIResponsesBackend
from synthora.storage import EventLog, ReplayBackend
from synthora.testing.server import Behaviour


@dataclass(frozen=True)
class Wire:
    """How to build one wire's backend and make each outcome happen on it."""

    build: Callable[[Any, str, bool, str], BaseModelBackend]
    server_error: type[BaseException]
    broken: type[BaseException]
    served: bool = True  # False: a backend of our own; its prompt picks the outcome


def http_wire(cls: type[Any], sdk: Any, root: bool = False) -> Wire:
    def build(server: Any, model: str, stream: bool, prompt: str) -> BaseModelBackend:
        url = server.base_url.removesuffix("/v1") if root else server.base_url
        backend: BaseModelBackend = cls.default(
            model, AGENT, api_key=API_KEY, base_url=url, max_retries=0, stream=stream
        )
        return backend

    return Wire(build, sdk.InternalServerError, sdk.APIConnectionError)


def replaying(server: Any, model: str, stream: bool, prompt: str) -> BaseModelBackend:
    """A ReplayBackend over a log where a live chat run met the same outcome, offline now."""
    log = EventLog(f"sqlite:///{tempfile.mkdtemp()}/recorded.db").attach()
    live = http_wire(OpenAIChatBackend, openai).build(server, model, stream, prompt)
    with contextlib.suppress(openai.APIError):
        reply = live.run(prompt)
        if stream:
            list(reply)
    log.detach()
    return ReplayBackend(log, stream=stream)


WIRES = [
    pytest.param(http_wire(OpenAIChatBackend, openai), id="chat"),
    pytest.param(http_wire(OpenAICompletionBackend, openai), id="completion"),
    pytest.param(http_wire(OpenAIResponsesBackend, openai), id="responses"),
    pytest.param(http_wire(AnthropicBackend, anthropic, root=True), id="messages"),
    pytest.param(
        Wire(replaying, openai.InternalServerError, openai.APIConnectionError), id="replay"
    ),
    pytest.param(
        Wire(
            lambda server, model, stream, prompt: EchoBackend(
                model_type="echo", source=AGENT, stream=stream
            ),
            Unavailable,
            Unavailable,
            served=False,
        ),
        id="own-backend",
    ),
]
OUTCOMES = {
    "answered": (Behaviour(n_tokens=6), "w0 w1 w2 w3 w4 w5"),
    "server-error": (Behaviour(status=500), "please fail"),
    "broken": (Behaviour(n_tokens=8, break_after=3), "one two break three"),
    "abandoned": (Behaviour(n_tokens=50), "a b c d e f g h i j"),
}


async def close_clients(backend: BaseModelBackend) -> None:
    """Release the SDK clients a wire built (the async ones need their own loop to close)."""
    client, async_client = getattr(backend, "client", None), getattr(backend, "async_client", None)
    if client is not None:
        client.close()
    if async_client is not None:
        await async_client.close()


async def outcome(backend: BaseModelBackend, prompt: str, kind: str, use_async: bool) -> str:
    """Run once as a caller would; returns the text read (or raises what the run raised)."""
    result = await backend.async_run(prompt) if use_async else backend.run(prompt)
    if not backend.stream:
        return str(result.text)
    if kind == "abandoned":
        if use_async:
            first = await anext(result)
            await result.aclose()
        else:
            first = next(result)
            result.close()
        return str(first.delta)
    if use_async:
        return "".join([chunk.delta async for chunk in result])
    return "".join(chunk.delta for chunk in result)


CASES = [
    pytest.param(stream, kind, id=f"{'streamed' if stream else 'whole'}-{kind}")
    for stream in (False, True)
    for kind in OUTCOMES
    if stream or kind in ("answered", "server-error")  # a whole reply cannot break or be left
]


@pytest.mark.parametrize(("stream", "kind"), CASES)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("wire", WIRES)
async def test_every_wire_behaves_alike(server, model, events, wire, use_async, stream, kind):
    """The same outcome on every wire, and a run of start, tokens, one closing event."""
    behaviour, prompt = OUTCOMES[kind]
    if wire.served:
        server.behave(model, behaviour)
    backend = wire.build(server, model, stream, prompt)
    events.clear()  # what building heard (a replay's recording) is not this run
    try:
        if kind in ("server-error", "broken"):
            with pytest.raises(wire.server_error if kind == "server-error" else wire.broken):
                await outcome(backend, prompt, kind, use_async)
        else:
            assert await outcome(backend, prompt, kind, use_async)
    finally:
        await close_clients(backend)
    start, *tokens, closing = events
    assert start.kind == "start"
    assert all(isinstance(t, TokenEvent) for t in tokens)
    assert [e.seq for e in events] == list(range(len(events)))
    match kind:
        case "answered":
            assert isinstance(closing, EndEvent)
            assert closing.finish_reason == "stop"
            assert closing.output is not None
            assert (
                "".join(t.text for t in tokens if isinstance(t, TokenEvent)) == closing.output.text
            )
        case "server-error":  # an HTTP status raises from run(); a generator, when read
            assert isinstance(closing, ErrorEvent)
            stage = "stream" if stream and not wire.served else "request"
            assert (closing.stage, tokens) == (stage, [])
        case "broken":
            assert isinstance(closing, ErrorEvent)
            assert (closing.stage, len(tokens)) == ("stream", 2 if not wire.served else 3)
        case "abandoned":
            assert isinstance(closing, EndEvent)
            assert (closing.finish_reason, len(tokens)) == ("interrupted", 1)
