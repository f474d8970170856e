"""Fixtures of the shipping tests: the app in-process, an RPC caller and a bus observer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from shared import bus, db
from shipping.app import create_app
from shipping.settings import ShippingSettings
from tests.support import observing


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


@pytest.fixture
async def observe(settings: ShippingSettings) -> AsyncIterator[Any]:
    async with observing(settings.amqp_url, settings.bus_namespace) as bind:
        yield bind
