"""The checkout saga, orders side (issue 6): `POST /orders/process` through the broker with
in-test basket and payments peers, and the saga handlers driven directly, each event twice."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from orders import consumers, sweepers
from orders.settings import OrdersSettings
from services.orders.tests.testkit import ADDRESS, CARD, OFFLINE, FakeShipping, Peer, Store, admin, line
from shared import db, runtime
from shared.bus import EventConsumer, Topology
from shared.contracts import (
    Contract,
    Envelope,
    OrderChargeRequested,
    OrderStockRequested,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentVoided,
    ShipmentDispatched,
    StockRefused,
    StockReserved,
    TransactionView,
    envelope_for,
)
from shared.http import new_id

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

URL = "/api/v1/orders"
VALID = "fake-valid-nonce"
DECLINED = "fake-processor-declined-visa-nonce"
REFERENCE = re.compile(r"^(\d{4}-\d{2})-(\d{4,})$")


async def ready_order(client: Any, store: Store, shipping: FakeShipping, *lines: Any) -> dict[str, Any]:
    """An order with everything checkout needs: lines, addresses, a shipping price, an email."""
    basket_id = store.put(list(lines) or [line("A", 2, 1250)])
    response = await client.post(URL, json={"basket_id": basket_id})
    assert response.status == 200, await response.text()
    order_id = (await response.json())["data"]["id"]
    for path, body in (
        ("shipping/address", ADDRESS),
        ("shipping/cost", {"price_id": shipping.uk_standard.id}),
        ("billing/address", ADDRESS),
        ("contact", {"email": "sweets@example.com"}),
    ):
        response = await client.put(f"{URL}/{order_id}/{path}", json=body)
        assert response.status == 200, await response.text()
    return (await response.json())["data"]


def transaction(
    order_id: str, amount: int, success: bool = True, refund: bool = False, currency: str = "GBP"
) -> TransactionView:
    return TransactionView(
        id=new_id(),
        order_id=order_id,
        transaction_id=f"sandbox_{new_id()}",
        merchant="commerce",
        amount=amount,
        currency=currency,
        provider="Sandbox",
        driver="sandbox",
        success=success,
        refund=refund,
        status=("refunded" if refund else "captured") if success else "processor_declined",
        card_type="Visa",
        last_four="1111",
        created_at=datetime.now(UTC),
    )


class Script:
    """What basket and payments answer to the saga's requests, over the real broker."""

    def __init__(self, peers: dict[str, Peer]) -> None:
        self.basket, self.payments = peers["basket"], peers["payments"]
        self.stock = "reserve"  # or "refuse", or "silent"
        self.charges: list[OrderChargeRequested] = []
        self.basket.on_event = self.on_basket
        self.payments.on_event = self.on_payments

    async def on_basket(self, envelope: Envelope) -> None:
        if envelope.routing_key != OrderStockRequested.routing_key() or self.stock == "silent":
            return
        request = OrderStockRequested.model_validate(envelope.payload)
        if self.stock == "reserve":
            reply: Contract = StockReserved(
                order_id=request.order_id,
                attempt_id=request.attempt_id,
                reservation_id=new_id(),
                expires_at=datetime.now(UTC) + timedelta(minutes=15),
            )
        else:
            reply = StockRefused(
                order_id=request.order_id,
                attempt_id=request.attempt_id,
                errors={"lines.0.quantity": ["Insufficient stock levels"]},
            )
        await self.basket.publish(reply)

    async def on_payments(self, envelope: Envelope) -> None:
        if envelope.routing_key != OrderChargeRequested.routing_key():
            return
        charge = OrderChargeRequested.model_validate(envelope.payload)
        self.charges.append(charge)
        # Any token starting like the valid nonce is good here (distinct valid tokens for the races).
        if (charge.payment_token or "").startswith(VALID) or charge.payment_type_id == OFFLINE.id:
            status = "offline-payment" if charge.payment_type_id == OFFLINE.id else "payment-received"
            reply: Contract = PaymentCaptured(
                order_id=charge.order_id,
                attempt_id=charge.attempt_id,
                success_status=status,
                transaction=transaction(charge.order_id, charge.amount, currency=charge.currency),
            )
        else:
            reply = PaymentDeclined(
                order_id=charge.order_id,
                attempt_id=charge.attempt_id,
                reason="processor-declined",
                transaction=transaction(charge.order_id, charge.amount, success=False, currency=charge.currency),
            )
        await self.payments.publish(reply)


@pytest.fixture
def script(peers: dict[str, Peer]) -> Script:
    return Script(peers)


async def process(client: Any, order_id: str, token: str | None = VALID, **body: Any) -> Any:
    payload = {"order_id": order_id, **body}
    if token is not None:
        payload["payment_token"] = token
    return await client.post(f"{URL}/process", json=payload)


async def wait_for(check: Any, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Through the broker


async def test_process_places_the_order(
    client: Any, store: Store, shipping: FakeShipping, script: Script, peers: dict[str, Peer], pool: asyncpg.Pool
) -> None:
    order = await ready_order(client, store, shipping, line("A", 2, 1250), line("B", 1, 999, tax_bp=0))
    assert order["order_total"] == 2500 + 999 + 500 + 500 + 100
    response = await process(client, order["id"], notes="Ring twice", customer_reference="PO-1")
    assert response.status == 200, await response.text()
    placed = (await response.json())["data"]
    assert placed["status"] == "payment-received"
    match = REFERENCE.match(placed["reference"])
    assert match and match.group(1) == datetime.now(UTC).strftime("%Y-%m")
    assert placed["invoice_reference"] == "#INV-" + placed["reference"]
    assert placed["placed_at"] is not None
    assert (placed["notes"], placed["customer_reference"], placed["type"]) == ("Ring twice", "PO-1", "Card")
    assert placed["order_total"] == order["order_total"]
    assert [li["sku"] for li in placed["lines"]["data"]] == ["A", "B", "STD"]
    assert placed["shipping"]["data"]["line_total"] == 500
    [tx] = placed["transactions"]["data"]
    assert (tx["amount"], tx["success"], tx["refund"], tx["status"]) == (order["order_total"], True, False, "captured")

    # the charge: the order's own total and currency, the client's token, once
    [charge] = script.charges
    assert (charge.amount, charge.currency, charge.payment_token) == (order["order_total"], "GBP", VALID)
    assert (charge.payment_type_id, charge.customer_email, charge.notes) == (
        CARD.id,
        "sweets@example.com",
        "Ring twice",
    )
    stock = OrderStockRequested.model_validate((await peers["basket"].next("order.stock_requested.v1")).payload)
    assert sorted((li.sku, li.quantity) for li in stock.lines) == [("A", 2), ("B", 1)]
    placed_event = (await peers["basket"].next("order.placed.v1")).payload
    assert (placed_event["reference"], placed_event["order_total"]) == (placed["reference"], order["order_total"])
    assert placed_event["shipping_address"]["country"] == "GB"
    assert (await peers["shipping"].next("order.placed.v1")).payload["order_id"] == order["id"]
    # the token left the database with the charge request
    row = await pool.fetchrow(
        "SELECT stage, payment_token, amount FROM checkout_attempts WHERE order_id = $1", order["id"]
    )
    assert dict(row) == {"stage": "captured", "payment_token": None, "amount": order["order_total"]}

    # placed: never processed again, never changed again
    again = await process(client, order["id"])
    assert again.status == 422
    assert await again.json() == {"error": {"http_code": 422, "message": "This order has already been processed"}}
    changed = await client.put(f"{URL}/{order['id']}/contact", json={"email": "other@example.com"})
    assert changed.status == 403
    basket_id = next(iter(store.baskets))
    resync = await client.post(URL, json={"basket_id": basket_id})
    assert resync.status == 403
    assert (await resync.json())["error"]["message"] == "This basket already has an order that has been placed"
    after = (await (await client.get(f"{URL}/{order['id']}", params={"include": "lines"})).json())["data"]
    assert after["lines"] == placed["lines"] and after["order_total"] == placed["order_total"]
    assert len(script.charges) == 1


async def test_payment_resolutions_are_kept_refusals_are_not(
    client: Any, store: Store, shipping: FakeShipping, script: Script, payments: Any
) -> None:
    first = await ready_order(client, store, shipping)
    second = await ready_order(client, store, shipping)
    assert (await process(client, first["id"])).status == 200
    assert (await process(client, second["id"])).status == 200
    assert payments.calls == 1  # the same type and token: payments answered once
    third = await ready_order(client, store, shipping)
    for _ in range(2):
        refused = await process(client, third["id"], token="fake-consumed-nonce")
        assert refused.status == 422
    assert payments.calls == 3  # a refusal is asked again each time
    assert await refused.json() == {"payment_token": ["The payment token is invalid."]}


async def test_offline_payment_type(client: Any, store: Store, shipping: FakeShipping, script: Script) -> None:
    order = await ready_order(client, store, shipping)
    response = await process(client, order["id"], token=None, payment_type_id=OFFLINE.id)
    assert response.status == 200, await response.text()
    body = (await response.json())["data"]
    assert (body["status"], body["type"]) == ("offline-payment", "Pay offline")


async def test_declined_then_retried(
    client: Any, store: Store, shipping: FakeShipping, script: Script, peers: dict[str, Peer], pool: asyncpg.Pool
) -> None:
    order = await ready_order(client, store, shipping)
    declined = await process(client, order["id"], token=DECLINED)
    assert declined.status == 403
    assert await declined.json() == {"error": {"http_code": 403, "message": "Payment has failed"}}
    failed = (await (await client.get(f"{URL}/{order['id']}", params={"include": "transactions"})).json())["data"]
    assert failed["status"] == "failed" and failed["reference"] is None
    assert [tx["success"] for tx in failed["transactions"]["data"]] == [False]
    released = (await peers["basket"].next("order.failed.v1")).payload
    assert (released["order_id"], released["reason"]) == (order["id"], "processor-declined")

    retried = await process(client, order["id"], token=VALID)
    assert retried.status == 200, await retried.text()
    placed = (await retried.json())["data"]
    assert placed["status"] == "payment-received"
    assert [tx["success"] for tx in placed["transactions"]["data"]] == [False, True]
    assert [c.payment_token for c in script.charges] == [DECLINED, VALID]
    stages = await pool.fetch(
        "SELECT stage FROM checkout_attempts WHERE order_id = $1 ORDER BY created_at", order["id"]
    )
    assert [r["stage"] for r in stages] == ["declined", "captured"]


async def test_stock_refused_is_the_stock_errors(
    client: Any, store: Store, shipping: FakeShipping, script: Script, peers: dict[str, Peer]
) -> None:
    script.stock = "refuse"
    order = await ready_order(client, store, shipping)
    response = await process(client, order["id"])
    assert response.status == 422
    assert await response.json() == {"lines.0.quantity": ["Insufficient stock levels"]}
    assert (await (await client.get(f"{URL}/{order['id']}")).json())["data"]["status"] == "failed"
    assert (await peers["basket"].next("order.failed.v1")).payload["reason"] == "stock-refused"
    assert script.charges == []


async def test_past_the_deadline_is_202_and_the_saga_goes_on(
    app_factory: Any, settings: OrdersSettings, responders: None, store: Store, shipping: FakeShipping, script: Script
) -> None:
    client = await app_factory(settings.model_copy(update={"process_deadline": 0.3}))
    script.stock = "silent"
    order = await ready_order(client, store, shipping)
    response = await process(client, order["id"])
    assert response.status == 202
    assert (await response.json())["data"]["status"] == "payment-processing"
    # in flight: no second attempt, no change
    second = await process(client, order["id"], token="another-token")
    assert second.status == 409
    assert await second.json() == {"error": {"http_code": 409, "message": "This order is being processed"}}
    edit = await client.put(f"{URL}/{order['id']}/contact", json={"email": "x@example.com"})
    assert edit.status == 409
    # basket answers late: the order completes, and a later GET shows it
    stock = OrderStockRequested.model_validate((await script.basket.next("order.stock_requested.v1")).payload)
    await script.basket.publish(
        StockReserved(
            order_id=stock.order_id, attempt_id=stock.attempt_id, reservation_id=new_id(), expires_at=datetime.now(UTC)
        )
    )

    async def placed() -> bool:
        body = await (await client.get(f"{URL}/{order['id']}")).json()
        return body["data"]["status"] == "payment-received"

    await wait_for(placed)
    assert [c.payment_token for c in script.charges] == [VALID]


@pytest.mark.parametrize("same_token", [True, False])
async def test_concurrent_process_calls_make_one_attempt(
    client: Any, store: Store, shipping: FakeShipping, script: Script, pool: asyncpg.Pool, same_token: bool
) -> None:
    order = await ready_order(client, store, shipping)
    tokens = [VALID if same_token or i == 0 else f"{VALID}-{i}" for i in range(20)]
    responses = await asyncio.gather(*(process(client, order["id"], token=t) for t in tokens))
    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 422}, statuses
    for response in responses:
        if response.status == 422:
            assert (await response.json())["error"]["message"] == "This order has already been processed"
        if response.status == 409:
            assert (await response.json())["error"]["message"] == "This order is being processed"
    assert await pool.fetchval("SELECT count(*) FROM checkout_attempts WHERE order_id = $1", order["id"]) == 1
    assert len(script.charges) == 1
    assert (await (await client.get(f"{URL}/{order['id']}")).json())["data"]["status"] == "payment-received"


@pytest.mark.parametrize(
    ("setup", "body", "status", "expected"),
    [
        ("none", {}, 422, {"order_id": ["Field required"]}),
        ("none", {"order_id": "nosuchorder000000000000"}, 422, {"order_id": ["The selected order id is invalid."]}),
        (
            "bare",
            {"payment_token": VALID},
            422,
            {
                "shipping_address": ["The order has no shipping address"],
                "price_id": ["Please choose a shipping option"],
                "billing_address": ["The order has no billing address"],
                "contact.email": ["The order has no contact email"],
            },
        ),
        ("ready", {"payment_token": "fake-consumed-nonce"}, 422, {"payment_token": ["The payment token is invalid."]}),
        ("ready", {}, 422, {"payment_token": ["The payment token field is required."]}),
        ("ready", {"payment_type_id": new_id()}, 422, {"payment_type_id": ["The selected payment type is invalid."]}),
    ],
)
async def test_process_validation_changes_nothing(
    client: Any,
    store: Store,
    shipping: FakeShipping,
    pool: asyncpg.Pool,
    setup: str,
    body: dict[str, Any],
    status: int,
    expected: Any,
) -> None:
    if setup == "ready":
        body = {"order_id": (await ready_order(client, store, shipping))["id"], **body}
    elif setup == "bare":
        response = await client.post(URL, json={"basket_id": store.put([line("A", 1, 1000)])})
        body = {"order_id": (await response.json())["data"]["id"], **body}
    response = await client.post(f"{URL}/process", json=body)
    assert response.status == status
    assert await response.json() == expected
    if "order_id" in body and setup != "none":
        row = await pool.fetchrow(
            "SELECT status, (SELECT count(*) FROM checkout_attempts a WHERE a.order_id = o.id) AS attempts "
            "FROM orders o WHERE id = $1",
            body["order_id"],
        )
        assert dict(row) == {"status": "awaiting-payment", "attempts": 0}


# ---------------------------------------------------------------------------------------------
# The handlers, each event delivered twice (same event id: the inbox; a new id: the CAS)


class Deliverer:
    """The orders app's own consumer, without its queue: the test hands it the envelopes."""

    def __init__(self, pool: asyncpg.Pool, settings: OrdersSettings) -> None:
        app = web.Application()
        app[runtime.SETTINGS] = settings
        self.consumer = EventConsumer(pool, Topology.from_settings(settings), consumers.subscriptions(app))

    async def __call__(self, envelope: Envelope) -> bool:
        subscription = self.consumer.subscriptions[envelope.routing_key]
        return await self.consumer.handle(envelope, subscription, subscription.model.model_validate(envelope.payload))

    async def twice_and_late(self, payload: Contract, producer: str) -> None:
        """The same envelope twice (the second is dropped by the inbox), then a copy with a new id."""
        envelope = envelope_for(payload, producer)
        assert await self(envelope) is True
        assert await self(envelope) is False
        assert await self(envelope_for(payload, producer)) is True


@pytest.fixture
async def big_pool(settings: OrdersSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings.model_copy(update={"db_pool_max": 25}))
    try:
        yield pool
    finally:
        await pool.close()


async def in_flight(
    app_factory: Any, settings: OrdersSettings, store: Store, shipping: FakeShipping, count: int = 1
) -> list[tuple[str, uuid.UUID, int]]:
    """Orders just processed (payment-processing, attempt at stock_requested), the app then stopped
    so that the test alone drives the handlers and reads the outbox."""
    client = await app_factory(settings.model_copy(update={"process_deadline": 0.01}))
    orders = await asyncio.gather(*(ready_order(client, store, shipping) for _ in range(count)))
    responses = await asyncio.gather(*(process(client, o["id"]) for o in orders))
    assert {r.status for r in responses} == {202}
    await client.close()
    pool = await db.create_pool(settings)
    try:
        rows = await pool.fetch(
            "SELECT id, attempt_id, order_total FROM orders "
            "WHERE id = ANY($1::text[]) AND status = 'payment-processing'",
            [o["id"] for o in orders],
        )
    finally:
        await pool.close()
    by_id = {r["id"]: (r["id"], r["attempt_id"], r["order_total"]) for r in rows}
    return [by_id[o["id"]] for o in orders]


PAYLOAD_ORDER_ID = "convert_from(body, 'UTF8')::jsonb #>> '{payload,order_id}'"


async def outbox_count(pool: asyncpg.Pool, routing_key: str, order_id: str) -> int:
    return await pool.fetchval(
        f"SELECT count(*) FROM outbox WHERE routing_key = $1 AND {PAYLOAD_ORDER_ID} = $2",
        routing_key,
        order_id,
    )


async def test_stock_reserved_has_one_effect(
    app_factory: Any,
    settings: OrdersSettings,
    responders: None,
    store: Store,
    shipping: FakeShipping,
    pool: asyncpg.Pool,
    big_pool: asyncpg.Pool,
) -> None:
    """Ten copies of the event, each with its own id (the inbox cannot tell them apart), at once:
    they queue on the order's lock and one charge is requested. An attempt that moves on while the
    event waits for the lock gets none: what is checked under the lock decides."""
    [(order_id, attempt_id, _), (moved_id, moved_attempt, _)] = await in_flight(
        app_factory, settings, store, shipping, count=2
    )
    deliver = Deliverer(big_pool, settings)
    reserved = StockReserved(
        order_id=order_id, attempt_id=attempt_id, reservation_id="r1", expires_at=datetime.now(UTC)
    )
    outcomes = await asyncio.gather(*(deliver(envelope_for(reserved, "basket")) for _ in range(10)))
    assert outcomes == [True] * 10
    assert await outbox_count(pool, "order.charge_requested.v1", order_id) == 1

    late = StockReserved(order_id=moved_id, attempt_id=moved_attempt, reservation_id="r2", expires_at=datetime.now(UTC))
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE", moved_id)
            delivery = asyncio.create_task(deliver(envelope_for(late, "basket")))
            await asyncio.sleep(0.3)
            assert not delivery.done()  # waiting for the order's lock
            await conn.execute("UPDATE checkout_attempts SET stage = 'refused' WHERE attempt_id = $1", moved_attempt)
        assert await delivery is True
    assert await outbox_count(pool, "order.charge_requested.v1", moved_id) == 0
    assert await pool.fetchval("SELECT stage FROM checkout_attempts WHERE attempt_id = $1", moved_attempt) == "refused"


async def test_each_saga_event_twice_has_one_effect(
    app_factory: Any,
    settings: OrdersSettings,
    responders: None,
    store: Store,
    shipping: FakeShipping,
    pool: asyncpg.Pool,
) -> None:
    [(order_id, attempt_id, total)] = await in_flight(app_factory, settings, store, shipping)
    deliver = Deliverer(pool, settings)

    await deliver.twice_and_late(
        StockReserved(order_id=order_id, attempt_id=attempt_id, reservation_id="r1", expires_at=datetime.now(UTC)),
        "basket",
    )
    assert await outbox_count(pool, "order.charge_requested.v1", order_id) == 1
    row = await pool.fetchrow(
        "SELECT stage, payment_token, amount, reservation_id FROM checkout_attempts WHERE attempt_id = $1", attempt_id
    )
    assert dict(row) == {"stage": "charge_requested", "payment_token": None, "amount": total, "reservation_id": "r1"}
    charge = await pool.fetchval(
        "SELECT convert_from(body, 'UTF8')::jsonb -> 'payload' FROM outbox WHERE routing_key = $1 "
        "AND convert_from(body, 'UTF8')::jsonb #>> '{payload,order_id}' = $2",
        "order.charge_requested.v1",
        order_id,
    )
    assert (charge["amount"], charge["payment_token"]) == (total, VALID)

    tx = transaction(order_id, total)
    await deliver.twice_and_late(
        PaymentCaptured(order_id=order_id, attempt_id=attempt_id, success_status="payment-received", transaction=tx),
        "payments",
    )
    assert await outbox_count(pool, "order.placed.v1", order_id) == 1
    order = await pool.fetchrow("SELECT status, reference, placed_at FROM orders WHERE id = $1", order_id)
    assert order["status"] == "payment-received" and REFERENCE.match(order["reference"])
    assert await pool.fetchval("SELECT count(*) FROM transactions WHERE order_id = $1", order_id) == 1

    # a late decline of the same attempt, a late refusal: no-ops
    await deliver.twice_and_late(PaymentDeclined(order_id=order_id, attempt_id=attempt_id, reason="late"), "payments")
    await deliver.twice_and_late(StockRefused(order_id=order_id, attempt_id=attempt_id, errors={}), "basket")
    assert await outbox_count(pool, "order.failed.v1", order_id) == 0
    assert await pool.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "payment-received"

    dispatched_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    await deliver.twice_and_late(
        ShipmentDispatched(shipment_id=new_id(), order_id=order_id, tracking_no="TRK1", dispatched_at=dispatched_at),
        "shipping",
    )
    order = await pool.fetchrow(
        "SELECT status, tracking_no, dispatched_at, reference FROM orders WHERE id = $1", order_id
    )
    assert (order["status"], order["tracking_no"], order["dispatched_at"]) == ("dispatched", "TRK1", dispatched_at)
    changes = await pool.fetch(
        "SELECT convert_from(body, 'UTF8')::jsonb #>> '{payload,to_status}' AS to_status FROM outbox "
        f"WHERE routing_key = 'order.status_changed.v1' AND {PAYLOAD_ORDER_ID} = $1",
        order_id,
    )
    # Starting the attempt and placing are announced by order.stock_requested and order.placed
    # (which carries the status); order.status_changed covers the changes nothing else announces.
    assert [r["to_status"] for r in changes] == ["dispatched"]
    placed_status = await pool.fetchval(
        "SELECT convert_from(body, 'UTF8')::jsonb #>> '{payload,status}' FROM outbox "
        f"WHERE routing_key = 'order.placed.v1' AND {PAYLOAD_ORDER_ID} = $1",
        order_id,
    )
    assert placed_status == "payment-received"

    # refunds: partial leaves the status, full moves it once
    await deliver.twice_and_late(
        PaymentRefunded(
            order_id=order_id,
            refunded_total=100,
            fully_refunded=False,
            transaction=transaction(order_id, 100, refund=True),
        ),
        "payments",
    )
    assert await pool.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "dispatched"
    await deliver.twice_and_late(
        PaymentRefunded(
            order_id=order_id,
            refunded_total=total,
            fully_refunded=True,
            transaction=transaction(order_id, total - 100, refund=True),
        ),
        "payments",
    )
    assert await pool.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "refunded"
    assert await pool.fetchval("SELECT count(*) FROM transactions WHERE order_id = $1 AND refund", order_id) == 2
    await deliver.twice_and_late(PaymentVoided(order_id=order_id, transaction=tx), "payments")
    assert await pool.fetchval("SELECT status FROM orders WHERE id = $1", order_id) == "refunded"
    assert await pool.fetchval("SELECT reference FROM orders WHERE id = $1", order_id) == order["reference"]


async def test_failure_handlers_twice_and_late_replies(
    app_factory: Any,
    settings: OrdersSettings,
    responders: None,
    store: Store,
    shipping: FakeShipping,
    pool: asyncpg.Pool,
) -> None:
    (refused_id, refused_attempt, _), (declined_id, declined_attempt, total) = await in_flight(
        app_factory, settings, store, shipping, count=2
    )
    deliver = Deliverer(pool, settings)
    await deliver.twice_and_late(
        StockRefused(
            order_id=refused_id, attempt_id=refused_attempt, errors={"lines.0.quantity": ["Insufficient stock levels"]}
        ),
        "basket",
    )
    assert await outbox_count(pool, "order.failed.v1", refused_id) == 1
    assert await pool.fetchval("SELECT status FROM orders WHERE id = $1", refused_id) == "failed"
    # a reservation arriving after the refusal charges nothing
    await deliver.twice_and_late(
        StockReserved(
            order_id=refused_id, attempt_id=refused_attempt, reservation_id="r", expires_at=datetime.now(UTC)
        ),
        "basket",
    )
    assert await outbox_count(pool, "order.charge_requested.v1", refused_id) == 0

    await deliver(
        envelope_for(
            StockReserved(
                order_id=declined_id, attempt_id=declined_attempt, reservation_id="r", expires_at=datetime.now(UTC)
            ),
            "basket",
        )
    )
    await deliver.twice_and_late(
        PaymentDeclined(
            order_id=declined_id,
            attempt_id=declined_attempt,
            reason="processor-declined",
            transaction=transaction(declined_id, total, success=False),
        ),
        "payments",
    )
    assert await outbox_count(pool, "order.failed.v1", declined_id) == 1
    assert await pool.fetchval("SELECT status FROM orders WHERE id = $1", declined_id) == "failed"
    # a capture for the declined attempt never places the order
    await deliver(
        envelope_for(
            PaymentCaptured(
                order_id=declined_id,
                attempt_id=declined_attempt,
                success_status="payment-received",
                transaction=transaction(declined_id, total),
            ),
            "payments",
        )
    )
    row = await pool.fetchrow("SELECT status, reference FROM orders WHERE id = $1", declined_id)
    assert dict(row) == {"status": "failed", "reference": None}


async def test_stalled_attempts_time_out_before_any_charge(
    app_factory: Any,
    settings: OrdersSettings,
    responders: None,
    store: Store,
    shipping: FakeShipping,
    pool: asyncpg.Pool,
) -> None:
    [(order_id, attempt_id, _)] = await in_flight(app_factory, settings, store, shipping)
    assert await sweepers.sweep_stalled_once(pool, settings.model_copy(update={"stock_reservation_timeout": 3600})) == 0
    assert await sweepers.sweep_stalled_once(pool, settings.model_copy(update={"stock_reservation_timeout": 0})) >= 1
    row = await pool.fetchrow(
        "SELECT a.stage, a.payment_token, o.status FROM checkout_attempts a JOIN orders o ON o.id = a.order_id "
        "WHERE a.attempt_id = $1",
        attempt_id,
    )
    assert dict(row) == {"stage": "timed_out", "payment_token": None, "status": "failed"}
    assert await outbox_count(pool, "order.failed.v1", order_id) == 1
    await Deliverer(pool, settings)(
        envelope_for(
            StockReserved(order_id=order_id, attempt_id=attempt_id, reservation_id="r", expires_at=datetime.now(UTC)),
            "basket",
        )
    )
    assert await outbox_count(pool, "order.charge_requested.v1", order_id) == 0


async def test_concurrent_placements_get_distinct_gap_free_references(
    app_factory: Any,
    settings: OrdersSettings,
    responders: None,
    store: Store,
    shipping: FakeShipping,
    big_pool: asyncpg.Pool,
) -> None:
    orders = await in_flight(app_factory, settings, store, shipping, count=50)
    deliver = Deliverer(big_pool, settings)
    for order_id, attempt_id, _ in orders:
        await deliver(
            envelope_for(
                StockReserved(
                    order_id=order_id, attempt_id=attempt_id, reservation_id="r", expires_at=datetime.now(UTC)
                ),
                "basket",
            )
        )
    results = await asyncio.gather(
        *(
            deliver(
                envelope_for(
                    PaymentCaptured(
                        order_id=order_id,
                        attempt_id=attempt_id,
                        success_status="payment-received",
                        transaction=transaction(order_id, total),
                    ),
                    "payments",
                )
            )
            for order_id, attempt_id, total in orders
        )
    )
    assert results == [True] * 50
    rows = await big_pool.fetch(
        "SELECT reference, invoice_reference FROM orders WHERE id = ANY($1::text[])", [o[0] for o in orders]
    )
    references = [r["reference"] for r in rows]
    assert len(set(references)) == 50
    periods = {REFERENCE.match(ref).group(1) for ref in references}
    assert len(periods) == 1
    numbers = sorted(int(REFERENCE.match(ref).group(2)) for ref in references)
    assert numbers == list(range(numbers[0], numbers[0] + 50))
    assert (
        await big_pool.fetchval("SELECT last_value FROM reference_counters WHERE period = $1", periods.pop())
        == numbers[-1]
    )
    assert all(r["invoice_reference"] == "#INV-" + r["reference"] for r in rows)


async def test_admin_dispatch_after_placement(
    client: Any, store: Store, shipping: FakeShipping, script: Script
) -> None:
    order = await ready_order(client, store, shipping)
    assert (await process(client, order["id"])).status == 200
    response = await client.put(
        f"{URL}/{order['id']}", json={"status": "dispatched", "tracking_no": "T-9"}, headers=admin()
    )
    assert response.status == 200
    body = (await response.json())["data"]
    assert (body["status"], body["tracking_no"]) == ("dispatched", "T-9")
    assert body["dispatched_at"] is not None
    listed = await (
        await client.get(
            URL, params={"status": "dispatched", "per_page": "100", "include": "lines,transactions"}, headers=admin()
        )
    ).json()
    [mine] = [o for o in listed["data"] if o["id"] == order["id"]]
    assert [tx["amount"] for tx in mine["transactions"]["data"]] == [order["order_total"]]
    assert [li["sku"] for li in mine["lines"]["data"]] == ["A", "STD"]
    back = await client.put(f"{URL}/{order['id']}", json={"status": "payment-received"}, headers=admin())
    assert back.status == 422


async def test_the_outcome_wakes_the_request_by_notify_not_by_polling(
    app_factory: Any, settings: OrdersSettings, responders: None, store: Store, shipping: FakeShipping, script: Script
) -> None:
    # A poll slower than the deadline: only the NOTIFY of the placing transaction can answer in time.
    client = await app_factory(settings.model_copy(update={"process_poll_interval": 60.0, "process_deadline": 20.0}))
    order = await ready_order(client, store, shipping)
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await process(client, order["id"])
    assert response.status == 200
    assert loop.time() - started < 5.0
