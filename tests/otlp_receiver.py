"""A local OTLP receiver for the tests: the real exporters send to it, it decodes the protobuf."""

from __future__ import annotations

import gzip
import threading
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass
class ReceivedSpan:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status_code: int
    status_message: str
    resource: dict[str, Any]
    start_ns: int
    end_ns: int


@dataclass
class ReceivedLog:
    event_name: str
    attributes: dict[str, Any]
    trace_id: str
    span_id: str


@dataclass
class ReceivedPoint:
    metric: str
    unit: str
    attributes: dict[str, Any]
    count: int
    total: float
    bounds: list[float] = field(default_factory=list)


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs}


class Received:
    """What the receiver has decoded so far; thread-safe, with a condition to wait on."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.points: list[ReceivedPoint] = []
        self.logs: list[ReceivedLog] = []
        self._cond = threading.Condition()

    def add_traces(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = attributes_of(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        ReceivedSpan(
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes=attributes_of(span.attributes),
                            events=[(e.name, attributes_of(e.attributes)) for e in span.events],
                            status_code=span.status.code,
                            status_message=span.status.message,
                            resource=resource,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                        )
                    )
        with self._cond:
            self.spans.extend(found)
            self._cond.notify_all()

    def add_logs(self, request: logs_service_pb2.ExportLogsServiceRequest) -> None:
        found = [
            ReceivedLog(
                event_name=record.event_name,
                attributes=attributes_of(record.attributes),
                trace_id=record.trace_id.hex(),
                span_id=record.span_id.hex(),
            )
            for resource_logs in request.resource_logs
            for scope_logs in resource_logs.scope_logs
            for record in scope_logs.log_records
        ]
        with self._cond:
            self.logs.extend(found)
            self._cond.notify_all()

    def add_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        found = []
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    for point in metric.histogram.data_points:
                        found.append(
                            ReceivedPoint(
                                metric=metric.name,
                                unit=metric.unit,
                                attributes=attributes_of(point.attributes),
                                count=point.count,
                                total=point.sum,
                                bounds=list(point.explicit_bounds),
                            )
                        )
        with self._cond:
            self.points.extend(found)
            self._cond.notify_all()

    def wait_for_spans(self, count: int, timeout: float = 10.0) -> list[ReceivedSpan]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.spans) >= count, timeout)
            return list(self.spans)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPReceiver

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        received = self.server.received
        if self.path == "/v1/traces":
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            received.add_traces(request)
            reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        elif self.path == "/v1/logs":
            received.add_logs(logs_service_pb2.ExportLogsServiceRequest.FromString(body))
            reply = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
        elif self.path == "/v1/metrics":
            received.add_metrics(metrics_service_pb2.ExportMetricsServiceRequest.FromString(body))
            reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
        else:
            reply = b""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


class _HTTPReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, received: Received) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received = received


class OTLPReceiver:
    """OTLP/HTTP on `http_endpoint`, OTLP/gRPC (traces) on `grpc_endpoint`."""

    def __init__(self) -> None:
        self.received = Received()
        self._http = _HTTPReceiver(self.received)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
            _TraceService(self.received), self._grpc
        )
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def reset(self) -> None:
        self.received.spans.clear()
        self.received.points.clear()
        self.received.logs.clear()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=None)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: Any) -> Any:
        self.received.add_traces(request)
        return trace_service_pb2.ExportTraceServiceResponse()
