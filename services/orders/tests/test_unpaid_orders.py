"""Orders placed unpaid (the offline type: its success is a promise to pay): the status rules, and
what orders announces when it places one and when an admin marks it paid."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orders import domain
from orders.domain import (
    AWAITING_PAYMENT,
    DISPATCHED,
    FAILED,
    OFFLINE_PAYMENT,
    PAYMENT_PROCESSING,
    PAYMENT_RECEIVED,
    REFUNDED,
    VOIDED,
)
from services.orders.tests.test_saga import URL, Script, process, ready_order, transaction
from services.orders.tests.testkit import OFFLINE, FakeShipping, Peer, Store, admin
from shared.contracts import Envelope, OrderChargeRequested, PaymentCaptured

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

# ---------------------------------------------------------------------------------------------
# The rules


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (PAYMENT_PROCESSING, OFFLINE_PAYMENT, True),
        (OFFLINE_PAYMENT, PAYMENT_RECEIVED, True),
        (OFFLINE_PAYMENT, VOIDED, True),  # payments voided it
        (OFFLINE_PAYMENT, REFUNDED, True),
        (OFFLINE_PAYMENT, DISPATCHED, True),  # shipping's fact, followed
        (PAYMENT_RECEIVED, OFFLINE_PAYMENT, False),  # paid is never unpaid again
        ("custom-paid", OFFLINE_PAYMENT, False),
        (DISPATCHED, OFFLINE_PAYMENT, False),
        (AWAITING_PAYMENT, OFFLINE_PAYMENT, False),
    ],
)
def test_unpaid_transitions(current: str, target: str, allowed: bool) -> None:
    assert domain.can_transition(current, target) is allowed


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (OFFLINE_PAYMENT, PAYMENT_RECEIVED, True),
        (OFFLINE_PAYMENT, DISPATCHED, False),  # marked paid first
        (OFFLINE_PAYMENT, VOIDED, False),
        (OFFLINE_PAYMENT, FAILED, False),
        (PAYMENT_RECEIVED, OFFLINE_PAYMENT, False),
        ("custom-paid", PAYMENT_RECEIVED, True),
        (PAYMENT_RECEIVED, DISPATCHED, True),
    ],
)
def test_an_admin_marks_an_unpaid_order_paid_before_anything_else(current: str, target: str, allowed: bool) -> None:
    if allowed:
        assert domain.admin_transition(current, target) == target
    else:
        with pytest.raises(domain.TransitionRefused):
            domain.admin_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target", "marks"),
    [
        (OFFLINE_PAYMENT, PAYMENT_RECEIVED, True),
        ("custom-pending", PAYMENT_RECEIVED, True),
        (PAYMENT_RECEIVED, DISPATCHED, False),
        (OFFLINE_PAYMENT, VOIDED, False),
        (PAYMENT_PROCESSING, PAYMENT_RECEIVED, False),  # placing: announced by order.placed
        (PAYMENT_RECEIVED, PAYMENT_RECEIVED, False),
    ],
)
def test_marks_paid(current: str, target: str, marks: bool) -> None:
    assert domain.marks_paid(current, target) is marks


# ---------------------------------------------------------------------------------------------
# Through the broker, with in-test basket and payments


class Offline(Script):
    """Payments as it answers the offline type: captured, but no money received."""

    async def on_payments(self, envelope: Envelope) -> None:
        if envelope.routing_key != OrderChargeRequested.routing_key():
            return
        charge = OrderChargeRequested.model_validate(envelope.payload)
        self.charges.append(charge)
        await self.payments.publish(
            PaymentCaptured(
                order_id=charge.order_id,
                attempt_id=charge.attempt_id,
                success_status=OFFLINE.success_status,
                transaction=transaction(charge.order_id, charge.amount),
                paid=False,
            )
        )


@pytest.fixture
def offline(peers: dict[str, Peer]) -> Offline:
    return Offline(peers)


async def announced(peer: Peer, routing_key: str, order_id: str, settle: float = 1.0) -> list[dict[str, Any]]:
    """Every payload of `routing_key` about the order the peer received within `settle` seconds
    of the last one."""
    found: list[dict[str, Any]] = []
    while True:
        try:
            envelope = await asyncio.wait_for(peer.received.get(), settle)
        except TimeoutError:
            return found
        if envelope.routing_key == routing_key and envelope.payload["order_id"] == order_id:
            found.append(envelope.payload)


async def test_an_offline_order_is_placed_unpaid_and_marked_paid_once(
    client: Any, store: Store, shipping: FakeShipping, offline: Offline, peers: dict[str, Peer]
) -> None:
    order = await ready_order(client, store, shipping)
    response = await process(client, order["id"], token=None, payment_type_id=OFFLINE.id)
    assert response.status == 200, await response.text()
    assert (await response.json())["data"]["status"] == OFFLINE_PAYMENT
    [placed] = await announced(peers["shipping"], "order.placed.v1", order["id"])
    assert (placed["status"], placed["paid"]) == (OFFLINE_PAYMENT, False)

    response = await client.put(f"{URL}/{order['id']}", json={"status": "dispatched"}, headers=admin())
    assert (response.status, await response.json()) == (
        422,
        {"status": ["An order cannot go from offline-payment to dispatched"]},
    )

    # Eight admins mark it paid at once: one change, one announcement that marks it paid.
    responses = await asyncio.gather(
        *(client.put(f"{URL}/{order['id']}", json={"status": PAYMENT_RECEIVED}, headers=admin()) for _ in range(8))
    )
    assert [r.status for r in responses] == [200] * 8
    [change] = await announced(peers["shipping"], "order.status_changed.v1", order["id"])
    assert (change["from_status"], change["to_status"], change["marks_paid"]) == (
        OFFLINE_PAYMENT,
        PAYMENT_RECEIVED,
        True,
    )

    response = await client.put(f"{URL}/{order['id']}", json={"status": OFFLINE_PAYMENT}, headers=admin())
    assert response.status == 422
    response = await client.put(f"{URL}/{order['id']}", json={"status": "dispatched"}, headers=admin())
    assert response.status == 200
    [change] = await announced(peers["shipping"], "order.status_changed.v1", order["id"])
    assert (change["to_status"], change["marks_paid"]) == ("dispatched", False)


async def test_a_card_order_is_placed_paid(
    client: Any, store: Store, shipping: FakeShipping, peers: dict[str, Peer]
) -> None:
    Script(peers)  # basket reserves, payments captures the card's money
    order = await ready_order(client, store, shipping)
    assert (await process(client, order["id"])).status == 200
    [placed] = await announced(peers["shipping"], "order.placed.v1", order["id"])
    assert (placed["status"], placed["paid"]) == (PAYMENT_RECEIVED, True)
