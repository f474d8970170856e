"""An order's addresses and contact: `PUT /orders/{id}/shipping/address`, `.../billing/address`,
`.../contact`. Each is a unit of work that locks the order and sets the one field, so concurrent
edits of different fields queue on the lock and none is lost."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from pydantic import ValidationError

from orders import countries, edits, queries, shipping, views
from orders.models import AddressByIdIn, AddressIn, ContactIn
from shared import http, runtime
from shared.contracts import GetCustomerAddress
from shared.countries import country_code
from shared.http import ValidationFailed
from shared.uow import Conflict, retry_on_conflict

INVALID_ADDRESS_ID = "The selected address is invalid."
ADDRESS_ID_WITH_FIELDS = "The address id field cannot be sent with the fields of an address."


async def _read_address(request: web.Request) -> dict[str, Any]:
    """The address a body gives, validated: by its fields, or by the id of one of the signed-in
    customer's addresses, which the customers service answers as that customer would see it."""
    sent = request.get(http.JSON_BODY)  # the body, parsed and checked by shared.http's middleware
    if not isinstance(sent, dict) or "address_id" not in sent:
        return await _address(request, await http.read_json(request, AddressIn))
    body = await http.read_json(request, AddressByIdIn)
    if body.model_extra and body.model_extra.keys() & AddressIn.model_fields.keys():
        raise ValidationFailed.one("address_id", ADDRESS_ID_WITH_FIELDS)
    customer = http.optional_customer(request)
    if customer is None or not http.is_id(body.address_id):
        raise ValidationFailed.one("address_id", INVALID_ADDRESS_ID)
    found = (
        await edits.ask(request, GetCustomerAddress(customer_id=customer, address_id=body.address_id), "customers")
    ).address
    if found is None:
        raise ValidationFailed.one("address_id", INVALID_ADDRESS_ID)
    # The book's address goes through the same rules as one sent by its fields (its country may
    # not be enabled for orders, say).
    try:
        fields = AddressIn.model_validate(found.model_dump(exclude_none=True))
    except ValidationError as exc:
        raise ValidationFailed(http.validation_map(exc)) from exc
    return await _address(request, fields)


async def _address(request: web.Request, body: AddressIn) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    if not body.county and not body.state:
        errors["county"] = ["The county field is required when state is not present."]
    code = country_code(body.country)
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
    address = await _read_address(request)

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
            locked = await edits.lock_editable(request, uow.conn, order_id)
            if _requote_basis(locked) != _requote_basis(order):
                raise Conflict
            changed = await queries.set_detail(uow.conn, order_id, "shipping", address)
            if not locked["shipping_price_id"]:
                return changed
            return await shipping.reprice(uow.conn, order_id, price, locked["shipping_preference"])

    return await views.respond(request, await retry_on_conflict(change))


async def _put_detail(request: web.Request, order_id: str, kind: str, value: dict[str, Any]) -> web.Response:
    async with runtime.unit_of_work(request) as uow:
        await edits.lock_editable(request, uow.conn, order_id)
        order = await queries.set_detail(uow.conn, order_id, kind, value)
    return await views.respond(request, order)


async def put_billing_address(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    address = await _read_address(request)
    return await _put_detail(request, order_id, "billing", address)


async def put_contact(request: web.Request) -> web.Response:
    order_id = http.path_id(request)
    body = await http.read_json(request, ContactIn)
    return await _put_detail(request, order_id, "contact", {"email": str(body.email), "phone": body.phone})
