"""One checkout through the gateway is one trace, across the five services and the broker.

The services run with `OTEL_TRACES_EXPORTER=otlp` and export to the receiver of this folder's
conftest (see there why an OTLP receiver and not an in-memory exporter). The trace is found by the
order id our consumer spans carry, then checked whole: one root (the gateway's span of
`POST /orders/process`), every other span's parent in the same trace, a span from each of the five
services, every event's handling under a delivery under a publish, and the saga's steps each
under the one that caused it (the placement under the charge, the shipment under the placement).
Their log lines carry the same trace and the request's id.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from bench.shopper import Shopper, pick_variants
from tests.tracing.conftest import Receiver, Span, Traced

CHECKOUT_SERVICES = {"gateway", "basket", "orders", "payments", "shipping"}
SERVER, CLIENT = ProtoSpan.SPAN_KIND_SERVER, ProtoSpan.SPAN_KIND_CLIENT
PRODUCER, CONSUMER = ProtoSpan.SPAN_KIND_PRODUCER, ProtoSpan.SPAN_KIND_CONSUMER
# The saga, each step's handling span and the service that runs it, in causal order.
SAGA = [
    ("basket", "handle order.stock_requested.v1"),
    ("orders", "handle stock.reserved.v1"),
    ("payments", "handle order.charge_requested.v1"),  # the charge
    ("orders", "handle payment.captured.v1"),  # the placement
    ("shipping", "handle order.placed.v1"),
]


async def prepared_order(session: aiohttp.ClientSession, traced: Traced) -> tuple[Shopper, str]:
    shopper = Shopper(session, traced.stack.gateway)
    variants = pick_variants(await shopper.catalogue(), random.Random(19), 2)
    return shopper, await shopper.prepare(variants)


async def process(shopper: Shopper, order_id: str, request_id: str) -> dict[str, Any]:
    body = await shopper.call(
        "POST",
        "/orders/process",
        "/orders/process",
        json={"order_id": order_id, "payment_token": "fake-valid-nonce"},
        headers={"X-Request-Id": request_id},
    )
    return body["data"]


async def whole_trace(receiver: Receiver, trace_id: str, having: Iterable[tuple[str, str]] = ()) -> list[Span]:
    """The trace's spans once every span's parent has arrived (the root, last to end, too) and
    those named in `having` (service, name) are in."""

    def arrived() -> list[Span] | None:
        spans = receiver.trace(trace_id)
        ids = {span.span_id for span in spans}
        names = {(span.service, span.name) for span in spans}
        stitched = all(not span.parent_id or span.parent_id in ids for span in spans)
        return spans if spans and stitched and set(having) <= names else None

    return await receiver.eventually(arrived)


def ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    chain = []
    while span.parent_id:
        span = by_id[span.parent_id]
        chain.append(span)
    return chain


def one(spans: list[Span], service: str, name: str) -> Span:
    found = [span for span in spans if span.service == service and span.name == name]
    assert len(found) == 1, (service, name, sorted({s.name for s in spans if s.service == service}))
    return found[0]


def log_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return lines


async def test_one_checkout_is_one_trace_through_the_five_services_and_the_broker(traced: Traced):
    request_id = f"trace-{uuid.uuid4().hex}"
    async with aiohttp.ClientSession() as session:
        shopper, order_id = await prepared_order(session, traced)
        placed = await process(shopper, order_id, request_id)
    assert placed["placed_at"] is not None

    receiver = traced.receiver
    (first,) = await receiver.eventually(
        lambda: receiver.find(lambda s: s.attributes.get("commerce.order_id") == order_id and s.name == SAGA[0][1])
    )
    spans = await whole_trace(receiver, first.trace_id, SAGA)
    by_id = {span.span_id: span for span in spans}

    # One trace, one root: the gateway's span of the request; every other span's parent is in it.
    roots = [span for span in spans if not span.parent_id]
    assert [(r.service, r.name, r.kind) for r in roots] == [("gateway", "POST /api/v1/orders/process", SERVER)]
    assert len(by_id) == len(spans)
    assert CHECKOUT_SERVICES <= {span.service for span in spans}

    # The gateway's own client sent its context: the service's request span is its child.
    orders_request = one(spans, "orders", "POST /api/v1/orders/process")
    forward = by_id[orders_request.parent_id]
    assert (forward.service, forward.kind, forward.parent_id) == ("gateway", CLIENT, roots[0].span_id)

    # The broker hops: each handling is under its delivery, under the publish of the service that
    # emitted the event; a child never starts before its parent.
    for service, name in SAGA:
        handling = one(spans, service, name)
        delivery = by_id[handling.parent_id]
        publish = by_id[delivery.parent_id]
        assert (delivery.service, delivery.kind) == (service, CONSUMER), name
        assert publish.kind == PRODUCER, name
        assert handling.attributes["commerce.request_id"] == request_id
        assert handling.attributes["commerce.order_id"] == order_id
    for span in spans:
        if span.parent_id:
            assert span.start >= by_id[span.parent_id].start, (span.name, by_id[span.parent_id].name)

    # Causal order: each step of the saga descends from the one before; the first from the request.
    steps = [one(spans, service, name) for service, name in SAGA]
    assert orders_request in ancestors(steps[0], by_id)
    for earlier, later in itertools.pairwise(steps):
        assert earlier in ancestors(later, by_id), (earlier.name, later.name)
        assert later.start > earlier.start

    # The same trace in the log: basket's line for the reservation carries it, and the request id.
    reserved = [
        line
        for line in log_lines(traced.stack["basket"].log_path)
        if line.get("msg") == "stock reserved" and line.get("order_id") == order_id
    ]
    assert reserved, "basket logged no reservation for the order"
    assert {(line["request_id"], line["trace_id"]) for line in reserved} == {(request_id, first.trace_id)}
    assert all(line["span_id"] in by_id for line in reserved)
    assert reserved[0]["event_id"] == steps[0].attributes["commerce.event_id"]


async def test_a_request_reply_call_is_part_of_the_trace_and_the_answer_carries_its_request_id(traced: Traced):
    """`POST /orders` asks basket for the basket: the call, the request's delivery and the answer
    are spans of the request's trace."""
    async with aiohttp.ClientSession() as session:
        shopper = Shopper(session, traced.stack.gateway)
        variants = pick_variants(await shopper.catalogue(), random.Random(23), 1)
        basket = await shopper.call(
            "POST", "/baskets", "/baskets", json={"variants": [{"id": v, "quantity": q} for v, q in variants]}
        )
        request_id = f"rpc-{uuid.uuid4().hex}"
        order = await shopper.call(
            "POST", "/orders", "/orders", json={"basket_id": basket["data"]["id"]}, headers={"X-Request-Id": request_id}
        )
    assert order["data"]["id"]

    receiver = traced.receiver
    (answer,) = await receiver.eventually(
        lambda: receiver.find(lambda s: s.attributes.get("commerce.request_id") == request_id and s.service == "basket")
    )
    assert answer.name == "answer basket.snapshot"  # basket's only work for this request
    spans = await whole_trace(receiver, answer.trace_id)
    by_id = {span.span_id: span for span in spans}
    chain = [(span.service, span.kind) for span in ancestors(answer, by_id)]
    # answer <- basket's delivery <- orders' publish <- orders' call <- ... <- the gateway's request
    assert chain[:3] == [("basket", CONSUMER), ("orders", PRODUCER), ("orders", CLIENT)]
    assert ancestors(answer, by_id)[2].name == "ask basket.snapshot"
    assert chain[-1] == ("gateway", SERVER)
