"""HTTP handlers of the basket service: the catalogue and baskets, under the public paths.

Every basket change runs in one transaction that first locks the basket row (so concurrent
changes of one basket serialise), validates everything before writing, bumps the basket's
version with a compare-and-set and writes `basket.changed.v1` to the outbox. A rule that fails
raises before the commit: nothing is half-written.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from basket import domain, queries, views
from basket.models import (
    AddLines,
    CreateBasket,
    DeleteLines,
    InventoryUpdate,
    LineQuantity,
    LineQuantityChange,
    ProductCreate,
    ProductsQuery,
    VariantCreate,
    VariantQuantity,
    VariantUpdate,
)
from basket.settings import BasketSettings
from shared import money, outbox, runtime
from shared.contracts import BasketChanged
from shared.http import (
    ApiError,
    NotFound,
    ValidationFailed,
    includes,
    is_id,
    json_response,
    new_id,
    paginated,
    path_id,
    query_model,
    read_json,
    request_id,
    require_admin,
)

PREFIX = "/api/v1"
MSG_SKU_TAKEN = "The sku has already been taken."
MSG_MAX_BELOW_MIN = "The max qty must be 0 (no maximum) or at least the min qty."


def _settings(request: web.Request) -> BasketSettings:
    settings = request.app[runtime.SETTINGS]
    assert isinstance(settings, BasketSettings)
    return settings


def _pool(request: web.Request) -> asyncpg.Pool:
    return request.app[runtime.POOL]


# ---------------------------------------------------------------------------------------------
# Catalogue: storefront reads


async def list_products(request: web.Request) -> web.Response:
    query = query_model(request, ProductsQuery)
    per_page = query.per_page or query.limit or _settings(request).products_per_page
    async with _pool(request).acquire() as conn:
        total = await queries.count_products(conn)
        rows = await queries.products_page(conn, per_page, (query.page - 1) * per_page)
        variants = None
        if "variants" in includes(request):
            variants = await _variants_by_product(conn, [r["id"] for r in rows])
    data = [views.product_view(r, variants.get(r["id"], []) if variants is not None else None) for r in rows]
    return json_response(paginated(request, data, page=query.page, per_page=per_page, total=total))


async def _variants_by_product(conn: asyncpg.Connection, product_ids: list[str]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {pid: [] for pid in product_ids}
    for row in await queries.variants_of_products(conn, product_ids):
        grouped[row["product_id"]].append(row)
    return grouped


async def get_product(request: web.Request) -> web.Response:
    product_id = path_id(request)
    if "variants" in includes(request):
        row = await queries.product_with_variants(_pool(request), product_id)
        variants = row["variants"] if row is not None else None
    else:
        row, variants = await queries.product(_pool(request), product_id), None
    if row is None:
        raise NotFound()
    return json_response({"data": views.product_view(row, variants)})


async def get_variant(request: web.Request) -> web.Response:
    variant_id = path_id(request)
    async with _pool(request).acquire() as conn:
        row = await queries.variant(conn, variant_id)
        if row is None:
            raise NotFound()
        product = await queries.product(conn, row["product_id"]) if "product" in includes(request) else None
    return json_response({"data": views.variant_view(row, product)})


# ---------------------------------------------------------------------------------------------
# Catalogue: admin


def _variant_values(variant: VariantCreate, currency: str) -> dict[str, Any]:
    return {
        "sku": variant.sku,
        "name": variant.name,
        "options": variant.options,
        "price": money.from_major(variant.price, currency),
        "currency": currency,
        "tax_rate_bp": variant.tax_rate_bp,
        "inventory": variant.inventory,
        "incoming": variant.incoming,
        "backorder": variant.backorder,
        "min_qty": variant.min_qty,
        "max_qty": variant.max_qty,
        "min_batch": variant.min_batch,
        "unit_qty": variant.unit_qty,
        "weight_grams": variant.weight_grams,
        "requires_shipping": variant.requires_shipping,
        "purchasable": variant.purchasable,
    }


async def create_product(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, ProductCreate)
    currency = _settings(request).base_currency
    errors: dict[str, list[str]] = {}
    skus = [v.sku for v in body.variants]
    for index in domain.duplicate_positions(skus):
        errors[f"variants.{index}.sku"] = [domain.msg_distinct(f"variants.{index}.sku")]
    for index, v in enumerate(body.variants):
        if v.max_qty and v.max_qty < v.min_qty:
            errors[f"variants.{index}.max_qty"] = [MSG_MAX_BELOW_MIN]
    async with _pool(request).acquire() as conn, conn.transaction():
        taken = await queries.existing_skus(conn, skus)
        for index, sku in enumerate(skus):
            if sku in taken:
                errors.setdefault(f"variants.{index}.sku", []).append(MSG_SKU_TAKEN)
        if errors:
            raise ValidationFailed(errors)
        product = await queries.insert_product(conn, new_id(), body.name)
        variants = []
        for position, v in enumerate(body.variants):
            values = _variant_values(v, currency) | {"id": new_id(), "product_id": product["id"], "position": position}
            try:
                async with conn.transaction():
                    variants.append(await queries.insert_variant(conn, values))
            except asyncpg.UniqueViolationError as exc:
                # A concurrent create took the sku between our check and our insert.
                raise ValidationFailed.one(f"variants.{position}.sku", MSG_SKU_TAKEN) from exc
    return json_response({"data": views.product_view(product, variants)})


async def update_variant(request: web.Request) -> web.Response:
    require_admin(request)
    variant_id = path_id(request)
    body = await read_json(request, VariantUpdate)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None or k == "name"}
    async with _pool(request).acquire() as conn, conn.transaction():
        current = await queries.variant(conn, variant_id)
        if current is None:
            raise NotFound()
        if "price" in changes:
            changes["price"] = money.from_major(changes["price"], current["currency"])
        try:
            async with conn.transaction():
                row = await queries.update_variant(conn, variant_id, changes)
        except asyncpg.UniqueViolationError as exc:
            raise ValidationFailed.one("sku", MSG_SKU_TAKEN) from exc
        assert row is not None
        if row["max_qty"] and row["max_qty"] < row["min_qty"]:
            raise ValidationFailed.one("max_qty", MSG_MAX_BELOW_MIN)
    return json_response({"data": views.variant_view(row)})


async def set_inventory(request: web.Request) -> web.Response:
    require_admin(request)
    variant_id = path_id(request)
    body = await read_json(request, InventoryUpdate)
    async with _pool(request).acquire() as conn:
        row = await queries.update_variant(conn, variant_id, {"inventory": body.inventory})
    if row is None:
        raise NotFound()
    return json_response({"data": views.variant_view(row)})


# ---------------------------------------------------------------------------------------------
# Baskets


async def get_basket(request: web.Request) -> web.Response:
    row = await queries.basket_with_lines(_pool(request), path_id(request))
    if row is None:
        raise NotFound()
    return json_response({"data": views.basket_view(row, row["lines"], includes(request))})


def _ensure_changeable(basket: asyncpg.Record) -> None:
    if basket["order_id"] is not None:
        raise ApiError(403, domain.MSG_BASKET_USED)


async def _basket_from_body(conn: asyncpg.Connection, basket_id: str | None) -> asyncpg.Record | None:
    """The locked basket named in a body; raises 422 for an unknown id, 403 for a used basket."""
    if basket_id is None:
        return None
    row = await queries.lock_basket(conn, basket_id) if is_id(basket_id) else None
    if row is None:
        raise ValidationFailed.one("basket_id", "The selected basket id is invalid.")
    _ensure_changeable(row)
    return row


def _check_variants(
    items: list[VariantQuantity], variants: dict[str, asyncpg.Record], current: dict[str, int]
) -> tuple[dict[str, list[str]], list[tuple[VariantQuantity, int]]]:
    """Every rule on each requested variant; returns the errors and (item, resulting quantity).

    `current` holds the quantities already in the basket (adds merge into them).
    """
    errors: dict[str, list[str]] = {}
    for index in domain.duplicate_positions([item.id for item in items]):
        errors[f"variants.{index}.id"] = [domain.msg_distinct(f"variants.{index}.id")]
    results: list[tuple[VariantQuantity, int]] = []
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
        results.append((item, resulting))
    return errors, results


async def _finish(
    request: web.Request, conn: asyncpg.Connection, basket: asyncpg.Record, meta: dict | None = None
) -> web.Response:
    """Bump the basket's version (compare-and-set), announce the change, render the basket."""
    updated = await queries.touch_basket(conn, basket["id"], basket["version"], meta)
    if updated is None:
        # Only reachable if someone changed the row without its lock: refuse rather than guess.
        raise ApiError(409, "The basket changed meanwhile, please retry")
    lines = await queries.basket_lines(conn, basket["id"])
    totals = views.price_lines(lines).totals
    await outbox.enqueue(
        conn,
        BasketChanged(
            basket_id=basket["id"],
            currency=updated["currency"],
            sub_total=totals.sub_total,
            tax_total=totals.tax_total,
            total=totals.total,
            line_count=len(lines),
        ),
        "basket",
        correlation_id=request_id(request),
    )
    return json_response({"data": views.basket_view(updated, lines, includes(request))})


async def _write_variants(
    conn: asyncpg.Connection, basket_id: str | None, items: list[VariantQuantity], *, replace: bool
) -> tuple[asyncpg.Record | None, list[tuple[VariantQuantity, int]]]:
    """Validate the requested variants against the (locked) basket; raises on any error."""
    basket = await _basket_from_body(conn, basket_id)
    current: dict[str, int] = {}
    if basket is not None and not replace:
        current = {row["id"]: row["line_quantity"] for row in await queries.basket_lines(conn, basket["id"])}
    ids = [item.id for item in items]
    variants = await queries.variants_by_id(conn, [i for i in ids if is_id(i)])
    errors, results = _check_variants(items, variants, current)
    if errors:
        raise ValidationFailed(errors)
    return basket, results


def _currency(request: web.Request, requested: str | None) -> str:
    base = _settings(request).base_currency
    if requested is not None and requested.upper() != base:
        raise ValidationFailed.one("currency", "The selected currency is invalid.")
    return base


async def _new_basket(request: web.Request, body: CreateBasket) -> web.Response:
    """A new basket: validated against the variants as read, then written with its lines and its
    event in one statement."""
    currency = _currency(request, body.currency)
    ids = [item.id for item in body.variants]
    variants = await queries.variants_by_id(_pool(request), [i for i in ids if is_id(i)])
    errors, results = _check_variants(body.variants, variants, {})
    if errors:
        raise ValidationFailed(errors)
    lines = [
        {"id": new_id(), "variant_id": item.id, "quantity": quantity, "meta": item.meta or {}}
        for item, quantity in results
    ]
    line_rows = [
        dict(variants[line["variant_id"]])
        | {"line_id": line["id"], "line_quantity": line["quantity"], "line_meta": line["meta"]}
        for line in lines
    ]
    totals = views.price_lines(line_rows).totals
    basket_id = new_id()
    event = runtime.announcement(
        request,
        BasketChanged(
            basket_id=basket_id,
            currency=currency,
            sub_total=totals.sub_total,
            tax_total=totals.tax_total,
            total=totals.total,
            line_count=len(line_rows),
        ),
        "basket",
    )
    basket = await queries.insert_basket_with_lines(_pool(request), basket_id, currency, body.meta or {}, lines, event)
    runtime.hand_off(request, event)
    return json_response({"data": views.basket_view(basket, line_rows, includes(request))})


async def create_basket(request: web.Request) -> web.Response:
    """Create a basket, or replace every line of an existing one."""
    body = await read_json(request, CreateBasket)
    if body.basket_id is None:
        return await _new_basket(request, body)
    async with _pool(request).acquire() as conn, conn.transaction():
        currency = _currency(request, body.currency)
        basket, results = await _write_variants(conn, body.basket_id, body.variants, replace=True)
        if basket is None:
            basket = await queries.insert_basket(conn, new_id(), currency, {})
        else:
            await queries.delete_all_lines(conn, basket["id"])
        for item, quantity in results:
            await queries.upsert_line(conn, new_id(), basket["id"], item.id, quantity, item.meta or {})
        return await _finish(request, conn, basket, body.meta)


async def add_lines(request: web.Request) -> web.Response:
    """Add variants; a variant already in the basket gets its quantity increased."""
    body = await read_json(request, AddLines)
    async with _pool(request).acquire() as conn, conn.transaction():
        basket, results = await _write_variants(conn, body.basket_id, body.variants, replace=False)
        if basket is None:
            basket = await queries.insert_basket(conn, new_id(), _settings(request).base_currency, {})
        for item, quantity in results:
            await queries.upsert_line(conn, new_id(), basket["id"], item.id, quantity, item.meta or {})
        return await _finish(request, conn, basket, body.meta)


async def _locked_line(conn: asyncpg.Connection, line_id: str) -> tuple[asyncpg.Record, asyncpg.Record]:
    """A line and its basket, the basket locked; 404 for an unknown line, 403 for a used basket."""
    line = await queries.line(conn, line_id)
    if line is None:
        raise NotFound()
    basket = await queries.lock_basket(conn, line["basket_id"])
    assert basket is not None  # lines go with their basket (ON DELETE CASCADE)
    _ensure_changeable(basket)
    # Read again under the lock: a concurrent change may have moved or deleted it.
    line = await queries.line(conn, line_id)
    if line is None:
        raise NotFound()
    return line, basket


async def _set_quantity(conn: asyncpg.Connection, line: asyncpg.Record, quantity: int) -> None:
    """Check every rule on the line's new quantity, then write it."""
    variant = await queries.variant(conn, line["variant_id"])
    assert variant is not None
    errors = domain.quantity_errors("quantity", views.variant_rules(variant), quantity)
    if errors:
        raise ValidationFailed({"quantity": errors})
    await queries.set_line_quantity(conn, line["id"], quantity)


def _check_change(quantity: int) -> None:
    errors = domain.quantity_range_errors("quantity", quantity)
    if errors:
        raise ValidationFailed({"quantity": errors})


async def update_line(request: web.Request) -> web.Response:
    line_id = path_id(request)
    body = await read_json(request, LineQuantity)
    async with _pool(request).acquire() as conn, conn.transaction():
        line, basket = await _locked_line(conn, line_id)
        _check_change(body.quantity)
        await _set_quantity(conn, line, body.quantity)
        return await _finish(request, conn, basket)


async def add_to_line(request: web.Request) -> web.Response:
    line_id = path_id(request)
    body = await read_json(request, LineQuantityChange)
    async with _pool(request).acquire() as conn, conn.transaction():
        line, basket = await _locked_line(conn, line_id)
        _check_change(body.quantity)
        await _set_quantity(conn, line, line["quantity"] + body.quantity)
        return await _finish(request, conn, basket)


async def remove_from_line(request: web.Request) -> web.Response:
    line_id = path_id(request)
    body = await read_json(request, LineQuantityChange)
    async with _pool(request).acquire() as conn, conn.transaction():
        line, basket = await _locked_line(conn, line_id)
        _check_change(body.quantity)
        remaining = line["quantity"] - body.quantity
        if remaining <= 0:
            await queries.delete_lines(conn, basket["id"], [line["id"]])
        else:
            await _set_quantity(conn, line, remaining)
        return await _finish(request, conn, basket)


async def delete_line(request: web.Request) -> web.Response:
    line_id = path_id(request)
    async with _pool(request).acquire() as conn, conn.transaction():
        line, basket = await _locked_line(conn, line_id)
        await queries.delete_lines(conn, basket["id"], [line["id"]])
        return await _finish(request, conn, basket)


async def delete_lines(request: web.Request) -> web.Response:
    """Delete several lines of one basket."""
    body = await read_json(request, DeleteLines)
    ids = [ref.id for ref in body.lines]
    async with _pool(request).acquire() as conn, conn.transaction():
        found = await queries.lines_by_id(conn, [i for i in ids if is_id(i)])
        basket_id = found[ids[0]]["basket_id"] if ids[0] in found else None
        errors = {
            f"lines.{index}.id": [f"The selected lines.{index}.id is invalid."]
            for index, line_id in enumerate(ids)
            if line_id not in found or found[line_id]["basket_id"] != basket_id
        }
        if errors or basket_id is None:
            raise ValidationFailed(errors)
        basket = await queries.lock_basket(conn, basket_id)
        assert basket is not None
        _ensure_changeable(basket)
        await queries.delete_lines(conn, basket_id, ids)
        return await _finish(request, conn, basket)


ROUTES = [
    web.get(f"{PREFIX}/products", list_products),
    web.post(f"{PREFIX}/products", create_product),
    web.get(f"{PREFIX}/products/variants/{{id}}", get_variant),
    web.put(f"{PREFIX}/products/variants/{{id}}", update_variant),
    web.put(f"{PREFIX}/products/variants/{{id}}/inventory", set_inventory),
    web.get(f"{PREFIX}/products/{{id}}", get_product),
    web.post(f"{PREFIX}/baskets", create_basket),
    web.get(f"{PREFIX}/baskets/{{id}}", get_basket),
    web.post(f"{PREFIX}/basket-lines", add_lines),
    web.delete(f"{PREFIX}/basket-lines", delete_lines),
    web.put(f"{PREFIX}/basket-lines/{{id}}", update_line),
    web.delete(f"{PREFIX}/basket-lines/{{id}}", delete_line),
    web.post(f"{PREFIX}/basket-lines/{{id}}/add", add_to_line),
    web.put(f"{PREFIX}/basket-lines/{{id}}/remove", remove_from_line),
]
