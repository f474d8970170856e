"""Fixtures of the basket service's tests (real Postgres and RabbitMQ)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from basket.app import create_app
from basket.settings import BasketSettings
from shared import db


@pytest.fixture
def settings(infra: Any) -> BasketSettings:
    # The same retry delays as the stack's processes (tests/support.py env_for): retry queues are
    # declared by whoever comes first, and RabbitMQ refuses a second declaration with another TTL.
    return infra.settings(BasketSettings, bus_retry_delays_ms=(200, 1000, 3000))


@pytest.fixture
async def client(aiohttp_client: Any, settings: BasketSettings) -> Any:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def pool(settings: BasketSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()
