"""An order's addresses and contact: `PUT /orders/{id}/shipping/address`, `.../billing/address`,
`.../contact`. Each is a unit of work that locks the order and sets the one field, so concurrent
edits of different fields queue on the lock and none is lost."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from orders import countries, domain, edits, queries, shipping, views
from orders.models import AddressIn, ContactIn
from shared import http, runtime
from shared.http import ValidationFailed
from shared.uow import Conflict, retry_on_conflict


async def _address(request: web.Request, body: AddressIn) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    if not body.county and not body.state:
        errors["county"] = ["The county field is required when state is not present."]
    code = domain.country_code(body.country)
    if code is None or not await countries.is_enabled(request, code):
        errors["country"] = ["The selected country is invalid."]
    if errors:
        raise ValidationFailed(errors)
    address = body.model_dump()
    address["country"] = code
    return address


def _requote_basis(order: asyncpg.Record) -> object:
    """What the chosen price is asked again with, the address aside (the new one is given)."""
    return (order["shipping_price_id"], order["sub_total"], order["weight_grams"], order["currency"])


async def put_shipping_address(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    address = await _address(request, await http.read_json(request, AddressIn))

    async def change() -> asyncpg.Record:
        order = await edits.read_editable(request, order_id)
        # A chosen price was found for the old address: ask whether it applies to the new one.
        price = await shipping.requote_chosen(
            request,
            order,
            address=address,
            sub_total=order["sub_total"],
            weight_grams=order["weight_grams"],
            currency=order["currency"],
        )
        async with runtime.unit_of_work(request) as uow:
            locked = await edits.lock_editable(uow.conn, order_id)
            if _requote_basis(locked) != _requote_basis(order):
                raise Conflict
            changed = await queries.set_detail(uow.conn, order_id, "shipping", address)
            if not locked["shipping_price_id"]:
                return changed
            return await shipping.reprice(uow.conn, order_id, price, locked["shipping_preference"])

    return await views.respond(request, await retry_on_conflict(change))


async def _put_detail(request: web.Request, order_id: str, kind: str, value: dict[str, Any]) -> web.Response:
    async with runtime.unit_of_work(request) as uow:
        await edits.lock_editable(uow.conn, order_id)
        order = await queries.set_detail(uow.conn, order_id, kind, value)
    return await views.respond(request, order)


async def put_billing_address(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    address = await _address(request, await http.read_json(request, AddressIn))
    return await _put_detail(request, order_id, "billing", address)


async def put_contact(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    body = await http.read_json(request, ContactIn)
    return await _put_detail(request, order_id, "contact", {"email": str(body.email), "phone": body.phone})
