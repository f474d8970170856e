"""HTTP handlers of a signed-in customer's baskets: the current one, claiming a guest basket,
merging one into the current basket (`resolve`), and saved copies.

A basket belongs to the customer who created it signed in, or who claimed it; the current one is
the basket most recently theirs that is neither ordered, merged nor saved (`queries._CURRENT`).
Everything that decides which basket is current, or counts saved ones, first takes the customer's
lock (`queries.lock_customer_baskets`), then locks the baskets it changes in id order, so that two
devices resolving at once queue, and the second merges into what the first left.

Merging reuses the rules of adding lines (`baskets._check_variants`): every quantity of the result
is checked, and any failure is a 422 that changes nothing.
"""

from __future__ import annotations

import asyncpg
from aiohttp import web

from basket import currencies, domain, pricing_queries, queries, views
from basket.baskets import MSG_IN_FLIGHT, _check_variants, _finish, _upsert_lines, announce, respond
from basket.models import ResolveBasket, SaveBasket, SavedBasketsQuery, VariantQuantity
from shared import runtime
from shared.http import (
    ApiError,
    NotFound,
    ValidationFailed,
    includes,
    is_id,
    model_response,
    new_id,
    paginated,
    path_id,
    query_model,
    read_json,
    require_customer,
)
from shared.uow import Conflict, UnitOfWork, retry_on_conflict

Row = asyncpg.Record

MSG_INVALID_BASKET = "The selected basket id is invalid."
# A bound on what every list of saved baskets carries and every save counts.
MAX_SAVED_BASKETS = 100


def _theirs(basket: Row | None, customer: str) -> Row | None:
    """The basket if the customer may use it (a guest's or their own, not a saved copy)."""
    if basket is None or not domain.visible_to(basket["customer_id"], basket["saved_name"] is not None, customer):
        return None
    return basket


async def get_current(request: web.Request) -> web.Response:
    """The customer's current basket; 404 when they have none."""
    customer = require_customer(request)
    row = await queries.current_basket_with_lines(request.app[runtime.POOL], customer)
    if row is None:
        raise NotFound()
    discounts = await pricing_queries.basket_discounts(request.app[runtime.POOL], row["id"])
    return await respond(request, request.app[runtime.POOL], row, row["lines"], discounts)


async def claim_basket(request: web.Request) -> web.Response:
    """A guest basket becomes the customer's (and their current one). Their own is answered as it
    is; another customer's is a 404, one whose order is placed a 403."""
    customer = require_customer(request)
    basket_id = path_id(request)
    async with runtime.unit_of_work(request) as uow:
        await queries.lock_customer_baskets(uow.conn, customer)
        basket = _theirs(await queries.lock_basket(uow.conn, basket_id), customer)
        if basket is None:
            raise NotFound()
        if basket["customer_id"] is None:
            basket = await _claim(uow.conn, basket, customer)
        lines = await queries.basket_lines(uow.conn, basket_id)
        discounts = await pricing_queries.basket_discounts(uow.conn, basket_id)
        return await respond(request, uow.conn, basket, lines, discounts)


async def _claim(conn: asyncpg.Connection, basket: Row, customer: str) -> Row:
    """Only its owner changes: no `basket.changed` (its readers see lines and totals, not owners)."""
    if basket["order_id"] is not None:
        raise ApiError(403, domain.MSG_BASKET_USED)
    claimed = await queries.claim_basket(conn, basket["id"], basket["version"], customer)
    if claimed is None:
        # Only reachable if someone changed the row without its lock: refuse rather than guess.
        raise ApiError(409, "The basket changed meanwhile, please retry")
    return claimed


async def resolve_basket(request: web.Request) -> web.Response:
    """Merge a basket (a guest's, or an older one of the customer's) into the customer's current
    one: quantities of a variant added, every rule checked on the result, the merged basket left
    empty and marked merged. With no current basket, or with `merge: false`, the basket is claimed
    and becomes the current one instead."""
    customer = require_customer(request)
    body = await read_json(request, ResolveBasket)
    if not is_id(body.basket_id):
        raise ValidationFailed.one("basket_id", MSG_INVALID_BASKET)
    return await retry_on_conflict(lambda: _resolve(request, customer, body))


async def _resolve(request: web.Request, customer: str, body: ResolveBasket) -> web.Response:
    async with runtime.unit_of_work(request) as uow:
        conn = uow.conn
        await queries.lock_customer_baskets(conn, customer)
        current_id = await queries.current_basket_id(conn, customer)
        # Always in id order: a merge locking the same two baskets the other way round cannot deadlock.
        ids = sorted({body.basket_id, current_id} - {None})
        locked = {basket_id: await queries.lock_basket(conn, basket_id) for basket_id in ids}
        source = _theirs(locked[body.basket_id], customer)
        if source is None:
            raise ValidationFailed.one("basket_id", MSG_INVALID_BASKET)
        if source["order_id"] is not None:
            raise ApiError(403, domain.MSG_BASKET_USED)
        if current_id == source["id"]:
            lines = await queries.basket_lines(conn, source["id"])
            discounts = await pricing_queries.basket_discounts(conn, source["id"])
            return await respond(request, conn, source, lines, discounts)
        if current_id is None or not body.merge:
            claimed = await _claim(conn, source, customer)  # the newest of theirs: now the current one
            lines = await queries.basket_lines(conn, claimed["id"])
            discounts = await pricing_queries.basket_discounts(conn, claimed["id"])
            return await respond(request, conn, claimed, lines, discounts)
        current = locked[current_id]
        if current is None or current["order_id"] is not None:
            raise Conflict  # placed or deleted since it was found current: find it again
        return await _merge(request, uow, source, current)


async def _merge(request: web.Request, uow: UnitOfWork, source: Row, current: Row) -> web.Response:
    conn = uow.conn
    if await queries.checkout_in_flight(conn, source["id"]):
        # Its order is being paid for: its lines are that order's, not to be bought twice.
        raise ApiError(409, MSG_IN_FLIGHT)
    source_lines = await queries.basket_lines(conn, source["id"])
    held = {row["id"]: row["line_quantity"] for row in await queries.basket_lines(conn, current["id"])}
    items = [
        VariantQuantity(id=row["id"], quantity=row["line_quantity"], meta=row["line_meta"] or None)
        for row in source_lines
    ]
    checked = await _check_variants(conn, items, held)
    await _upsert_lines(conn, current["id"], checked)
    await queries.delete_all_lines(conn, source["id"])
    merged = await queries.mark_merged(conn, source["id"], source["version"], current["id"])
    if merged is None:
        raise ApiError(409, "The basket changed meanwhile, please retry")
    await announce(request, uow, merged, [], [])
    return await _finish(request, uow, current)


# ---------------------------------------------------------------------------------------------
# Saved baskets: copies of a basket, named, that later changes of the basket leave as they were.


async def save_basket(request: web.Request) -> web.Response:
    """A named copy of the basket (a guest's or the customer's own), the customer's; the copy."""
    customer = require_customer(request)
    basket_id = path_id(request)
    body = await read_json(request, SaveBasket)
    async with runtime.unit_of_work(request) as uow:
        await queries.lock_customer_baskets(uow.conn, customer)
        # Locked: the copy is the basket as it is at one moment, not half of a concurrent change.
        source = _theirs(await queries.lock_basket(uow.conn, basket_id), customer)
        if source is None:
            raise NotFound()
        if await queries.count_saved(uow.conn, customer) >= MAX_SAVED_BASKETS:
            raise ValidationFailed.one("name", f"At most {MAX_SAVED_BASKETS} baskets can be saved.")
        lines = [
            {"id": new_id(), "variant_id": row["id"], "quantity": row["line_quantity"], "meta": row["line_meta"]}
            for row in await queries.basket_lines(uow.conn, basket_id)
        ]
        copy = await queries.insert_basket_with_lines(
            uow.conn, new_id(), source["currency"], source["meta"], lines, customer_id=customer, saved_name=body.name
        )
        copied = await queries.basket_lines(uow.conn, copy["id"])
        await announce(request, uow, copy, copied, [])
        # A copy takes no part in a checkout: it is shown at its list prices, without discounts.
        return await respond(request, uow.conn, copy, copied, [])


async def list_saved(request: web.Request) -> web.Response:
    customer = require_customer(request)
    query = query_model(request, SavedBasketsQuery)
    pool = request.app[runtime.POOL]
    total = await queries.count_saved(pool, customer)
    rows = await queries.saved_baskets_page(pool, customer, query.per_page, (query.page - 1) * query.per_page)
    wanted = includes(request)
    data = [
        views.saved_basket_view(row, row["lines"], wanted, await currencies.shown_conversion(pool, request, row))
        for row in rows
    ]
    page = paginated(request, data, page=query.page, per_page=query.per_page, total=total)
    return model_response(views.SavedBasketCollection.model_validate(page))


async def rename_saved(request: web.Request) -> web.Response:
    customer = require_customer(request)
    basket_id = path_id(request)
    body = await read_json(request, SaveBasket)
    async with runtime.unit_of_work(request) as uow:
        renamed = await queries.rename_saved(uow.conn, basket_id, customer, body.name)
        if renamed is None:
            raise NotFound()
        lines = await queries.basket_lines(uow.conn, basket_id)
        conversion = await currencies.shown_conversion(uow.conn, request, renamed)
    return model_response(
        views.SavedBasketResponse(data=views.saved_basket_view(renamed, lines, includes(request), conversion))
    )


async def delete_saved(request: web.Request) -> web.Response:
    customer = require_customer(request)
    basket_id = path_id(request)
    async with runtime.unit_of_work(request) as uow:
        if not await queries.delete_saved(uow.conn, basket_id, customer):
            raise NotFound()
    return web.Response(status=204)
