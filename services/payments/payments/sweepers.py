"""The background sweeper of payments: charge attempts whose result was never recorded."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from payments import domain, queries
from payments.consumers import settle
from payments.providers import PROVIDERS, Provider, ProviderError, answer
from payments.settings import PaymentsSettings
from shared import runtime, tracing
from shared.outbox import Relay
from shared.uow import unit_of_work

log = logging.getLogger(__name__)

# Intents settled per sweep at most; the rest wait for the next one.
SWEEP_BATCH = 100


async def reconcile(
    pool: asyncpg.Pool, providers: dict[str, Provider], intent: asyncpg.Record, relay: Relay | None = None
) -> bool:
    """Settle one attempt from the provider's record of its key: captured is recorded and
    announced as captured (the order is placed), not found as declined (the attempt fails). False
    when there was nothing to do: the attempt was settled meanwhile, or its provider is not
    configured here. Raises ProviderError, having written nothing, when the provider gives no
    answer.

    The order's lock is taken first, as the charger takes it: a charge request of the attempt
    still being retried either settled it before (found here) or finds it settled after (and
    answers the same, charging nothing).
    """
    async with unit_of_work(pool, "payments", relay=relay) as uow:
        await queries.lock_order_charges(uow.conn, intent["order_id"])
        charges = await queries.charges_of(uow.conn, intent["attempt_id"], intent["order_id"])
        if any(row["attempt_id"] == intent["attempt_id"] for row in charges):
            return False
        ptype = await queries.type_by_id(uow.conn, intent["payment_type_id"])
        provider = providers.get(ptype["driver"])
        if provider is None:
            log.warning(
                "charge intent left unsettled: its provider is not configured",
                extra={"attempt_id": str(intent["attempt_id"]), "driver": ptype["driver"]},
            )
            return False
        result = await answer(provider, provider.lookup(str(intent["attempt_id"])))
        order_paid = any(row["status"] == domain.CAPTURED for row in charges)
        await settle(uow, intent, ptype, provider, result, order_paid=order_paid)
    log.warning(
        "charge attempt reconciled with its provider",
        extra={
            "order_id": intent["order_id"],
            "attempt_id": str(intent["attempt_id"]),
            "found": result is not None,
            "success": result is not None and result.success,
        },
    )
    return True


async def reconcile_once(
    pool: asyncpg.Pool, providers: dict[str, Provider], settings: PaymentsSettings, relay: Relay | None = None
) -> int:
    """Settle the attempts whose intent is older than `reconcile_after` with no result; how many
    were. An attempt whose provider still gives no answer is left for the next sweep, and so are
    the others of its payment type this time (each would only wait for the timeout again)."""
    settled = 0
    down: set[str] = set()
    for intent in await queries.unsettled_intents(pool, settings.reconcile_after, SWEEP_BATCH):
        if intent["payment_type_id"] in down:
            continue
        with tracing.working_on("reconcile charge", order_id=intent["order_id"]):
            try:
                settled += await reconcile(pool, providers, intent, relay)
            except ProviderError as exc:
                down.add(intent["payment_type_id"])
                log.warning(
                    "charge reconciliation deferred: the provider gave no answer",
                    extra={"attempt_id": str(intent["attempt_id"]), "error": f"{type(exc).__name__}: {exc}"},
                )
    return settled


def reconciler(settings: PaymentsSettings) -> runtime.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                await asyncio.sleep(settings.reconcile_interval)
                try:
                    await reconcile_once(app[runtime.POOL], app[PROVIDERS], settings, app.get(runtime.RELAY))
                except Exception as exc:
                    log.warning("charge reconciliation failed", extra={"error": f"{type(exc).__name__}: {exc}"})

        task = asyncio.create_task(run(), name="payments-reconciler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
