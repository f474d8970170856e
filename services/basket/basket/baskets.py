"""HTTP handlers of baskets and their lines.

Every change is one unit of work: lock the basket row (concurrent changes of one basket queue),
check every rule before writing, change the lines, bump the basket's version and emit
`basket.changed.v1`. A rule that fails raises before the commit: nothing is half-written.

A deleted basket is announced as emptied (`basket.changed.v1` with no lines): only outside systems
read that event, and an empty basket is all they can act on.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from basket import currencies, domain, pricing, pricing_queries, queries, views
from basket.models import (
    AddLines,
    BasketMeta,
    CreateBasket,
    DeleteLines,
    LineQuantity,
    LineQuantityChange,
    UpdateBasket,
    VariantQuantity,
)
from basket.settings import settings_of
from shared import runtime
from shared.contracts import BasketChanged
from shared.http import (
    ApiError,
    Meta,
    NotFound,
    ValidationFailed,
    includes,
    is_id,
    model_response,
    new_id,
    optional_customer,
    path_id,
    read_json,
)
from shared.uow import UnitOfWork

Row = asyncpg.Record
Checked = list[tuple[VariantQuantity, int]]  # each requested variant and its resulting quantity

META = TypeAdapter(Meta)
MSG_IN_FLIGHT = "This basket's order is being processed"


async def get_basket(request: web.Request) -> web.Response:
    pool = request.app[runtime.POOL]
    row = _visible(await queries.basket_with_lines(pool, path_id(request)), request)
    if row is None:
        raise NotFound()
    discounts = await pricing_queries.basket_discounts(pool, row["id"])
    return await respond(request, pool, row, row["lines"], discounts)


async def create_basket(request: web.Request) -> web.Response:
    """Create a basket, or replace every line of an existing one."""
    body = await read_json(request, CreateBasket)
    async with runtime.unit_of_work(request) as uow:
        if body.basket_id is None:
            currency = await currencies.new_basket_currency(uow.conn, request, body.currency)
            return await _new_basket(request, uow, currency, body)
        basket = await _basket_from_body(request, uow.conn, body.basket_id)
        # As upstream: a currency given with an existing basket changes its currency.
        currency = None
        if body.currency is not None:
            currency = (await currencies.enabled_conversion(uow.conn, request, body.currency)).currency
        checked = await _check_variants(uow.conn, body.variants, {})
        await queries.delete_all_lines(uow.conn, basket["id"])
        await _upsert_lines(uow.conn, basket["id"], checked)
        return await _finish(request, uow, basket, body.meta, currency)


async def _new_basket(request: web.Request, uow: UnitOfWork, currency: str, body: CreateBasket) -> web.Response:
    variants = await queries.variants_by_id(uow.conn, [item.id for item in body.variants if is_id(item.id)])
    checked = _checked(body.variants, variants, {})
    lines = [
        {"id": new_id(), "variant_id": item.id, "quantity": quantity, "meta": item.meta or {}}
        for item, quantity in checked
    ]
    basket = await queries.insert_basket_with_lines(
        uow.conn, new_id(), currency, body.meta or {}, lines, customer_id=optional_customer(request)
    )
    # The lines as `basket_lines` returns them, from the variants already read.
    line_rows = [
        dict(variants[line["variant_id"]])
        | {"line_id": line["id"], "line_quantity": line["quantity"], "line_meta": line["meta"]}
        for line in lines
    ]
    discounts = await pricing_queries.basket_discounts(uow.conn, basket["id"])  # automatic ones may apply
    await announce(request, uow, basket, line_rows, discounts)
    return await respond(request, uow.conn, basket, line_rows, discounts)


async def add_lines(request: web.Request) -> web.Response:
    """Add variants; a variant already in the basket gets its quantity increased."""
    body = await read_json(request, AddLines)
    async with runtime.unit_of_work(request) as uow:
        basket, current = None, {}
        if body.basket_id is not None:
            basket = await _basket_from_body(request, uow.conn, body.basket_id)
            current = {row["id"]: row["line_quantity"] for row in await queries.basket_lines(uow.conn, basket["id"])}
        checked = await _check_variants(uow.conn, body.variants, current)
        if basket is None:
            currency = await currencies.new_basket_currency(uow.conn, request, None)
            basket = await queries.insert_basket(uow.conn, new_id(), currency, {}, optional_customer(request))
        await _upsert_lines(uow.conn, basket["id"], checked)
        return await _finish(request, uow, basket, body.meta)


async def update_line(request: web.Request) -> web.Response:
    line_id = path_id(request)
    body = await read_json(request, LineQuantity)
    async with runtime.unit_of_work(request) as uow:
        line, basket = await _locked_line(request, uow.conn, line_id)
        _check_change(body.quantity)
        await _set_quantity(uow.conn, line, body.quantity)
        return await _finish(request, uow, basket)


async def add_to_line(request: web.Request) -> web.Response:
    line_id = path_id(request)
    body = await read_json(request, LineQuantityChange)
    async with runtime.unit_of_work(request) as uow:
        line, basket = await _locked_line(request, uow.conn, line_id)
        _check_change(body.quantity)
        await _set_quantity(uow.conn, line, line["quantity"] + body.quantity)
        return await _finish(request, uow, basket)


async def remove_from_line(request: web.Request) -> web.Response:
    line_id = path_id(request)
    body = await read_json(request, LineQuantityChange)
    async with runtime.unit_of_work(request) as uow:
        line, basket = await _locked_line(request, uow.conn, line_id)
        _check_change(body.quantity)
        remaining = line["quantity"] - body.quantity
        if remaining <= 0:
            await queries.delete_lines(uow.conn, basket["id"], [line["id"]])
        else:
            await _set_quantity(uow.conn, line, remaining)
        return await _finish(request, uow, basket)


async def delete_line(request: web.Request) -> web.Response:
    line_id = path_id(request)
    async with runtime.unit_of_work(request) as uow:
        line, basket = await _locked_line(request, uow.conn, line_id)
        await queries.delete_lines(uow.conn, basket["id"], [line["id"]])
        return await _finish(request, uow, basket)


async def delete_lines(request: web.Request) -> web.Response:
    """Delete several lines of one basket."""
    body = await read_json(request, DeleteLines)
    ids = [ref.id for ref in body.lines]
    async with runtime.unit_of_work(request) as uow:
        found = await queries.lines_by_id(uow.conn, [i for i in ids if is_id(i)])
        basket_id = found[ids[0]]["basket_id"] if ids[0] in found else None
        # Another customer's lines are unknown ones.
        basket = _visible(await queries.lock_basket(uow.conn, basket_id), request) if basket_id else None
        errors = {
            f"lines.{index}.id": [f"The selected lines.{index}.id is invalid."]
            for index, line_id in enumerate(ids)
            if basket is None or line_id not in found or found[line_id]["basket_id"] != basket_id
        }
        if errors or basket is None:
            raise ValidationFailed(errors)
        _ensure_changeable(basket)
        # Deleting ids that a concurrent change removed meanwhile deletes nothing: the same end.
        await queries.delete_lines(uow.conn, basket_id, ids)
        return await _finish(request, uow, basket)


async def set_meta(request: web.Request) -> web.Response:
    """Set one key of the basket's meta (upstream's `{key, value}`), the others kept; the merged
    meta stays within `shared.http.Meta`'s bounds."""
    basket_id = path_id(request)
    body = await read_json(request, BasketMeta)
    async with runtime.unit_of_work(request) as uow:
        basket = await _locked_basket(request, uow.conn, basket_id)
        meta = _merged_meta(basket["meta"] or {}, body.key, body.value)
        return await _finish(request, uow, basket, meta)


async def update_basket(request: web.Request) -> web.Response:
    """Upstream's `PUT /baskets/{id}`: the basket's currency, which must be enabled (422 for any
    other). Its prices are those of the catalogue converted at the currency's rate from then on.
    The basket's own currency, or no body (GetCandy's client sends none), changes nothing."""
    basket_id = path_id(request)
    body = await read_json(request, UpdateBasket)
    async with runtime.unit_of_work(request) as uow:
        basket = await _locked_basket(request, uow.conn, basket_id)
        if body.currency is not None:
            currency = (await currencies.enabled_conversion(uow.conn, request, body.currency)).currency
            if currency != basket["currency"]:
                return await _finish(request, uow, basket, currency=currency)
        lines = await queries.basket_lines(uow.conn, basket["id"])
        discounts = await pricing_queries.basket_discounts(uow.conn, basket["id"])
        return await respond(request, uow.conn, basket, lines, discounts)


async def delete_basket(request: web.Request) -> web.Response:
    """Delete a basket and its lines. Refused while its order is in flight (a checkout holds its
    stock: 409) and once the order is placed (403). Nothing is released: a basket holds no stock,
    only a checkout's reservation does, and that one stays with its order."""
    basket_id = path_id(request)
    async with runtime.unit_of_work(request) as uow:
        basket = await _locked_basket(request, uow.conn, basket_id)
        if await queries.checkout_in_flight(uow.conn, basket_id):
            raise ApiError(409, MSG_IN_FLIGHT)
        if not await queries.delete_basket(uow.conn, basket_id, basket["version"]):
            raise ApiError(409, "The basket changed meanwhile, please retry")
        await announce(request, uow, basket, [], [])
    return model_response(views.SuccessResponse(success=views.Success(http_code=200, message=None)))


# ---------------------------------------------------------------------------------------------
# The steps


def _ensure_changeable(basket: Row) -> None:
    if basket["order_id"] is not None:
        raise ApiError(403, domain.MSG_BASKET_USED)


def _visible(basket: Row | None, request: web.Request) -> Row | None:
    """The basket if the caller may see it (`domain.visible_to`), else None: to anyone but its
    customer, a customer's basket is an unknown one."""
    caller = optional_customer(request)
    if basket is None or not domain.visible_to(basket["customer_id"], basket["saved_name"] is not None, caller):
        return None
    return basket


async def _locked_basket(request: web.Request, conn: asyncpg.Connection, basket_id: str) -> Row:
    """The basket named in the path, locked; 404 for an unknown one, 403 for a used one."""
    basket = _visible(await queries.lock_basket(conn, basket_id), request)
    if basket is None:
        raise NotFound()
    _ensure_changeable(basket)
    return basket


def _merged_meta(current: dict, key: str, value: object) -> dict:
    try:
        return META.validate_python(current | {key: value})
    except ValidationError as exc:
        messages = [error["msg"].removeprefix("Value error, ") for error in exc.errors(include_url=False)]
        raise ValidationFailed({"meta": messages}) from exc


async def _basket_from_body(request: web.Request, conn: asyncpg.Connection, basket_id: str) -> Row:
    """The locked basket named in a body; 422 for an unknown id, 403 for a used basket."""
    row = _visible(await queries.lock_basket(conn, basket_id), request) if is_id(basket_id) else None
    if row is None:
        raise ValidationFailed.one("basket_id", "The selected basket id is invalid.")
    _ensure_changeable(row)
    return row


async def _locked_line(request: web.Request, conn: asyncpg.Connection, line_id: str) -> tuple[Row, Row]:
    """A line and its basket, the basket locked; 404 for an unknown line (or another customer's),
    403 for a used basket."""
    line = await queries.line(conn, line_id)
    if line is None:
        raise NotFound()
    # Lines go with their basket (ON DELETE CASCADE): None only when it is not the caller's.
    basket = _visible(await queries.lock_basket(conn, line["basket_id"]), request)
    if basket is None:
        raise NotFound()
    _ensure_changeable(basket)
    # Read again under the lock: a concurrent change may have changed or deleted it.
    line = await queries.line(conn, line_id)
    if line is None:
        raise NotFound()
    return line, basket


async def _check_variants(conn: asyncpg.Connection, items: list[VariantQuantity], current: dict[str, int]) -> Checked:
    variants = await queries.variants_by_id(conn, [item.id for item in items if is_id(item.id)])
    return _checked(items, variants, current)


def _checked(items: list[VariantQuantity], variants: dict[str, Row], current: dict[str, int]) -> Checked:
    """Every rule on each requested variant (`current`: the quantities the basket holds, which
    adds merge into); raises 422 with every error, else returns each item's resulting quantity."""
    errors: dict[str, list[str]] = {}
    for index in domain.duplicate_positions([item.id for item in items]):
        errors[f"variants.{index}.id"] = [domain.msg_distinct(f"variants.{index}.id")]
    checked: Checked = []
    for index, item in enumerate(items):
        id_field, quantity_field = f"variants.{index}.id", f"variants.{index}.quantity"
        range_errors = domain.quantity_range_errors(quantity_field, item.quantity)
        if range_errors:
            errors[quantity_field] = range_errors
        if id_field in errors:
            continue
        row = variants.get(item.id)
        if row is None:
            errors[id_field] = [domain.MSG_VARIANT_INCORRECT]
            continue
        if not row["purchasable"]:
            errors[id_field] = [domain.msg_unavailable(row["sku"])]
            continue
        if range_errors:
            continue
        resulting = current.get(item.id, 0) + item.quantity
        rule_errors = domain.quantity_errors(quantity_field, views.variant_rules(row), resulting)
        if rule_errors:
            errors[quantity_field] = rule_errors
        checked.append((item, resulting))
    if errors:
        raise ValidationFailed(errors)
    return checked


async def _upsert_lines(conn: asyncpg.Connection, basket_id: str, checked: Checked) -> None:
    for item, quantity in checked:
        await queries.upsert_line(conn, new_id(), basket_id, item.id, quantity, item.meta or {})


def _check_change(quantity: int) -> None:
    errors = domain.quantity_range_errors("quantity", quantity)
    if errors:
        raise ValidationFailed({"quantity": errors})


async def _set_quantity(conn: asyncpg.Connection, line: Row, quantity: int) -> None:
    """Check every rule on the line's new quantity, then write it."""
    variant = await queries.variant(conn, line["variant_id"])
    assert variant is not None
    errors = domain.quantity_errors("quantity", views.variant_rules(variant), quantity)
    if errors:
        raise ValidationFailed({"quantity": errors})
    await queries.set_line_quantity(conn, line["id"], quantity)


async def _finish(
    request: web.Request, uow: UnitOfWork, basket: Row, meta: dict | None = None, currency: str | None = None
) -> web.Response:
    """Bump the basket's version (compare-and-set on the version read under the lock), with its
    new `meta` or `currency` if given; announce the change, render the basket."""
    updated = await queries.touch_basket(uow.conn, basket["id"], basket["version"], meta, currency)
    if updated is None:
        # Only reachable if someone changed the row without its lock: refuse rather than guess.
        raise ApiError(409, "The basket changed meanwhile, please retry")
    lines = await queries.basket_lines(uow.conn, basket["id"])
    discounts = await pricing_queries.basket_discounts(uow.conn, basket["id"])
    await announce(request, uow, updated, lines, discounts)
    return await respond(request, uow.conn, updated, lines, discounts)


async def respond(request: web.Request, conn: queries.Conn, basket: Row, lines: list, discounts: list) -> web.Response:
    """The basket as a response shows it: priced in the currency the request names, else its own
    (`currencies.shown_conversion`). `discounts`: `pricing_queries.basket_discounts` of the basket."""
    conversion = await currencies.shown_conversion(conn, request, basket)
    return model_response(
        views.BasketResponse(data=views.basket_view(basket, lines, includes(request), discounts, conversion))
    )


async def announce(request: web.Request, uow: UnitOfWork, basket: Row, lines: list, discounts: list) -> None:
    """`basket.changed.v1` for the basket as it is now, in its own currency."""
    conversion = await currencies.basket_conversion(uow.conn, settings_of(request).base_currency, basket)
    uow.emit(_changed(basket, lines, discounts, conversion))


def _changed(basket: Row, lines: list, discounts: list, conversion: pricing.Conversion) -> BasketChanged:
    totals = views.price_lines(lines, discounts, conversion).totals
    return BasketChanged(
        basket_id=basket["id"],
        currency=basket["currency"],
        sub_total=totals.sub_total,
        tax_total=totals.tax_total,
        discount_total=totals.discount_total,
        total=totals.total,
        line_count=len(lines),
    )
