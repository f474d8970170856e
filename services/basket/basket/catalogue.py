"""HTTP handlers of the catalogue: storefront reads, admin writes (each in one unit of work)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from basket import currencies, domain, queries, views
from basket.models import InventoryUpdate, ProductCreate, ProductsQuery, VariantCreate, VariantUpdate
from basket.settings import settings_of
from shared import money, runtime
from shared.http import (
    NotFound,
    ValidationFailed,
    includes,
    model_response,
    new_id,
    paginated,
    path_id,
    query_model,
    read_json,
    require_admin,
)

MSG_SKU_TAKEN = "The sku has already been taken."
MSG_MAX_BELOW_MIN = "The max qty must be 0 (no maximum) or at least the min qty."


def pool_of(request: web.Request) -> asyncpg.Pool:
    return request.app[runtime.POOL]


# ---------------------------------------------------------------------------------------------
# Storefront reads


async def list_products(request: web.Request) -> web.Response:
    query = query_model(request, ProductsQuery)
    per_page = query.per_page or query.limit or settings_of(request).products_per_page
    async with pool_of(request).acquire() as conn:
        conversion = await currencies.catalogue_conversion(conn, request)
        total = await queries.count_products(conn)
        rows = await queries.products_page(conn, per_page, (query.page - 1) * per_page)
        variants = None
        if "variants" in includes(request):
            variants = await _variants_by_product(conn, [r["id"] for r in rows])
    data = [
        views.product_view(r, variants.get(r["id"], []) if variants is not None else None, conversion) for r in rows
    ]
    return model_response(
        views.ProductCollection.model_validate(
            paginated(request, data, page=query.page, per_page=per_page, total=total)
        )
    )


async def _variants_by_product(conn: asyncpg.Connection, product_ids: list[str]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {pid: [] for pid in product_ids}
    for row in await queries.variants_of_products(conn, product_ids):
        grouped[row["product_id"]].append(row)
    return grouped


async def get_product(request: web.Request) -> web.Response:
    product_id = path_id(request)
    if "variants" in includes(request):
        row = await queries.product_with_variants(pool_of(request), product_id)
        variants = row["variants"] if row is not None else None
    else:
        row, variants = await queries.product(pool_of(request), product_id), None
    if row is None:
        raise NotFound()
    conversion = await currencies.catalogue_conversion(pool_of(request), request)
    return model_response(views.ProductResponse(data=views.product_view(row, variants, conversion)))


async def get_variant(request: web.Request) -> web.Response:
    variant_id = path_id(request)
    async with pool_of(request).acquire() as conn:
        row = await queries.variant(conn, variant_id)
        if row is None:
            raise NotFound()
        product = await queries.product(conn, row["product_id"]) if "product" in includes(request) else None
        conversion = await currencies.catalogue_conversion(conn, request)
    return model_response(views.VariantResponse(data=views.variant_view(row, product, conversion)))


# ---------------------------------------------------------------------------------------------
# Admin


def _minor_units(value: Any, currency: str, field: str) -> int:
    """A price in the base currency's minor units; 422 for a fraction it does not have (10.50 in
    a base currency without minor units, such as JPY)."""
    try:
        return money.from_major(value, currency)
    except ValueError as exc:
        raise ValidationFailed.one(
            field, f"The price may have at most {money.exponent(currency)} decimal places."
        ) from exc


def _variant_values(variant: VariantCreate, currency: str, position: int) -> dict[str, Any]:
    return {
        "sku": variant.sku,
        "name": variant.name,
        "options": variant.options,
        "price": _minor_units(variant.price, currency, f"variants.{position}.price"),
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
    currency = settings_of(request).base_currency
    errors: dict[str, list[str]] = {}
    skus = [v.sku for v in body.variants]
    for index in domain.duplicate_positions(skus):
        errors[f"variants.{index}.sku"] = [domain.msg_distinct(f"variants.{index}.sku")]
    for index, v in enumerate(body.variants):
        if v.max_qty and v.max_qty < v.min_qty:
            errors[f"variants.{index}.max_qty"] = [MSG_MAX_BELOW_MIN]
    async with runtime.unit_of_work(request) as uow:
        taken = await queries.existing_skus(uow.conn, skus)
        for index, sku in enumerate(skus):
            if sku in taken:
                errors.setdefault(f"variants.{index}.sku", []).append(MSG_SKU_TAKEN)
        if errors:
            raise ValidationFailed(errors)
        product = await queries.insert_product(uow.conn, new_id(), body.name)
        variants = []
        for position, v in enumerate(body.variants):
            values = _variant_values(v, currency, position) | {
                "id": new_id(),
                "product_id": product["id"],
                "position": position,
            }
            try:
                async with uow.conn.transaction():
                    variants.append(await queries.insert_variant(uow.conn, values))
            except asyncpg.UniqueViolationError as exc:
                # A concurrent create took the sku between our check and our insert.
                raise ValidationFailed.one(f"variants.{position}.sku", MSG_SKU_TAKEN) from exc
    return model_response(views.ProductResponse(data=views.product_view(product, variants)))


async def update_variant(request: web.Request) -> web.Response:
    require_admin(request)
    variant_id = path_id(request)
    body = await read_json(request, VariantUpdate)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None or k == "name"}
    async with runtime.unit_of_work(request) as uow:
        current = await queries.lock_variant(uow.conn, variant_id)
        if current is None:
            raise NotFound()
        if "price" in changes:
            changes["price"] = _minor_units(changes["price"], current["currency"], "price")
        try:
            async with uow.conn.transaction():
                row = await queries.update_variant(uow.conn, variant_id, changes)
        except asyncpg.UniqueViolationError as exc:
            raise ValidationFailed.one("sku", MSG_SKU_TAKEN) from exc
        assert row is not None
        if row["max_qty"] and row["max_qty"] < row["min_qty"]:
            raise ValidationFailed.one("max_qty", MSG_MAX_BELOW_MIN)
    return model_response(views.VariantResponse(data=views.variant_view(row)))


async def set_inventory(request: web.Request) -> web.Response:
    require_admin(request)
    variant_id = path_id(request)
    body = await read_json(request, InventoryUpdate)
    async with runtime.unit_of_work(request) as uow:
        row = await queries.update_variant(uow.conn, variant_id, {"inventory": body.inventory})
    if row is None:
        raise NotFound()
    return model_response(views.VariantResponse(data=views.variant_view(row)))
