"""Shipping of an order: the prices that apply (asked of the shipping service), the one chosen,
and pricing the order again when what a price was chosen for changes.

`GET /orders/{id}/shipping/methods` keeps the quote it showed for a few seconds (`caches.py`):
the `PUT .../shipping/cost` that follows charges the price the customer saw.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from orders import domain, edits, queries, views
from orders.caches import CACHES
from orders.models import ShippingCostIn
from shared import http, runtime
from shared.contracts import QuoteShipping, ShippingPriceView
from shared.http import ValidationFailed
from shared.uow import Conflict, retry_on_conflict

MSG_CHOOSE_SHIPPING = "Please choose a shipping option"


def quote_basis(order: asyncpg.Record) -> object:
    """What a quote for the order is asked with: a quote stands while these stand."""
    return (order["shipping_details"], order["sub_total"], order["weight_grams"], order["currency"])


async def quote(
    request: web.Request,
    order_id: str,
    *,
    address: dict[str, Any],
    sub_total: int,
    weight_grams: int,
    currency: str,
    price_id: str | None = None,
) -> list[ShippingPriceView]:
    reply = await edits.ask(
        request,
        QuoteShipping(
            order_id=order_id,
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


def _find(prices: list[ShippingPriceView], price_id: str, currency: str) -> ShippingPriceView | None:
    return next((p for p in prices if p.id == price_id and p.currency == currency), None)


async def requote_chosen(
    request: web.Request,
    order: asyncpg.Record,
    *,
    address: dict[str, Any] | None,
    sub_total: int,
    weight_grams: int,
    currency: str,
) -> ShippingPriceView | None:
    """The order's chosen price again, for the order as it is about to be: None when none is
    chosen or it no longer applies."""
    price_id = order["shipping_price_id"]
    if not price_id or not address:
        return None
    prices = await quote(
        request,
        order["id"],
        address=address,
        sub_total=sub_total,
        weight_grams=weight_grams,
        currency=currency,
        price_id=price_id,
    )
    return _find(prices, price_id, currency)


async def reprice(
    conn: asyncpg.Connection, order_id: str, price: ShippingPriceView | None, preference: str | None
) -> asyncpg.Record:
    """The order's shipping line and choice for `price` (None: no price; waived when one of the
    order's discounts gives free shipping), and the totals of its lines; returns the order. In the
    unit of work that holds the order's lock."""
    line = None
    if price is not None:
        free = await queries.has_free_shipping(conn, order_id)
        line = domain.shipping_line(price.method.name, price.method.code, price.zone.name, price.rate, free=free)
    await queries.put_shipping_line(conn, order_id, line)
    totals = domain.totals(await queries.line_amounts(conn, order_id))
    return await queries.set_shipping_and_totals(
        conn,
        order_id,
        method=price.method.name if price is not None else None,
        preference=preference if price is not None else None,
        price_id=price.id if price is not None else None,
        totals=totals,
    )


async def shipping_methods(request: web.Request) -> web.Response:
    order = await edits.read_order(request, http.path_id(request))
    address = order["shipping_details"]
    if not address:
        raise ValidationFailed.one("shipping_address", domain.MSG_NO_SHIPPING_ADDRESS)
    prices = await quote(
        request,
        order["id"],
        address=address,
        sub_total=order["sub_total"],
        weight_grams=order["weight_grams"],
        currency=order["currency"],
    )
    request.app[CACHES].quotes.put(order["id"], (quote_basis(order), prices))
    return http.model_response(
        views.ShippingPriceList(data=[views.price_out(p) for p in prices if p.currency == order["currency"]])
    )


async def put_shipping_cost(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    body = await http.read_json(request, ShippingCostIn)
    price_id = body.price_id
    if not price_id or not http.is_id(price_id):
        raise ValidationFailed.one("price_id", MSG_CHOOSE_SHIPPING)

    async def choose() -> asyncpg.Record:
        order = await edits.read_editable(request, order_id)
        if not order["shipping_details"]:
            raise ValidationFailed.one("shipping_address", domain.MSG_NO_SHIPPING_ADDRESS)
        quoted = request.app[CACHES].quotes.get(order_id)
        if quoted is not None and quoted[0] == quote_basis(order):
            prices = quoted[1]  # what the customer was shown for this very order, seconds ago
        else:
            prices = await quote(
                request,
                order_id,
                address=order["shipping_details"],
                sub_total=order["sub_total"],
                weight_grams=order["weight_grams"],
                currency=order["currency"],
                price_id=price_id,
            )
        price = _find(prices, price_id, order["currency"])
        if price is None:
            raise ValidationFailed.one("price_id", MSG_CHOOSE_SHIPPING)
        async with runtime.unit_of_work(request) as uow:
            locked = await edits.lock_editable(request, uow.conn, order_id)
            if quote_basis(locked) != quote_basis(order):
                raise Conflict  # the price was found for another address or basket
            return await reprice(uow.conn, order_id, price, body.preference)

    return await views.respond(request, await retry_on_conflict(choose))
