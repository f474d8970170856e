"""The background sweeper of orders: checkout attempts that waited too long for their stock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from orders import attempt_queries, checkout
from orders.settings import OrdersSettings
from shared import runtime, tracing
from shared.outbox import Relay
from shared.uow import unit_of_work

log = logging.getLogger(__name__)


async def sweep_stalled_once(pool: asyncpg.Pool, settings: OrdersSettings, relay: Relay | None = None) -> int:
    """Fail the attempts still waiting for stock past the timeout; none of them was charged (the
    charge is only requested once the stock is reserved), so failing them is safe."""
    swept = 0
    for row in await attempt_queries.stalled_attempts(pool, settings.stock_reservation_timeout):
        with tracing.working_on("sweep stalled checkout", order_id=row["order_id"]):
            async with unit_of_work(pool, settings.service, relay=relay) as uow:
                if await checkout.fail_attempt(
                    uow,
                    row["order_id"],
                    row["attempt_id"],
                    expected_stage="stock_requested",
                    stage="timed_out",
                    reason="stock-reservation-timed-out",
                ):
                    swept += 1
    if swept:
        log.warning("stalled checkout attempts failed", extra={"count": swept})
    return swept


def attempt_sweeper(settings: OrdersSettings) -> runtime.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                await asyncio.sleep(settings.attempt_sweep_interval)
                try:
                    await sweep_stalled_once(app[runtime.POOL], settings, app.get(runtime.RELAY))
                except Exception as exc:
                    log.warning("attempt sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})

        task = asyncio.create_task(run(), name="orders-attempt-sweeper")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
