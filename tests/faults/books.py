"""The books after a fault: what the shoppers were told against what the databases and queues hold."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

import aio_pika
import asyncpg

from bench.shopper import Outcome
from shared.bus import Topology
from tests.support import SERVICES, Infra


@dataclass
class Books:
    orders: int = 0
    placed: int = 0
    failed: int = 0
    double_charges: int = 0
    lost_orders: int = 0
    problems: list[str] = field(default_factory=list)


async def settle(infra: Infra, timeout: float = 90.0) -> None:
    """Wait until nothing is in flight anywhere, seen twice in a row (bounded).

    Nothing in flight: no order in payment-processing, every outbox drained, no active reservation,
    and no message waiting in a service's queue or retry queues (a message between a crashed
    consumer and its restarted successor is visible only there).
    """
    conn = await asyncpg.connect(infra.admin_dsn)
    connection = await aio_pika.connect(infra.amqp_url)
    try:
        deadline = time.monotonic() + timeout
        quiet_in_a_row = 0
        while time.monotonic() < deadline:
            busy = await conn.fetchval("SELECT count(*) FROM orders.orders WHERE status = 'payment-processing'")
            for service in SERVICES:
                busy += await conn.fetchval(f"SELECT count(*) FROM {service}.outbox")
            busy += await conn.fetchval("SELECT count(*) FROM basket.stock_reservations WHERE status = 'active'")
            busy += await _waiting_messages(connection, infra.namespace)
            quiet_in_a_row = quiet_in_a_row + 1 if busy == 0 else 0
            if quiet_in_a_row == 2:
                return
            await asyncio.sleep(0.75)
    finally:
        await connection.close()
        await conn.close()


async def _waiting_messages(connection: aio_pika.abc.AbstractConnection, namespace: str) -> int:
    channel = await connection.channel()
    try:
        waiting = 0
        for service in SERVICES:
            topology = Topology(namespace, service)
            names = [topology.queue()] + [topology.retry_queue(i) for i in range(1, 4)]
            for name in names:
                try:
                    queue = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelClosed:
                    channel = await connection.channel()  # a service that consumes nothing has no queue
                    continue
                waiting += queue.declaration_result.message_count or 0
        return waiting
    finally:
        await channel.close()


async def check(infra: Infra, outcomes: list[Outcome], inventory_before: dict[str, int], since) -> Books:
    """Every order created since `since` (the scenario's start, database time)."""
    books = Books()
    await settle(infra)
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT o.id, o.status, o.placed_at IS NOT NULL AS placed, o.order_total,
                   (SELECT count(*) FROM payments.transactions t
                     WHERE t.order_id = o.id AND t.kind = 'charge' AND t.status = 'captured') AS captures,
                   (SELECT coalesce(sum(t.amount), 0) FROM payments.transactions t
                     WHERE t.order_id = o.id AND t.kind = 'charge' AND t.status = 'captured') AS captured
            FROM orders.orders o
            WHERE o.created_at >= $1
            """,
            since,
        )
        by_id = {r["id"]: r for r in rows}
        books.orders = len(rows)
        for row in rows:
            if row["placed"]:
                books.placed += 1
                if row["captures"] != 1 or row["captured"] != row["order_total"]:
                    books.double_charges += row["captures"] > 1
                    books.problems.append(
                        f"order {row['id']} placed with {row['captures']} captures of {row['captured']} "
                        f"for a total of {row['order_total']}"
                    )
            else:
                books.failed += row["status"] == "failed"
                if row["captures"]:
                    books.problems.append(f"order {row['id']} ({row['status']}) not placed but charged")
            if row["status"] == "payment-processing":
                books.problems.append(f"order {row['id']} still in flight")
        for outcome in outcomes:
            if outcome.placed and not (outcome.order_id in by_id and by_id[outcome.order_id]["placed"]):
                books.lost_orders += 1
                books.problems.append(f"order {outcome.order_id} was told placed but is not")
        orphans = await conn.fetchval(
            "SELECT count(*) FROM payments.transactions t WHERE t.kind = 'charge' AND t.status = 'captured' "
            "AND t.created_at >= $1 "
            "AND NOT EXISTS (SELECT 1 FROM orders.orders o WHERE o.id = t.order_id AND o.placed_at IS NOT NULL)",
            since,
        )
        if orphans:
            books.problems.append(f"{orphans} captured charges for orders that are not placed")
        sold: dict[str, int] = defaultdict(int)
        for row in await conn.fetch(
            "SELECT l.variant_id, sum(l.quantity) AS quantity FROM orders.order_lines l "
            "JOIN orders.orders o ON o.id = l.order_id "
            "WHERE o.placed_at IS NOT NULL AND NOT l.is_shipping AND o.created_at >= $1 GROUP BY l.variant_id",
            since,
        ):
            sold[row["variant_id"]] = row["quantity"]
        inventory_after = {
            r["id"]: r["inventory"] for r in await conn.fetch("SELECT id, inventory FROM basket.variants")
        }
        for variant_id, before in inventory_before.items():
            if before - inventory_after[variant_id] != sold[variant_id]:
                books.problems.append(
                    f"variant {variant_id}: stock down {before - inventory_after[variant_id]}, sold {sold[variant_id]}"
                )
        active = await conn.fetchval("SELECT count(*) FROM basket.stock_reservations WHERE status = 'active'")
        if active:
            books.problems.append(f"{active} stock reservations still active")
        for service in SERVICES:
            backlog = await conn.fetchval(f"SELECT count(*) FROM {service}.outbox")
            if backlog:
                books.problems.append(f"{service} outbox holds {backlog} rows")
    finally:
        await conn.close()
    connection = await aio_pika.connect(infra.amqp_url)
    try:
        channel = await connection.channel()
        for service in SERVICES:
            name = Topology(infra.namespace, service).dead_letter_queue()
            queue = await channel.declare_queue(name, passive=True)
            if queue.declaration_result.message_count:
                books.problems.append(f"{name} holds {queue.declaration_result.message_count} messages")
    finally:
        await connection.close()
    return books


async def snapshot(infra: Infra):
    """Inventory per variant and the database's clock, at the start of a scenario."""
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        inventory = {r["id"]: r["inventory"] for r in await conn.fetch("SELECT id, inventory FROM basket.variants")}
        return inventory, await conn.fetchval("SELECT now()")
    finally:
        await conn.close()
