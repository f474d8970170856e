"""Stock reservations of the checkout saga: the handlers run as the bus runs them (one
transaction each, real database), and once through the real broker."""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import pytest

from basket import stock_queries
from basket.consumers import on_order_failed, on_order_placed, on_order_stock_requested, subscriptions
from basket.settings import BasketSettings
from basket.sweepers import release_expired
from services.basket.tests.testkit import create_variant, deliver, event_tap, orders_envelope
from shared.bus import EventConsumer, Topology
from shared.contracts import (
    LineQuantity,
    OrderFailed,
    OrderPlaced,
    OrderStockRequested,
    StockCommitted,
    StockRefused,
    StockReleased,
    StockReserved,
    envelope_for,
)
from shared.http import new_id

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

reserve = functools.partial(on_order_stock_requested, ttl_seconds=900)


def order_id() -> str:
    return f"ord{uuid.uuid4().hex[:16]}"


def stock_request(variant_quantities: list[tuple[str, int]], order: str | None = None) -> OrderStockRequested:
    return OrderStockRequested(
        order_id=order or order_id(),
        attempt_id=uuid.uuid4(),
        basket_id="basketfortests",
        lines=[LineQuantity(variant_id=v, quantity=q) for v, q in variant_quantities],
    )


def placed(request: OrderStockRequested) -> OrderPlaced:
    return OrderPlaced(
        order_id=request.order_id,
        attempt_id=request.attempt_id,
        basket_id=request.basket_id,
        reference="2026-01-0001",
        status="payment-received",
        order_total=1,
        currency="GBP",
        lines=request.lines,
        placed_at=datetime.now(UTC),
    )


def failed(request: OrderStockRequested) -> OrderFailed:
    return OrderFailed(
        order_id=request.order_id, attempt_id=request.attempt_id, basket_id=request.basket_id, reason="declined"
    )


async def inventory(pool: asyncpg.Pool, variant_id: str) -> int:
    return await pool.fetchval("SELECT inventory FROM variants WHERE id = $1", variant_id)


async def reserved(pool: asyncpg.Pool, variant_id: str) -> int:
    return await pool.fetchval("SELECT reserved FROM variants WHERE id = $1", variant_id)


async def reservations(pool: asyncpg.Pool, order: str) -> list[tuple[str, str | None]]:
    rows = await pool.fetch("SELECT status, release_reason FROM stock_reservations WHERE order_id = $1", order)
    return [(r["status"], r["release_reason"]) for r in rows]


async def test_reserve_then_commit_decrements_once(client: Any, pool: asyncpg.Pool) -> None:
    a = await create_variant(client, inventory=10)
    b = await create_variant(client, inventory=5)
    request = stock_request([(a["id"], 3), (b["id"], 5)])
    ctx = await deliver(pool, reserve, request)
    assert len(ctx.emitted) == 1
    reserved = ctx.emitted[0]
    assert isinstance(reserved, StockReserved)
    assert (reserved.order_id, reserved.attempt_id) == (request.order_id, request.attempt_id)
    assert 890 < (reserved.expires_at - datetime.now(UTC)).total_seconds() <= 900
    # Reserved is not yet sold: inventory stays, availability drops (b has nothing left).
    assert (await inventory(pool, a["id"]), await inventory(pool, b["id"])) == (10, 5)
    other = await deliver(pool, reserve, stock_request([(b["id"], 1)]))
    assert other.emitted == [
        StockRefused(
            order_id=other.emitted[0].order_id,
            attempt_id=other.emitted[0].attempt_id,
            errors={"variants.0.quantity": ["Insufficient stock levels"]},
        )
    ]

    first = await deliver(pool, on_order_placed, placed(request))
    second = await deliver(pool, on_order_placed, placed(request))  # another delivery (new event id)
    assert (await inventory(pool, a["id"]), await inventory(pool, b["id"])) == (7, 0)
    assert first.emitted == [
        StockCommitted(
            order_id=request.order_id,
            reservation_id=reserved.reservation_id,
            lines=sorted(
                [
                    LineQuantity(variant_id=a["id"], sku=a["sku"], quantity=3),
                    LineQuantity(variant_id=b["id"], sku=b["sku"], quantity=5),
                ],
                key=lambda line: line.variant_id,
            ),
        )
    ]
    assert second.emitted == []
    assert await reservations(pool, request.order_id) == [("committed", None)]


async def test_two_reservations_race_for_the_last_unit(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=1)
    for _ in range(5):  # a few rounds: the race must be decided by the lock, not by timing
        await pool.execute("UPDATE variants SET inventory = 1 WHERE id = $1", variant["id"])
        requests = [stock_request([(variant["id"], 1)]) for _ in range(2)]
        contexts = await asyncio.gather(*(deliver(pool, reserve, r) for r in requests))
        outcomes = sorted(type(ctx.emitted[0]).__name__ for ctx in contexts)
        assert outcomes == ["StockRefused", "StockReserved"]
        statuses = sorted([(await reservations(pool, r.order_id))[0][0] for r in requests])
        assert statuses == ["active", "refused"]
        # Give the unit back for the next round.
        winner = next(r for r, ctx in zip(requests, contexts, strict=True) if isinstance(ctx.emitted[0], StockReserved))
        await deliver(pool, on_order_failed, failed(winner))


async def test_many_concurrent_reservations_never_oversell(client: Any, pool: asyncpg.Pool) -> None:
    a = await create_variant(client, inventory=7)
    b = await create_variant(client, inventory=7, backorder="expected", incoming=3)
    # Opposite line orders in the requests: locking in id order keeps them from deadlocking.
    pairs = [[(a["id"], 1), (b["id"], 1)], [(b["id"], 1), (a["id"], 1)]]
    requests = [stock_request(pairs[i % 2]) for i in range(12)]
    contexts = await asyncio.gather(*(deliver(pool, reserve, r) for r in requests))
    reserved = [ctx for ctx in contexts if isinstance(ctx.emitted[0], StockReserved)]
    assert len(reserved) == 7  # a (in-stock, 7) is the limit; b could take 10


async def test_release_returns_the_stock(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=2)
    request = stock_request([(variant["id"], 2)])
    reserved = (await deliver(pool, reserve, request)).emitted[0]
    assert isinstance(reserved, StockReserved)
    refused = await deliver(pool, reserve, stock_request([(variant["id"], 1)]))
    assert isinstance(refused.emitted[0], StockRefused)

    released = await deliver(pool, on_order_failed, failed(request))
    assert released.emitted == [
        StockReleased(order_id=request.order_id, reservation_id=reserved.reservation_id, reason="order-failed")
    ]
    again = await deliver(pool, on_order_failed, failed(request))
    assert again.emitted == []
    assert await reservations(pool, request.order_id) == [("released", "order-failed")]
    assert await inventory(pool, variant["id"]) == 2
    retry = await deliver(pool, reserve, stock_request([(variant["id"], 2)]))
    assert isinstance(retry.emitted[0], StockReserved)


async def test_expiry_returns_the_stock(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=1)
    request = stock_request([(variant["id"], 1)])
    reserved = (await deliver(pool, on_order_stock_requested, request, ttl_seconds=0)).emitted[0]
    assert isinstance(reserved, StockReserved)
    # Another process's sweeper may get there first; either way the reservation ends released.
    await release_expired(pool)
    assert await reservations(pool, request.order_id) == [("released", "expired")]
    later = await deliver(pool, reserve, stock_request([(variant["id"], 1)]))
    assert isinstance(later.emitted[0], StockReserved)
    # The failure of an expired attempt has nothing left to release.
    assert (await deliver(pool, on_order_failed, failed(request))).emitted == []


async def test_a_reservation_is_released_once_when_sweepers_and_its_failure_race(
    client: Any, pool: asyncpg.Pool
) -> None:
    variant = await create_variant(client, inventory=10)
    requests = [stock_request([(variant["id"], 2)]) for _ in range(3)]
    for request in requests:
        await deliver(pool, on_order_stock_requested, request, ttl_seconds=0)
    assert await reserved(pool, variant["id"]) == 6
    outcomes = await asyncio.gather(
        release_expired(pool),
        release_expired(pool),
        *(deliver(pool, on_order_failed, failed(request)) for request in requests),
    )
    failures = [outcome for outcome in outcomes if not isinstance(outcome, int)]
    # Each reservation released once: by a sweeper (as expired) or by its failure, never both.
    released_by_failure = sum(len(delivery.emitted) for delivery in failures)
    statuses = [(await reservations(pool, r.order_id))[0] for r in requests]
    assert all(status == "released" for status, _ in statuses)
    assert released_by_failure == sum(reason == "order-failed" for _, reason in statuses)
    assert await reserved(pool, variant["id"]) == 0


async def test_a_placed_order_is_sold_even_after_its_reservation_expired(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=3)
    request = stock_request([(variant["id"], 2)])
    await deliver(pool, on_order_stock_requested, request, ttl_seconds=0)
    await release_expired(pool)
    assert await reservations(pool, request.order_id) == [("released", "expired")]
    await deliver(pool, on_order_placed, placed(request))
    await deliver(pool, on_order_placed, placed(request))
    assert await inventory(pool, variant["id"]) == 1
    # Committed, with the history of its expiry kept.
    assert await reservations(pool, request.order_id) == [("committed", "expired")]


async def test_the_same_request_twice_reserves_once(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=5)
    request = stock_request([(variant["id"], 2)])
    # Two deliveries of one request under different event ids, at the same time and then again.
    contexts = await asyncio.gather(deliver(pool, reserve, request), deliver(pool, reserve, request))
    third = await deliver(pool, reserve, request)
    answers = [ctx.emitted for ctx in (*contexts, third)]
    assert all(len(a) == 1 and isinstance(a[0], StockReserved) for a in answers)
    assert len({a[0].reservation_id for a in answers}) == 1
    held = await pool.fetchval(
        "SELECT sum(l.quantity) FROM stock_reservation_lines l JOIN stock_reservations r ON r.id = l.reservation_id "
        "WHERE r.order_id = $1",
        request.order_id,
    )
    assert held == 2
    # Three more units are available, not one.
    assert isinstance((await deliver(pool, reserve, stock_request([(variant["id"], 3)]))).emitted[0], StockReserved)


async def test_exact_redelivery_is_absorbed_by_the_inbox(
    settings: BasketSettings, client: Any, pool: asyncpg.Pool
) -> None:
    """The broker redelivers what was handled but not acknowledged (the process died between the
    commit and the ack): the inbox row, written by the unit of work first, stops it."""
    variant = await create_variant(client, inventory=5)
    request = stock_request([(variant["id"], 2)])
    envelope = envelope_for(request, "orders")
    consumer = EventConsumer(pool, Topology.from_settings(settings), subscriptions(client.app))
    subscription = consumer.subscriptions[request.routing_key()]
    assert await consumer.handle(envelope, subscription, request) is True
    assert await consumer.handle(envelope, subscription, request) is False
    assert await reservations(pool, request.order_id) == [("active", None)]
    assert await reserved(pool, variant["id"]) == 2

    placed_event = orders_envelope(placed(request))
    for handled in (True, False):
        delivery = await deliver(pool, on_order_placed, placed(request), envelope=placed_event)
        assert delivery.handled is handled
        assert len(delivery.emitted) == int(handled)
    assert (await inventory(pool, variant["id"]), await reserved(pool, variant["id"])) == (3, 0)


async def test_concurrent_copies_of_one_event_have_one_effect(client: Any, pool: asyncpg.Pool) -> None:
    """Two copies of one event in hand at once (a redelivery racing the first delivery): the second
    waits on the inbox key, then finds the row and changes nothing."""
    variant = await create_variant(client, inventory=5)
    request = stock_request([(variant["id"], 2)])
    envelope = orders_envelope(request)
    copies = await asyncio.gather(*(deliver(pool, reserve, request, envelope=envelope) for _ in range(4)))
    assert sorted(copy.handled for copy in copies) == [False, False, False, True]
    assert [len(copy.emitted) for copy in copies if copy.handled] == [1]
    assert await reservations(pool, request.order_id) == [("active", None)]
    assert await reserved(pool, variant["id"]) == 2

    failed_event = orders_envelope(failed(request))
    copies = await asyncio.gather(
        *(deliver(pool, on_order_failed, failed(request), envelope=failed_event) for _ in range(3))
    )
    assert sorted(copy.handled for copy in copies) == [False, False, True]
    assert await reservations(pool, request.order_id) == [("released", "order-failed")]
    assert await reserved(pool, variant["id"]) == 0


async def test_failure_before_the_request_leaves_nothing_reserved(client: Any, pool: asyncpg.Pool) -> None:
    variant = await create_variant(client, inventory=1)
    request = stock_request([(variant["id"], 1)])
    assert (await deliver(pool, on_order_failed, failed(request))).emitted == []
    late = await deliver(pool, reserve, request)
    assert late.emitted == []
    assert await reservations(pool, request.order_id) == [("released", "order-failed")]
    assert isinstance((await deliver(pool, reserve, stock_request([(variant["id"], 1)]))).emitted[0], StockReserved)


async def test_refusals_name_the_line(client: Any, pool: asyncpg.Pool) -> None:
    fine = await create_variant(client, inventory=5)
    off = await create_variant(client, inventory=5, purchasable=False)
    expected = await create_variant(client, inventory=1, incoming=2, backorder="expected")
    always = await create_variant(client, inventory=0, backorder="always")
    request = stock_request(
        [(fine["id"], 1), (off["id"], 1), ("nosuchvariant0", 1), (expected["id"], 4), (always["id"], 500)]
    )
    ctx = await deliver(pool, reserve, request)
    assert ctx.emitted == [
        StockRefused(
            order_id=request.order_id,
            attempt_id=request.attempt_id,
            errors={
                "variants.1.id": [f"Product {off['sku']} is no longer available"],
                "variants.2.id": ["The variant ID is incorrect"],
                "variants.3.quantity": ["Insufficient stock levels"],
            },
        )
    ]
    # All or nothing: the fine lines were not reserved either.
    ok = await deliver(pool, reserve, stock_request([(fine["id"], 5), (expected["id"], 3), (always["id"], 500)]))
    assert isinstance(ok.emitted[0], StockReserved)
    # A repeated refused request is refused again, the same way.
    again = await deliver(pool, reserve, request)
    assert again.emitted == ctx.emitted


async def test_reservation_through_the_broker(stack: Any, infra: Any, client: Any, pool: asyncpg.Pool) -> None:
    """Orders' request published on the real exchange; the basket process answers on it."""
    variant = await create_variant(client, inventory=4)
    request = stock_request([(variant["id"], 4)])
    envelope = envelope_for(request, "orders", correlation_id="broker-test")
    async with event_tap(infra, "stock.reserved.v1", "stock.refused.v1") as tap:
        channel = await tap.connection.channel()
        exchange = await channel.get_exchange(Topology(infra.namespace, "tests").events_exchange)
        message = aio_pika.Message(
            envelope.model_dump_json().encode(),
            content_type="application/json",
            message_id=str(envelope.event_id),
            type=envelope.routing_key,
        )
        await exchange.publish(message, routing_key=envelope.routing_key)
        await exchange.publish(message, routing_key=envelope.routing_key)  # an exact duplicate
        event = await tap.wait_for(lambda e: e["payload"].get("order_id") == request.order_id)
    assert event["type"] == "stock.reserved"
    assert event["correlation_id"] == "broker-test"
    assert event["causation_id"] == str(envelope.event_id)
    deadline = asyncio.get_running_loop().time() + 10
    while await pool.fetchval("SELECT count(*) FROM inbox WHERE event_id = $1", envelope.event_id) != 1:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert await reservations(pool, request.order_id) == [("active", None)]


async def test_reserved_on_the_variant_is_what_active_reservations_hold(client: Any, pool: asyncpg.Pool) -> None:
    """Every way out of `active` (sold, failed, expired, sold after expiry) gives back what it held,
    exactly once; a refusal and a sale without a reservation hold nothing."""
    a = await create_variant(client, inventory=50)
    b = await create_variant(client, inventory=50)

    async def held() -> dict[str, tuple[int, int]]:
        rows = await pool.fetch(
            """
            SELECT v.id, v.reserved, coalesce((
                SELECT sum(l.quantity) FROM stock_reservation_lines l
                JOIN stock_reservations r ON r.id = l.reservation_id
                WHERE r.status = 'active' AND l.variant_id = v.id), 0)::int AS active
            FROM variants v WHERE v.id = ANY($1::text[])
            """,
            [a["id"], b["id"]],
        )
        return {r["id"]: (r["reserved"], r["active"]) for r in rows}

    sold, failing, expiring, late, kept = (stock_request([(a["id"], 2), (b["id"], 3)]) for _ in range(5))
    for request in (sold, failing, kept):
        await deliver(pool, reserve, request)
    for request in (expiring, late):
        await deliver(pool, on_order_stock_requested, request, ttl_seconds=0)
    assert await held() == {a["id"]: (10, 10), b["id"]: (15, 15)}
    refused = await deliver(pool, reserve, stock_request([(a["id"], 41)]))
    assert isinstance(refused.emitted[0], StockRefused)  # 50 - 10 held: 40 free
    for _ in range(2):  # each event twice
        await deliver(pool, on_order_placed, placed(sold))
        await deliver(pool, on_order_failed, failed(failing))
    await release_expired(pool)
    await deliver(pool, on_order_placed, placed(late))  # sold after its reservation expired
    await deliver(pool, on_order_placed, placed(stock_request([(a["id"], 1)])))  # sold, never reserved
    assert await held() == {a["id"]: (2, 2), b["id"]: (3, 3)}  # only `kept` holds stock now
    assert (await inventory(pool, a["id"]), await inventory(pool, b["id"])) == (50 - 2 - 2 - 1, 50 - 3 - 3)


async def test_a_new_basket_does_not_wait_for_a_reservation_holding_its_variants(client: Any, pool: asyncpg.Pool):
    """Stock changes lock variants `FOR NO KEY UPDATE`: the foreign-key checks of new basket lines
    (`KEY SHARE`, in the basket's line order) pass them. With `FOR UPDATE` they queued behind the
    reservation, and a basket naming two variants in the other order than a reservation locking
    them in id order deadlocked (seen under the benchmark's load)."""
    a = await create_variant(client, inventory=10)
    b = await create_variant(client, inventory=10)
    async with pool.acquire() as conn, conn.transaction():
        _, locked = await stock_queries.insert_reservation_locking_stock(
            conn,
            reservation_id=new_id(),
            order_id=f"order{uuid.uuid4().hex[:12]}",
            attempt_id=uuid.uuid4(),
            basket_id="b" * 24,
            ttl_seconds=60,
            correlation_id=None,
            variant_ids=sorted([a["id"], b["id"]]),
        )
        assert len(locked) == 2
        body = {"variants": [{"id": b["id"], "quantity": 1}, {"id": a["id"], "quantity": 1}]}
        response = await asyncio.wait_for(client.post("/api/v1/baskets", json=body), timeout=5)
        assert response.status == 200, await response.text()
