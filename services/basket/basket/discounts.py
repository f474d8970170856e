"""HTTP handlers of discounts: the admin's CRUD under `/discounts`, and a basket's coupon
(`POST` / `DELETE /baskets/{id}/discounts`).

What a discount takes off a basket is computed when the basket is priced (`pricing.price_basket`),
never stored: a basket shows the discounts that apply to it as it is now. Its uses are reserved
with the stock of a checkout (`consumers.on_order_stock_requested`), committed when the order is
placed and given back when the attempt fails or its reservation expires.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from basket import baskets, currencies, pricing, pricing_queries, queries, views
from basket.catalogue import pool_of
from basket.models import ApplyCoupon, DiscountCreate, DiscountsQuery, DiscountUpdate
from basket.settings import settings_of
from shared import money, runtime
from shared.http import (
    ApiError,
    NotFound,
    ValidationFailed,
    is_id,
    model_response,
    new_id,
    paginated,
    partial_update,
    path_id,
    query_model,
    read_json,
    require_admin,
)

MSG_COUPON_TAKEN = "The coupon has already been taken."
MSG_NO_REWARD = "A discount needs a reward: percentage, fixed_amount or free_shipping."
MSG_END_BEFORE_START = "The end at must be a date after start at."
MSG_EMAIL_LIMIT_NEEDS_COUPON = "A limit per email needs a coupon (the shopper cannot remove an automatic discount)."
MSG_CHANGED = "The discount changed meanwhile: read it again"
MSG_IN_USE = "This discount is held by a checkout in progress"
# Fields that may be cleared with null on an update; the others must have a value.
NULLABLE = frozenset(
    {"coupon", "start_at", "end_at", "usage_limit", "usage_limit_per_email", "percentage", "fixed_amount"}
)


# ---------------------------------------------------------------------------------------------
# Admin


async def list_discounts(request: web.Request) -> web.Response:
    require_admin(request)
    query = query_model(request, DiscountsQuery)
    per_page = query.per_page or settings_of(request).products_per_page
    total, rows = await pricing_queries.discounts_page(pool_of(request), per_page, (query.page - 1) * per_page)
    data = [views.discount_view(row) for row in rows]
    return model_response(
        views.DiscountCollection.model_validate(
            paginated(request, data, page=query.page, per_page=per_page, total=total)
        )
    )


async def get_discount(request: web.Request) -> web.Response:
    require_admin(request)
    row = await pricing_queries.discount(pool_of(request), path_id(request))
    if row is None:
        raise NotFound()
    return model_response(views.DiscountResponse(data=views.discount_view(row)))


async def create_discount(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, DiscountCreate)
    currency = settings_of(request).base_currency
    values = _stored(body.model_dump(), currency)
    async with runtime.unit_of_work(request) as uow:
        await _check(uow.conn, values, values)
        try:
            async with uow.conn.transaction():
                row = await pricing_queries.insert_discount(uow.conn, new_id(), currency, values)
        except asyncpg.UniqueViolationError as exc:
            raise ValidationFailed.one("coupon", MSG_COUPON_TAKEN) from exc
    return model_response(views.DiscountResponse(data=views.discount_view(row)))


async def update_discount(request: web.Request) -> web.Response:
    """The fields given change, the others stay; the whole discount is checked again. A `version`
    in the body is a compare-and-set: 409 when the discount moved on since it was read."""
    require_admin(request)
    discount_id = path_id(request)
    body = await read_json(request, DiscountUpdate)
    given, expected = partial_update(body, NULLABLE)
    async with runtime.unit_of_work(request) as uow:
        current = await pricing_queries.lock_discount(uow.conn, discount_id)
        if current is None:
            raise NotFound()
        if expected is not None and expected != current["version"]:
            raise ApiError(409, MSG_CHANGED)
        changes = _stored(given, current["currency"])
        values = {name: current[name] for name in pricing_queries.DISCOUNT_SETTABLE} | changes
        await _check(uow.conn, values, changes)
        try:
            async with uow.conn.transaction():
                row = await pricing_queries.update_discount(uow.conn, discount_id, current["version"], values)
        except asyncpg.UniqueViolationError as exc:
            raise ValidationFailed.one("coupon", MSG_COUPON_TAKEN) from exc
        if row is None:
            # Only reachable if someone changed the row without its lock: refuse rather than guess.
            raise ApiError(409, MSG_CHANGED)
    return model_response(views.DiscountResponse(data=views.discount_view(row)))


async def delete_discount(request: web.Request) -> web.Response:
    """Gone from every basket that had it as its coupon. Refused (409) while a checkout holds a
    use of it: that checkout's order would be placed with a discount that no longer exists."""
    require_admin(request)
    discount_id = path_id(request)
    async with runtime.unit_of_work(request) as uow:
        current = await pricing_queries.lock_discount(uow.conn, discount_id, for_delete=True)
        if current is None:
            raise NotFound()
        if current["reserved"]:
            raise ApiError(409, MSG_IN_USE)
        await pricing_queries.delete_discount(uow.conn, discount_id)
    return web.Response(status=204)


def _stored(fields: dict[str, Any], currency: str) -> dict[str, Any]:
    """Request fields (all or some) as the columns they set: amounts in the currency's minor
    units (`shared.money`), the percentage in basis points."""
    stored: dict[str, Any] = {}
    for name, value in fields.items():
        if name in ("min_basket", "fixed_amount"):
            try:
                stored[name] = money.from_major(value, currency) if value is not None else None
            except ValueError as exc:
                places = money.exponent(currency)
                raise ValidationFailed.one(name, f"The {name} may have at most {places} decimal places.") from exc
        elif name == "percentage":
            stored["percentage_bp"] = int(value * 100) if value is not None else None
        else:
            stored[name] = value
    return stored


async def _check(conn: asyncpg.Connection, values: dict[str, Any], changes: dict[str, Any]) -> None:
    """The rules of a whole discount (`values`), and the products and variants it names among
    `changes` exist; 422 with every error."""
    errors: dict[str, list[str]] = {}
    if not (values["percentage_bp"] or values["fixed_amount"] or values["free_shipping"]):
        errors["rewards"] = [MSG_NO_REWARD]
    if values["start_at"] and values["end_at"] and values["end_at"] <= values["start_at"]:
        errors["end_at"] = [MSG_END_BEFORE_START]
    if values["usage_limit_per_email"] is not None and values["coupon"] is None:
        errors["usage_limit_per_email"] = [MSG_EMAIL_LIMIT_NEEDS_COUPON]
    for field, lookup in (("product_ids", queries.existing_product_ids), ("variant_ids", _existing_variant_ids)):
        ids = changes.get(field) or []
        known = await lookup(conn, [i for i in ids if is_id(i)])
        for index, value in enumerate(ids):
            if value not in known:
                errors[f"{field}.{index}"] = [f"The selected {field}.{index} is invalid."]
    if errors:
        raise ValidationFailed(errors)


async def _existing_variant_ids(conn: asyncpg.Connection, variant_ids: list[str]) -> set[str]:
    return set(await queries.variants_by_id(conn, variant_ids))


# ---------------------------------------------------------------------------------------------
# A basket's coupon


async def apply_coupon(request: web.Request) -> web.Response:
    """The basket's coupon (replacing the one it had), if it applies to the basket now: 422 with
    the reason when it does not (unknown, disabled, not started, ended, used up, its criteria not
    met). The basket is answered priced with it. A coupon that stops applying later (the basket
    changed, the coupon ended) stays the basket's and simply takes nothing off."""
    basket_id = path_id(request)
    body = await read_json(request, ApplyCoupon)
    async with runtime.unit_of_work(request) as uow:
        basket = await baskets._locked_basket(request, uow.conn, basket_id)
        found = await pricing_queries.discount_by_coupon(uow.conn, body.coupon.strip())
        if found is None:
            raise ValidationFailed.one("coupon", pricing.MSG_COUPON_INVALID)
        conversion = await currencies.basket_conversion(uow.conn, settings_of(request).base_currency, basket)
        lines = views.pricing_lines(await queries.basket_lines(uow.conn, basket_id), conversion)
        terms = conversion.terms(views.discount_terms(found))
        refusal = pricing.coupon_refusal(terms, lines, basket["currency"], datetime.now(UTC))
        if refusal is not None:
            raise ValidationFailed.one("coupon", refusal)
        await pricing_queries.set_basket_coupon(uow.conn, basket_id, found["id"])
        return await baskets._finish(request, uow, basket)


async def remove_coupon(request: web.Request) -> web.Response:
    """Upstream's `DELETE /baskets/{id}/discounts`: the basket's coupon removed (204 also when it
    had none, and then nothing changes)."""
    basket_id = path_id(request)
    async with runtime.unit_of_work(request) as uow:
        basket = await baskets._locked_basket(request, uow.conn, basket_id)
        if await pricing_queries.remove_basket_coupon(uow.conn, basket_id):
            # The basket's version and its basket.changed, as for any change of a basket.
            await baskets._finish(request, uow, basket)
    return web.Response(status=204)
