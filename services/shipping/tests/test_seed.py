"""The demo seed on a database seeded before the table had euro and dollar prices (a developer's
`make run` database): it adds them once, and leaves what an admin changed as it is. On a schema
of its own, migrated for each test and dropped after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from shared import db
from shipping.__main__ import MIGRATIONS
from shipping.seed import EU, PRICES, UK, load_demo
from shipping.settings import ShippingSettings

SCHEMA = "pt_shipping_seed"
OLD_TABLE = [price for price in PRICES if price.currency == "GBP"]  # what the seed loaded before


@pytest.fixture
async def pool(infra: Any, admin_db: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    settings = infra.settings(ShippingSettings, db_schema=SCHEMA, database_url=infra.runtime_dsn(SCHEMA))
    await db.migrate(settings, MIGRATIONS)
    pool = await db.create_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()
        await admin_db.execute(f"DROP SCHEMA {SCHEMA} CASCADE")


async def seed(pool: asyncpg.Pool, prices: Any = PRICES) -> list[str]:
    async with pool.acquire() as conn:
        return await load_demo(conn, prices)


async def table(pool: asyncpg.Pool) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT m.code, z.name, r.name AS region, p.currency, p.rate, p.min_basket, p.min_weight, p.max_weight "
        "FROM prices p JOIN methods m ON m.id = p.method_id JOIN zones z ON z.id = p.zone_id "
        "LEFT JOIN zone_regions r ON r.id = p.region_id"
    )
    return sorted(tuple(row) for row in rows)


def expected(prices: Any) -> list[tuple[Any, ...]]:
    return sorted(tuple(price) for price in prices)


async def test_a_gbp_only_table_gets_the_euro_and_dollar_prices_once(pool: asyncpg.Pool) -> None:
    assert len(await seed(pool, OLD_TABLE)) == len(OLD_TABLE) == 8
    old_ids = {row["id"] for row in await pool.fetch("SELECT id FROM prices")}
    zones = await pool.fetch("SELECT id, name FROM zones")

    added = await seed(pool)
    assert len(added) == len(PRICES) - len(OLD_TABLE) == 16
    assert await seed(pool) == []
    assert await table(pool) == expected(PRICES)
    # The pounds' prices, zones, regions and methods are the ones there were, not copies.
    assert old_ids <= {row["id"] for row in await pool.fetch("SELECT id FROM prices")}
    assert await pool.fetch("SELECT id, name FROM zones") == zones
    assert await pool.fetchval("SELECT count(*) FROM zone_regions") == 2
    assert await pool.fetchval("SELECT count(*) FROM methods") == 4
    added_currencies = await pool.fetch("SELECT DISTINCT currency FROM prices WHERE id = ANY($1::text[])", added)
    assert sorted(row["currency"] for row in added_currencies) == ["EUR", "USD"]


async def test_a_fresh_table_is_loaded_whole_and_concurrent_seeds_load_it_once(pool: asyncpg.Pool) -> None:
    results = await asyncio.gather(*(seed(pool) for _ in range(4)))
    assert sorted(len(added) for added in results) == [0, 0, 0, len(PRICES)]
    assert await table(pool) == expected(PRICES)
    assert sorted(r["name"] for r in await pool.fetch("SELECT name FROM zones")) == sorted([UK, EU])


async def test_an_admins_changes_to_the_demo_prices_stand(pool: asyncpg.Pool) -> None:
    await seed(pool)
    # An admin raises the euro free-delivery threshold and drops dollar express to the UK.
    await pool.execute("UPDATE prices SET min_basket = 15000 WHERE currency = 'EUR' AND min_basket = 11500")
    dropped = await pool.execute(
        "DELETE FROM prices p USING methods m, zones z WHERE m.id = p.method_id AND z.id = p.zone_id "
        "AND m.code = 'EXP' AND z.name = $1 AND p.currency = 'USD' AND p.min_weight > 0",
        UK,
    )
    assert dropped == "DELETE 1"
    assert await seed(pool) == []
    assert await pool.fetchval("SELECT count(*) FROM prices WHERE currency = 'EUR' AND min_basket = 11500") == 0
    assert len(await table(pool)) == len(PRICES) - 1
