"""What the scale tests share: careful shoppers, each instance's metrics, and the effects check."""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field

import aio_pika
import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from bench.shopper import Outcome, Shopper, pick_variants
from shared.bus import Topology
from tests.support import SERVICES, Infra, ServiceProcess, Stack


class StampedList(list):
    """A list that also records when each item was appended (time.monotonic())."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[float] = []

    def append(self, item) -> None:
        self.stamps.append(time.monotonic())
        super().append(item)


@dataclass
class Run:
    outcomes: list[Outcome] = field(default_factory=list)
    shoppers: list[Shopper] = field(default_factory=list)

    @property
    def placed(self) -> int:
        return sum(o.placed for o in self.outcomes)

    def responses(self) -> list[tuple[str, int, object]]:
        return [r for client in self.shoppers for r in client.responses]

    def transport_errors(self) -> list[tuple[float, str]]:
        return [
            (stamp, error)
            for client in self.shoppers
            for stamp, error in zip(client.transport_errors.stamps, client.transport_errors, strict=True)
        ]


async def shop(
    stack: Stack,
    run: Run,
    *,
    shoppers: int,
    checkouts: int | None = None,
    until: asyncio.Event | None = None,
    seed: str = "scale",
) -> None:
    """`shoppers` careful shoppers check out concurrently, half paying with the sandbox, half
    offline: `checkouts` in all, or until `until` is set. Outcomes are appended to `run` as they
    come, so that a caller can watch progress."""
    rng = random.Random(seed)
    budget = checkouts
    async with aiohttp.ClientSession() as session:
        catalogue = await Shopper(session, stack.gateway, retry_for=60).catalogue()

        async def shopper(index: int) -> None:
            nonlocal budget
            client = Shopper(session, stack.gateway, retry_for=60, timeout=40)
            client.transport_errors = StampedList()
            run.shoppers.append(client)
            offline = index % 2 == 1
            while (budget is None or budget > 0) and (until is None or not until.is_set()):
                if budget is not None:
                    budget -= 1
                variants = pick_variants(catalogue, rng, rng.choice((1, 2, 3)))
                if offline:
                    outcome = await client.checkout(variants, payment_token=None, payment_type="offline")
                else:
                    outcome = await client.checkout(variants)
                run.outcomes.append(outcome)

        await asyncio.gather(*(shopper(i) for i in range(shoppers)))


async def progressed(run: Run, done_before: int, timeout: float = 60.0) -> None:
    """Wait (bounded) until at least one more checkout has finished."""
    deadline = time.monotonic() + timeout
    while len(run.outcomes) <= done_before:
        if time.monotonic() > deadline:
            raise AssertionError(f"no checkout finished in {timeout}s")
        await asyncio.sleep(0.1)


async def scrape(session: aiohttp.ClientSession, process: ServiceProcess) -> list[Sample]:
    """Every sample of one instance's /metrics."""
    async with session.get(process.url + "/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of the samples named `commerce_<name>` whose labels match `labels` (regular expressions)."""
    return sum(
        sample.value
        for sample in samples
        if sample.name == f"commerce_{name}"
        and all(re.fullmatch(pattern, sample.labels.get(label, "")) for label, pattern in labels.items())
    )


async def effects_settled(infra: Infra, since, timeout: float = 60.0) -> None:
    """Wait (bounded) until every placed order has its shipment and no event waits in a queue."""
    conn = await asyncpg.connect(infra.admin_dsn)
    connection = await aio_pika.connect(infra.amqp_url)
    try:
        channel = await connection.channel()
        deadline = time.monotonic() + timeout
        while True:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM orders.orders o WHERE o.placed_at IS NOT NULL AND o.created_at >= $1 "
                "AND NOT EXISTS (SELECT 1 FROM shipping.shipments s WHERE s.order_id = o.id)",
                since,
            )
            for service in SERVICES:
                queue = await channel.declare_queue(Topology(infra.namespace, service).queue(), passive=True)
                waiting += queue.declaration_result.message_count
            if waiting == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{waiting} shipments or queued events still outstanding after {timeout}s")
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
        await conn.close()


async def effects_once(infra: Infra, since) -> list[str]:
    """Each effect of a checkout happened once: one shipment per placed order and none for an
    order not placed, one placed order per basket, one captured charge per placed order (the books
    check that one, and the stock)."""
    problems: list[str] = []
    conn = await asyncpg.connect(infra.admin_dsn)
    try:
        for row in await conn.fetch(
            "SELECT o.id, o.placed_at IS NOT NULL AS placed, "
            "(SELECT count(*) FROM shipping.shipments s WHERE s.order_id = o.id) AS shipments "
            "FROM orders.orders o WHERE o.created_at >= $1",
            since,
        ):
            if row["shipments"] != (1 if row["placed"] else 0):
                problems.append(f"order {row['id']} (placed: {row['placed']}) has {row['shipments']} shipments")
        for row in await conn.fetch(
            "SELECT basket_id, count(*) AS placed FROM orders.orders "
            "WHERE placed_at IS NOT NULL AND created_at >= $1 GROUP BY basket_id HAVING count(*) > 1",
            since,
        ):
            problems.append(f"basket {row['basket_id']} placed {row['placed']} orders")
    finally:
        await conn.close()
    return problems
