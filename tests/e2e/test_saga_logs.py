"""A saga step's log lines name the request that started it (the session's stack: tracing off).

Basket reserves the stock in its consumer of `order.stock_requested`, long after the
`POST /orders/process` that caused it was answered by another service: its log line carries that
request's id (the event's correlation id), the event's id and type, and the order's id, so that
`grep <request id>` over every service's log follows the checkout. With tracing off, the default,
no trace id is invented.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson

from bench.shopper import Shopper
from tests.e2e.test_checkout import create_product, variant_of
from tests.support import Stack


def basket_lines(stack: Stack, order_id: str) -> list[dict[str, Any]]:
    found = []
    for line in stack["basket"].log_path.read_text().splitlines():
        if order_id in line:
            found.append(orjson.loads(line))
    return found


async def test_a_consumers_log_lines_carry_the_request_id_of_the_process_call_that_started_the_saga(
    stack: Stack, session
):
    variant = variant_of(await create_product(session, stack, inventory=5))
    shopper = Shopper(session, stack.gateway)
    order_id = await shopper.prepare([(variant["id"], 1)])
    request_id = f"saga-{uuid.uuid4().hex}"
    await shopper.call(
        "POST",
        "/orders/process",
        "/orders/process",
        json={"order_id": order_id, "payment_token": "fake-valid-nonce"},
        headers={"X-Request-Id": request_id},
    )

    for _ in range(100):  # the line is written by another process: give it a moment to land
        reserved = [line for line in basket_lines(stack, order_id) if line["msg"] == "stock reserved"]
        if reserved:
            break
        await asyncio.sleep(0.05)
    (line,) = reserved
    assert line["request_id"] == request_id
    assert line["event_type"] == "order.stock_requested.v1"
    assert uuid.UUID(line["event_id"])
    assert line["order_id"] == order_id
    assert "trace_id" not in line and "span_id" not in line
