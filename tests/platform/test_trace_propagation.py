"""Trace and log context across the outbox, the broker and request/reply (shared/tracing.py).

With tracing on (in this process, with the real instrumentations and an in-memory exporter): an
event's outbox row stores the trace of the work that emitted it, the relay publishes it as a span
of that trace with its own `traceparent` in the AMQP headers, whatever task publishes it, and the
consumer's handler runs in that trace with the request id and the event's ids in its log context;
a request/reply call takes the caller's request id and trace to the responder. With tracing off
(the default), no trace context is written anywhere and the log context still works.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aio_pika
import orjson
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.aio_pika import AioPikaInstrumentor
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from shared import http, outbox, tracing
from shared.bus import Responder, RpcClient, RpcServer
from shared.contracts import BasketSnapshot, BasketSnapshotReply, GetBasketSnapshot, OrderPlaced
from shared.runtime import JsonFormatter
from shared.uow import UnitOfWork, unit_of_work
from tests.platform.conftest import Platform, placed, wait_for


@dataclass
class Traced:
    tracer: trace.Tracer
    exporter: InMemorySpanExporter

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.finished() if span.name == name]

    def by_id(self) -> dict[int, ReadableSpan]:
        return {span.context.span_id: span for span in self.finished()}


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    """Tracing on in this process for one test, as `tracing.setup` turns it on, with the spans kept
    in memory; off again afterwards (the module's switches restored, the instrumentations removed)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in ("ENABLED", "_tracer"):
        monkeypatch.setattr(tracing, name, getattr(tracing, name))
    tracing.enable(provider)
    try:
        yield Traced(provider.get_tracer("test"), exporter)
    finally:
        for instrumentor in (AioHttpServerInstrumentor(), AsyncPGInstrumentor(), AioPikaInstrumentor()):
            instrumentor.uninstrument()


def traceparent(span: trace.Span | ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context() if isinstance(span, trace.Span) else span.context
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


def parsed(header: str) -> tuple[str, str]:
    version, trace_id, span_id, _flags = header.split("-")
    assert version == "00"
    return trace_id, span_id


async def tap(platform: Platform) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """What the broker really carries: a throwaway queue bound to every event."""
    assert platform.connection is not None
    channel = await platform.connection.channel()
    exchange = await channel.declare_exchange(
        platform.topology("orders").events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, "#")
    seen: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append(message)
        await message.ack()

    await queue.consume(keep)
    return seen


async def _async(value: object) -> bool:
    return bool(value)


async def test_an_event_carries_its_trace_from_the_outbox_row_through_the_broker_into_its_consumer(
    platform: Platform, traced: Traced
):
    handled: dict[str, object] = {}

    async def on_order_placed(uow: UnitOfWork, event: OrderPlaced) -> None:
        handled["trace_id"] = trace.get_current_span().get_span_context().trace_id
        handled["log"] = tracing.log_fields()

    await platform.consumer("basket", on_order_placed)
    delivered = await tap(platform)

    # The work that emits the event (an HTTP request, in a service), in a trace of its own.
    with traced.tracer.start_as_current_span("request") as request:
        async with unit_of_work(platform.pools["orders"], "orders", correlation_id="req-123") as uow:
            uow.emit(placed("traced-order"))
    trace_id, request_span_id = traceparent(request)

    # 1. The outbox row: the request id and the emitting span's context, stored with the event.
    with tracing.untraced():
        row = await platform.pools["orders"].fetchrow("SELECT event_id, headers FROM outbox")
    assert set(row["headers"]) == {"correlation_id", "traceparent"}
    assert row["headers"]["correlation_id"] == "req-123"
    assert parsed(row["headers"]["traceparent"]) == (trace_id, request_span_id)

    # 2. The relay, started now in a task with no trace, publishes the row as a span of the row's
    # trace and sends that span's context in the AMQP headers.
    await platform.relay()
    await wait_for(lambda: _async(delivered), what="the broker's copy")
    sent_trace_id, publish_span_id = parsed(delivered[0].headers["traceparent"])
    assert sent_trace_id == trace_id
    (publish,) = [span for span in traced.finished() if traceparent(span)[1] == publish_span_id]
    assert publish.kind == SpanKind.PRODUCER
    assert publish.parent is not None and publish.parent.span_id == request.get_span_context().span_id

    # 3. The consumer: its handling is a span of the same trace, under the delivery of that
    # publish, and its log lines carry the request id and the event's ids.
    await wait_for(lambda: _async(traced.named("handle order.placed.v1")), what="the consumer's span")
    (handling,) = traced.named("handle order.placed.v1")
    spans = traced.by_id()
    delivery = spans[handling.parent.span_id]
    assert delivery.kind == SpanKind.CONSUMER
    assert delivery.parent.span_id == publish.context.span_id
    assert handled["trace_id"] == request.get_span_context().trace_id
    assert handled["log"] == {
        "request_id": "req-123",
        "event_id": str(row["event_id"]),
        "event_type": "order.placed.v1",
        "order_id": "traced-order",
        "trace_id": trace_id,
        "span_id": handled["log"]["span_id"],
    }
    assert int(handled["log"]["span_id"], 16) in spans  # the handling's span, or a statement's in it

    # The relay's own claims and deletes made no span: everything recorded belongs to the request.
    assert {traceparent(span)[0] for span in traced.finished()} == {trace_id}


answered: list[dict[str, str]] = []  # the responder's log context, per request it answered


async def snapshot_reply(request: GetBasketSnapshot) -> BasketSnapshotReply:
    answered.append(tracing.log_fields())
    basket = BasketSnapshot(
        id=request.basket_id,
        currency="GBP",
        used=False,
        sub_total=0,
        tax_total=0,
        discount_total=0,
        total=0,
        weight_grams=0,
        lines=[],
    )
    return BasketSnapshotReply(basket=basket)


async def test_a_request_reply_call_takes_the_callers_request_id_and_trace_to_the_responder(
    platform: Platform, traced: Traced
):
    assert platform.connection is not None
    server = RpcServer(platform.topology("basket"), [Responder(GetBasketSnapshot, snapshot_reply)])
    await server.start(platform.connection)
    platform._stoppable.append(server)
    client = RpcClient(platform.topology("orders"))
    await client.start(platform.connection)
    platform._stoppable.append(client)
    answered.clear()

    token = http.request_id_var.set("req-rpc")  # as the HTTP middleware sets it for a handler
    try:
        with traced.tracer.start_as_current_span("request") as request:
            await client.call(GetBasketSnapshot(basket_id="abc123"), timeout=2)
    finally:
        http.request_id_var.reset(token)

    trace_id, _ = traceparent(request)
    (log,) = answered
    assert (log["request_id"], log["request_type"], log["trace_id"]) == ("req-rpc", "basket.snapshot", trace_id)
    await wait_for(lambda: _async(traced.named("answer basket.snapshot")), what="the answer's span")
    spans = traced.by_id()
    (ask,) = traced.named("ask basket.snapshot")
    (answer,) = traced.named("answer basket.snapshot")
    assert ask.kind == SpanKind.CLIENT and ask.parent.span_id == request.get_span_context().span_id
    chain = []
    span = answer
    while span.parent is not None and span.parent.span_id in spans:
        span = spans[span.parent.span_id]
        chain.append(span.name)
    assert chain[-2:] == ["ask basket.snapshot", "request"]


# ---------------------------------------------------------------------------------------------
# Tracing off: the default of development and of the session's stack


def test_with_tracing_off_no_trace_context_is_stored_and_no_span_is_made():
    assert not tracing.ENABLED
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Even inside someone else's span: tracing off, nothing of ours reads or writes a trace context.
    with provider.get_tracer("test").start_as_current_span("elsewhere"):
        row = outbox.outgoing(placed("o1"), "orders", correlation_id="req-1").row
        headers: dict[str, str] = {}
        tracing.inject(headers)
        with tracing.working_on("handle x", order_id="o1"):
            fields = tracing.log_fields()
    assert row[4] == {"correlation_id": "req-1"}
    assert headers == {}
    assert fields == {"order_id": "o1"}
    assert [span.name for span in exporter.get_finished_spans()] == ["elsewhere"]


def test_log_lines_carry_the_request_id_and_the_fields_of_the_work_at_hand():
    def line(**extra: object) -> dict[str, object]:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "step", None, None)
        record.__dict__.update(extra)
        return orjson.loads(JsonFormatter().format(record))

    assert "request_id" not in line()
    event_id = uuid.uuid4()
    with tracing.working_on("handle order.placed.v1", request_id="req-9", event_id=event_id, order_id=None):
        inside = line()
        with tracing.working_on("nested", order_id="o7"):
            nested = line(order_id="explicit")
        after_nested = line()
    assert (inside["request_id"], inside["event_id"], "order_id" in inside) == ("req-9", str(event_id), False)
    assert (nested["request_id"], nested["order_id"]) == ("req-9", "explicit")  # the record's own field wins
    assert after_nested["request_id"] == "req-9" and "order_id" not in after_nested
    assert "request_id" not in line()
    token = http.request_id_var.set("http-req")
    try:
        assert line()["request_id"] == "http-req"
        assert tracing.request_id() == "http-req"
    finally:
        http.request_id_var.reset(token)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp_proto_http"]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["otlp_proto_grpc", "console"],
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, []),
    ],
)
def test_exporters_come_from_the_standard_variables(environ: dict[str, str], expected: list[str]):
    assert tracing.exporter_names(environ) == expected


def test_an_unknown_otlp_protocol_is_refused():
    with pytest.raises(ValueError, match="OTLP protocol"):
        tracing.exporter_names({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"})
