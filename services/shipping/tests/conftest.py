"""Fixtures of the shipping tests: the app in-process, an RPC caller and a bus observer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from shared import bus, db
from shipping.app import create_app
from shipping.settings import ShippingSettings

ADMIN = {"X-Commerce-Identity": '{"sub": "t", "roles": ["admin"]}'}


@pytest.fixture
def settings(infra) -> ShippingSettings:
    return infra.settings(ShippingSettings)


@pytest.fixture
async def pool(settings: ShippingSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def rpc(client, settings) -> AsyncIterator[bus.RpcClient]:
    """A caller of `shipping.quote` as orders is, answered by the app (`client`) over RabbitMQ."""
    caller = bus.RpcClient(bus.Topology(settings.bus_namespace, "orders"), default_timeout=5.0)
    connection = await bus.connect(settings)
    await caller.start(connection)
    yield caller
    await caller.stop()
    await connection.close()


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
async def observe(settings: ShippingSettings) -> AsyncIterator[Any]:
    connection = await aio_pika.connect_robust(settings.amqp_url)
    channel = await connection.channel()

    async def bind(*patterns: str) -> Observer:
        exchange = await channel.declare_exchange(
            bus.Topology.from_settings(settings).events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        # exclusive: gone with the connection; not auto-delete, which would drop it between two collects
        queue = await channel.declare_queue(exclusive=True)
        for pattern in patterns:
            await queue.bind(exchange, pattern)
        return Observer(queue)

    yield bind
    await connection.close()
