"""Fixtures of the payments tests: pools on the run's database and a charger driven directly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from payments.consumers import Charger
from payments.providers import Provider, build_providers
from payments.settings import PaymentsSettings
from shared import db
from shared.bus import EventConsumer, HandlerContext, Subscription, Topology
from shared.contracts import Contract, OrderChargeRequested, envelope_for
from shared.http import new_id

ADMIN = {"X-Commerce-Identity": '{"sub": "t", "roles": ["admin"]}'}


@pytest.fixture
def settings(infra) -> PaymentsSettings:
    return infra.settings(PaymentsSettings)


@pytest.fixture
async def pool(settings: PaymentsSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture
def providers(pool: asyncpg.Pool, settings: PaymentsSettings) -> dict[str, Provider]:
    # The main pool stands in for the side pool: these tests never hold many connections.
    return build_providers(settings.merchant, pool, settings.client_token_ttl)


class Checkout:
    """Delivers `order.charge_requested` to the payments handler as the consumer does, and keeps
    what each delivery emitted."""

    def __init__(self, pool: asyncpg.Pool, settings: PaymentsSettings, providers: dict[str, Provider]) -> None:
        self.pool = pool
        self.providers = providers
        self.consumer = EventConsumer(pool, Topology.from_settings(settings), {})
        self.emitted: list[Contract] = []

    async def type_id(self, handle: str) -> str:
        return await self.pool.fetchval("SELECT id FROM payment_types WHERE handle = $1", handle)

    async def request(
        self, token: str | None, *, handle: str = "card", order_id: str | None = None, amount: int = 1000, **kw: Any
    ) -> OrderChargeRequested:
        return OrderChargeRequested(
            order_id=order_id or new_id(),
            attempt_id=kw.pop("attempt_id", None) or uuid.uuid4(),
            amount=amount,
            currency=kw.pop("currency", "GBP"),
            payment_type_id=await self.type_id(handle),
            payment_token=token,
            **kw,
        )

    async def deliver(
        self, msg: OrderChargeRequested, envelope=None, providers: dict[str, Provider] | None = None
    ) -> bool:
        """One delivery; returns False when the inbox recognised a duplicate."""
        envelope = envelope or envelope_for(msg, "orders")
        charger = Charger(self.pool, providers or self.providers)

        async def handler(ctx: HandlerContext, payload: OrderChargeRequested) -> None:
            emit = ctx.emit

            async def recording_emit(event: Contract) -> None:
                await emit(event)
                self.emitted.append(event)

            ctx.emit = recording_emit  # type: ignore[method-assign]
            await charger.handle(ctx, payload)

        return await self.consumer.handle(envelope, Subscription(OrderChargeRequested, handler), msg)

    async def charges(self, order_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT id, attempt_id, amount, status, success, transaction_id, message FROM transactions "
            "WHERE order_id = $1 AND kind = 'charge' ORDER BY created_at, id",
            order_id,
        )

    async def sandbox_charges(self, attempt_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT reference, amount, success FROM sandbox_charges WHERE idempotency_key = $1", str(attempt_id)
        )


@pytest.fixture
def checkout(pool: asyncpg.Pool, settings: PaymentsSettings, providers: dict[str, Provider]) -> Checkout:
    return Checkout(pool, settings, providers)


class Observer:
    """A private queue bound to the events exchange: what the services really published. Keeps
    everything it received, so that each `collect` sees earlier messages too."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue
        self.seen: list[dict[str, Any]] = []

    async def collect(self, predicate, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The first `count` published envelopes (as dicts) matching predicate, in arrival order."""
        found = [body for body in self.seen if predicate(body)]
        if len(found) >= count:
            return found[:count]
        async with asyncio.timeout(timeout), self.queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                body = orjson.loads(message.body)
                self.seen.append(body)
                if predicate(body):
                    found.append(body)
                    if len(found) == count:
                        break
        return found


@pytest.fixture
async def observe(settings: PaymentsSettings) -> AsyncIterator[Any]:
    connection = await aio_pika.connect_robust(settings.amqp_url)
    channel = await connection.channel()

    async def bind(*patterns: str) -> Observer:
        exchange = await channel.declare_exchange(
            Topology.from_settings(settings).events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        # exclusive: gone with the connection; not auto-delete, which would drop it between two collects
        queue = await channel.declare_queue(exclusive=True)
        for pattern in patterns:
            await queue.bind(exchange, pattern)
        return Observer(queue)

    yield bind
    await connection.close()
