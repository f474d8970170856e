"""`python -m payments seed`: the demo's payment types (idempotent, by handle).

The migrations install what production gets: the card type offered, offline neither enabled nor
offered. The demo (`make run`, the tests' services) also takes offline payments: the seed enables
and offers every demo type, once, and leaves alone a type whose policy an admin has changed.
"""

from __future__ import annotations

import logging

import asyncpg

from payments import queries
from payments.settings import PaymentsSettings
from shared import db
from shared.http import new_id

log = logging.getLogger(__name__)


async def seed_types(conn: asyncpg.Connection) -> int:
    """The demo types, enabled and offered; returns how many it had to add."""
    added = 0
    for name, handle, driver, success_status, paid_on_success in queries.SEED_TYPES:
        added += await queries.insert_type_if_missing(
            conn, new_id(), name, handle, driver, success_status, paid_on_success
        )
    await queries.offer_as_installed(conn, [handle for _, handle, *_ in queries.SEED_TYPES])
    return added


async def seed(settings: PaymentsSettings) -> None:
    pool = await db.create_pool(settings.model_copy(update={"db_pool_min": 1, "db_pool_max": 1}))
    try:
        async with pool.acquire() as conn:
            added = await seed_types(conn)
    finally:
        await pool.close()
    log.info("payment types seeded", extra={"added": added})
