"""Checkout: `POST /orders/process` and the steps of the saga it starts.

The saga: process (the order goes payment-processing, its attempt asks basket for the stock) ->
stock reserved (the order's total is charged, once) -> payment captured (the order is placed:
success status, a gap-free reference) or, at any step, failed (the order goes `failed` and may be
processed again; basket releases what it reserved).

The saga's state is the order's status plus its attempt's stage (`stock_requested` ->
`charge_requested` -> `captured` | `declined`, or `refused` / `timed_out` before any charge).
Every step is a unit of work that locks the order (`lock_checkout`) and checks both, so a late
or duplicate event is a logged no-op. The request waits for the outcome (`outcomes.py`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import Counter, Histogram

from orders import attempt_queries, domain, edits, queries, views
from orders.caches import CACHES
from orders.models import ProcessIn
from orders.outcomes import WAITER, Expectation
from orders.settings import OrdersSettings
from shared import http, metrics, runtime
from shared.contracts import (
    Address,
    DiscountUse,
    LineQuantity,
    OrderChargeRequested,
    OrderFailed,
    OrderPlaced,
    OrderStatusChanged,
    OrderStockRequested,
    PaymentCaptured,
    PaymentTypeView,
    ResolvePayment,
    ResolvePaymentReply,
    StockReserved,
)
from shared.http import ApiError, ValidationFailed
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

MSG_INVALID_ORDER = "The selected order id is invalid."
MSG_ALREADY_PROCESSED = "This order has already been processed"
MSG_IN_FLIGHT = "This order is being processed"
MSG_PAYMENT_FAILED = "Payment has failed"

# The saga's progress for /metrics: attempts started, how long each stage took and how it ended,
# and the whole attempt. A stage is observed by the step that ends it, in that step's unit of work
# before the commit: a step whose commit then fails runs again and is observed twice (rare; the
# attempt's row, not the histogram, is the record).
CHECKOUTS_STARTED = Counter(
    "commerce_checkout_started_total",
    "checkout attempts started: POST /orders/process took the order into payment-processing",
    registry=metrics.REGISTRY,
)
CHECKOUT_STAGES = Histogram(
    "commerce_checkout_stage_duration_seconds",
    "checkout stages by how they ended: reservation (stock requested -> reserved, refused or timed_out), "
    "payment (charge requested -> placed or declined)",
    ("stage", "outcome"),
    buckets=metrics.SAGA_BUCKETS,
    registry=metrics.REGISTRY,
)
CHECKOUTS_ENDED = Histogram(
    "commerce_checkout_duration_seconds",
    "checkout attempts from start to end, by outcome: placed, refused, declined, timed_out",
    ("outcome",),
    buckets=metrics.SAGA_BUCKETS,
    registry=metrics.REGISTRY,
)
# The attempt's stage while it waits -> the saga stage that waiting is.
STAGE_OF = {"stock_requested": "reservation", "charge_requested": "payment"}


# ---------------------------------------------------------------------------------------------
# POST /orders/process


def _ensure_processable(order: asyncpg.Record | None, lines: Sequence[Mapping[str, Any]]) -> None:
    """The error that says why the order (with its `lines`) cannot be processed now, if it cannot."""
    if order is None:
        raise ValidationFailed.one("order_id", MSG_INVALID_ORDER)
    status = order["status"]
    if order["placed_at"] is not None or domain.is_placed(status):
        raise ApiError(422, MSG_ALREADY_PROCESSED)
    if status == domain.PAYMENT_PROCESSING:
        raise ApiError(409, MSG_IN_FLIGHT)
    if status not in domain.PROCESSABLE:
        raise ApiError(422, "This order has expired")
    goods = [line for line in lines if not line["is_shipping"]]
    contact = order["contact_details"] or {}
    errors = domain.missing_for_checkout(
        domain.Readiness(
            line_count=len(goods),
            needs_shipping=any(line["requires_shipping"] for line in goods),
            has_shipping_address=bool(order["shipping_details"]),
            has_shipping_price=bool(order["shipping_price_id"]) and any(line["is_shipping"] for line in lines),
            has_billing_address=bool(order["billing_details"]),
            has_contact_email=bool(contact.get("email")),
            order_total=order["order_total"],
        )
    )
    if errors:
        raise ValidationFailed(errors)


async def _payment_type(request: web.Request, body: ProcessIn) -> PaymentTypeView:
    """The payment type to charge with, asked of payments (or remembered: `caches.py`)."""
    cache = request.app[CACHES].payments
    key = (body.payment_type_id, body.payment_type, body.payment_token)
    resolved: ResolvePaymentReply | None = cache.get(key)
    if resolved is None:
        resolved = await edits.ask(
            request,
            ResolvePayment(
                payment_type_id=body.payment_type_id, payment_type=body.payment_type, payment_token=body.payment_token
            ),
            "payments",
        )
        if not resolved.errors and resolved.payment_type is not None:
            cache.put(key, resolved)
    if resolved.errors:
        raise ValidationFailed(dict(resolved.errors))
    if resolved.payment_type is None:
        raise ValidationFailed.one("payment_type_id", "The selected payment type is invalid.")
    return resolved.payment_type


async def process_order(request: web.Request) -> web.Response:
    body = await http.read_json(request, ProcessIn)
    if not http.is_id(body.order_id):
        raise ValidationFailed.one("order_id", MSG_INVALID_ORDER)
    # What the order lacks is said before what the payment lacks.
    read = await queries.get_order_with_lines(request.app[runtime.POOL], body.order_id)
    if read is not None and not edits.visible(request, read):
        read = None  # another customer's order is an unknown one (its customer never changes)
    _ensure_processable(read, read["lines"] if read is not None else [])
    payment_type = await _payment_type(request, body)
    attempt_id = uuid.uuid4()
    waiter = request.app[WAITER]
    # Registered before the commit: the outcome's NOTIFY cannot come before we listen for it.
    expectation = await waiter.expect(body.order_id)
    try:
        async with runtime.unit_of_work(request) as uow:
            # Checked again under the lock: concurrent calls queue here and only the first starts.
            order = await queries.lock_order(uow.conn, body.order_id)
            lines = await queries.get_lines(uow.conn, body.order_id)
            _ensure_processable(order, lines)
            domain.transition(order["status"], domain.PAYMENT_PROCESSING)
            await queries.start_processing(
                uow.conn,
                order["id"],
                attempt_id=attempt_id,
                notes=body.notes,
                customer_reference=body.customer_reference,
                meta=body.meta,
            )
            await attempt_queries.insert_attempt(
                uow.conn,
                attempt_id,
                order["id"],
                payment_type=payment_type,
                success_status=domain.success_status(payment_type.success_status),
                payment_token=body.payment_token,
                currency=order["currency"],
            )
            # Entering payment-processing is announced by this event (no order.status_changed:
            # the in-flight state is the saga's own).
            uow.emit(
                OrderStockRequested(
                    order_id=order["id"],
                    attempt_id=attempt_id,
                    basket_id=order["basket_id"],
                    lines=_goods(lines),
                    # Their uses are reserved with the stock; per-email limits count the contact's.
                    discounts=_discount_uses(order["discounts"]),
                    email=(order["contact_details"] or {}).get("email"),
                )
            )
    except BaseException:
        waiter.forget(expectation)
        raise
    CHECKOUTS_STARTED.inc()
    return await _await_outcome(request, body.order_id, attempt_id, expectation)


def _discount_uses(discounts: Sequence[Mapping[str, Any]]) -> list[DiscountUse]:
    return [
        DiscountUse(
            discount_id=d["id"],
            name=d["name"],
            coupon=d["coupon"],
            amount=d["amount"],
            free_shipping=d["free_shipping"],
        )
        for d in discounts
    ]


def _goods(lines: Sequence[Mapping[str, Any]]) -> list[LineQuantity]:
    return [
        LineQuantity(variant_id=line["variant_id"], sku=line["sku"], quantity=line["quantity"])
        for line in lines
        if not line["is_shipping"] and line["variant_id"]
    ]


async def _await_outcome(
    request: web.Request, order_id: str, attempt_id: uuid.UUID, expectation: Expectation
) -> web.Response:
    pool = request.app[runtime.POOL]
    settings = request.app[runtime.SETTINGS]
    assert isinstance(settings, OrdersSettings)

    async def check() -> asyncpg.Record | None:
        outcome = await attempt_queries.attempt_outcome(pool, attempt_id)
        if outcome is None or outcome["stage"] in attempt_queries.IN_FLIGHT_STAGES:
            return None
        return outcome

    outcome = await request.app[WAITER].wait(order_id, check, settings.process_deadline, expectation)
    if outcome is None:
        # Past the deadline: the saga goes on; a later GET shows the outcome.
        return await views.respond(request, await edits.read_order(request, order_id), status=202)
    stage = outcome["stage"]
    if stage == "captured":
        wanted = http.includes(request) | {"lines", "shipping", "transactions"}
        placed = views.order_out(outcome, wanted, outcome["lines"], attempt_queries.transactions_of(outcome))
        return http.model_response(views.OrderEnvelope(data=placed))
    if stage == "refused":
        raise ValidationFailed(outcome["errors"] or {"lines": ["Insufficient stock levels"]})
    if stage == "timed_out":
        raise ApiError(503, "The stock could not be reserved in time; please try again")
    raise ApiError(403, MSG_PAYMENT_FAILED)


# ---------------------------------------------------------------------------------------------
# The saga's steps, run by the consumers (and the sweeper) in their unit of work


def _waits_for(checkout: asyncpg.Record | None, attempt_id: uuid.UUID, stage: str) -> bool:
    """The order is in flight with this attempt, and the attempt is at `stage`."""
    return (
        checkout is not None
        and checkout["stage"] == stage
        and checkout["status"] == domain.PAYMENT_PROCESSING
        and checkout["attempt_id"] == attempt_id
    )


def _stage_ended(checkout: asyncpg.Record, outcome: str) -> None:
    """The attempt (locked as `checkout`) leaves its stage with `outcome`; any outcome but
    `reserved` ends the attempt as well."""
    CHECKOUT_STAGES.labels(STAGE_OF[checkout["stage"]], outcome).observe(checkout["stage_seconds"])
    if outcome != "reserved":
        CHECKOUTS_ENDED.labels(outcome).observe(checkout["attempt_seconds"])


def _ignored(what: str, order_id: str, **extra: object) -> None:
    log.info("late or duplicate event ignored", extra={"event": what, "order_id": order_id, **extra})


async def request_charge(uow: UnitOfWork, event: StockReserved) -> None:
    """Stock reserved: charge exactly the order's total, once per attempt; the token leaves the
    table with this request."""
    checkout = await attempt_queries.lock_checkout(uow.conn, event.order_id, event.attempt_id)
    if not _waits_for(checkout, event.attempt_id, "stock_requested"):
        _ignored("stock.reserved", event.order_id, attempt_id=str(event.attempt_id))
        return
    # Amount and currency come from the order (frozen while in flight), never from a client.
    await attempt_queries.request_charge(
        uow.conn,
        event.attempt_id,
        reservation_id=event.reservation_id,
        amount=checkout["order_total"],
        currency=checkout["currency"],
    )
    _stage_ended(checkout, "reserved")
    contact = checkout["contact_details"] or {}
    uow.emit(
        OrderChargeRequested(
            order_id=event.order_id,
            attempt_id=event.attempt_id,
            amount=checkout["order_total"],
            currency=checkout["currency"],
            payment_type_id=checkout["payment_type_id"],
            payment_token=checkout["payment_token"],
            customer_email=contact.get("email"),
            notes=checkout["notes"],
        )
    )


async def place(uow: UnitOfWork, event: PaymentCaptured, reference_prefix: str) -> None:
    """Payment captured: place the order (success status, placed_at, a gap-free reference) and
    freeze it. The transaction is recorded whatever the order's state."""
    conn = uow.conn
    await attempt_queries.upsert_transaction(conn, event.transaction, event.attempt_id)
    checkout = await attempt_queries.lock_checkout(conn, event.order_id, event.attempt_id)
    if not _waits_for(checkout, event.attempt_id, "charge_requested"):
        _capture_not_placed(checkout, event)
        return
    status = domain.transition(
        checkout["status"], domain.success_status(event.success_status or checkout["success_status"])
    )
    placed_at = datetime.now(UTC)
    period = domain.reference_period(placed_at)
    reference = domain.reference(reference_prefix, period, await queries.next_reference_number(conn, period))
    await attempt_queries.finish_attempt(conn, event.attempt_id, "captured")
    _stage_ended(checkout, "placed")
    await queries.place_order(
        conn,
        event.order_id,
        status=status,
        placed_at=placed_at,
        reference=reference,
        invoice_reference=domain.invoice_reference(reference),
        order_type=checkout["payment_type_name"],
    )
    await queries.notify_outcome(conn, event.order_id)
    shipping_address = checkout["shipping_details"]
    # order.placed carries the new status: no order.status_changed besides it.
    uow.emit(
        OrderPlaced(
            order_id=event.order_id,
            attempt_id=event.attempt_id,
            basket_id=checkout["basket_id"],
            reference=reference,
            status=status,
            order_total=checkout["order_total"],
            currency=checkout["currency"],
            lines=_goods(await queries.get_lines(conn, event.order_id)),
            shipping_address=Address(**shipping_address) if shipping_address else None,
            shipping_method=checkout["shipping_method"],
            shipping_price_id=checkout["shipping_price_id"],
            placed_at=placed_at,
            paid=event.paid,
        )
    )


def _capture_not_placed(checkout: asyncpg.Record | None, event: PaymentCaptured) -> None:
    """A capture the order does not wait for: a duplicate, or money that moved for nothing."""
    if checkout is not None and checkout["stage"] == "captured":
        _ignored("payment.captured", event.order_id)
    elif checkout is None or checkout["stage"] != "charge_requested":
        # Money moved for an attempt this order no longer waits for: a human must look.
        log.error(
            "payment captured for an attempt that is not charging",
            extra={"order_id": event.order_id, "attempt_id": str(event.attempt_id)},
        )
    else:
        log.error("payment captured for an order not in flight", extra={"order_id": event.order_id})


async def fail_attempt(
    uow: UnitOfWork,
    order_id: str,
    attempt_id: uuid.UUID,
    *,
    expected_stage: str,
    stage: str,
    reason: str,
    errors: dict[str, list[str]] | None = None,
) -> bool:
    """End an attempt without placing: the order goes `failed` (it may be processed again) and
    basket releases the stock. False (and no effect) when the attempt is not at `expected_stage`."""
    checkout = await attempt_queries.lock_checkout(uow.conn, order_id, attempt_id)
    if checkout is None or checkout["stage"] != expected_stage:
        log.info(
            "late or duplicate saga step ignored",
            extra={"order_id": order_id, "attempt_id": str(attempt_id), "stage": checkout and checkout["stage"]},
        )
        return False
    await attempt_queries.finish_attempt(uow.conn, attempt_id, stage, reason=reason, errors=errors)
    _stage_ended(checkout, stage)
    if _waits_for(checkout, attempt_id, expected_stage):
        await queries.change_status(uow.conn, order_id, domain.transition(checkout["status"], domain.FAILED))
        uow.emit(OrderStatusChanged(order_id=order_id, from_status=checkout["status"], to_status=domain.FAILED))
    else:
        log.warning("attempt ended but its order was not in flight", extra={"order_id": order_id})
    # Always: whatever basket reserved for this attempt must be released.
    uow.emit(OrderFailed(order_id=order_id, attempt_id=attempt_id, basket_id=checkout["basket_id"], reason=reason))
    await queries.notify_outcome(uow.conn, order_id)
    return True
