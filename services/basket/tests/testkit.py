"""Helpers of the basket service's tests (imported by the tests; fixtures are in conftest)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
import orjson

from shared.bus import EventConsumer, EventHandler, Subscription, Topology
from shared.contracts import Contract, Envelope, envelope_for
from shared.uow import UnitOfWork
from tests.support import identity_headers

API = "/api/v1"


def admin() -> dict[str, str]:
    return identity_headers()


def sku(prefix: str = "T") -> str:
    return f"{prefix}-{secrets.token_hex(5).upper()}"


async def create_product(client: Any, *variants: dict[str, Any], name: str = "Test product") -> dict[str, Any]:
    """Create a product through the admin API; each variant gets a fresh sku unless given."""
    body = {"name": name, "variants": [{"sku": sku(), "price": "10.00", "inventory": 100, **v} for v in variants]}
    response = await client.post(f"{API}/products", json=body, headers=admin())
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


async def create_variant(client: Any, **fields: Any) -> dict[str, Any]:
    return (await create_product(client, fields))["variants"]["data"][0]


@dataclass
class Delivery:
    """What one delivery of an event emitted (written to the outbox with the handler's change)."""

    handled: bool
    emitted: list[Contract] = field(default_factory=list)


def orders_envelope(payload: Contract) -> Envelope:
    """Orders' envelope for `payload`, with a new event id each time."""
    return envelope_for(payload, "orders", correlation_id=f"test-{uuid.uuid4().hex[:8]}")


async def deliver(
    pool: asyncpg.Pool, handler: EventHandler, payload: Contract, *, envelope: Envelope | None = None, **kwargs: Any
) -> Delivery:
    """Deliver `payload` to a consumer's handler through the bus's own `EventConsumer.handle` (its
    unit of work, inbox row first), as orders would send it; a new event id unless `envelope` is
    given. `kwargs` go to the handler."""
    delivery = Delivery(handled=False)

    async def recording(uow: UnitOfWork, message: Contract) -> None:
        emit = uow.emit

        def record(event: Contract) -> None:
            emit(event)
            delivery.emitted.append(event)

        uow.emit = record  # type: ignore[method-assign]
        await handler(uow, message, **kwargs)

    subscription = Subscription(type(payload), recording)
    consumer = EventConsumer(pool, Topology("test", "basket"), [subscription])
    delivery.handled = await consumer.handle(envelope or orders_envelope(payload), subscription, payload)
    return delivery


class EventTap:
    """A temporary queue bound to the run's events exchange: what the services really published."""

    def __init__(self, connection: aio_pika.abc.AbstractRobustConnection, queue: aio_pika.abc.AbstractQueue):
        self.connection = connection
        self.queue = queue
        self.messages: list[dict[str, Any]] = []

    async def wait_for(self, predicate: Any, timeout: float = 15.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for body in self.messages:
                    if predicate(body):
                        return body
                with contextlib.suppress(aio_pika.exceptions.QueueEmpty):
                    message = await self.queue.get(no_ack=True, fail=True)
                    self.messages.append(orjson.loads(message.body))
                    continue
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def event_tap(infra: Any, *routing_keys: str) -> AsyncIterator[EventTap]:
    connection = await aio_pika.connect_robust(infra.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            Topology(infra.namespace, "tests").events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in routing_keys:
            await queue.bind(exchange, key)
        yield EventTap(connection, queue)
    finally:
        await connection.close()
