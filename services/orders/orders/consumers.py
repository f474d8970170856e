"""The events orders consumes: the checkout saga's replies and the updates of a placed order.

The bus runs each handler in a unit of work that has written the event's inbox row first, so a
redelivered event never gets here; each handler also locks the order and checks its status (and
the attempt's stage), so a late or duplicate event with a new id is a logged no-op as well.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime

from aiohttp import web

from orders import attempt_queries, checkout, domain, queries
from shared import runtime
from shared.bus import Subscription
from shared.contracts import (
    OrderStatusChanged,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentVoided,
    ShipmentDispatched,
    StockRefused,
    StockReserved,
)
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)


async def on_stock_reserved(uow: UnitOfWork, event: StockReserved) -> None:
    await checkout.request_charge(uow, event)


async def on_stock_refused(uow: UnitOfWork, event: StockRefused) -> None:
    await checkout.fail_attempt(
        uow,
        event.order_id,
        event.attempt_id,
        expected_stage="stock_requested",
        stage="refused",
        reason="stock-refused",
        errors=event.errors,
    )


async def on_payment_captured(uow: UnitOfWork, event: PaymentCaptured, *, reference_prefix: str) -> None:
    await checkout.place(uow, event, reference_prefix)


async def on_payment_declined(uow: UnitOfWork, event: PaymentDeclined) -> None:
    if event.transaction is not None:
        await attempt_queries.upsert_transaction(uow.conn, event.transaction, event.attempt_id)
    await checkout.fail_attempt(
        uow,
        event.order_id,
        event.attempt_id,
        expected_stage="charge_requested",
        stage="declined",
        reason=event.reason or "payment-declined",
    )


async def on_payment_refunded(uow: UnitOfWork, event: PaymentRefunded) -> None:
    await attempt_queries.upsert_transaction(uow.conn, event.transaction, None)
    if event.fully_refunded:
        await _follow(uow, "payment.refunded", event.order_id, domain.REFUNDED)


async def on_payment_voided(uow: UnitOfWork, event: PaymentVoided) -> None:
    await attempt_queries.upsert_transaction(uow.conn, event.transaction, None)
    await _follow(uow, "payment.voided", event.order_id, domain.VOIDED)


async def on_shipment_dispatched(uow: UnitOfWork, event: ShipmentDispatched) -> None:
    await _follow(
        uow,
        "shipment.dispatched",
        event.order_id,
        domain.DISPATCHED,
        tracking_no=event.tracking_no,
        dispatched_at=event.dispatched_at,
    )


async def _follow(
    uow: UnitOfWork,
    what: str,
    order_id: str,
    target: str,
    *,
    tracking_no: str | None = None,
    dispatched_at: datetime | None = None,
) -> None:
    """A placed order follows payments or shipping (refunded, voided, dispatched) exactly once."""
    order = await queries.lock_order(uow.conn, order_id)
    if order is None or not domain.can_transition(order["status"], target):
        log.info(
            "late or duplicate event ignored",
            extra={"event": what, "order_id": order_id, "status": order and order["status"]},
        )
        return
    await queries.change_status(uow.conn, order_id, target, tracking_no=tracking_no, dispatched_at=dispatched_at)
    uow.emit(
        OrderStatusChanged(order_id=order_id, from_status=order["status"], to_status=target, tracking_no=tracking_no)
    )


def subscriptions(app: web.Application) -> list[Subscription]:
    settings = app[runtime.SETTINGS]
    return [
        Subscription(StockReserved, on_stock_reserved),
        Subscription(StockRefused, on_stock_refused),
        Subscription(
            PaymentCaptured,
            functools.partial(on_payment_captured, reference_prefix=settings.reference_prefix),
        ),
        Subscription(PaymentDeclined, on_payment_declined),
        Subscription(PaymentRefunded, on_payment_refunded),
        Subscription(PaymentVoided, on_payment_voided),
        Subscription(ShipmentDispatched, on_shipment_dispatched),
    ]
