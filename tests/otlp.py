"""An OTLP/HTTP collector for tests: it keeps every request and decodes the protobuf bodies with
``opentelemetry-proto``, as a real collector would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import free_port


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent: str
    attributes: dict[str, Any]
    status: int
    start: int
    end: int
    events: list[str]
    service: str


@dataclass
class Collector:
    """An OTLP/HTTP receiver: every request kept as it came (path, headers, raw body)."""

    url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    def bodies(self, path: str) -> list[bytes]:
        return [body for p, _, body in self.requests if p == path]

    def spans(self) -> list[Span]:
        found = []
        for body in self.bodies("/v1/traces"):
            request = ExportTraceServiceRequest.FromString(body)
            for resource in request.resource_spans:
                service = _attributes(resource.resource.attributes)["service.name"]
                for scope in resource.scope_spans:
                    for s in scope.spans:
                        found.append(
                            Span(
                                s.name,
                                s.trace_id.hex(),
                                s.span_id.hex(),
                                s.parent_span_id.hex(),
                                _attributes(s.attributes),
                                s.status.code,
                                s.start_time_unix_nano,
                                s.end_time_unix_nano,
                                [e.name for e in s.events],
                                service,
                            )
                        )
        return found

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, Any], ...]], tuple[float, str, str]]:
        """Every data point: (name, labels) -> (value, kind, unit)."""
        found = {}
        for body in self.bodies("/v1/metrics"):
            for resource in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for scope in resource.scope_metrics:
                    for m in scope.metrics:
                        kind = m.WhichOneof("data")
                        points = m.sum.data_points if kind == "sum" else m.gauge.data_points
                        if kind == "sum":
                            assert m.sum.is_monotonic, m.name
                        for p in points:
                            value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                            labels = tuple(sorted(_attributes(p.attributes).items()))
                            found[(m.name, labels)] = (value, kind, m.unit)
        return found


def _attributes(pairs: Any) -> dict[str, Any]:
    values = {}
    for a in pairs:
        kind = a.value.WhichOneof("value")
        values[a.key] = getattr(a.value, kind) if kind else None
    return values


@contextmanager
def otlp_collector() -> Iterator[Collector]:
    """A collector listening on a free port of 127.0.0.1 until the block ends."""
    port = free_port()
    received = Collector(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.requests.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
