"""The tracing suite's own system: the six services with tracing on, exporting to a receiver here.

The services are processes, so an in-memory exporter inside the test process would see none of
their spans. They export the way production does instead: `OTEL_TRACES_EXPORTER=otlp` (OTLP over
HTTP/protobuf, the exporter the collector of docker-compose.yml receives), pointed at a small OTLP
receiver this fixture runs on loopback, which decodes each export with `opentelemetry-proto` and
keeps the spans in memory. A fresh database and bus namespace, so that the session's shared stack
stays untraced.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support import Stack, migrate_all, start_infra, start_stack, stop_infra, stop_stack


@dataclass(frozen=True)
class Span:
    service: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a root
    name: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    start: int  # ns since the epoch
    end: int
    attributes: dict[str, Any]


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf) on a loopback port."""

    server: ThreadingHTTPServer
    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            service=resource.get("service.name", ""),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            start=span.start_time_unix_nano,
                            end=span.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self.lock:
            self.spans.extend(received)

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def find(self, predicate: Callable[[Span], bool]) -> list[Span]:
        with self.lock:
            return [span for span in self.spans if predicate(span)]

    async def eventually(self, check: Callable[[], Any], timeout: float = 20.0) -> Any:
        """`check()`'s first true result; spans arrive in batches, a fraction of a second late."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError("the expected spans did not arrive in time")
            await asyncio.sleep(0.1)


def start_receiver() -> Receiver:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.receive(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output is not the place for a line per export

    receiver = Receiver(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    threading.Thread(target=receiver.server.serve_forever, name="otlp-receiver", daemon=True).start()
    return receiver


@dataclass
class Traced:
    stack: Stack
    receiver: Receiver


@pytest.fixture(scope="package")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    receiver = start_receiver()
    infra = start_infra()
    stack = None
    try:
        asyncio.run(migrate_all(infra))
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            # Export within a tenth of a second rather than the default five.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        stack = start_stack(infra, tmp_path_factory.mktemp("traced-logs"), env)
        yield Traced(stack, receiver)
    finally:
        if stack is not None:
            stop_stack(stack)
        stop_infra(infra)
        receiver.server.shutdown()
        receiver.server.server_close()
