"""Fixtures of the payments tests: pools on the run's database and a charger driven by the bus's
own consumer (`testkit.Checkout`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from payments.providers import Provider, build_providers
from payments.seed import seed_types
from payments.settings import PaymentsSettings
from services.payments.tests.testkit import Checkout
from shared import db
from tests.support import observing


@pytest.fixture
def settings(infra) -> PaymentsSettings:
    return infra.settings(PaymentsSettings)


@pytest.fixture
async def pool(settings: PaymentsSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    async with pool.acquire() as conn:
        await seed_types(conn)  # the demo's types (offline enabled), as the stack's services have them
    yield pool
    await pool.close()


@pytest.fixture
async def side_pool(settings: PaymentsSettings) -> AsyncIterator[asyncpg.Pool]:
    """Separate from `pool`, as in the app: handlers holding main connections never starve it."""
    pool = await db.create_pool(settings.model_copy(update={"db_pool_min": 1, "db_pool_max": settings.side_pool_max}))
    yield pool
    await pool.close()


@pytest.fixture
def providers(side_pool: asyncpg.Pool, settings: PaymentsSettings) -> dict[str, Provider]:
    return build_providers(settings.merchant, side_pool, settings.client_token_ttl)


@pytest.fixture
def checkout(
    pool: asyncpg.Pool, side_pool: asyncpg.Pool, settings: PaymentsSettings, providers: dict[str, Provider]
) -> Checkout:
    return Checkout(pool, side_pool, settings, providers)


@pytest.fixture
async def observe(settings: PaymentsSettings) -> AsyncIterator[Any]:
    async with observing(settings.amqp_url, settings.bus_namespace) as bind:
        yield bind
