"""The reservation sweeper: stock held by a checkout that never finished goes back on sale."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from basket import stock_queries
from basket.settings import BasketSettings
from shared import runtime, tracing
from shared.contracts import StockReleased
from shared.outbox import Relay
from shared.uow import unit_of_work

log = logging.getLogger(__name__)


async def release_expired(pool: asyncpg.Pool, *, relay: Relay | None = None, limit: int = 100) -> int:
    """Release one batch of expired reservations; returns how many this sweeper released (one
    that another sweeper or the order's own event holds is theirs to decide)."""
    expired = await stock_queries.expired_reservations(pool, limit)  # the usual sweep: this one statement
    released = 0
    for row in expired:
        # One unit of work per reservation, so that its event (and its log lines) carry the
        # checkout's correlation id.
        with tracing.working_on("release expired reservation", request_id=row["correlation_id"]):
            async with unit_of_work(pool, "basket", correlation_id=row["correlation_id"], relay=relay) as uow:
                reservation = await stock_queries.lock_expired_reservation(uow.conn, row["id"])
                if reservation is None:
                    continue
                await stock_queries.release_reservation(uow.conn, reservation["id"], "expired")
                order_id = reservation["order_id"]
                uow.emit(StockReleased(order_id=order_id, reservation_id=reservation["id"], reason="expired"))
                released += 1
    if released:
        log.info("expired reservations released", extra={"count": released})
    return released


async def _sweep_forever(pool: asyncpg.Pool, relay: Relay | None, settings: BasketSettings) -> None:
    batch = settings.reservation_sweep_batch
    while True:
        try:
            while await release_expired(pool, relay=relay, limit=batch) >= batch:
                pass
        except Exception as exc:
            log.warning("reservation sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        await asyncio.sleep(settings.reservation_sweep_interval)


def reservation_sweeper(settings: BasketSettings) -> runtime.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        sweep = _sweep_forever(app[runtime.POOL], app.get(runtime.RELAY), settings)
        task = asyncio.create_task(sweep, name="reservation-sweeper")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
