"""Runs become spans and metrics, sent by the real OTLP exporters to a real receiver."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import textwrap

import openai
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from otlp_receiver import OTLPReceiver

import synthora.telemetry
from support import API_KEY
from synthora import Node, NodeType, OpenAICompletionBackend, scope, system, user
from synthora.events import StartEvent
from synthora.telemetry import CaptureMode
from synthora.telemetry.content import capped_json
from synthora.testing.server import Behaviour

CLIENT, INTERNAL = 3, 1  # protobuf SpanKind values
STATUS_ERROR = 2


@pytest.fixture(scope="module")
def receiver():
    otlp = OTLPReceiver()
    yield otlp
    otlp.close()


class Tracing:
    """Providers exporting to the receiver, and what it received."""

    def __init__(self, receiver: OTLPReceiver, capture: CaptureMode, grpc: bool = False) -> None:
        self.receiver = receiver
        receiver.reset()
        exporter = (
            GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True)
            if grpc
            else OTLPSpanExporter(endpoint=f"{receiver.http_endpoint}/v1/traces")
        )
        self.tracer_provider = TracerProvider(shutdown_on_exit=False)
        self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        self.reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{receiver.http_endpoint}/v1/metrics"),
            export_interval_millis=3_600_000,
        )
        self.meter_provider = MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.logger_provider = LoggerProvider(shutdown_on_exit=False)
        self.logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{receiver.http_endpoint}/v1/logs"))
        )
        synthora.telemetry.instrument(
            self.tracer_provider, self.meter_provider, self.logger_provider, capture=capture
        )

    def spans(self):
        assert self.tracer_provider.force_flush()
        return list(self.receiver.received.spans)

    def points(self, metric: str):
        """The metric's points in one fresh export (exports are cumulative)."""
        self.receiver.received.points.clear()
        assert self.meter_provider.force_flush()
        return [p for p in self.receiver.received.points if p.metric == metric]

    def logs(self):
        assert self.logger_provider.force_flush()
        return list(self.receiver.received.logs)

    def close(self) -> None:
        synthora.telemetry.uninstrument()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


@pytest.fixture
def tracing(receiver):
    traced = Tracing(receiver, CaptureMode.NO_CONTENT)
    yield traced
    traced.close()


@pytest.fixture
def tracing_content(receiver):
    traced = Tracing(receiver, CaptureMode.SPAN_ONLY)
    yield traced
    traced.close()


def test_streamed_chat_span(tracing, make_backend, events, model):
    """A streamed chat run is one CLIENT span with the GenAI request and response attributes."""
    backend = make_backend(
        stream=True,
        config={
            "temperature": 0.3,
            "top_p": 0.9,
            "max_completion_tokens": 50,
            "stop": "\n",
            "seed": 7,
        },
    )
    text = "".join(chunk.delta for chunk in backend.run("trace me"))
    (span,) = tracing.spans()
    assert span.name == f"chat {model}"
    assert span.kind == CLIENT
    attributes = span.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == model
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.request.temperature"] == 0.3
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.request.stop_sequences"] == ["\n"]
    assert attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.response.model"] == model
    assert attributes["gen_ai.response.id"].startswith("chatcmpl-")
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.usage.input_tokens"] == 2
    assert attributes["gen_ai.usage.output_tokens"] == len(text.split(" ")) + 1
    assert attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert attributes["server.address"] == "127.0.0.1"
    assert isinstance(attributes["server.port"], int)
    assert attributes["synthora.node.path"] == "agent:assistant/model:OpenAIChatBackend"
    assert attributes["synthora.run_id"] == events[0].run_id
    assert "gen_ai.input.messages" not in attributes
    assert {(e.trace_id, e.span_id) for e in events} == {(span.trace_id, span.span_id)}
    assert span.status_code != STATUS_ERROR


def test_completion_span(tracing, make_backend, model):
    """Legacy completions are traced too, as text_completion."""
    make_backend(OpenAICompletionBackend).run("once upon")
    (span,) = tracing.spans()
    assert span.name == f"text_completion {model}"
    assert span.attributes["gen_ai.operation.name"] == "text_completion"
    assert span.attributes["gen_ai.request.stream"] is False
    assert "gen_ai.response.time_to_first_chunk" not in span.attributes


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_http_error_span(tracing, make_backend, stream):
    """A failed run's span has status ERROR, error.type and the exception as an event, after
    its one failed attempt."""
    backend = make_backend(
        behaviour=Behaviour(status=503, error_message="overloaded"), stream=stream
    )
    with pytest.raises(openai.InternalServerError):
        backend.run("x")
    (span,) = tracing.spans()
    assert span.status_code == STATUS_ERROR
    assert span.attributes["error.type"] == "InternalServerError"
    (attempt, (name, details)) = span.events
    assert attempt == (
        "synthora.attempt.failed",
        {"error.type": "503", "http.response.status_code": 503},
    )
    assert name == "exception"
    assert "overloaded" in details["exception.message"]


def test_mid_stream_error_and_abandoned_stream(tracing, make_backend):
    """A broken stream ends its span in error; an abandoned one ends it, marked interrupted."""
    broken = make_backend(behaviour=Behaviour(n_tokens=10, break_after=3), stream=True)
    with pytest.raises(openai.APIConnectionError):
        list(broken.run("break"))
    stream = make_backend(behaviour=Behaviour(n_tokens=50, delay_s=0.005), stream=True).run("leave")
    next(stream)
    stream.close()
    failed, left = tracing.spans()
    assert failed.status_code == STATUS_ERROR
    assert failed.attributes["synthora.error.stage"] == "stream"
    assert left.status_code != STATUS_ERROR
    assert left.attributes["synthora.interrupted"] is True


def test_truncated_stream_span(tracing, make_backend):
    """A stream the server ends without finishing it: no error (the caller got none), but the
    span says truncated, apart from interrupted."""
    backend = make_backend(behaviour=Behaviour(n_tokens=6, end_after=3), stream=True)
    assert len(list(backend.run("cut short"))) == 3
    (span,) = tracing.spans()
    assert span.status_code != STATUS_ERROR
    assert span.attributes["synthora.truncated"] is True
    assert "synthora.interrupted" not in span.attributes
    assert list(span.attributes["gen_ai.response.finish_reasons"]) == ["truncated"]


def test_scopes_and_user_spans_nest(tracing, make_backend):
    """Runs nest under their scope's span, and a scope under the user's own current span."""
    backend = make_backend()
    user_tracer = tracing.tracer_provider.get_tracer("app")
    with (
        user_tracer.start_as_current_span("request"),
        scope(Node(name="planner", type=NodeType.AGENT)),
    ):
        backend.run("inside")
        with scope(Node(name="search", type=NodeType.TOOL)):
            pass
    spans = {s.name: s for s in tracing.spans()}
    planner = spans["invoke_agent planner"]
    assert planner.kind == INTERNAL
    assert planner.attributes["gen_ai.agent.name"] == "planner"
    assert planner.parent_span_id == spans["request"].span_id
    assert spans[f"chat {backend.model_type}"].parent_span_id == planner.span_id
    assert spans["execute_tool search"].attributes["gen_ai.tool.name"] == "search"
    assert spans["execute_tool search"].parent_span_id == planner.span_id


def test_held_stream_is_not_the_current_span(tracing, make_backend):
    """While the caller holds a stream, its span is not current: new spans do not nest under it."""
    stream = make_backend(stream=True).run("hold")
    next(stream)
    assert not trace.get_current_span().get_span_context().is_valid
    with tracing.tracer_provider.get_tracer("app").start_as_current_span("unrelated"):
        pass
    list(stream)
    spans = {s.name: s for s in tracing.spans()}
    assert spans["unrelated"].parent_span_id == ""


async def test_concurrent_async_runs_keep_their_parents(tracing, make_backend, events):
    """Concurrent async runs each nest under the span current in their own task."""
    backend = make_backend(behaviour=Behaviour(delay_s=0.005), stream=True)
    tracer = tracing.tracer_provider.get_tracer("app")

    async def request(i: int) -> None:
        with tracer.start_as_current_span(f"request {i}"):
            [c async for c in await backend.async_run(f"task {i}")]

    await asyncio.gather(*(request(i) for i in range(20)))
    prompts = {e.run_id: e.messages[0].text for e in events if isinstance(e, StartEvent)}
    spans = tracing.spans()
    names = {s.span_id: s.name for s in spans}
    runs = [s for s in spans if s.kind == CLIENT]
    assert len(runs) == 20
    for run in runs:
        task = prompts[run.attributes["synthora.run_id"]].removeprefix("task ")
        assert names[run.parent_span_id] == f"request {task}"
    await backend.async_client.close()


@pytest.mark.parametrize("stream", [False, True], ids=["no-stream", "stream"])
def test_content_only_when_asked(tracing_content, make_backend, stream):
    """SPAN_ONLY puts the conversation on the span as GenAI JSON; never the key or headers."""
    backend = make_backend(
        stream=stream, config={"extra_headers": {"Authorization": f"Bearer {API_KEY}"}}
    )
    result = backend.run([system("be brief"), user("what is recorded?")])
    if stream:
        list(result)
    (span,) = tracing_content.spans()
    assert json.loads(span.attributes["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "be brief"}
    ]
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "what is recorded?"}]}
    ]
    (output,) = json.loads(span.attributes["gen_ai.output.messages"])
    assert output["parts"] == [{"type": "text", "content": "You said: what is recorded?"}]
    assert output["finish_reason"] == "stop"
    assert API_KEY not in repr(span)


def test_content_as_an_event_only(receiver, make_backend):
    """EVENT_ONLY: the conversation goes out as one log event in the span's context, not on it."""
    traced = Tracing(receiver, CaptureMode.EVENT_ONLY)
    try:
        make_backend().run("as an event")
        (span,) = traced.spans()
        (record,) = traced.logs()
    finally:
        traced.close()
    assert "gen_ai.input.messages" not in span.attributes
    assert record.event_name == "gen_ai.client.inference.operation.details"
    assert (record.trace_id, record.span_id) == (span.trace_id, span.span_id)
    (message,) = json.loads(record.attributes["gen_ai.input.messages"])
    assert message["parts"][0]["content"] == "as an event"
    assert "You said" in record.attributes["gen_ai.output.messages"]
    assert record.attributes["gen_ai.response.id"] == span.attributes["gen_ai.response.id"]
    assert record.attributes["gen_ai.usage.output_tokens"] == 6


def test_no_content_means_no_event(tracing, make_backend):
    """By default no content event is sent at all."""
    make_backend().run("quiet")
    tracing.spans()
    assert tracing.logs() == []


def test_content_is_capped_and_stays_json():
    """An attribute over the cap is cut, long texts first, and stays valid JSON with a marker."""
    messages = [{"role": "user", "parts": [{"type": "text", "content": "x" * 100_000}]}]
    text = capped_json(messages, 10_000)
    assert len(text) <= 10_000
    (message,) = json.loads(text)
    assert "truncated" in message["parts"][0]["content"]
    many = [{"role": "user", "parts": [{"type": "text", "content": "y" * 50}]}] * 2000
    capped = json.loads(capped_json(many, 5_000))
    assert "earlier messages truncated" in capped[0]["parts"][0]["content"]


def test_metrics(tracing, make_backend, model):
    """Duration, token usage by type, and for streams the chunk timings, with GenAI attributes."""
    list(make_backend(behaviour=Behaviour(n_tokens=20), stream=True).run("measure"))
    (duration,) = tracing.points("gen_ai.client.operation.duration")
    assert duration.unit == "s"
    assert duration.count == 1
    assert duration.attributes["gen_ai.request.model"] == model
    assert duration.attributes["gen_ai.operation.name"] == "chat"
    assert duration.bounds[:3] == [0.01, 0.02, 0.04]
    usage = {
        p.attributes["gen_ai.token.type"]: p for p in tracing.points("gen_ai.client.token.usage")
    }
    assert usage["output"].total == 20
    assert usage["input"].total == 1
    assert tracing.points("gen_ai.client.operation.time_to_first_chunk")[0].count == 1
    (per_chunk,) = tracing.points("gen_ai.client.operation.time_per_output_chunk")
    assert per_chunk.count == 1


def test_no_token_metric_without_usage(tracing, make_backend):
    """A server that reports no usage gives no token-usage points (never zeros)."""
    backend = make_backend(behaviour=Behaviour(usage="none"), stream=True, stream_usage=False)
    list(backend.run("no usage"))
    assert tracing.points("gen_ai.client.token.usage") == []
    assert len(tracing.points("gen_ai.client.operation.duration")) == 1


def test_grpc_export(receiver, make_backend):
    """The same span arrives over OTLP/gRPC."""
    traced = Tracing(receiver, CaptureMode.NO_CONTENT, grpc=True)
    try:
        make_backend().run("over grpc")
        (span,) = traced.spans()
        assert span.attributes["gen_ai.operation.name"] == "chat"
    finally:
        traced.close()


def test_collector_down_never_reaches_the_caller(make_backend):
    """With nothing listening at the endpoint, runs succeed and export fails quietly."""
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", timeout=0.5))
    )
    synthora.telemetry.instrument(provider)
    try:
        backend = make_backend(stream=True)
        for i in range(3):
            assert "".join(c.delta for c in backend.run(f"run {i}")).endswith(f"run {i}")
    finally:
        synthora.telemetry.uninstrument()
        provider.shutdown()


CONFIGURED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import synthora.telemetry
    from synthora import OpenAIChatBackend
    synthora.telemetry.configure(**json.loads(sys.argv[2]))
    synthora.telemetry.configure()  # idempotent
    backend = OpenAIChatBackend.default("configured", api_key="k", base_url=sys.argv[1])
    print(backend.run("configured run").text)
    """
)


def run_configured(
    base_url: str, endpoint: str, arguments: dict[str, str] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """The script as a user would run it: its own process, outside the source tree; `arguments`
    go to its configure() call."""
    environment = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **env}
    return subprocess.run(
        [sys.executable, "-c", CONFIGURED_SCRIPT, base_url, json.dumps(arguments or {})],
        cwd=tempfile.gettempdir(),
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_configure_exports_from_the_environment(receiver, server):
    """configure() alone: OTLP/HTTP from OTEL_* variables, service name, spans flushed at exit."""
    receiver.reset()
    done = run_configured(server.base_url, receiver.http_endpoint, OTEL_SERVICE_NAME="my-agent")
    assert done.returncode == 0, done.stderr
    (span,) = receiver.received.wait_for_spans(1)
    assert span.name == "chat configured"
    assert span.resource["service.name"] == "my-agent"


def test_configure_without_a_collector_exits_cleanly(server):
    """No collector listening: the script's run works and it exits without a traceback."""
    done = run_configured(server.base_url, "http://127.0.0.1:9")
    assert done.returncode == 0
    assert done.stdout.strip().endswith("configured run")
    assert "Traceback" not in done.stderr


def test_start_events_carry_no_trace_when_untraced(make_backend, events):
    """Without tracing, trace and span ids stay empty."""
    make_backend().run("untraced")
    assert isinstance(events[0], StartEvent)
    assert events[0].trace_id == ""


def test_configure_over_grpc(receiver, server):
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc sends the spans over OTLP/gRPC."""
    receiver.reset()
    done = run_configured(
        server.base_url, receiver.grpc_endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="grpc"
    )
    assert done.returncode == 0, done.stderr
    (span,) = receiver.received.wait_for_spans(1)
    assert span.name == "chat configured"


def test_sdk_disabled_exports_nothing(receiver, server):
    """OTEL_SDK_DISABLED=true: configure() does nothing, the run works, nothing is sent."""
    receiver.reset()
    done = run_configured(server.base_url, receiver.http_endpoint, OTEL_SDK_DISABLED="true")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("configured run")
    assert receiver.received.spans == []


NO_METRICS_NO_LOGS = {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}


@pytest.mark.parametrize("value", ["otlp", "OTLP", "", "otlp_proto_http"])
def test_traces_exporter_otlp(receiver, server, value):
    """OTEL_TRACES_EXPORTER=otlp (the default, and what an empty value means) sends the spans
    to the OTLP receiver."""
    receiver.reset()
    done = run_configured(
        server.base_url, receiver.http_endpoint, OTEL_TRACES_EXPORTER=value, **NO_METRICS_NO_LOGS
    )
    assert done.returncode == 0, done.stderr
    (span,) = receiver.received.wait_for_spans(1)
    assert span.name == "chat configured"


def test_console_exporters(receiver, server):
    """console prints each signal on standard output, and nothing goes to the collector."""
    receiver.reset()
    done = run_configured(
        server.base_url,
        receiver.http_endpoint,
        OTEL_TRACES_EXPORTER="console",
        OTEL_METRICS_EXPORTER="console",
        OTEL_LOGS_EXPORTER="console",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="EVENT_ONLY",
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "chat configured"' in done.stdout
    assert "gen_ai.client.operation.duration" in done.stdout
    assert "gen_ai.client.inference.operation.details" in done.stdout
    assert receiver.received.spans == []
    assert receiver.received.points == []
    assert receiver.received.logs == []


def test_none_exports_nothing_and_connects_nowhere(server):
    """none for every signal: the run works, nothing is printed, no connection is even tried."""
    with socket.create_server(("127.0.0.1", 0)) as collector:
        endpoint = f"http://127.0.0.1:{collector.getsockname()[1]}"
        done = run_configured(
            server.base_url, endpoint, OTEL_TRACES_EXPORTER="none", **NO_METRICS_NO_LOGS
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "You said: configured run"
        readable, _, _ = select.select([collector], [], [], 0)
        assert readable == []  # no connection waits to be accepted


def test_a_list_of_exporters(receiver, server):
    """A comma-separated list sends to each: the collector and the console."""
    receiver.reset()
    done = run_configured(
        server.base_url,
        receiver.http_endpoint,
        OTEL_TRACES_EXPORTER="otlp, console",
        **NO_METRICS_NO_LOGS,
    )
    assert done.returncode == 0, done.stderr
    (span,) = receiver.received.wait_for_spans(1)
    assert f'"trace_id": "0x{span.trace_id}"' in done.stdout


def test_an_argument_wins_over_the_variable(receiver, server):
    """configure(traces_exporter=...) overrides OTEL_TRACES_EXPORTER."""
    receiver.reset()
    done = run_configured(
        server.base_url,
        receiver.http_endpoint,
        {"traces_exporter": "console"},
        OTEL_TRACES_EXPORTER="otlp",
        **NO_METRICS_NO_LOGS,
    )
    assert done.returncode == 0, done.stderr
    assert '"name": "chat configured"' in done.stdout
    assert receiver.received.spans == []


@pytest.mark.parametrize(
    ("arguments", "env", "says"),
    [
        pytest.param(
            {},
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER='zipkin': no traces exporter is named 'zipkin'; use one of "
            "console, none, otlp, otlp_proto_grpc, otlp_proto_http",
            id="traces",
        ),
        pytest.param(
            {},
            {"OTEL_METRICS_EXPORTER": "otlp,prometheus"},
            "OTEL_METRICS_EXPORTER='otlp,prometheus': no metrics exporter is named 'prometheus'",
            id="metrics",
        ),
        pytest.param(
            {},
            {"OTEL_LOGS_EXPORTER": "none,console"},
            "OTEL_LOGS_EXPORTER='none,console': 'none' means no logs export",
            id="none-and-more",
        ),
        pytest.param(
            {"logs_exporter": "bogus"},
            {"OTEL_LOGS_EXPORTER": "console"},
            "configure(logs_exporter=...)='bogus': no logs exporter is named 'bogus'",
            id="argument",
        ),
    ],
)
def test_an_unknown_exporter_is_a_clear_error(receiver, server, arguments, env, says):
    """A name no installed package provides fails configure() with one error naming the
    variable (or argument) and the names there are; nothing is set up or sent."""
    receiver.reset()
    done = run_configured(server.base_url, receiver.http_endpoint, arguments, **env)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"synthora.errors.ConfigurationError: {says}")
    assert receiver.received.spans == []


class EveryOther(Sampler):
    """Keeps every other run's span and drops the rest: a dropping sampler, deterministically."""

    def __init__(self) -> None:
        self.calls = 0

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, *_, **__):
        self.calls += 1
        keep = self.calls % 2 == 1
        return SamplingResult(Decision.RECORD_AND_SAMPLE if keep else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "EveryOther"


def test_only_sampled_runs_carry_trace_ids(receiver, make_backend, log):
    """Runs the sampler drops are logged with no trace or span id, only trace_sampled=False;
    every trace id that is logged is one the collector received."""
    receiver.reset()
    provider = TracerProvider(sampler=EveryOther(), shutdown_on_exit=False)
    exporter = OTLPSpanExporter(endpoint=f"{receiver.http_endpoint}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    synthora.telemetry.instrument(provider)
    try:
        for stream in (False, False, True, True):
            result = make_backend(stream=stream).run("sampled or not")
            if stream:
                list(result)
        assert provider.force_flush()
    finally:
        synthora.telemetry.uninstrument()
        provider.shutdown()
    assert log.flush()
    runs = list(log.runs())
    exported = {span.trace_id for span in receiver.received.spans}
    assert len(exported) == 2
    assert {run.trace_id for run in runs} == exported | {""}
    for run in runs:
        events = list(log.events(run.run_id))
        assert events[0].trace_sampled is (run.trace_id != "")
        assert {(e.trace_id, e.span_id) for e in events} == {(run.trace_id, run.span_id)}
        assert (run.trace_id == "") is (run.span_id == "")
