"""The purger: refresh tokens past their expiry, sessions that ended and sign-in failures no
policy looks at any more are deleted, so that the tables hold what still counts."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from customers import queries
from customers.domain import CLIENT_POLICY, EMAIL_POLICY
from customers.settings import CustomersSettings
from shared import runtime
from shared.uow import unit_of_work

log = logging.getLogger(__name__)

# A failure count is kept for as long as a policy looks back.
FORGET_AFTER = max(EMAIL_POLICY.window, CLIENT_POLICY.window)


async def purge(pool: asyncpg.Pool, *, batch: int = 1000) -> int:
    """One pass, in batches (no statement holds its locks for long); how many rows went."""
    total = 0
    steps = (
        queries.purge_expired_tokens,
        queries.purge_ended_sessions,
        functools.partial(queries.purge_forgotten_failures, window=FORGET_AFTER),
    )
    for step in steps:
        while True:
            async with unit_of_work(pool, "customers") as uow:
                deleted = await step(uow.conn, limit=batch)
            total += deleted
            if deleted < batch:
                break
    return total


async def _purge_forever(pool: asyncpg.Pool, interval: float) -> None:
    while True:
        try:
            deleted = await purge(pool)
            if deleted:
                log.info("expired sign-in records purged", extra={"deleted": deleted})
        except Exception as exc:
            log.warning("purge failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        await asyncio.sleep(interval)


def purger(settings: CustomersSettings) -> runtime.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_purge_forever(app[runtime.POOL], settings.purge_interval), name="purger")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
