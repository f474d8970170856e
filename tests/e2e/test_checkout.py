"""The whole documented lifecycle through the gateway, against the five real processes.

From an empty basket to a placed order, for both providers; declines and retries; concurrent
processing of one order; the last unit of stock; and every message the services publish on the
way validated against the published contract schemas.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import aio_pika
import aiohttp
import jsonschema
import orjson
import pytest

from bench.shopper import Shopper
from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from shared.contracts import EVENTS
from shared.contracts_schema import load_checked_in
from tests.support import Stack

ADMIN = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}


async def create_product(
    session: aiohttp.ClientSession, stack: Stack, *, inventory: int, price: str = "10.00", tax_rate_bp: int = 2000
) -> dict[str, Any]:
    sku = f"E2E-{uuid.uuid4().hex[:10]}"
    body = {
        "name": f"End-to-end {sku}",
        "variants": [
            {"sku": sku, "price": price, "tax_rate_bp": tax_rate_bp, "inventory": inventory, "weight_grams": 500}
        ],
    }
    async with session.post(stack.gateway + "/products?include=variants", json=body, headers=ADMIN) as response:
        assert response.status in (200, 201), await response.text()
        return (await response.json())["data"]


def variant_of(product: dict[str, Any]) -> dict[str, Any]:
    return product["variants"]["data"][0]


async def inventory(session: aiohttp.ClientSession, stack: Stack, variant_id: str) -> int:
    async with session.get(f"{stack.gateway}/products/variants/{variant_id}") as response:
        assert response.status == 200
        return (await response.json())["data"]["inventory"]


async def get_order(session: aiohttp.ClientSession, stack: Stack, order_id: str) -> dict[str, Any]:
    url = f"{stack.gateway}/orders/{order_id}?include=lines,shipping,transactions"
    async with session.get(url) as response:
        assert response.status == 200
        return (await response.json())["data"]


async def eventually(check, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    ("payment", "success_status"),
    [({"payment_token": "fake-valid-nonce"}, "payment-received"), ({"payment_type": "offline"}, "offline-payment")],
    ids=["sandbox", "offline"],
)
async def test_documented_lifecycle_places_the_order(stack: Stack, session, payment, success_status):
    product = await create_product(session, stack, inventory=10)
    variant = variant_of(product)
    shopper = Shopper(session, stack.gateway)

    outcome = await shopper.checkout(
        [(variant["id"], 3)],
        payment_token=payment.get("payment_token"),
        payment_type=payment.get("payment_type"),
        browse_product=product["id"],
    )

    assert outcome.error is None, outcome.error
    assert outcome.placed and outcome.status == success_status
    order = await get_order(session, stack, outcome.order_id)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{4}", order["reference"])
    assert order["invoice_reference"] == "#INV-" + order["reference"]
    goods = [line for line in order["lines"]["data"] if not line["is_shipping"]]
    assert [(line["sku"], line["quantity"], line["unit_price"]) for line in goods] == [(variant["sku"], 3, 1000)]
    assert order["sub_total"] == 3000
    assert order["order_total"] == order["sub_total"] + order["delivery_total"] + order["tax_total"]
    captured = [t for t in order["transactions"]["data"] if t["success"] and not t["refund"]]
    assert len(captured) == 1 and captured[0]["amount"] == order["order_total"]
    await eventually(lambda: _inventory_is(session, stack, variant["id"], 7))


async def _inventory_is(session, stack, variant_id: str, expected: int) -> bool:
    return await inventory(session, stack, variant_id) == expected


async def test_declined_then_retried_is_placed_once_with_one_failed_and_one_captured_charge(stack: Stack, session):
    product = await create_product(session, stack, inventory=5)
    variant = variant_of(product)
    shopper = Shopper(session, stack.gateway)

    declined = await shopper.checkout([(variant["id"], 2)], payment_token="fake-processor-declined-visa-nonce")
    assert declined.error_status == 403
    assert shopper.responses[-1][2] == {"error": {"http_code": 403, "message": "Payment has failed"}}
    order = await get_order(session, stack, declined.order_id)
    assert order["status"] == "failed" and order["placed_at"] is None

    retried = await shopper.call(
        "POST",
        "/orders/process",
        "/orders/process",
        json={"order_id": declined.order_id, "payment_token": "fake-valid-nonce"},
    )
    assert retried["data"]["status"] == "payment-received"
    order = await get_order(session, stack, declined.order_id)
    transactions = order["transactions"]["data"]
    assert sorted(t["success"] for t in transactions) == [False, True]
    assert [t["amount"] for t in transactions if t["success"]] == [order["order_total"]]
    await eventually(lambda: _inventory_is(session, stack, variant["id"], 3))
    await asyncio.sleep(0.5)
    assert await inventory(session, stack, variant["id"]) == 3  # decremented once, not twice


async def prepare_order(shopper: Shopper, variant_id: str, quantity: int = 1) -> str:
    return await shopper.prepare([(variant_id, quantity)])


@pytest.mark.parametrize("same_token", [True, False], ids=["same-token", "different-tokens"])
async def test_twenty_concurrent_process_calls_charge_once(stack: Stack, session, same_token: bool):
    product = await create_product(session, stack, inventory=5)
    shopper = Shopper(session, stack.gateway)
    order_id = await prepare_order(shopper, variant_of(product)["id"])
    tokens = (
        ["fake-valid-nonce"] * 20
        if same_token
        else ["fake-valid-nonce"] * 10 + ["fake-processor-declined-visa-nonce"] * 10
    )

    async def process(token: str) -> tuple[int, Any]:
        async with session.post(
            stack.gateway + "/orders/process", json={"order_id": order_id, "payment_token": token}
        ) as r:
            return r.status, await r.json()

    results = await asyncio.gather(*(process(t) for t in tokens))
    statuses = [status for status, _ in results]
    assert all(status < 500 for status in statuses), results
    assert all(status in (200, 202, 403, 409, 422) for status in statuses), results

    async def settled():
        order = await get_order(session, stack, order_id)
        return order if order["status"] != "payment-processing" else None

    order = await eventually(settled)
    captured = [t for t in order["transactions"]["data"] if t["success"] and not t["refund"]]
    assert len(captured) <= 1
    if order["placed_at"] is not None:
        assert len(captured) == 1 and captured[0]["amount"] == order["order_total"]
        assert statuses.count(200) <= 1
    else:
        assert captured == []
    for status, body in results:
        if status == 200:
            assert body["data"]["id"] == order_id and body["data"]["placed_at"] is not None
        elif status in (403, 409):
            assert body["error"]["http_code"] == status


async def test_the_last_unit_goes_to_one_order_and_the_other_is_not_charged(stack: Stack, session):
    product = await create_product(session, stack, inventory=1)
    variant_id = variant_of(product)["id"]
    first = await prepare_order(Shopper(session, stack.gateway), variant_id)
    second = await prepare_order(Shopper(session, stack.gateway), variant_id)

    async def process(order_id: str) -> int:
        body = {"order_id": order_id, "payment_token": "fake-valid-nonce"}
        async with session.post(stack.gateway + "/orders/process", json=body) as response:
            return response.status

    statuses = sorted(await asyncio.gather(process(first), process(second)))
    assert statuses[0] == 200 and statuses[1] in (403, 422), statuses
    orders = [await get_order(session, stack, order_id) for order_id in (first, second)]
    placed = [o for o in orders if o["placed_at"] is not None]
    failed = [o for o in orders if o["status"] == "failed"]
    assert len(placed) == 1 and len(failed) == 1
    assert not [t for t in failed[0]["transactions"]["data"] if t["success"]]
    await eventually(lambda: _inventory_is(session, stack, variant_id, 0))


async def test_every_published_message_matches_its_contract(stack: Stack, session):
    """Producer contract test: tap every event the services publish during a checkout."""
    connection = await aio_pika.connect(stack.infra.amqp_url)
    seen: list[aio_pika.abc.AbstractIncomingMessage] = []
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{stack.infra.namespace}.events")
        tap = await channel.declare_queue(exclusive=True, auto_delete=True)
        await tap.bind(exchange, "#")

        async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            seen.append(message)
            await message.ack()

        await tap.consume(collect)

        product = await create_product(session, stack, inventory=3)
        outcome = await Shopper(session, stack.gateway).checkout([(variant_of(product)["id"], 1)])
        assert outcome.placed, outcome.error

        async def all_saga_events():
            keys = {m.routing_key for m in seen}
            return {"order.placed.v1", "stock.committed.v1", "shipment.opened.v1"} <= keys

        await eventually(all_saga_events)
    finally:
        await connection.close()

    schemas = load_checked_in()
    keys = set()
    for message in seen:
        assert message.routing_key in EVENTS, message.routing_key
        envelope = orjson.loads(message.body)
        assert envelope["producer"] == EVENTS[message.routing_key].producer
        assert f"{envelope['type']}.v{envelope['version']}" == message.routing_key
        jsonschema.validate(envelope["payload"], schemas[message.routing_key])
        keys.add(message.routing_key)
    expected = {
        "basket.changed.v1",
        "order.created.v1",
        "order.stock_requested.v1",
        "stock.reserved.v1",
        "order.charge_requested.v1",
        "payment.captured.v1",
        "order.placed.v1",
        "stock.committed.v1",
        "shipment.opened.v1",
    }
    assert expected <= keys, expected - keys
