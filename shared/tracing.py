"""Traces (OpenTelemetry) and the context of log lines: what ties the work of one request together
across the gateway, the services and the broker.

**Traces.** `setup(service)` (called by `runtime.main` before the app is built, the gateway's too)
reads only OpenTelemetry's standard variables. `OTEL_TRACES_EXPORTER` unset or `none` (the
default, as in development and the tests) leaves tracing off: nothing is instrumented, the hooks
below are an `if` on `ENABLED`, and no span is ever made. `console` writes spans to stdout; `otlp`
sends them over OTLP/HTTP (`OTEL_EXPORTER_OTLP_ENDPOINT`, in production the collector of
docker-compose.yml or deploy/examples/otel-collector.yaml); the sampler, the batch sizes and the
resource come from `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` and `OTEL_RESOURCE_ATTRIBUTES`.

When on, the maintained instrumentations of aiohttp's server, asyncpg and aio-pika make the spans
of HTTP requests, SQL statements, publishes and deliveries, and carry the W3C `traceparent` in AMQP
headers. What they cannot know is written here and in the hooks that call it:

- an event's trace context is stored with it: `inject` into its outbox row's headers
  (`outbox.outgoing`), and the relay publishes the row `continued` from it, whatever process or
  pass publishes it, so that its consumers are children of the work that emitted it;
- each consumer's handling, each request/reply call and answer, each sweep is a span of its own
  (`working_on`, `span`), named for the event or request it is about;
- the gateway's own HTTP client (`gateway.upstream_http`) sends the forwarded request's span.

**Logs.** Every JSON log line (`runtime.JsonFormatter`) carries the request id (set by the HTTP
middleware, or by `working_on` from an event's correlation id or a request/reply call's
`x-request-id` header), the fields of the work at hand (event id and type, order id) and, when
tracing, the trace and span ids. Only ids go into logs and spans: never a token, never personal
data.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.environment_variables import OTEL_TRACES_EXPORTER
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

from shared import http

# Read on every hook: False until `setup` (or `enable`) turns tracing on for this process.
ENABLED = False
_tracer: trace.Tracer = trace.NoOpTracer()

# The request/reply header that carries the caller's request id to the responder (the AMQP
# correlation id of a call is the call's own, for its reply).
REQUEST_ID_HEADER = "x-request-id"

# OTLP over HTTP is the exporter this project ships (opentelemetry-exporter-otlp-proto-http);
# `grpc` works where opentelemetry-exporter-otlp-proto-grpc is installed.
_OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}


def exporter_names(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The span exporters `OTEL_TRACES_EXPORTER` asks for, by their entry point names; none when
    it is unset or `none`, or when `OTEL_SDK_DISABLED` is true."""
    if environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
        return []
    names = [name.strip() for name in environ.get(OTEL_TRACES_EXPORTER, "").split(",")]
    names = [name for name in names if name and name != "none"]
    protocol = environ.get(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL) or environ.get(OTEL_EXPORTER_OTLP_PROTOCOL)
    protocol = (protocol or "http/protobuf").strip()
    if "otlp" in names and protocol not in _OTLP_BY_PROTOCOL:
        raise ValueError(f"OTLP protocol {protocol!r} is not one of {sorted(_OTLP_BY_PROTOCOL)}")
    return [_OTLP_BY_PROTOCOL[protocol] if name == "otlp" else name for name in names]


def _exporter(name: str) -> SpanExporter:
    found = entry_points(group="opentelemetry_traces_exporter", name=name)
    if not found:
        raise ValueError(f"OTEL_TRACES_EXPORTER: no span exporter {name!r} is installed")
    return next(iter(found)).load()()


def setup(service: str) -> None:
    """Turn tracing on for this process if the `OTEL_*` variables ask for an exporter (see the
    module's docstring). Before the app is built: the aiohttp instrumentation applies to
    applications created after it."""
    names = exporter_names()
    if not names:
        return
    # The service's own name unless the operator names it (OTEL_SERVICE_NAME wins, as everywhere).
    resource = Resource.create({} if os.environ.get(OTEL_SERVICE_NAME) else {SERVICE_NAME: service})
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    enable(provider)


def enable(provider: trace.TracerProvider) -> None:
    """Trace with `provider`: the instrumentations of aiohttp's server, asyncpg (statements, never
    their parameters) and aio-pika, and the hooks of this module."""
    global ENABLED, _tracer
    with warnings.catch_warnings():
        # It replaces `web.Application` by a subclass that adds its middleware first, which aiohttp
        # discourages in general (a subclass overriding its methods); this one only adds that.
        warnings.simplefilter("ignore", DeprecationWarning)
        AioHttpServerInstrumentor().instrument(tracer_provider=provider)
    AsyncPGInstrumentor().instrument(tracer_provider=provider)
    AioPikaInstrumentor().instrument(tracer_provider=provider)
    _tracer = provider.get_tracer("commerce")
    ENABLED = True


def span(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: str) -> contextlib.AbstractContextManager:
    """A span `name`, current within the block, when tracing; nothing otherwise."""
    if not ENABLED:
        return contextlib.nullcontext()
    return _tracer.start_as_current_span(
        name, kind=kind, attributes={f"commerce.{key}": value for key, value in attributes.items()}
    )


def inject(carrier: MutableMapping[str, str]) -> None:
    """Write the current trace context (`traceparent`, `tracestate`) into message or HTTP headers."""
    if ENABLED:
        propagate.inject(carrier)


def continued(carrier: Mapping[str, Any] | None) -> contextlib.AbstractContextManager:
    """Within the block, the trace context that `carrier` holds (an outbox row's headers) is the
    current one, instead of the task's own: what is done there (the relay's publish) continues the
    trace of the work that wrote the row, whichever process or pass publishes it."""
    if not ENABLED:
        return contextlib.nullcontext()
    return _attached(propagate.extract(carrier or {}, context=context.Context()))


@contextlib.contextmanager
def _attached(ctx: context.Context) -> Iterator[None]:
    token = context.attach(ctx)
    try:
        yield
    finally:
        context.detach(token)


def untraced() -> contextlib.AbstractContextManager:
    """No span within the block: bookkeeping that belongs to no request (the relay's claims and
    deletes, readiness probes) would otherwise make a trace of its own every few milliseconds."""
    return suppress_instrumentation() if ENABLED else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------
# The context of log lines

_work: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("work", default=None)


@contextlib.contextmanager
def working_on(name: str, **fields: object) -> Iterator[None]:
    """The work of a consumer, a responder or a sweeper: log lines written within carry `fields`
    (those not None: `request_id`, `event_id`, `order_id`, ...) on top of those already set, and
    when tracing, the block is a span `name` with them as attributes."""
    added = {key: str(value) for key, value in fields.items() if value is not None}
    current = _work.get()
    token = _work.set({**current, **added} if current else added)
    try:
        with span(name, **added):
            yield
    finally:
        _work.reset(token)


def request_id() -> str | None:
    """The request id of the work at hand: the HTTP request's, or the one `working_on` was given."""
    return http.request_id_var.get() or (_work.get() or {}).get("request_id")


def log_fields() -> dict[str, str]:
    """What a log line written now carries about its work (see the module's docstring)."""
    fields: dict[str, str] = {}
    request = http.request_id_var.get()
    if request:
        fields["request_id"] = request
    work = _work.get()
    if work:
        fields.update(work)
    if ENABLED:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            fields["trace_id"] = trace.format_trace_id(span_context.trace_id)
            fields["span_id"] = trace.format_span_id(span_context.span_id)
    return fields
