"""The order of a basket: `POST /orders` creates it from the basket's snapshot or, when the
basket has one already, syncs that order with the basket as it is now; `GET /orders/{id}`.

A basket has at most one order that has not expired, placed or not (a unique index): concurrent
creates converge on one order, and a create racing the placement of the basket's order waits for
it and then finds it placed.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
from aiohttp import web

from orders import domain, edits, queries, shipping, views
from orders.models import CreateOrderIn
from shared import http, runtime
from shared.contracts import BasketSnapshot, BasketSnapshotLine, GetBasketSnapshot, OrderCreated
from shared.http import ApiError, ValidationFailed
from shared.uow import Conflict, retry_on_conflict

MSG_BASKET_PLACED = "This basket already has an order that has been placed"
MSG_INVALID_BASKET = "The selected basket id is invalid."


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


def _snapshot_discounts(snapshot: BasketSnapshot) -> list[dict[str, Any]]:
    """The discounts the basket gets, as the order keeps them (`orders.discounts`)."""
    return [
        {
            "id": use.discount_id,
            "name": use.name,
            "coupon": use.coupon,
            "amount": use.amount,
            "free_shipping": use.free_shipping,
        }
        for use in snapshot.discounts
    ]


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
        raise ValidationFailed.one("basket_id", MSG_INVALID_BASKET)
    # Basket answers as the caller would see the basket: another customer's is unknown.
    customer = http.optional_customer(request)
    snapshot: BasketSnapshot | None = (
        await edits.ask(request, GetBasketSnapshot(basket_id=body.basket_id, customer_id=customer), "basket")
    ).basket
    if snapshot is None:
        raise ValidationFailed.one("basket_id", MSG_INVALID_BASKET)
    if snapshot.used:
        raise ApiError(403, MSG_BASKET_PLACED)
    if not snapshot.lines:
        raise ValidationFailed.one("basket_id", "The basket has no lines.")
    # The order is the basket's customer's; a guest basket's is the signed-in caller's, if any.
    basket = _Basket(snapshot, body.type, snapshot.customer_id or customer)
    order = await retry_on_conflict(lambda: _create_or_sync(request, basket))
    return await views.respond(request, order, extra=extra)


class _Basket:
    """The basket's snapshot as its order takes it: the goods lines, their totals, the rate its
    prices were converted at, the order's type, its customer, the discounts it uses."""

    def __init__(self, snapshot: BasketSnapshot, order_type: str | None, customer_id: str | None) -> None:
        self.snapshot = snapshot
        # Units of the basket's currency per unit of the catalogue's, as the basket priced it.
        self.conversion = Decimal(snapshot.exchange_rate)
        self.order_type = order_type
        self.customer_id = customer_id
        self.lines = _snapshot_lines(snapshot)
        self.discounts = _snapshot_discounts(snapshot)
        self.goods = domain.totals(
            domain.LineAmounts(line["line_total"], line["tax_total"], line["discount_total"], False)
            for line in self.lines
        )


async def _create_or_sync(request: web.Request, basket: _Basket) -> asyncpg.Record:
    snapshot = basket.snapshot
    async with runtime.unit_of_work(request) as uow:
        order = await queries.create_order(
            uow.conn,
            order_id=http.new_id(),
            basket_id=snapshot.id,
            currency=snapshot.currency,
            base_currency=snapshot.base_currency,
            conversion=basket.conversion,
            order_type=basket.order_type,
            weight_grams=snapshot.weight_grams,
            basket_totals=_basket_totals(snapshot),
            totals=basket.goods,
            customer_id=basket.customer_id,
        )
        if order is not None:
            await queries.add_goods_lines(uow.conn, order["id"], basket.lines)
            if basket.discounts:
                order = await queries.set_discounts(uow.conn, order["id"], basket.discounts)
            uow.emit(
                OrderCreated(
                    order_id=order["id"],
                    basket_id=snapshot.id,
                    status=order["status"],
                    order_total=order["order_total"],
                    currency=order["currency"],
                )
            )
            return order
    return await _sync(request, basket)


def _sync_basis(order: asyncpg.Record) -> object:
    """What syncing an order is planned on: its status, and what its chosen price was found for."""
    return (order["status"], order["shipping_details"], order["shipping_price_id"])


async def _sync(request: web.Request, basket: _Basket) -> asyncpg.Record:
    """The basket's order, with the basket as it is now; its chosen shipping price is asked for
    again (the basket's sub-total and weight may have changed) and dropped if it no longer applies."""
    snapshot = basket.snapshot
    existing = await queries.basket_order(request.app[runtime.POOL], snapshot.id)
    if existing is None:
        raise Conflict  # it expired since the create found it: create one
    if not edits.visible(request, existing):
        # Made by another customer from this guest basket: theirs, and unknown to this caller.
        raise ValidationFailed.one("basket_id", MSG_INVALID_BASKET)
    if existing["placed_at"] is not None:
        raise ApiError(403, MSG_BASKET_PLACED)
    edits.ensure_editable(existing)
    price = await shipping.requote_chosen(
        request,
        existing,
        address=existing["shipping_details"],
        sub_total=basket.goods.sub_total,
        weight_grams=snapshot.weight_grams,
        currency=snapshot.currency,
    )
    async with runtime.unit_of_work(request) as uow:
        order = await queries.lock_order(uow.conn, existing["id"])
        if order is None or _sync_basis(order) != _sync_basis(existing):
            raise Conflict
        await queries.sync_basket(
            uow.conn,
            order["id"],
            currency=snapshot.currency,
            base_currency=snapshot.base_currency,
            conversion=basket.conversion,
            weight_grams=snapshot.weight_grams,
            basket_totals=_basket_totals(snapshot),
            order_type=basket.order_type,
            customer_id=basket.customer_id,
        )
        await queries.replace_goods_lines(uow.conn, order["id"], basket.lines)
        if basket.discounts != order["discounts"]:
            # Before the shipping line is priced again: free shipping may have come or gone.
            await queries.set_discounts(uow.conn, order["id"], basket.discounts)
        return await shipping.reprice(uow.conn, order["id"], price, order["shipping_preference"])


async def get_order(request: web.Request) -> web.Response:
    return await views.respond(request, await edits.read_order(request, http.path_id(request)))
