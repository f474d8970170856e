"""The events orders consumes: the checkout saga's replies and the after-placement updates.

Each handler runs in one transaction with its inbox row (a redelivered event is dropped before
it gets here) and is itself a compare-and-set keyed on the checkout attempt or the status, so a
late or duplicate event with a new id is a logged no-op as well.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from orders import domain, queries, saga
from orders.settings import OrdersSettings
from shared.bus import HandlerContext, Subscription
from shared.contracts import (
    Address,
    LineQuantity,
    OrderChargeRequested,
    OrderPlaced,
    OrderStatusChanged,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentVoided,
    ShipmentDispatched,
    StockRefused,
    StockReserved,
)

log = logging.getLogger(__name__)


def _ignored(what: str, order_id: str, **extra: object) -> None:
    log.info("late or duplicate event ignored", extra={"event": what, "order_id": order_id, **extra})


async def on_stock_reserved(ctx: HandlerContext, event: StockReserved) -> None:
    """Step 3: charge exactly the order's total, once per attempt; the token leaves the table.

    A read, then one statement that moves the attempt on (compare-and-set) with the inbox row and
    the charge request: no transaction. If the attempt moved on in between, nothing is written
    but the inbox row, as for a late event."""
    # Amount and currency come from the order (frozen while in flight), never from a client.
    charge = await queries.charge_to_request(ctx.conn, event.attempt_id, event.order_id)
    if charge is None:
        _ignored("stock.reserved", event.order_id, attempt_id=str(event.attempt_id))
        return
    ctx.write(
        *queries.charge_requested(
            event.attempt_id, event.order_id, event.reservation_id, charge["order_total"], charge["currency"]
        ),
        gate="charged",
    )
    contact = charge["contact_details"] or {}
    await ctx.emit(
        OrderChargeRequested(
            order_id=event.order_id,
            attempt_id=event.attempt_id,
            amount=charge["order_total"],
            currency=charge["currency"],
            payment_type_id=charge["payment_type_id"],
            payment_token=charge["payment_token"],
            customer_email=contact.get("email"),
            notes=charge["notes"],
        )
    )


async def on_stock_refused(ctx: HandlerContext, event: StockRefused) -> None:
    await saga.fail_attempt(
        ctx.conn,
        ctx.emit,
        order_id=event.order_id,
        attempt_id=event.attempt_id,
        expected_stage="stock_requested",
        stage="refused",
        reason="stock-refused",
        errors=event.errors,
    )


async def on_payment_declined(ctx: HandlerContext, event: PaymentDeclined) -> None:
    if event.transaction is not None:
        await queries.upsert_transaction(ctx.conn, event.transaction, event.attempt_id)
    await saga.fail_attempt(
        ctx.conn,
        ctx.emit,
        order_id=event.order_id,
        attempt_id=event.attempt_id,
        expected_stage="charge_requested",
        stage="declined",
        reason=event.reason or "payment-declined",
    )


def placing_handler(settings: OrdersSettings):
    async def on_payment_captured(ctx: HandlerContext, event: PaymentCaptured) -> None:
        """Step 5: place the order: success status, placed_at, a gap-free reference; freeze it."""
        conn = ctx.conn
        placed_at = datetime.now(UTC)
        period = domain.reference_period(placed_at)
        captured = await queries.capture_and_number(conn, event.transaction, event.attempt_id, event.order_id, period)
        if captured is None:
            await _capture_not_placed(conn, event)
            return
        status = domain.transition(
            captured["status"], domain.success_status(event.success_status or captured["success_status"])
        )
        reference = domain.reference(settings.reference_prefix, period, captured["number"])
        # The order cannot move while its attempt is locked: placing it is required, never twice.
        ctx.write(
            *queries.place(
                event.order_id,
                event.attempt_id,
                status=status,
                placed_at=placed_at,
                reference=reference,
                invoice_reference=domain.invoice_reference(reference),
                order_type=captured["payment_type_name"],
            ),
            gate="placed",
            required=True,
        )
        # order.placed carries the new status: no order.status_changed besides it.
        await ctx.emit(
            OrderPlaced(
                order_id=captured["id"],
                attempt_id=event.attempt_id,
                basket_id=captured["basket_id"],
                reference=reference,
                status=status,
                order_total=captured["order_total"],
                currency=captured["currency"],
                lines=[
                    LineQuantity(variant_id=line["variant_id"], sku=line["sku"], quantity=line["quantity"])
                    for line in captured["lines"]
                    if not line["is_shipping"] and line["variant_id"]
                ],
                shipping_address=Address(**captured["shipping_details"]) if captured["shipping_details"] else None,
                shipping_method=captured["shipping_method"],
                shipping_price_id=captured["shipping_price_id"],
                placed_at=placed_at,
            )
        )

    return on_payment_captured


async def _capture_not_placed(conn: asyncpg.Connection, event: PaymentCaptured) -> None:
    """A capture the order does not wait for: a duplicate, or money that moved for nothing."""
    attempt = await queries.lock_attempt(conn, event.attempt_id, event.order_id)
    if attempt is not None and attempt["stage"] == "captured":
        _ignored("payment.captured", event.order_id)
    elif attempt is None or attempt["stage"] != "charge_requested":
        # Money moved for an attempt this order no longer waits for: a human must look.
        log.error(
            "payment captured for an attempt that is not charging",
            extra={"order_id": event.order_id, "attempt_id": str(event.attempt_id)},
        )
    else:
        log.error("payment captured for an order not in flight", extra={"order_id": event.order_id})


async def _follow(
    ctx: HandlerContext,
    what: str,
    order_id: str,
    target: str,
    *,
    tracking_no: str | None = None,
    dispatched_at: datetime | None = None,
) -> None:
    """A placed order follows payments or shipping (refunded, voided, dispatched) exactly once."""
    order = await queries.lock_order(ctx.conn, order_id)
    if order is None or not domain.can_transition(order["status"], target):
        _ignored(what, order_id, status=order and order["status"])
        return
    changed = await queries.change_status(
        ctx.conn,
        order_id,
        expected=order["status"],
        version=order["version"],
        status=target,
        tracking_no=tracking_no,
        dispatched_at=dispatched_at,
    )
    if changed is None:
        _ignored(what, order_id)
        return
    await ctx.emit(
        OrderStatusChanged(order_id=order_id, from_status=order["status"], to_status=target, tracking_no=tracking_no)
    )


async def on_payment_refunded(ctx: HandlerContext, event: PaymentRefunded) -> None:
    await queries.upsert_transaction(ctx.conn, event.transaction, None)
    if event.fully_refunded:
        await _follow(ctx, "payment.refunded", event.order_id, domain.REFUNDED)


async def on_payment_voided(ctx: HandlerContext, event: PaymentVoided) -> None:
    await queries.upsert_transaction(ctx.conn, event.transaction, None)
    await _follow(ctx, "payment.voided", event.order_id, domain.VOIDED)


async def on_shipment_dispatched(ctx: HandlerContext, event: ShipmentDispatched) -> None:
    await _follow(
        ctx,
        "shipment.dispatched",
        event.order_id,
        domain.DISPATCHED,
        tracking_no=event.tracking_no,
        dispatched_at=event.dispatched_at,
    )


def subscriptions(settings: OrdersSettings) -> dict[str, Subscription]:
    handlers = (
        Subscription(StockReserved, on_stock_reserved, transaction=False),
        Subscription(StockRefused, on_stock_refused),
        Subscription(PaymentCaptured, placing_handler(settings)),
        Subscription(PaymentDeclined, on_payment_declined),
        Subscription(PaymentRefunded, on_payment_refunded),
        Subscription(PaymentVoided, on_payment_voided),
        Subscription(ShipmentDispatched, on_shipment_dispatched),
    )
    return {sub.model.routing_key(): sub for sub in handlers}
