"""Payment types by policy and offline orders held until paid, through the gateway against the five
real processes: a type withdrawn or disabled by an admin is refused at checkout; an order paid
offline is placed but its shipment opens only when an admin marks it paid, exactly once however
often that is announced."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import aiohttp
import orjson
import pytest

from bench.shopper import Shopper
from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from tests.support import Stack, observing

ADMIN = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}
INVALID_TYPE = {"payment_type": ["The selected payment type is invalid."]}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(session: aiohttp.ClientSession, stack: Stack, method: str, path: str, body: Any = None, **kw: Any):
    async with session.request(method, stack.gateway + path, json=body, **kw) as response:
        return response.status, await response.json()


async def eventually(check, timeout: float = 15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def a_variant(session: aiohttp.ClientSession, stack: Stack) -> str:
    sku = f"POLICY-{uuid.uuid4().hex[:10]}"
    body = {"name": sku, "variants": [{"sku": sku, "price": "10.00", "inventory": 10, "weight_grams": 500}]}
    status, product = await call(session, stack, "POST", "/products?include=variants", body, headers=ADMIN)
    assert status in (200, 201), product
    return product["data"]["variants"]["data"][0]["id"]


@pytest.fixture
async def offline(session: aiohttp.ClientSession, stack: Stack) -> AsyncIterator[dict[str, Any]]:
    """The offline type as the admin sees it; its demo policy (enabled, offered) is restored after."""
    status, body = await call(session, stack, "GET", "/payments/types/all", headers=ADMIN)
    assert status == 200, body
    [offline] = [t for t in body["data"] if t["handle"] == "offline"]
    yield offline
    status, _ = await call(
        session, stack, "PUT", f"/payments/types/{offline['id']}", {"enabled": True, "offered": True}, headers=ADMIN
    )
    assert status == 200


async def test_a_type_withdrawn_or_disabled_is_refused_at_checkout(session, stack: Stack, offline):
    shopper = Shopper(session, stack.gateway)
    order_id = await shopper.prepare([(await a_variant(session, stack), 1)])
    path = f"/payments/types/{offline['id']}"

    async def offline_checkout() -> tuple[int, Any]:
        # A token of its own each time: orders remembers a successful resolution for a while.
        body = {"order_id": order_id, "payment_type": "offline", "payment_token": uuid.uuid4().hex}
        return await call(session, stack, "POST", "/orders/process", body)

    async def storefront() -> list[str]:
        status, body = await call(session, stack, "GET", "/payments/types")
        assert status == 200
        return sorted(t["handle"] for t in body["data"])

    assert (await call(session, stack, "PUT", path, {"offered": False}))[0] == 401
    status, body = await call(session, stack, "PUT", path, {"offered": False}, headers=ADMIN)
    assert (status, body["data"]["offered"]) == (200, False)
    assert await storefront() == ["card"]
    assert await offline_checkout() == (422, INVALID_TYPE)

    status, _ = await call(session, stack, "PUT", path, {"offered": True, "enabled": False}, headers=ADMIN)
    assert status == 200
    assert await storefront() == ["card"]
    assert await offline_checkout() == (422, INVALID_TYPE)
    status, order = await call(session, stack, "GET", f"/orders/{order_id}")
    assert (order["data"]["status"], order["data"]["placed_at"]) == ("awaiting-payment", None)

    status, _ = await call(session, stack, "PUT", path, {"enabled": True}, headers=ADMIN)
    assert status == 200
    assert await storefront() == ["card", "offline"]
    status, placed = await offline_checkout()
    assert (status, placed["data"]["status"]) == (200, "offline-payment"), placed


async def test_an_offline_order_ships_only_once_marked_paid(session, stack: Stack, admin_db):
    async with observing(stack.infra.amqp_url, stack.infra.namespace) as bind:
        observer = await bind("shipment.opened.v1", "order.status_changed.v1")
        shopper = Shopper(session, stack.gateway)
        outcome = await shopper.checkout(
            [(await a_variant(session, stack), 1)], payment_token=None, payment_type="offline"
        )
        assert (outcome.error, outcome.status) == (None, "offline-payment")
        order_id = outcome.order_id

        async def shipments() -> list[dict[str, Any]]:
            status, body = await call(session, stack, "GET", f"/shipments?order_id={order_id}", headers=ADMIN)
            assert status == 200
            return body["data"]

        # The shipment is there, held: the unit of work that wrote it announced nothing.
        [held] = await eventually(shipments)
        assert held["status"] == "held"
        status, body = await call(session, stack, "POST", f"/shipments/{held['id']}/dispatch", {}, headers=ADMIN)
        assert (status, body["error"]["message"]) == (409, "This shipment is held until its order is paid")
        status, body = await call(session, stack, "PUT", f"/orders/{order_id}", {"status": "dispatched"}, headers=ADMIN)
        assert (status, body) == (422, {"status": ["An order cannot go from offline-payment to dispatched"]})

        status, body = await call(
            session, stack, "PUT", f"/orders/{order_id}", {"status": "payment-received"}, headers=ADMIN
        )
        assert (status, body["data"]["status"]) == (200, "payment-received")
        [change] = await observer.collect(about(order_id, "order.status_changed"), 1)
        assert change["payload"]["marks_paid"] is True
        await observer.collect(about(order_id, "shipment.opened"), 1)

        # The payment announced again: the same event (the inbox absorbs it) and a copy with an id
        # of its own (the shipment is open already): still one shipment, opened once.
        copy = change | {"event_id": str(uuid.uuid4())}
        await publish(stack, change, copy)

        async def copy_handled() -> bool:
            return bool(
                await admin_db.fetchval(
                    "SELECT count(*) FROM shipping.inbox WHERE event_id = $1", uuid.UUID(copy["event_id"])
                )
            )

        await eventually(copy_handled)
        # Had the copy opened it again, that announcement would reach the broker within this.
        with pytest.raises(TimeoutError):
            await observer.collect(about(order_id, "shipment.opened"), 2, timeout=2.0)
        assert [(s["id"], s["status"]) for s in await shipments()] == [(held["id"], "open")]
        status, _ = await call(session, stack, "POST", f"/shipments/{held['id']}/dispatch", {}, headers=ADMIN)
        assert status == 200


def about(order_id: str, kind: str):
    return lambda envelope: envelope["type"] == kind and envelope["payload"]["order_id"] == order_id


async def publish(stack: Stack, *envelopes: dict[str, Any]) -> None:
    connection = await aio_pika.connect(stack.infra.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(f"{stack.infra.namespace}.events")
        for envelope in envelopes:
            routing_key = f"{envelope['type']}.v{envelope['version']}"
            message = aio_pika.Message(orjson.dumps(envelope), message_id=envelope["event_id"])
            await exchange.publish(message, routing_key=routing_key)
    finally:
        await connection.close()
