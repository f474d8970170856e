"""HTTP handlers of the orders service and its route table (ROUTES, registered in create_app).

Every change to an order is a compare-and-set on its version: read the order, ask other
services what is needed (basket snapshot, shipping quote) outside any transaction, then write
in one transaction that first claims the version it read; a concurrent change makes it start
over. A change that depends on nothing read before (an address, the contact) is one
compare-and-set statement on the order's status instead. Other services' data comes by
request/reply over the bus, never over HTTP, and the answers worth keeping for a few seconds
are kept (`caches.py`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from orders import domain, queries, saga, views
from orders.caches import CACHES
from orders.models import (
    AddressIn,
    ContactIn,
    CreateOrderIn,
    ListOrdersQuery,
    ProcessIn,
    ShippingCostIn,
    UpdateOrderIn,
)
from orders.settings import OrdersSettings
from shared import bus, http, outbox, runtime
from shared.contracts import (
    BasketSnapshot,
    BasketSnapshotLine,
    Contract,
    GetBasketSnapshot,
    LineQuantity,
    OrderCreated,
    OrderStatusChanged,
    OrderStockRequested,
    QuoteShipping,
    ResolvePayment,
    ShippingPriceView,
)
from shared.http import ApiError, NotFound, ValidationFailed

log = logging.getLogger(__name__)

T = TypeVar("T")

EDIT_RETRIES = 5
MSG_BASKET_PLACED = "This basket already has an order that has been placed"
MSG_ALREADY_PROCESSED = "This order has already been processed"
MSG_IN_FLIGHT = "This order is being processed"
MSG_PAYMENT_FAILED = "Payment has failed"
MSG_CHOOSE_SHIPPING = "Please choose a shipping option"
MSG_CHANGED = "The order changed while it was being updated; please retry"


def _settings(request: web.Request) -> OrdersSettings:
    settings = request.app[runtime.SETTINGS]
    assert isinstance(settings, OrdersSettings)
    return settings


def _pool(request: web.Request) -> asyncpg.Pool:
    return request.app[runtime.POOL]


async def _ask(request: web.Request, message: Contract, service: str) -> Any:
    """Request/reply with another service; its absence is a 503 in the GetCandy shape."""
    try:
        return await request.app[runtime.RPC].call(message)
    except bus.RpcError as exc:
        log.warning("request/reply failed", extra={"type": message.type, "error": str(exc)})
        raise ApiError(503, f"The {service} service is unavailable") from exc


async def _emit(conn: asyncpg.Connection, request: web.Request, payload: Contract) -> None:
    await outbox.enqueue(conn, payload, "orders", correlation_id=http.request_id(request))


def _outgoing(request: web.Request, payload: Contract) -> outbox.Outgoing:
    """An event for the statement that makes its change to write (see `outbox.Outgoing`)."""
    return runtime.announcement(request, payload, "orders")


async def _get_order(request: web.Request, order_id: str) -> asyncpg.Record:
    order = await queries.get_order(_pool(request), order_id)
    if order is None:
        raise NotFound()
    return order


def _not_editable(exc: domain.NotEditable) -> ApiError:
    return ApiError(exc.http_status, exc.message)


async def _respond(request: web.Request, order: asyncpg.Record, status: int = 200, extra: set[str] | None = None):
    wanted = http.includes(request) | (extra or set())
    return http.json_response({"data": await views.load_order_view(_pool(request), order, wanted)}, status=status)


class _Changed(Exception):
    """The order changed in a way the plan depends on: roll back and start over."""


def _no_basis(order: asyncpg.Record) -> object:
    return None


async def _claim(
    conn: asyncpg.Connection, order: asyncpg.Record, basis: Callable[[asyncpg.Record], object]
) -> asyncpg.Record:
    """Lock the order and claim its version (one statement); raises `_Changed` when it changed in
    a way the plan depends on, which rolls the claim back with the transaction.

    A change the plan does not depend on (another field, an identical concurrent call) does not
    send the caller round again: concurrent edits queue up on the row lock instead of failing.
    """
    claimed = await queries.claim_order(conn, order["id"])
    if claimed is None:
        current = await queries.get_order(conn, order["id"])
        if current is None:
            raise NotFound()
        try:
            domain.ensure_editable(current["status"])
        except domain.NotEditable as exc:
            raise _not_editable(exc) from None
        raise _Changed  # editable again by now: start over
    if claimed["version"] != order["version"] + 1 and basis(claimed) != basis(order):
        raise _Changed
    return claimed


async def _edit(
    request: web.Request,
    order_id: str,
    plan: Callable[[asyncpg.Record], Awaitable[T]],
    apply: Callable[[asyncpg.Connection, asyncpg.Record, T], Awaitable[asyncpg.Record]],
    basis: Callable[[asyncpg.Record], object] = _no_basis,
) -> asyncpg.Record:
    """Change an unplaced order: plan from what was read, apply under the version claimed.

    `apply` returns the order as it is after the change (totals included).
    """
    pool = _pool(request)
    for _ in range(EDIT_RETRIES):
        order = await _get_order(request, order_id)
        try:
            domain.ensure_editable(order["status"])
        except domain.NotEditable as exc:
            raise _not_editable(exc) from None
        prepared = await plan(order)
        try:
            async with pool.acquire() as conn, conn.transaction():
                locked = await _claim(conn, order, basis)
                return await apply(conn, locked, prepared)
        except _Changed:
            continue
    raise ApiError(409, MSG_CHANGED)


# ---------------------------------------------------------------------------------------------
# Shipping prices (asked of the shipping service)


async def _quote(
    request: web.Request,
    order: asyncpg.Record,
    *,
    address: dict[str, Any],
    sub_total: int,
    weight_grams: int,
    currency: str,
    price_id: str | None = None,
) -> list[ShippingPriceView]:
    reply = await _ask(
        request,
        QuoteShipping(
            order_id=order["id"],
            country=address["country"],
            zip=address.get("zip"),
            sub_total=sub_total,
            weight_grams=weight_grams,
            currency=currency,
            price_id=price_id,
        ),
        "shipping",
    )
    return list(reply.prices)


async def _requote_chosen(
    request: web.Request,
    order: asyncpg.Record,
    *,
    address: dict[str, Any] | None,
    sub_total: int,
    weight_grams: int,
    currency: str,
) -> ShippingPriceView | None:
    """The chosen price again, for a changed order: None when it no longer applies."""
    price_id = order["shipping_price_id"]
    if not price_id or not address:
        return None
    prices = await _quote(
        request,
        order,
        address=address,
        sub_total=sub_total,
        weight_grams=weight_grams,
        currency=currency,
        price_id=price_id,
    )
    return next((p for p in prices if p.id == price_id and p.currency == currency), None)


async def _apply_price(
    conn: asyncpg.Connection, order_id: str, price: ShippingPriceView | None, preference: str | None
) -> asyncpg.Record:
    """The order's shipping line, choice and totals for `price` (None: no price); the order."""
    line = None
    if price is not None:
        line = domain.shipping_line(price.method.name, price.method.code, price.zone.name, price.rate)
    amounts = await queries.put_shipping_line(conn, order_id, line)
    return await queries.set_shipping_choice_and_totals(
        conn,
        order_id,
        method=price.method.name if price is not None else None,
        preference=preference if price is not None else None,
        price_id=price.id if price is not None else None,
        totals=domain.totals(amounts),
    )


def _price_view(price: ShippingPriceView) -> dict[str, Any]:
    return {
        "id": price.id,
        "rate": price.rate,
        "tax": price.tax,
        "fixed": price.fixed,
        "min_basket": price.min_basket,
        "min_weight": price.min_weight,
        "weight_unit": price.weight_unit,
        "currency": price.currency,
        "method": {
            "data": {
                "id": price.method.id,
                "type": price.method.type,
                "name": price.method.name,
                "description": price.method.description,
                "code": price.method.code,
            }
        },
        "zone": {"data": {"id": price.zone.id, "name": price.zone.name}},
    }


# ---------------------------------------------------------------------------------------------
# POST /orders


def _snapshot_lines(snapshot: BasketSnapshot) -> list[dict[str, Any]]:
    def line(item: BasketSnapshotLine) -> dict[str, Any]:
        return {
            "variant_id": item.variant_id,
            "product_id": item.product_id,
            "sku": item.sku,
            "description": item.description,
            "option": item.option,
            "quantity": item.quantity,
            "unit_price": item.unit_price,
            "unit_qty": item.unit_qty,
            "line_total": item.line_total,
            "tax_total": item.tax_total,
            "tax_rate": item.tax_rate_bp,
            "discount_total": item.discount_total,
            "requires_shipping": item.requires_shipping,
            "weight_grams": item.weight_grams,
        }

    return [line(item) for item in snapshot.lines]


def _basket_totals(snapshot: BasketSnapshot) -> dict[str, Any]:
    return {
        "sub_total": snapshot.sub_total,
        "tax_total": snapshot.tax_total,
        "discount_total": snapshot.discount_total,
        "total": snapshot.total,
        "currency": snapshot.currency,
    }


async def create_order(request: web.Request) -> web.Response:
    body = await http.read_json(request, CreateOrderIn)
    extra = {item.strip() for item in (body.include or "").split(",") if item.strip()}
    if not http.is_id(body.basket_id):
        raise ValidationFailed.one("basket_id", "The selected basket id is invalid.")
    reply = await _ask(request, GetBasketSnapshot(basket_id=body.basket_id), "basket")
    snapshot: BasketSnapshot | None = reply.basket
    if snapshot is None:
        raise ValidationFailed.one("basket_id", "The selected basket id is invalid.")
    if snapshot.used:
        raise ApiError(403, MSG_BASKET_PLACED)
    if not snapshot.lines:
        raise ValidationFailed.one("basket_id", "The basket has no lines.")
    lines = _snapshot_lines(snapshot)
    goods = domain.totals(
        domain.LineAmounts(line["line_total"], line["tax_total"], line["discount_total"], False) for line in lines
    )
    pool = _pool(request)
    existing: asyncpg.Record | None = None
    for _ in range(EDIT_RETRIES):
        if existing is None:  # the usual case first: a basket's first order
            order = await _create_order(request, snapshot, lines, goods, body.type)
            if order is not None:
                return await _respond(request, order, extra=extra)
        placed, existing = await queries.basket_orders(pool, snapshot.id)
        if placed:
            raise ApiError(403, MSG_BASKET_PLACED)
        if existing is None:
            continue  # the open order went away meanwhile (expired): create one
        try:
            domain.ensure_editable(existing["status"])
        except domain.NotEditable as exc:
            raise _not_editable(exc) from None
        # The basket changed what the order holds: the chosen shipping price may not apply now.
        price = await _requote_chosen(
            request,
            existing,
            address=existing["shipping_details"],
            sub_total=goods.sub_total,
            weight_grams=snapshot.weight_grams,
            currency=snapshot.currency,
        )
        try:
            async with pool.acquire() as conn, conn.transaction():
                locked = await _claim(conn, existing, _shipping_basis_of_address)
                await _sync(conn, locked["id"], snapshot, lines, body.type)
                if locked["shipping_price_id"]:
                    order = await _apply_price(conn, locked["id"], price, locked["shipping_preference"])
                else:
                    await queries.recompute_totals(conn, existing["id"])
                    order = await queries.get_order(conn, existing["id"])
                assert order is not None
        except _Changed:
            continue
        return await _respond(request, order, extra=extra)
    raise ApiError(409, MSG_CHANGED)


async def _create_order(
    request: web.Request,
    snapshot: BasketSnapshot,
    lines: list[dict[str, Any]],
    goods: domain.Totals,
    order_type: str | None,
) -> asyncpg.Record | None:
    """The basket's new order, announced; None when it has an open or a placed order already."""
    order_id = http.new_id()
    event = _outgoing(
        request,
        OrderCreated(
            order_id=order_id,
            basket_id=snapshot.id,
            status=domain.AWAITING_PAYMENT,
            order_total=goods.order_total,
            currency=snapshot.currency,
        ),
    )
    created = await queries.create_order(
        _pool(request),
        order_id=order_id,
        basket_id=snapshot.id,
        currency=snapshot.currency,
        order_type=order_type,
        weight_grams=snapshot.weight_grams,
        basket_totals=_basket_totals(snapshot),
        totals=goods,
        lines=lines,
        event=event,
    )
    if created is not None:
        runtime.hand_off(request, event)
    return created


def _shipping_basis_of_address(order: asyncpg.Record) -> object:
    return (order["shipping_details"], order["shipping_price_id"], order["currency"])


async def _sync(
    conn: asyncpg.Connection,
    order_id: str,
    snapshot: BasketSnapshot,
    lines: list[dict[str, Any]],
    order_type: str | None,
) -> None:
    await queries.set_basket_sync(
        conn,
        order_id,
        currency=snapshot.currency,
        weight_grams=snapshot.weight_grams,
        basket_totals=_basket_totals(snapshot),
        order_type=order_type,
    )
    await queries.replace_goods_lines(conn, order_id, lines)


# ---------------------------------------------------------------------------------------------
# Reading


async def get_order(request: web.Request) -> web.Response:
    order = await _get_order(request, http.path_id(request))
    return await _respond(request, order)


async def list_orders(request: web.Request) -> web.Response:
    http.require_admin(request)
    query = http.query_model(request, ListOrdersQuery)
    statuses = [s.strip() for s in (query.status or "").split(",") if s.strip()]
    unknown = [s for s in statuses if s not in domain.STATUSES and not domain.is_success(s)]
    if unknown:
        raise ValidationFailed.one("status", "The selected status is invalid.")
    date_from = datetime.combine(query.date_from, time.min, UTC) if query.date_from else None
    date_to = None
    if query.date_to is not None and query.date_to < date.max:
        date_to = datetime.combine(query.date_to + timedelta(days=1), time.min, UTC)
    total, rows = await queries.list_orders(
        _pool(request),
        statuses=statuses,
        placed_only=query.placed,
        date_from=date_from,
        date_to=date_to,
        limit=query.per_page,
        offset=(query.page - 1) * query.per_page,
    )
    wanted = http.includes(request) & views.ORDER_INCLUDES
    lines_by_order: dict[str, list[asyncpg.Record]] = {}
    if rows and wanted & {"lines", "shipping"}:
        for line in await queries.get_lines_for(_pool(request), [row["id"] for row in rows]):
            lines_by_order.setdefault(line["order_id"], []).append(line)
    transactions_by_order: dict[str, list[asyncpg.Record]] = {}
    if rows and "transactions" in wanted:
        for tx in await queries.get_transactions_for(_pool(request), [row["id"] for row in rows]):
            transactions_by_order.setdefault(tx["order_id"], []).append(tx)
    data = [
        views.order_view(
            row,
            wanted,
            lines_by_order.get(row["id"], []) if wanted & {"lines", "shipping"} else None,
            transactions_by_order.get(row["id"], []) if "transactions" in wanted else None,
        )
        for row in rows
    ]
    return http.json_response(http.paginated(request, data, page=query.page, per_page=query.per_page, total=total))


# ---------------------------------------------------------------------------------------------
# Addresses, contact, shipping cost


def _address(body: AddressIn) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    if not body.county and not body.state:
        errors["county"] = ["The county field is required when state is not present."]
    code = domain.country_code(body.country)
    if code is None:
        errors["country"] = ["The selected country is invalid."]
    if errors:
        raise ValidationFailed(errors)
    address = body.model_dump()
    address["country"] = code
    return address


async def _set_detail(
    request: web.Request, order_id: str, kind: str, value: dict[str, Any], *, unpriced_only: bool = False
) -> asyncpg.Record | None:
    """The common case in one statement; None sends the caller the long way (which also says why
    an order cannot change: unknown, placed, in flight)."""
    return await queries.set_detail(_pool(request), order_id, kind, value, unpriced_only=unpriced_only)


async def put_shipping_address(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    address = _address(await http.read_json(request, AddressIn))
    # No price chosen yet (the usual order of a checkout): nothing to quote again.
    order = await _set_detail(request, order_id, "shipping", address, unpriced_only=True)
    if order is not None:
        return await _respond(request, order)

    async def plan(order: asyncpg.Record) -> ShippingPriceView | None:
        return await _requote_chosen(
            request,
            order,
            address=address,
            sub_total=order["sub_total"],
            weight_grams=order["weight_grams"],
            currency=order["currency"],
        )

    async def apply(conn: asyncpg.Connection, order: asyncpg.Record, price: ShippingPriceView | None):
        changed = await queries.set_detail(conn, order["id"], "shipping", address)
        assert changed is not None, "claimed in this transaction"
        if not order["shipping_price_id"]:
            return changed
        return await _apply_price(conn, order["id"], price, order["shipping_preference"])

    def basis(order: asyncpg.Record) -> object:
        return (order["shipping_price_id"], order["sub_total"], order["weight_grams"], order["currency"])

    return await _respond(request, await _edit(request, order_id, plan, apply, basis))


async def _put_detail(request: web.Request, order_id: str, kind: str, value: dict[str, Any]) -> web.Response:
    order = await _set_detail(request, order_id, kind, value)
    if order is None:

        async def plan(order: asyncpg.Record) -> None:
            return None

        async def apply(conn: asyncpg.Connection, order: asyncpg.Record, _: None) -> asyncpg.Record:
            changed = await queries.set_detail(conn, order["id"], kind, value)
            assert changed is not None, "claimed in this transaction"
            return changed

        order = await _edit(request, order_id, plan, apply)
    return await _respond(request, order)


async def put_billing_address(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    address = _address(await http.read_json(request, AddressIn))
    return await _put_detail(request, order_id, "billing", address)


async def put_contact(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    body = await http.read_json(request, ContactIn)
    return await _put_detail(request, order_id, "contact", {"email": str(body.email), "phone": body.phone})


def _quote_basis(order: asyncpg.Record) -> object:
    return (order["shipping_details"], order["sub_total"], order["weight_grams"], order["currency"])


async def shipping_methods(request: web.Request) -> web.Response:
    order = await _get_order(request, http.path_id(request))
    address = order["shipping_details"]
    if not address:
        raise ValidationFailed.one("shipping_address", domain.MSG_NO_SHIPPING_ADDRESS)
    prices = await _quote(
        request,
        order,
        address=address,
        sub_total=order["sub_total"],
        weight_grams=order["weight_grams"],
        currency=order["currency"],
    )
    request.app[CACHES].quotes.put(order["id"], (_quote_basis(order), prices))
    return http.json_response({"data": [_price_view(p) for p in prices if p.currency == order["currency"]]})


async def put_shipping_cost(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    body = await http.read_json(request, ShippingCostIn)
    price_id = body.price_id
    if not price_id or not http.is_id(price_id):
        raise ValidationFailed.one("price_id", MSG_CHOOSE_SHIPPING)
    pool = _pool(request)
    quotes = request.app[CACHES].quotes
    for _ in range(EDIT_RETRIES):
        order = await queries.get_order_with(pool, order_id, lines=True)
        if order is None:
            raise NotFound()
        try:
            domain.ensure_editable(order["status"])
        except domain.NotEditable as exc:
            raise _not_editable(exc) from None
        if not order["shipping_details"]:
            raise ValidationFailed.one("shipping_address", domain.MSG_NO_SHIPPING_ADDRESS)
        quoted = quotes.get(order["id"])
        if quoted is not None and quoted[0] == _quote_basis(order):
            prices = quoted[1]  # what the customer was shown for this very order, seconds ago
        else:
            prices = await _quote(
                request,
                order,
                address=order["shipping_details"],
                sub_total=order["sub_total"],
                weight_grams=order["weight_grams"],
                currency=order["currency"],
                price_id=price_id,
            )
        price = next((p for p in prices if p.id == price_id and p.currency == order["currency"]), None)
        if price is None:
            raise ValidationFailed.one("price_id", MSG_CHOOSE_SHIPPING)
        line = domain.shipping_line(price.method.name, price.method.code, price.zone.name, price.rate)
        goods = [
            domain.LineAmounts(item["line_total"], item["tax_total"], item["discount_total"], False)
            for item in order["lines"]
            if not item["is_shipping"]
        ]
        totals = domain.totals([*goods, domain.LineAmounts(line.line_total, line.tax_total, 0, True)])
        # One compare-and-set on the version read: the goods lines the totals come from are as read.
        chosen = await queries.choose_shipping(
            pool,
            order_id,
            version=order["version"],
            line=line,
            method=price.method.name,
            preference=body.preference,
            price_id=price.id,
            totals=totals,
        )
        if chosen is not None:
            return await _respond(request, chosen)
    raise ApiError(409, MSG_CHANGED)


# ---------------------------------------------------------------------------------------------
# Admin: status, tracking number, expiry


async def update_order(request: web.Request) -> web.Response:
    http.require_admin(request)
    order_id = http.path_id(request)
    body = await http.read_json(request, UpdateOrderIn)
    if body.status is None and body.tracking_no is None:
        raise ValidationFailed.one("status", "The status field is required when tracking no is not present.")
    pool = _pool(request)
    for _ in range(EDIT_RETRIES):
        order = await _get_order(request, order_id)
        target = body.status
        async with pool.acquire() as conn, conn.transaction():
            if target is not None and target != order["status"]:
                try:
                    domain.admin_transition(order["status"], target)
                except domain.TransitionRefused as exc:
                    raise ValidationFailed.one("status", str(exc)) from None
                changed = await queries.change_status(
                    conn,
                    order_id,
                    expected=order["status"],
                    version=order["version"],
                    status=target,
                    tracking_no=body.tracking_no,
                    dispatched_at=datetime.now(UTC) if target == domain.DISPATCHED else None,
                )
                if changed is None:
                    continue
                await _emit(
                    conn,
                    request,
                    OrderStatusChanged(
                        order_id=order_id, from_status=order["status"], to_status=target, tracking_no=body.tracking_no
                    ),
                )
            elif body.tracking_no is not None:
                changed = await queries.set_tracking_no(conn, order_id, order["version"], body.tracking_no)
                if changed is None:
                    continue
            else:
                changed = order
        return await _respond(request, changed)
    raise ApiError(409, MSG_CHANGED)


async def expire_order(request: web.Request) -> web.Response:
    http.require_admin(request)
    order_id = http.path_id(request)
    pool = _pool(request)
    for _ in range(EDIT_RETRIES):
        order = await _get_order(request, order_id)
        if order["status"] == domain.EXPIRED:
            return web.Response(status=204)
        if not domain.can_transition(order["status"], domain.EXPIRED):
            raise ApiError(422, "This order cannot be expired")
        async with pool.acquire() as conn, conn.transaction():
            changed = await queries.change_status(
                conn, order_id, expected=order["status"], version=order["version"], status=domain.EXPIRED
            )
            if changed is None:
                continue
            await _emit(
                conn,
                request,
                OrderStatusChanged(order_id=order_id, from_status=order["status"], to_status=domain.EXPIRED),
            )
        return web.Response(status=204)
    raise ApiError(409, MSG_CHANGED)


# ---------------------------------------------------------------------------------------------
# POST /orders/process: the checkout saga


def _ensure_processable(order: asyncpg.Record) -> None:
    status = order["status"]
    if order["placed_at"] is not None or domain.is_placed(status):
        raise ApiError(422, MSG_ALREADY_PROCESSED)
    if status == domain.PAYMENT_PROCESSING:
        raise ApiError(409, MSG_IN_FLIGHT)
    if status not in domain.PROCESSABLE:
        raise ApiError(422, "This order has expired")


def _readiness(order: asyncpg.Record, lines: list[asyncpg.Record]) -> domain.Readiness:
    goods = [line for line in lines if not line["is_shipping"]]
    contact = order["contact_details"] or {}
    return domain.Readiness(
        line_count=len(goods),
        needs_shipping=any(line["requires_shipping"] for line in goods),
        has_shipping_address=bool(order["shipping_details"]),
        has_shipping_price=bool(order["shipping_price_id"]) and any(line["is_shipping"] for line in lines),
        has_billing_address=bool(order["billing_details"]),
        has_contact_email=bool(contact.get("email")),
        order_total=order["order_total"],
    )


async def _complete_order(request: web.Request, order_id: str) -> asyncpg.Record:
    """The order (with its `lines`) if it can be processed now; else the error that says why."""
    order = await queries.get_order_with(_pool(request), order_id, lines=True)
    if order is None:
        raise ValidationFailed.one("order_id", "The selected order id is invalid.")
    _ensure_processable(order)
    errors = domain.missing_for_checkout(_readiness(order, order["lines"]))
    if errors:
        raise ValidationFailed(errors)
    return order


async def _resolve_payment(request: web.Request, body: ProcessIn) -> Any:
    cache = request.app[CACHES].payments
    key = (body.payment_type_id, body.payment_type, body.payment_token)
    resolved = cache.get(key)
    if resolved is None:
        resolved = await _ask(
            request,
            ResolvePayment(
                payment_type_id=body.payment_type_id, payment_type=body.payment_type, payment_token=body.payment_token
            ),
            "payments",
        )
        if not resolved.errors and resolved.payment_type is not None:
            cache.put(key, resolved)
    return resolved


async def process_order(request: web.Request) -> web.Response:
    body = await http.read_json(request, ProcessIn)
    if not http.is_id(body.order_id):
        raise ValidationFailed.one("order_id", "The selected order id is invalid.")
    order = await _complete_order(request, body.order_id)
    resolved = await _resolve_payment(request, body)
    if resolved.errors:
        raise ValidationFailed(dict(resolved.errors))
    payment_type = resolved.payment_type
    if payment_type is None:
        raise ValidationFailed.one("payment_type_id", "The selected payment type is invalid.")
    attempt_id = uuid.uuid4()
    pool = _pool(request)
    waiter = request.app[saga.WAITER]
    # Registered before the commit: the outcome's NOTIFY cannot come before we listen for it.
    expectation = await waiter.expect(body.order_id)
    try:
        for attempt in range(EDIT_RETRIES):
            if attempt:
                order = await _complete_order(request, body.order_id)
            domain.transition(order["status"], domain.PAYMENT_PROCESSING)
            # Entering payment-processing is announced by this event (no order.status_changed: the
            # in-flight state is the saga's own).
            event = _outgoing(
                request,
                OrderStockRequested(
                    order_id=order["id"],
                    attempt_id=attempt_id,
                    basket_id=order["basket_id"],
                    lines=[
                        LineQuantity(variant_id=line["variant_id"], sku=line["sku"], quantity=line["quantity"])
                        for line in order["lines"]
                        if not line["is_shipping"] and line["variant_id"]
                    ],
                ),
            )
            started = await queries.start_attempt(
                pool,
                order["id"],
                expected=order["status"],
                version=order["version"],
                attempt_id=attempt_id,
                notes=body.notes,
                customer_reference=body.customer_reference,
                meta=body.meta,
                payment_type=payment_type,
                success_status=domain.success_status(payment_type.success_status),
                payment_token=body.payment_token,
                event=event,
            )
            if started is None:
                continue
            runtime.hand_off(request, event)
            break
        else:
            raise ApiError(409, MSG_CHANGED)
    except BaseException:
        waiter.forget(expectation)
        raise
    return await _await_outcome(request, body.order_id, attempt_id, expectation)


async def _await_outcome(
    request: web.Request, order_id: str, attempt_id: uuid.UUID, expectation: saga.Expectation
) -> web.Response:
    pool = _pool(request)
    settings = _settings(request)

    async def check() -> asyncpg.Record | None:
        outcome = await queries.attempt_outcome(pool, attempt_id)
        if outcome is None or outcome["stage"] in queries.IN_FLIGHT_STAGES:
            return None
        return outcome

    outcome = await request.app[saga.WAITER].wait(order_id, check, settings.process_deadline, expectation)
    if outcome is None:
        # Past the deadline: the saga goes on; a later GET shows the outcome.
        return await _respond(request, await _get_order(request, order_id), status=202)
    stage = outcome["stage"]
    if stage == "captured":
        wanted = http.includes(request) | {"lines", "shipping", "transactions"}
        view = views.order_view(outcome, wanted, outcome["lines"], queries.transactions_of(outcome))
        return http.json_response({"data": view})
    if stage == "refused":
        raise ValidationFailed(outcome["errors"] or {"lines": ["Insufficient stock levels"]})
    if stage == "timed_out":
        raise ApiError(503, "The stock could not be reserved in time; please try again")
    raise ApiError(403, MSG_PAYMENT_FAILED)


ROUTES: list[web.RouteDef] = [
    web.post("/api/v1/orders/process", process_order),
    web.post("/api/v1/orders", create_order),
    web.get("/api/v1/orders", list_orders),
    web.get("/api/v1/orders/{id}", get_order),
    web.put("/api/v1/orders/{id}", update_order),
    web.post("/api/v1/orders/{id}/expire", expire_order),
    web.put("/api/v1/orders/{id}/shipping/address", put_shipping_address),
    web.put("/api/v1/orders/{id}/billing/address", put_billing_address),
    web.put("/api/v1/orders/{id}/contact", put_contact),
    web.get("/api/v1/orders/{id}/shipping/methods", shipping_methods),
    web.put("/api/v1/orders/{id}/shipping/cost", put_shipping_cost),
]
