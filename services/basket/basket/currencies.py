"""Currencies: the admin's CRUD under `/currencies`, the public list, and the conversion a basket
is priced with.

Catalogue prices are kept in the base currency (`BASKET_BASE_CURRENCY`, rate 1). A basket has a
currency of its own, set on create (`currency` in the body, else GetCandy's `X-CANDY-CURRENCY`
header or `?currency=`, else the default currency) and changed with `PUT /baskets/{id}`. Any
response that shows prices (a basket, a product, a variant) shows them in the currency the
request names with that header or query, else in the basket's own (the catalogue's for a
product). The basket's snapshot, and so its order and charge, is always in the basket's own.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web

from basket import pricing, pricing_queries, queries, views
from basket.models import CurrenciesQuery, CurrencyCreate, CurrencyUpdate
from basket.settings import BasketSettings, settings_of
from shared import money, runtime
from shared.http import (
    ApiError,
    NotFound,
    ValidationFailed,
    model_response,
    new_id,
    paginated,
    partial_update,
    path_id,
    query_model,
    read_json,
    require_admin,
)

HEADER = "X-CANDY-CURRENCY"
CODE = re.compile(r"[A-Z]{3}")
MSG_INVALID = "The selected currency is invalid."
MSG_UNKNOWN_CODE = "The code must be an ISO 4217 currency code."
MSG_CODE_TAKEN = "The code has already been taken."
MSG_BASE_RATE = "The base currency's exchange rate is 1."
MSG_BASE_DISABLED = "The base currency cannot be disabled."
MSG_DEFAULT_DISABLED = "The default currency cannot be disabled: make another one the default first."
MSG_IN_USE = "This currency is used by baskets or discounts: disable it instead."
MSG_CHANGED = "The currency changed meanwhile: read it again"


# ---------------------------------------------------------------------------------------------
# Pricing in a currency


async def conversion(conn: queries.Conn, base: str, code: str, *, enabled_only: bool) -> pricing.Conversion | None:
    """The conversion from the base currency into `code`; None when there is no such currency
    (or it is disabled, with `enabled_only`). The base needs no lookup: its rate is 1."""
    if code == base:
        return pricing.Conversion.none(base)
    row = await pricing_queries.currency_by_code(conn, code)
    if row is None or (enabled_only and not row["enabled"]):
        return None
    return pricing.Conversion(base, code, row["exchange_rate"])


def requested_code(request: web.Request) -> str | None:
    """The currency the request names: GetCandy's header, else `?currency=` (upper-cased)."""
    code = request.headers.get(HEADER) or request.query.get("currency")
    return code.strip().upper() if code and code.strip() else None


async def enabled_conversion(conn: queries.Conn, request: web.Request, code: str) -> pricing.Conversion:
    """The conversion into an enabled currency the caller named; 422 for any other (a code that
    cannot be one is refused before the database sees it)."""
    code = code.strip().upper()
    found = None
    if CODE.fullmatch(code):
        found = await conversion(conn, settings_of(request).base_currency, code, enabled_only=True)
    if found is None:
        raise ValidationFailed.one("currency", MSG_INVALID)
    return found


async def basket_conversion(conn: queries.Conn, base: str, basket: Any) -> pricing.Conversion:
    """What a basket is priced in for its own use (its events, snapshot, coupon checks): its
    currency, even one disabled since it was chosen."""
    found = await conversion(conn, base, basket["currency"], enabled_only=False)
    if found is None:
        # Deleting a currency in use is refused; only a hand-edited table gets here.
        raise LookupError(f"no exchange rate for the basket's currency {basket['currency']}")
    return found


async def shown_conversion(conn: queries.Conn, request: web.Request, basket: Any) -> pricing.Conversion:
    """What a response shows the basket in: the currency the request names, else the basket's."""
    code = requested_code(request)
    if code is not None and code != basket["currency"]:
        return await enabled_conversion(conn, request, code)
    return await basket_conversion(conn, settings_of(request).base_currency, basket)


async def catalogue_conversion(conn: queries.Conn, request: web.Request) -> pricing.Conversion | None:
    """What a product or variant response shows prices in: the currency the request names, else
    the catalogue's own (None)."""
    code = requested_code(request)
    return None if code is None else await enabled_conversion(conn, request, code)


async def new_basket_currency(conn: queries.Conn, request: web.Request, given: str | None) -> str:
    """The currency of a new basket: the body's, else the request's header or query, else the
    default currency (else the base)."""
    code = given if given is not None else requested_code(request)
    if code is not None:
        return (await enabled_conversion(conn, request, code)).currency
    default = await pricing_queries.default_currency(conn)
    return default["code"] if default is not None else settings_of(request).base_currency


# ---------------------------------------------------------------------------------------------
# Public list and admin


async def list_currencies(request: web.Request) -> web.Response:
    """Every currency with its `enabled` flag, as upstream listed them: the default first, then by code."""
    query = query_model(request, CurrenciesQuery)
    offset = (query.page - 1) * query.per_page
    total, rows = await pricing_queries.currencies_page(request.app[runtime.POOL], query.per_page, offset)
    data = [views.currency_view(row) for row in rows]
    return model_response(
        views.CurrencyCollection.model_validate(
            paginated(request, data, page=query.page, per_page=query.per_page, total=total)
        )
    )


async def get_currency(request: web.Request) -> web.Response:
    """A currency by its id, or by its code (`/currencies/EUR`: upstream's show took the code)."""
    value = request.match_info["id"]
    pool = request.app[runtime.POOL]
    if CODE.fullmatch(value.upper()):
        row = await pricing_queries.currency_by_code(pool, value.upper())
    else:
        row = await pricing_queries.currency(pool, path_id(request))
    if row is None:
        raise NotFound()
    return model_response(views.CurrencyResponse(data=views.currency_view(row)))


async def create_currency(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, CurrencyCreate)
    if not money.is_currency(body.code):
        raise ValidationFailed.one("code", MSG_UNKNOWN_CODE)
    values = _stored(body.model_dump(exclude={"code"}))
    values["name"] = values["name"] or money.currency_name(body.code)
    values["format"] = values["format"] or f"{money.currency_symbol(body.code)}{{price}}"
    _check(request, body.code, values)
    async with runtime.unit_of_work(request) as uow:
        currency_id = new_id()
        if values["is_default"]:
            await pricing_queries.clear_default_currency(uow.conn, currency_id)
        try:
            async with uow.conn.transaction():
                row = await pricing_queries.insert_currency(uow.conn, currency_id, body.code, values)
        except asyncpg.UniqueViolationError as exc:
            raise ValidationFailed.one("code", MSG_CODE_TAKEN) from exc
    return model_response(views.CurrencyResponse(data=views.currency_view(row)))


async def update_currency(request: web.Request) -> web.Response:
    """The fields given change, the others stay. A new rate applies to every basket priced from
    then on (an order keeps the rate of its basket's last snapshot). Making a currency the
    default takes that from the one that was."""
    require_admin(request)
    currency_id = path_id(request)
    body = await read_json(request, CurrencyUpdate)
    given, expected = partial_update(body)
    async with runtime.unit_of_work(request) as uow:
        current = await pricing_queries.lock_currency(uow.conn, currency_id)
        if current is None:
            raise NotFound()
        if expected is not None and expected != current["version"]:
            raise ApiError(409, MSG_CHANGED)
        values = {name: current[name] for name in pricing_queries.CURRENCY_SETTABLE} | _stored(given)
        _check(request, current["code"], values)
        if values["is_default"] and not current["is_default"]:
            await pricing_queries.clear_default_currency(uow.conn, currency_id)
        row = await pricing_queries.update_currency(uow.conn, currency_id, current["version"], values)
        if row is None:
            # Only reachable if someone changed the row without its lock: refuse rather than guess.
            raise ApiError(409, MSG_CHANGED)
    return model_response(views.CurrencyResponse(data=views.currency_view(row)))


async def delete_currency(request: web.Request) -> web.Response:
    """Only a currency no basket or discount uses, and never the base or the default (422)."""
    require_admin(request)
    currency_id = path_id(request)
    async with runtime.unit_of_work(request) as uow:
        current = await pricing_queries.lock_currency(uow.conn, currency_id)
        if current is None:
            raise NotFound()
        if current["code"] == settings_of(request).base_currency:
            raise ValidationFailed.one("code", MSG_BASE_DISABLED)
        if current["is_default"]:
            raise ValidationFailed.one("default", MSG_DEFAULT_DISABLED)
        if await pricing_queries.currency_in_use(uow.conn, current["code"]):
            raise ValidationFailed.one("code", MSG_IN_USE)
        if not await pricing_queries.delete_currency(uow.conn, currency_id, current["version"]):
            raise ApiError(409, MSG_CHANGED)
    return web.Response(status=204)


def _stored(fields: dict[str, Any]) -> dict[str, Any]:
    """Request fields as the columns they set (`default` is the column `is_default`)."""
    return {("is_default" if name == "default" else name): value for name, value in fields.items()}


def _check(request: web.Request, code: str, values: dict[str, Any]) -> None:
    """The rules of a whole currency: the base keeps rate 1 and stays enabled; the default is enabled."""
    errors: dict[str, list[str]] = {}
    if code == settings_of(request).base_currency:
        if values["exchange_rate"] != 1:
            errors["exchange_rate"] = [MSG_BASE_RATE]
        if not values["enabled"]:
            errors["enabled"] = [MSG_BASE_DISABLED]
    if values["is_default"] and not values["enabled"]:
        errors["enabled"] = [MSG_DEFAULT_DISABLED]
    if errors:
        raise ValidationFailed(errors)


# ---------------------------------------------------------------------------------------------
# At start-up


def base_currency_row(settings: BasketSettings):
    """A resource (`runtime.create_service_app`): the base currency's row exists before the first
    request, at rate 1 (and the default when there is none), so that a fresh install made by the
    migrations alone sells in it."""

    async def ensure(app: web.Application) -> AsyncIterator[None]:
        code = settings.base_currency
        await pricing_queries.insert_base_currency(
            app[runtime.POOL], new_id(), code, money.currency_name(code), f"{money.currency_symbol(code)}{{price}}"
        )
        yield

    return ensure
