"""Shipments of unpaid orders: an order placed with a payment type whose success is not money
received (offline) gets a held shipment, unannounced and not dispatchable, which opens, announced
once, when orders announces the order marked paid; whatever the order and number of deliveries."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from shared.bus import EventConsumer, Subscription, Topology
from shared.contracts import Address, Envelope, LineQuantity, OrderPlaced, OrderStatusChanged, envelope_for
from shared.http import new_id
from shipping import consumers, domain
from tests.support import identity_headers

ON_PLACED = Subscription(OrderPlaced, consumers.on_order_placed)
ON_STATUS = Subscription(OrderStatusChanged, consumers.on_order_status_changed)


# ---------------------------------------------------------------------------------------------
# The pure rules


def test_an_unpaid_order_is_held() -> None:
    assert domain.first_status(True) == domain.OPEN
    assert domain.first_status(False) == domain.HELD


@pytest.mark.parametrize(
    ("status", "refusal"),
    [(domain.OPEN, None), (domain.HELD, domain.MSG_HELD), (domain.DISPATCHED, domain.MSG_DISPATCHED)],
)
def test_only_an_open_shipment_is_dispatched(status: str, refusal: str | None) -> None:
    assert domain.dispatch_refusal(status) == refusal


# ---------------------------------------------------------------------------------------------
# The consumers, as the bus runs them (`EventConsumer.handle`: inbox, handler, outbox)


def placed(order_id: str, *, paid: bool) -> OrderPlaced:
    return OrderPlaced(
        order_id=order_id,
        attempt_id=uuid.uuid4(),
        basket_id=new_id(),
        reference="2026-11-0002",
        status="payment-received" if paid else "offline-payment",
        order_total=1234,
        currency="GBP",
        lines=[LineQuantity(variant_id=new_id(), sku="SKU-1", quantity=1)],
        shipping_address=Address(firstname="Ada", zip="SW1A 1AA", country="GB"),
        shipping_method="Standard Delivery",
        placed_at=datetime.now(UTC),
        paid=paid,
    )


def changed(order_id: str, to_status: str, *, marks_paid: bool) -> OrderStatusChanged:
    return OrderStatusChanged(
        order_id=order_id, from_status="offline-payment", to_status=to_status, marks_paid=marks_paid
    )


def paid(order_id: str) -> OrderStatusChanged:
    return changed(order_id, "payment-received", marks_paid=True)


@pytest.fixture
def consumer(pool, settings) -> EventConsumer:
    return EventConsumer(pool, Topology.from_settings(settings), [ON_PLACED, ON_STATUS])


async def deliver(consumer: EventConsumer, message: OrderPlaced | OrderStatusChanged, envelope=None) -> bool:
    subscription = ON_PLACED if isinstance(message, OrderPlaced) else ON_STATUS
    return await consumer.handle(envelope or envelope_for(message, "orders"), subscription, message)


async def shipment(pool, order_id: str) -> list[tuple[str, int]]:
    rows = await pool.fetch("SELECT status, version FROM shipments WHERE order_id = $1", order_id)
    return [(row["status"], row["version"]) for row in rows]


async def opened(pool, order_id: str) -> int:
    """`shipment.opened` written for the order: still in the outbox, or already relayed (by the
    session stack's relay, when it runs: then `relayed` below has it)."""
    return await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE routing_key = 'shipment.opened.v1' "
        "AND convert_from(body, 'UTF8')::jsonb -> 'payload' ->> 'order_id' = $1",
        order_id,
    )


@pytest.fixture
async def announced(pool, observe):
    """How many `shipment.opened` an order has had, wherever they are (outbox or broker)."""
    observer = await observe("shipment.opened.v1")
    published: dict[str, int] = {}

    async def count(order_id: str) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while True:
            while (message := await observer.queue.get(no_ack=True, fail=False)) is not None:
                key = Envelope.model_validate_json(message.body).payload["order_id"]
                published[key] = published.get(key, 0) + 1
            queued = await opened(pool, order_id)
            if loop.time() > deadline:
                return queued + published.get(order_id, 0)
            await asyncio.sleep(0.05)

    return count


async def test_an_unpaid_order_is_held_until_marked_paid(consumer, pool, client, announced):
    order_id = new_id()
    assert await deliver(consumer, placed(order_id, paid=False))
    assert await shipment(pool, order_id) == [("held", 1)]
    assert await announced(order_id) == 0

    shipment_id = await pool.fetchval("SELECT id FROM shipments WHERE order_id = $1", order_id)
    response = await client.post(f"/api/v1/shipments/{shipment_id}/dispatch", json={}, headers=identity_headers())
    assert (response.status, await response.json()) == (409, {"error": {"http_code": 409, "message": domain.MSG_HELD}})
    response = await client.get(f"/api/v1/shipments?order_id={order_id}&status=held", headers=identity_headers())
    assert [s["status"] for s in (await response.json())["data"]] == ["held"]

    # Status changes that do not mark it paid are not shipping's business.
    assert await deliver(consumer, changed(order_id, "voided", marks_paid=False))
    assert await shipment(pool, order_id) == [("held", 1)]

    envelope = envelope_for(paid(order_id), "orders")
    assert await deliver(consumer, paid(order_id), envelope)
    assert await shipment(pool, order_id) == [("open", 2)]
    assert await deliver(consumer, paid(order_id), envelope) is False  # the same event: the inbox
    assert await deliver(consumer, paid(order_id))  # announced again, a new event: a no-op
    assert await deliver(consumer, placed(order_id, paid=False))  # a late placement: a no-op
    assert await shipment(pool, order_id) == [("open", 2)]
    assert await announced(order_id) == 1

    response = await client.post(f"/api/v1/shipments/{shipment_id}/dispatch", json={}, headers=identity_headers())
    assert response.status == 200


async def test_a_paid_order_opens_at_once_and_a_later_payment_changes_nothing(consumer, pool, announced):
    order_id = new_id()
    await deliver(consumer, placed(order_id, paid=True))
    await deliver(consumer, paid(order_id))
    assert await shipment(pool, order_id) == [("open", 1)]
    assert await announced(order_id) == 1


async def test_marked_paid_before_the_placement_arrives(consumer, pool, announced):
    """The payment's announcement overtook the placement's (a retry, a redelivery): the placement
    finds the order paid and opens its shipment at once."""
    order_id = new_id()
    await deliver(consumer, paid(order_id))
    assert await shipment(pool, order_id) == []
    await deliver(consumer, placed(order_id, paid=False))
    assert await shipment(pool, order_id) == [("open", 1)]
    assert await announced(order_id) == 1


async def test_twenty_concurrent_copies_of_the_payment_open_once(consumer, pool, announced):
    order_id = new_id()
    await deliver(consumer, placed(order_id, paid=False))
    same = envelope_for(paid(order_id), "orders")
    handled = await asyncio.gather(
        *(deliver(consumer, paid(order_id), same) for _ in range(10)),
        *(deliver(consumer, paid(order_id)) for _ in range(10)),
    )
    assert sorted(handled) == [False] * 9 + [True] * 11
    assert await shipment(pool, order_id) == [("open", 2)]
    assert await announced(order_id) == 1


async def test_placement_and_payment_at_once_open_one_shipment(consumer, pool, announced):
    """Whichever commits first, each order ends with one open shipment, announced once."""
    orders = [new_id() for _ in range(5)]
    await asyncio.gather(
        *(deliver(consumer, placed(order_id, paid=False)) for order_id in orders for _ in range(3)),
        *(deliver(consumer, paid(order_id)) for order_id in orders for _ in range(3)),
    )
    for order_id in orders:
        assert [status for status, _ in await shipment(pool, order_id)] == ["open"]
        assert await announced(order_id) == 1
