"""Bad input is refused before any request; odd config is carried faithfully; keys never leak."""

from __future__ import annotations

import datetime
import enum
import json
import math

import msgspec
import openai
import pydantic
import pytest
from test_custom_backend import EchoBackend
from test_telemetry import Tracing, receiver  # noqa: F401 - a fixture

from support import AGENT, API_KEY
from synthora import (
    ConfigurationError,
    InvalidRequestError,
    MessageTypeError,
    Node,
    NodeType,
    OpenAIChatBackend,
    OpenAICompletionBackend,
    event_from_dict,
    user,
)
from synthora.events import StartEvent
from synthora.models import AnthropicBackend, OpenAIEmbeddingBackend, OpenAIResponsesBackend
from synthora.storage import EventLog, ReplayBackend
from synthora.telemetry import CaptureMode
from synthora.testing import capture_events
from synthora.testing.server import Behaviour

HEADER_SECRET = "hdr-secret-7d1e4b9a-never-stored"


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        pytest.param([42], MessageTypeError, "message 0 is a int", id="wrong-type"),
        pytest.param(3.5, MessageTypeError, "got float", id="not-a-list"),
        pytest.param([], InvalidRequestError, "at least one message", id="empty-list"),
        pytest.param(
            [{"role": "wizard", "content": "hi"}],
            InvalidRequestError,
            "unknown message role",
            id="unknown-role",
        ),
    ],
)
def test_bad_messages_fail_before_any_request(make_backend, server, events, bad, error, match):
    """Bad messages raise a clear error naming the problem; nothing is sent or emitted."""
    backend = make_backend()
    sent = len(server.requests)
    with pytest.raises(error, match=match):
        backend.run(bad)
    assert len(server.requests) == sent
    assert events == []


TOOL_WITH_A_SET = {
    "type": "function",
    "function": {"name": "pick", "parameters": {"type": "string", "enum": {"a", "b"}}},
}


@pytest.mark.parametrize(
    ("cls", "config", "ask", "match"),
    [
        pytest.param(
            OpenAIChatBackend,
            {"temperature": math.nan},
            "hi",
            r"parameter 'temperature' is nan",
            id="nan-in-config",
        ),
        pytest.param(
            OpenAIResponsesBackend,
            {"top_p": math.inf},
            "hi",
            r"parameter 'top_p' is inf",
            id="infinity-in-config",
        ),
        pytest.param(
            OpenAIChatBackend,
            {"tools": [TOOL_WITH_A_SET]},
            "hi",
            r"parameter 'tools'\[0\]\['function'\]\['parameters'\]\['enum'\] is of type set",
            id="tool-schema-with-a-set",
        ),
        pytest.param(
            OpenAIChatBackend,
            {},
            [user("fine"), user("broken \ud800 text")],
            r"message 1 content has a lone surrogate '\\ud800' at index 7",
            id="surrogate-in-a-message",
        ),
        pytest.param(
            OpenAICompletionBackend,
            {},
            "a prompt \udfff",
            r"prompt has a lone surrogate",
            id="surrogate-in-a-prompt",
        ),
        pytest.param(
            OpenAIEmbeddingBackend,
            {},
            ["ok", "not \udc00 ok"],
            r"prompt\[1\] has a lone surrogate",
            id="surrogate-in-a-text-to-embed",
        ),
        pytest.param(
            OpenAIChatBackend,
            {"metadata": {"raw": b"bytes"}},
            "hi",
            r"parameter 'metadata'\['raw'\] is of type bytes",
            id="bytes-in-config",
        ),
    ],
)
def test_input_the_sdk_cannot_encode_is_refused_before_the_run(
    log,
    make_backend,
    server,
    model,
    events,
    receiver,  # noqa: F811 - the fixture
    cls,
    config,
    ask,
    match,
):
    """What JSON cannot carry raises InvalidRequestError (a ValueError) naming the field, before
    anything happens: no request, no event, no span, nothing stored."""
    backend = make_backend(cls, config=config)
    tracing = Tracing(receiver, CaptureMode.NO_CONTENT)
    try:
        with pytest.raises(InvalidRequestError, match=match) as refused:
            backend.run(ask)
        spans = tracing.spans()
    finally:
        tracing.close()
    assert isinstance(refused.value, ValueError)
    assert "the request was not sent" in str(refused.value)
    assert [r for r in server.requests if r.body.get("model") == model] == []
    assert (events, spans) == ([], [])
    log.flush()
    assert list(log.runs()) == []


async def test_anthropic_refuses_what_it_cannot_encode(server, events):
    """The Messages wire refuses the same input the same way, run or async_run."""
    backend = AnthropicBackend.default(
        "claude", api_key=API_KEY, base_url=server.base_url.removesuffix("/v1")
    )
    with pytest.raises(InvalidRequestError, match="parameter 'temperature' is nan"):
        backend.run("hi", temperature=math.nan)
    with pytest.raises(InvalidRequestError, match="message 0 content has a lone surrogate"):
        await backend.async_run("\ud83d")
    backend.client.close()
    await backend.async_client.close()
    assert events == []


@pytest.mark.parametrize(
    ("options", "match"),
    [
        pytest.param({"model_type": None}, r"needs model_type.*got None", id="no-model"),
        pytest.param({"model_type": ""}, r"needs model_type.*got ''", id="empty-model"),
        pytest.param({"model_type": 4}, r"needs model_type.*got 4", id="model-not-a-string"),
        pytest.param(
            {"model_type": "m", "source": "assistant"},
            r"source must be a Node.*got 'assistant'",
            id="source-not-a-node",
        ),
        pytest.param(
            {"model_type": "m", "source": Node(name=None, type=NodeType.AGENT)},  # type: ignore[arg-type]
            r"source must be a Node with a name",
            id="source-without-a-name",
        ),
        pytest.param(
            {"model_type": "m", "source": AGENT.child("step", "tool")},  # type: ignore[arg-type]
            r"source must be a Node with a name and a NodeType",
            id="source-type-not-a-node-type",
        ),
        pytest.param(
            {"model_type": "m", "name": 7}, r"name must be a string", id="name-not-a-string"
        ),
    ],
)
@pytest.mark.parametrize(
    "cls",
    [
        OpenAIChatBackend,
        OpenAICompletionBackend,
        OpenAIResponsesBackend,
        OpenAIEmbeddingBackend,
        AnthropicBackend,
    ],
)
def test_a_backend_that_cannot_name_its_runs_is_refused_when_built(cls, options, match):
    """A model of None (or empty, or not a string), a source or name of the wrong kind: a
    ConfigurationError naming the parameter when the backend is built, not SQL errors once
    its first run is stored."""
    with pytest.raises(ConfigurationError, match=match):
        cls.default(**options, api_key=API_KEY, base_url="http://127.0.0.1:9")


def test_every_constructor_checks_what_names_its_runs(server, tmp_path):
    """Built directly, or as a user's own backend, the same checks hold; a ReplayBackend's
    model_type "" still means any recorded model."""
    client = openai.OpenAI(api_key=API_KEY, base_url=server.base_url)
    async_client = openai.AsyncOpenAI(api_key=API_KEY, base_url=server.base_url)
    with pytest.raises(ConfigurationError, match="OpenAIChatBackend needs model_type"):
        OpenAIChatBackend(model_type=None, client=client, async_client=async_client)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="EchoBackend needs model_type"):
        EchoBackend(model_type=None, source=AGENT)  # type: ignore[arg-type]
    with EventLog(f"sqlite:///{tmp_path / 'replay.db'}") as log:
        assert ReplayBackend(log).model_type == ""
    client.close()


def test_completion_refuses_a_conversation(make_backend):
    """A completion backend takes one prompt, and says so when given several messages."""
    backend = make_backend(OpenAICompletionBackend)
    with pytest.raises(InvalidRequestError, match="one prompt"):
        backend.run([user("a"), user("b")])


def test_missing_api_key(monkeypatch):
    """No api_key and no OPENAI_API_KEY: a ConfigurationError that says how to fix it."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIChatBackend.default("gpt-4o")


def test_config_must_be_a_mapping(server):
    """A config that is not a mapping is refused when the backend is built."""
    with pytest.raises(ConfigurationError, match="mapping"):
        OpenAIChatBackend.default("m", config=[("temperature", 1)], api_key="k")  # type: ignore[arg-type]


class Answer(pydantic.BaseModel):
    city: str
    population: int


class Tone(enum.Enum):
    FORMAL = "formal"


def test_non_json_config_is_carried_faithfully(make_backend, server, events, model):
    """A pydantic response_format, a datetime and an enum are carried as JSON, run unbroken."""
    backend = make_backend(
        config={
            "response_format": Answer,
            "metadata": {"asked_at": datetime.datetime(2026, 1, 2, 3, 4, 5), "tone": Tone.FORMAL},
        }
    )
    backend.run("where?")
    start = events[0]
    assert isinstance(start, StartEvent)
    schema = start.params["response_format"]
    assert schema["type"] == "json_schema"
    assert schema["json_schema"]["name"] == "Answer"
    assert set(schema["json_schema"]["schema"]["properties"]) == {"city", "population"}
    metadata = start.params["metadata"]
    assert metadata["asked_at"] == {"$type": "datetime", "value": "2026-01-02T03:04:05"}
    assert metadata["tone"]["value"] == "formal"
    for event in events:
        assert event_from_dict(json.loads(msgspec.json.encode(event.to_dict()))) == event
    (request,) = [r for r in server.requests if r.body.get("model") == model]
    assert request.body["response_format"]["json_schema"]["name"] == "Answer"


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_api_key_never_in_events(make_backend, server, events, model, stream):
    """The API key is sent to the server but appears in no event, even when echoed back."""
    backend = make_backend(
        behaviour=Behaviour(status=401, error_message=f"Incorrect API key provided: {API_KEY}"),
        config={"extra_headers": {"Authorization": f"Bearer {API_KEY}", "X-Trace": "ok"}},
        stream=stream,
    )
    with pytest.raises(Exception, match="Incorrect API key"):
        backend.run("secret?")
    request = [r for r in server.requests if r.body.get("model") == model][-1]
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    dumped = msgspec.json.encode([e.to_dict() for e in events]).decode()
    assert API_KEY not in dumped
    assert "[REDACTED]" in dumped
    assert events[0].params["extra_headers"]["X-Trace"] == "ok"


@pytest.mark.parametrize(
    "where",
    [
        pytest.param({"default_headers": {"api-key": HEADER_SECRET}}, id="client-header"),
        pytest.param({"default_query": {"token": HEADER_SECRET}}, id="client-query"),
        pytest.param(
            {"config": {"extra_headers": {"Authorization": f"Bearer {HEADER_SECRET}"}}},
            id="run-header",
        ),
        pytest.param(
            {"config": {"extra_headers": {"X-Auth-Token": HEADER_SECRET}}}, id="auth-header"
        ),
    ],
)
def test_credentials_sent_as_headers_never_reach_events_or_the_log(server, model, tmp_path, where):
    """A server echoing a credential the client sent (as a header or query parameter) in its
    error: the error event, and so the log, carries it scrubbed."""
    server.behave(model, Behaviour(status=401, error_message=f"bad credential {HEADER_SECRET}"))
    options = dict(where)
    config = options.pop("config", None)
    client = openai.OpenAI(
        api_key="k-not-the-secret", base_url=server.base_url, max_retries=0, **options
    )
    backend = OpenAIChatBackend(
        model_type=model,
        client=client,
        async_client=openai.AsyncOpenAI(api_key="k", base_url=server.base_url),
        config=config,
    )
    url = f"sqlite:///{tmp_path / 'secrets.db'}"
    with EventLog(url) as log, capture_events() as events:
        log.attach()
        with pytest.raises(openai.AuthenticationError):
            backend.run("hello")
    assert HEADER_SECRET not in repr(events)
    error = events[-1]
    assert "[REDACTED]" in error.message
    for path in tmp_path.glob("secrets.db*"):
        assert HEADER_SECRET.encode() not in path.read_bytes()
    client.close()
