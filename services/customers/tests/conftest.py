"""Fixtures of the customers tests: the app in-process on the run's database and bus, and a bus
observer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from customers.app import create_app
from customers.settings import CustomersSettings
from shared import db
from tests.support import observing


@pytest.fixture
def settings(infra) -> CustomersSettings:
    # argon2id at its least cost: these tests are about the rules, not the cost (production
    # refuses these values; tests/test_production.py).
    return infra.settings(CustomersSettings, password_hash_memory_kib=1024, password_hash_time_cost=1)


@pytest.fixture
async def pool(settings: CustomersSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture
async def client(aiohttp_client, settings):
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def observe(settings: CustomersSettings) -> AsyncIterator[Any]:
    async with observing(settings.amqp_url, settings.bus_namespace) as bind:
        yield bind
