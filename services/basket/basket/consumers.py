"""Basket's side of the checkout saga, the basket snapshot responder and the expiry sweep.

Each event handler runs inside the consumer's transaction, next to its inbox row, so an exact
redelivery changes nothing. On top of that every reservation is unique per (order, attempt):
a second request for the same attempt (another event id) finds the first one and answers the
same way instead of reserving again.

Stock is locked variant by variant in id order (`queries.lock_stock`), the one order every
stock change follows, so two checkouts racing for the same variants queue instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

import asyncpg
from aiohttp import web

from basket import domain, queries, views
from basket.settings import BasketSettings
from shared import outbox, runtime
from shared.bus import HandlerContext, RequestHandler, Subscription
from shared.contracts import (
    BasketSnapshotReply,
    GetBasketSnapshot,
    LineQuantity,
    OrderFailed,
    OrderPlaced,
    OrderStockRequested,
    StockCommitted,
    StockRefused,
    StockReleased,
    StockReserved,
)
from shared.http import is_id, new_id

log = logging.getLogger(__name__)

MSG_EMPTY = "The basket is empty"


def _aggregate(lines: list[LineQuantity]) -> list[tuple[str, int]]:
    """(variant_id, total quantity) per variant, in id order (the locking order)."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.variant_id] = totals.get(line.variant_id, 0) + line.quantity
    return sorted(totals.items())


async def reserve_stock(ctx: HandlerContext, payload: OrderStockRequested, *, ttl_seconds: float) -> None:
    """`order.stock_requested.v1`: reserve every line or none, answer reserved or refused."""
    conn = ctx.conn
    wanted = [(line.variant_id, line.quantity) for line in payload.lines]
    per_variant = _aggregate(payload.lines)
    reservation, locked = await queries.insert_reservation_locking_stock(
        conn,
        reservation_id=new_id(),
        order_id=payload.order_id,
        attempt_id=payload.attempt_id,
        basket_id=payload.basket_id,
        ttl_seconds=ttl_seconds,
        correlation_id=ctx.envelope.correlation_id,
        variant_ids=[variant_id for variant_id, _ in per_variant],
    )
    if reservation is None:
        await _answer_again(ctx, payload)
        return
    levels = {
        row["variant_id"]: domain.StockLevel(
            sku=row["sku"],
            purchasable=row["purchasable"],
            backorder=row["backorder"],
            inventory=row["inventory"],
            incoming=row["incoming"],
            reserved=row["reserved"],
        )
        for row in locked
    }
    errors = domain.reservation_errors(wanted, levels) if wanted else {"basket_id": [MSG_EMPTY]}
    if errors:
        await queries.set_refused(conn, reservation["id"], errors)
        log.info("stock refused", extra={"order_id": payload.order_id, "errors": errors})
        await ctx.emit(StockRefused(order_id=payload.order_id, attempt_id=payload.attempt_id, errors=errors))
        return
    ctx.write(
        *queries.hold_stock(
            reservation["id"], [(variant_id, levels[variant_id].sku, qty) for variant_id, qty in per_variant]
        ),
        gate="held",
        required=True,
    )
    log.info("stock reserved", extra={"order_id": payload.order_id, "reservation_id": reservation["id"]})
    await ctx.emit(
        StockReserved(
            order_id=payload.order_id,
            attempt_id=payload.attempt_id,
            reservation_id=reservation["id"],
            expires_at=reservation["expires_at"],
        )
    )


async def _answer_again(ctx: HandlerContext, payload: OrderStockRequested) -> None:
    """A repeated request for an attempt already handled: repeat the answer, reserve nothing."""
    existing = await queries.reservation_for_attempt(ctx.conn, payload.order_id, payload.attempt_id)
    assert existing is not None
    log.info(
        "stock request repeated",
        extra={"order_id": payload.order_id, "reservation_id": existing["id"], "status": existing["status"]},
    )
    if existing["status"] == "active":
        await ctx.emit(
            StockReserved(
                order_id=payload.order_id,
                attempt_id=payload.attempt_id,
                reservation_id=existing["id"],
                expires_at=existing["expires_at"],
            )
        )
    elif existing["status"] == "refused":
        await ctx.emit(
            StockRefused(order_id=payload.order_id, attempt_id=payload.attempt_id, errors=existing["errors"] or {})
        )


async def commit_stock(ctx: HandlerContext, payload: OrderPlaced) -> None:
    """`order.placed.v1`: the reservation becomes a stock decrement, exactly once.

    The decrement happens on the one transition into `committed` (a compare-and-set), so a
    second delivery finds the reservation committed and changes nothing. A reservation that
    expired (or was never made) is still decremented: a placed order is sold.
    """
    conn = ctx.conn
    reservation = await queries.reservation_with_lines(conn, payload.order_id, payload.attempt_id)
    if reservation is None:
        reservation = await queries.insert_reservation(
            conn,
            reservation_id=new_id(),
            order_id=payload.order_id,
            attempt_id=payload.attempt_id,
            basket_id=payload.basket_id,
            status="committed",
            ttl_seconds=0,
            correlation_id=ctx.envelope.correlation_id,
        )
        if reservation is None:  # a concurrent twin of this event committed it meanwhile
            log.info("order already committed", extra={"order_id": payload.order_id})
            return
        log.warning("order placed without a reservation", extra={"order_id": payload.order_id})
        lines = await _lines_from_order(conn, reservation["id"], payload)
    elif reservation["status"] == "committed":
        log.info("order already committed", extra={"order_id": payload.order_id})
        return
    else:
        if reservation["status"] != "active":
            log.warning(
                "committing a reservation that was not active",
                extra={"order_id": payload.order_id, "status": reservation["status"]},
            )
        lines = [(line["variant_id"], line["sku"], line["quantity"]) for line in reservation["lines"]]
        if not lines:  # refused or a failure tombstone: nothing held, take the order's lines
            lines = await _lines_from_order(conn, reservation["id"], payload)
    # Under the reservation's lock the compare-and-set cannot fail: if it does, roll back and retry.
    ctx.write(
        *queries.commit_and_sell(reservation, lines, basket_id=payload.basket_id, order_id=payload.order_id),
        gate="committed",
        required=True,
    )
    await ctx.emit(
        StockCommitted(
            order_id=payload.order_id,
            reservation_id=reservation["id"],
            lines=[LineQuantity(variant_id=v, sku=sku, quantity=q) for v, sku, q in lines],
        )
    )


async def _lines_from_order(conn: asyncpg.Connection, reservation_id: str, payload: OrderPlaced) -> list:
    per_variant = _aggregate(payload.lines)
    known = await queries.variants_by_id(conn, [variant_id for variant_id, _ in per_variant])
    lines = [(v, known[v]["sku"], q) for v, q in per_variant if v in known]
    if len(lines) != len(per_variant):
        log.error("placed order names unknown variants", extra={"order_id": payload.order_id})
    await queries.insert_reservation_lines(conn, reservation_id, lines)
    return lines


async def release_stock(ctx: HandlerContext, payload: OrderFailed) -> None:
    """`order.failed.v1`: give back the attempt's reservation (active -> released)."""
    conn = ctx.conn
    reservation = await queries.reservation_for_attempt(conn, payload.order_id, payload.attempt_id)
    if reservation is None:
        # The failure overtook the stock request: leave a tombstone so that a late request for
        # this attempt reserves nothing.
        await queries.insert_reservation(
            conn,
            reservation_id=new_id(),
            order_id=payload.order_id,
            attempt_id=payload.attempt_id,
            basket_id=payload.basket_id,
            status="released",
            ttl_seconds=0,
            correlation_id=ctx.envelope.correlation_id,
            release_reason="order-failed",
        )
        log.info("order failed before any reservation", extra={"order_id": payload.order_id})
        return
    if reservation["status"] != "active":
        log.info("nothing to release", extra={"order_id": payload.order_id, "status": reservation["status"]})
        return
    if not await queries.release_reservation(conn, reservation["id"], reservation["version"], "order-failed"):
        raise RuntimeError(f"reservation {reservation['id']} changed under its lock")
    await ctx.emit(StockReleased(order_id=payload.order_id, reservation_id=reservation["id"], reason="order-failed"))


def subscriptions(settings: BasketSettings) -> dict[str, Subscription]:
    return {
        OrderStockRequested.routing_key(): Subscription(
            OrderStockRequested, functools.partial(reserve_stock, ttl_seconds=settings.reservation_ttl)
        ),
        OrderPlaced.routing_key(): Subscription(OrderPlaced, commit_stock),
        OrderFailed.routing_key(): Subscription(OrderFailed, release_stock),
    }


# ---------------------------------------------------------------------------------------------
# Expiry


async def release_expired(pool: asyncpg.Pool, limit: int = 100) -> int:
    """Release one batch of expired reservations; returns how many were released."""
    released = 0
    if not await queries.any_expired_reservation(pool):
        return 0  # the usual sweep: one statement, no transaction
    async with pool.acquire() as conn, conn.transaction():
        for row in await queries.expired_reservations(conn, limit):
            if not await queries.release_reservation(conn, row["id"], row["version"], "expired"):
                continue
            await outbox.enqueue(
                conn,
                StockReleased(order_id=row["order_id"], reservation_id=row["id"], reason="expired"),
                "basket",
                correlation_id=row["correlation_id"],
            )
            released += 1
    if released:
        log.info("expired reservations released", extra={"count": released})
    return released


async def _sweep_forever(pool: asyncpg.Pool, settings: BasketSettings) -> None:
    while True:
        try:
            while await release_expired(pool, settings.reservation_sweep_batch) >= settings.reservation_sweep_batch:
                pass
        except Exception as exc:
            log.warning("reservation sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        await asyncio.sleep(settings.reservation_sweep_interval)


def reservation_sweeper(settings: BasketSettings) -> runtime.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_sweep_forever(app[runtime.POOL], settings), name="reservation-sweeper")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


# ---------------------------------------------------------------------------------------------
# Request/reply


async def basket_snapshot(pool: asyncpg.Pool, request: GetBasketSnapshot) -> BasketSnapshotReply:
    """A basket's current lines and totals for orders; `basket` is None for an unknown id."""
    if not is_id(request.basket_id):
        return BasketSnapshotReply(basket=None)
    async with pool.acquire() as conn:
        basket = await queries.basket_with_lines(conn, request.basket_id)
    if basket is None:
        return BasketSnapshotReply(basket=None)
    return BasketSnapshotReply(basket=views.snapshot(basket, basket["lines"]))


def rpc_handlers(app: web.Application) -> dict[str, RequestHandler]:
    return {GetBasketSnapshot.type: functools.partial(basket_snapshot, app[runtime.POOL])}
