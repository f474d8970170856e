"""`python -m payments seed`: the payment types every installation has (idempotent, by handle)."""

from __future__ import annotations

import logging

import asyncpg

from payments import queries
from payments.settings import PaymentsSettings
from shared import db
from shared.http import new_id

log = logging.getLogger(__name__)


async def seed_types(conn: asyncpg.Connection) -> int:
    added = 0
    for name, handle, driver, success_status in queries.SEED_TYPES:
        added += await queries.insert_type_if_missing(conn, new_id(), name, handle, driver, success_status)
    return added


async def seed(settings: PaymentsSettings) -> None:
    pool = await db.create_pool(settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 1}))
    try:
        async with pool.acquire() as conn:
            added = await seed_types(conn)
    finally:
        await pool.close()
    log.info("payment types seeded", extra={"added": added})
