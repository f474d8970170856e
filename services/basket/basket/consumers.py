"""Basket's side of the checkout saga (stock reservations) and the basket snapshot responder.

The bus runs each handler in a unit of work that has written the event's inbox row first, so an
exact redelivery never reaches it. On top of that every reservation is unique per (order,
attempt): a second request for the same attempt (another event id) waits on that key, finds the
first one and answers the same way instead of reserving again. Each handler reads the attempt's
reservation with its lock before it changes anything, so a reservation is committed once and
released once whatever the order in which the saga's events arrive.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime

import asyncpg
from aiohttp import web

from basket import currencies, domain, pricing, pricing_queries, queries, stock_queries, views
from basket.settings import BasketSettings
from shared import runtime
from shared.bus import Responder, Subscription
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
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

MSG_EMPTY = "The basket is empty"
MSG_DISCOUNT_GONE = "This discount is no longer available."


def subscriptions(app: web.Application) -> list[Subscription]:
    settings = app[runtime.SETTINGS]
    assert isinstance(settings, BasketSettings)
    return [
        Subscription(
            OrderStockRequested, functools.partial(on_order_stock_requested, ttl_seconds=settings.reservation_ttl)
        ),
        Subscription(OrderPlaced, on_order_placed),
        Subscription(OrderFailed, on_order_failed),
    ]


def responders(app: web.Application) -> list[Responder]:
    settings = app[runtime.SETTINGS]
    assert isinstance(settings, BasketSettings)
    snapshot = functools.partial(on_get_basket_snapshot, app[runtime.POOL], base_currency=settings.base_currency)
    return [Responder(GetBasketSnapshot, snapshot)]


def _per_variant(lines: list[LineQuantity]) -> list[tuple[str, int]]:
    """(variant_id, total quantity) per variant, in id order (the locking order)."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.variant_id] = totals.get(line.variant_id, 0) + line.quantity
    return sorted(totals.items())


async def on_order_stock_requested(uow: UnitOfWork, event: OrderStockRequested, *, ttl_seconds: float) -> None:
    """Reserve every line and a use of every discount the order uses, or nothing; answer reserved
    or refused (stock and discount errors in one map)."""
    per_variant = _per_variant(event.lines)
    reservation, locked = await stock_queries.insert_reservation_locking_stock(
        uow.conn,
        reservation_id=new_id(),
        order_id=event.order_id,
        attempt_id=event.attempt_id,
        basket_id=event.basket_id,
        ttl_seconds=ttl_seconds,
        correlation_id=uow.correlation_id,
        variant_ids=[variant_id for variant_id, _ in per_variant],
    )
    if reservation is None:
        await _answer_again(uow, event)
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
    wanted = [(line.variant_id, line.quantity) for line in event.lines]
    errors = domain.reservation_errors(wanted, levels) if wanted else {"basket_id": [MSG_EMPTY]}
    # The discounts the order uses are reserved with its stock, after it (variants, then discounts).
    errors |= await _discount_errors(uow.conn, event)
    if errors:
        await stock_queries.set_refused(uow.conn, reservation["id"], errors)
        log.info("stock refused", extra={"order_id": event.order_id, "errors": errors})
        uow.emit(StockRefused(order_id=event.order_id, attempt_id=event.attempt_id, errors=errors))
        return
    lines = [(variant_id, levels[variant_id].sku, quantity) for variant_id, quantity in per_variant]
    await stock_queries.hold_stock(uow.conn, reservation["id"], lines)
    uses = {use.discount_id: use.amount for use in event.discounts}
    if uses:
        await stock_queries.hold_discount_uses(
            uow.conn, reservation["id"], event.order_id, pricing.email_key(event.email), sorted(uses.items())
        )
    log.info("stock reserved", extra={"order_id": event.order_id, "reservation_id": reservation["id"]})
    uow.emit(_reserved(event, reservation))


async def _discount_errors(conn: asyncpg.Connection, event: OrderStockRequested) -> dict[str, list[str]]:
    """Locks the discounts the order uses (in id order) and says why any cannot be used now:
    deleted, disabled, not started, ended, or a limit reached (checkouts in flight count). Keyed
    `coupon` for a coupon's (the shopper can remove it), else by the discount's position."""
    if not event.discounts:
        return {}
    ids = sorted({use.discount_id for use in event.discounts})
    locked = await stock_queries.lock_discounts(conn, ids)
    email_key = pricing.email_key(event.email)
    by_email = await stock_queries.uses_by_email(conn, ids, email_key) if email_key else {}
    now = datetime.now(UTC)
    errors: dict[str, list[str]] = {}
    for index, use in enumerate(event.discounts):
        field = "coupon" if use.coupon else f"discounts.{index}.id"
        row = locked.get(use.discount_id)
        if row is None:
            errors[field] = [pricing.MSG_COUPON_INVALID if use.coupon else MSG_DISCOUNT_GONE]
            continue
        used = by_email.get(use.discount_id, 0) if email_key else None
        refusal = pricing.use_refusal(views.discount_terms(row), now, uses_by_email=used)
        if refusal is not None:
            errors[field] = [refusal]
    return errors


def _reserved(event: OrderStockRequested, reservation: asyncpg.Record) -> StockReserved:
    return StockReserved(
        order_id=event.order_id,
        attempt_id=event.attempt_id,
        reservation_id=reservation["id"],
        expires_at=reservation["expires_at"],
    )


async def _answer_again(uow: UnitOfWork, event: OrderStockRequested) -> None:
    """A repeated request for an attempt already handled: repeat the answer, reserve nothing.

    An attempt whose reservation was committed or released since (or whose failure came first)
    gets no answer: the saga has moved on."""
    existing = await stock_queries.reservation_for_attempt(uow.conn, event.order_id, event.attempt_id)
    assert existing is not None  # the insert found it; reservations are never deleted
    log.info(
        "stock request repeated",
        extra={"order_id": event.order_id, "reservation_id": existing["id"], "status": existing["status"]},
    )
    if existing["status"] == "active":
        uow.emit(_reserved(event, existing))
    elif existing["status"] == "refused":
        uow.emit(StockRefused(order_id=event.order_id, attempt_id=event.attempt_id, errors=existing["errors"] or {}))


async def on_order_placed(uow: UnitOfWork, event: OrderPlaced) -> None:
    """The reservation becomes a stock decrement, exactly once, and the basket is marked used.

    A reservation that expired (or was never made) is still decremented: a placed order is sold.
    """
    conn = uow.conn
    reservation = await stock_queries.reservation_with_lines(conn, event.order_id, event.attempt_id)
    ours = None
    if reservation is None:
        log.warning("order placed without a reservation", extra={"order_id": event.order_id})
        ours = await stock_queries.insert_reservation(
            conn,
            reservation_id=new_id(),
            order_id=event.order_id,
            attempt_id=event.attempt_id,
            basket_id=event.basket_id,
            status="committed",
            ttl_seconds=0,
            correlation_id=uow.correlation_id,
        )
        # Ours, or the one a concurrent event for this attempt made meanwhile: read it locked.
        reservation = await stock_queries.reservation_with_lines(conn, event.order_id, event.attempt_id)
        assert reservation is not None
    if reservation["status"] == "committed" and ours is None:
        log.info("order already committed", extra={"order_id": event.order_id})
        return
    if reservation["status"] not in ("active", "committed"):
        log.warning(
            "committing a reservation that was not active",
            extra={"order_id": event.order_id, "status": reservation["status"]},
        )
    lines = [(line["variant_id"], line["sku"], line["quantity"]) for line in reservation["lines"]]
    if not lines:  # refused, a failure's tombstone or just inserted: nothing held, sell the order's lines
        lines = await _lines_from_order(conn, reservation["id"], event)
    await stock_queries.commit_and_sell(
        conn,
        reservation["id"],
        reservation["status"] == "active",
        lines,
        basket_id=event.basket_id,
        order_id=event.order_id,
    )
    uow.emit(
        StockCommitted(
            order_id=event.order_id,
            reservation_id=reservation["id"],
            lines=[LineQuantity(variant_id=v, sku=sku, quantity=q) for v, sku, q in lines],
        )
    )


async def _lines_from_order(conn: asyncpg.Connection, reservation_id: str, event: OrderPlaced) -> stock_queries.Lines:
    per_variant = _per_variant(event.lines)
    known = await queries.variants_by_id(conn, [variant_id for variant_id, _ in per_variant])
    lines = [(v, known[v]["sku"], q) for v, q in per_variant if v in known]
    if len(lines) != len(per_variant):
        log.error("placed order names unknown variants", extra={"order_id": event.order_id})
    await stock_queries.insert_reservation_lines(conn, reservation_id, lines)
    return lines


async def on_order_failed(uow: UnitOfWork, event: OrderFailed) -> None:
    """Give back the attempt's reservation (active -> released)."""
    conn = uow.conn
    reservation = await stock_queries.reservation_for_attempt(conn, event.order_id, event.attempt_id)
    if reservation is None:
        # The failure overtook the stock request: leave a tombstone so that a late request for
        # this attempt reserves nothing.
        tombstone = await stock_queries.insert_reservation(
            conn,
            reservation_id=new_id(),
            order_id=event.order_id,
            attempt_id=event.attempt_id,
            basket_id=event.basket_id,
            status="released",
            ttl_seconds=0,
            correlation_id=uow.correlation_id,
            release_reason="order-failed",
        )
        if tombstone is not None:
            log.info("order failed before any reservation", extra={"order_id": event.order_id})
            return
        # The request's reservation was made meanwhile: release it like any other.
        reservation = await stock_queries.reservation_for_attempt(conn, event.order_id, event.attempt_id)
        assert reservation is not None
    if reservation["status"] != "active":
        log.info("nothing to release", extra={"order_id": event.order_id, "status": reservation["status"]})
        return
    await stock_queries.release_reservation(conn, reservation["id"], "order-failed")
    uow.emit(StockReleased(order_id=event.order_id, reservation_id=reservation["id"], reason="order-failed"))


async def on_get_basket_snapshot(
    pool: asyncpg.Pool, request: GetBasketSnapshot, *, base_currency: str
) -> BasketSnapshotReply:
    """A basket's current lines and totals for orders, in its currency at the rate of now (the
    snapshot says which); `basket` is None for an unknown id, and for a basket the asking customer
    may not see (`domain.visible_to`)."""
    basket = await queries.basket_with_lines(pool, request.basket_id) if is_id(request.basket_id) else None
    saved = basket is not None and basket["saved_name"] is not None
    if basket is None or not domain.visible_to(basket["customer_id"], saved, request.customer_id):
        return BasketSnapshotReply(basket=None)
    discounts_now = await pricing_queries.basket_discounts(pool, basket["id"])
    conversion = await currencies.basket_conversion(pool, base_currency, basket)
    return BasketSnapshotReply(basket=views.snapshot(basket, basket["lines"], discounts_now, conversion))
