"""HTTP handlers of the shipping service (all admin; the operation table is `routes.py`)."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from shared import runtime
from shared.contracts import ShipmentDispatched
from shared.http import (
    ApiError,
    NotFound,
    ValidationFailed,
    model_response,
    new_id,
    paginated,
    path_id,
    query_model,
    read_json,
    require_admin,
)
from shipping import domain, queries
from shipping.models import (
    DispatchRequest,
    MethodCreate,
    MethodUpdate,
    PriceCreate,
    PriceUpdate,
    ShipmentsQuery,
    ZoneCreate,
    ZoneUpdate,
)
from shipping.views import (
    MethodCollection,
    MethodResponse,
    PriceCollection,
    PriceResponse,
    ShipmentCollection,
    ShipmentResponse,
    ZoneCollection,
    ZoneResponse,
    method_view,
    price_view,
    shipment_view,
    zone_view,
)

NAME_TAKEN = "The name has already been taken."
CODE_TAKEN = "The code has already been taken."


def _pool(request: web.Request) -> asyncpg.Pool:
    return request.app[runtime.POOL]


# ---------------------------------------------------------------------------------------------
# Zones


async def _zone_response(conn: asyncpg.Connection, zone: asyncpg.Record, status: int = 200) -> web.Response:
    regions = await queries.regions(conn, [zone["id"]])
    return model_response(ZoneResponse(data=zone_view(zone, regions)), status=status)


async def list_zones(request: web.Request) -> web.Response:
    require_admin(request)
    async with _pool(request).acquire() as conn:
        zones = await queries.zones(conn)
        regions = await queries.regions(conn, [z["id"] for z in zones])
    by_zone: dict[str, list[asyncpg.Record]] = {}
    for region in regions:
        by_zone.setdefault(region["zone_id"], []).append(region)
    return model_response(ZoneCollection(data=[zone_view(z, by_zone.get(z["id"], [])) for z in zones]))


async def create_zone(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, ZoneCreate)
    async with runtime.unit_of_work(request) as uow:
        conn = uow.conn
        try:
            zone = await queries.insert_zone(conn, new_id(), body.name, body.countries)
        except asyncpg.UniqueViolationError as exc:
            raise ValidationFailed.one("name", NAME_TAKEN) from exc
        for region in body.regions:
            await queries.insert_region(conn, new_id(), zone["id"], region.name, region.prefixes)
        return await _zone_response(conn, zone, status=201)


async def update_zone(request: web.Request) -> web.Response:
    require_admin(request)
    zone_id = path_id(request)
    body = await read_json(request, ZoneUpdate)
    changes = body.model_dump(include={"name", "countries"}, exclude_unset=True)
    if any(v is None for v in changes.values()):
        raise ValidationFailed({k: ["This field cannot be null."] for k, v in changes.items() if v is None})
    async with runtime.unit_of_work(request) as uow:
        conn = uow.conn
        if await queries.zone(conn, zone_id, lock=True) is None:
            raise NotFound()
        try:
            zone = await queries.update_zone(conn, zone_id, changes)
        except asyncpg.UniqueViolationError as exc:
            raise ValidationFailed.one("name", NAME_TAKEN) from exc
        assert zone is not None
        if body.regions is not None:
            await _replace_regions(conn, zone_id, body)
        return await _zone_response(conn, zone)


async def _replace_regions(conn: asyncpg.Connection, zone_id: str, body: ZoneUpdate) -> None:
    assert body.regions is not None
    existing = {r["id"] for r in await queries.regions(conn, [zone_id])}
    kept = [r.id for r in body.regions if r.id is not None]
    for index, region in enumerate(body.regions):
        if region.id is not None and region.id not in existing:
            raise ValidationFailed.one(f"regions.{index}.id", "The selected region id is invalid.")
    try:
        # Removed first, renamed next, added last: a name may move from one region to another.
        await queries.delete_regions_except(conn, zone_id, kept)
        for region in body.regions:
            if region.id is not None:
                await queries.update_region(conn, region.id, zone_id, f"#renaming {region.id}", region.prefixes)
        for region in body.regions:
            if region.id is not None:
                await queries.update_region(conn, region.id, zone_id, region.name, region.prefixes)
            else:
                await queries.insert_region(conn, new_id(), zone_id, region.name, region.prefixes)
    except asyncpg.ForeignKeyViolationError as exc:
        raise ValidationFailed.one("regions", "A region that a price uses cannot be removed.") from exc


# ---------------------------------------------------------------------------------------------
# Methods


async def list_methods(request: web.Request) -> web.Response:
    require_admin(request)
    rows = await queries.methods(_pool(request))
    return model_response(MethodCollection(data=[method_view(r) for r in rows]))


async def create_method(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, MethodCreate)
    try:
        async with runtime.unit_of_work(request) as uow:
            row = await queries.insert_method(uow.conn, new_id(), body.type, body.name, body.description, body.code)
    except asyncpg.UniqueViolationError as exc:
        raise ValidationFailed.one("code", CODE_TAKEN) from exc
    return model_response(MethodResponse(data=method_view(row)), status=201)


async def update_method(request: web.Request) -> web.Response:
    require_admin(request)
    method_id = path_id(request)
    body = await read_json(request, MethodUpdate)
    changes = body.model_dump(exclude_unset=True)
    nulls = [k for k in ("type", "name") if k in changes and changes[k] is None]
    if nulls:
        raise ValidationFailed({k: ["This field cannot be null."] for k in nulls})
    try:
        async with runtime.unit_of_work(request) as uow:
            row = await queries.update_method(uow.conn, method_id, changes)
    except asyncpg.UniqueViolationError as exc:
        raise ValidationFailed.one("code", CODE_TAKEN) from exc
    if row is None:
        raise NotFound()
    return model_response(MethodResponse(data=method_view(row)))


# ---------------------------------------------------------------------------------------------
# Prices


async def _check_price(conn: asyncpg.Connection, values: dict[str, Any]) -> None:
    """References and bounds of a price as it will be stored (a 422 before anything is written)."""
    errors: dict[str, list[str]] = {}
    if await queries.method(conn, values["method_id"]) is None:
        errors["method_id"] = ["The selected method id is invalid."]
    if await queries.zone(conn, values["zone_id"]) is None:
        errors["zone_id"] = ["The selected zone id is invalid."]
    elif values["region_id"] is not None and not await queries.region_in_zone(
        conn, values["region_id"], values["zone_id"]
    ):
        errors["region_id"] = ["The selected region id is not a region of this zone."]
    if values["max_weight"] is not None and values["max_weight"] < values["min_weight"]:
        errors["max_weight"] = ["The max weight must be at least the min weight."]
    if errors:
        raise ValidationFailed(errors)


async def _price_response(conn: asyncpg.Connection, price_id: str, status: int = 200) -> web.Response:
    [row] = await queries.price_details(conn, price_id)
    return model_response(PriceResponse(data=price_view(row)), status=status)


async def list_prices(request: web.Request) -> web.Response:
    require_admin(request)
    rows = await queries.price_details(_pool(request))
    return model_response(PriceCollection(data=[price_view(r) for r in rows]))


async def create_price(request: web.Request) -> web.Response:
    require_admin(request)
    body = await read_json(request, PriceCreate)
    values = {"id": new_id(), **body.model_dump()}
    async with runtime.unit_of_work(request) as uow:
        await _check_price(uow.conn, values)
        await queries.insert_price(uow.conn, values)
        return await _price_response(uow.conn, values["id"], status=201)


async def update_price(request: web.Request) -> web.Response:
    require_admin(request)
    price_id = path_id(request)
    body = await read_json(request, PriceUpdate)
    changes = body.model_dump(exclude_unset=True)
    nullable = {"region_id", "max_weight"}
    nulls = [k for k, v in changes.items() if v is None and k not in nullable]
    if nulls:
        raise ValidationFailed({k: ["This field cannot be null."] for k in nulls})
    async with runtime.unit_of_work(request) as uow:
        conn = uow.conn
        current = await queries.price(conn, price_id, lock=True)
        if current is None:
            raise NotFound()
        if "zone_id" in changes and changes["zone_id"] != current["zone_id"] and "region_id" not in changes:
            changes["region_id"] = None  # a region belongs to its zone: moving zones leaves it behind
        merged = {key: changes.get(key, current[key]) for key in PriceCreate.model_fields}
        await _check_price(conn, merged)
        await queries.update_price(conn, price_id, changes)
        return await _price_response(conn, price_id)


# ---------------------------------------------------------------------------------------------
# Shipments


async def list_shipments(request: web.Request) -> web.Response:
    require_admin(request)
    query = query_model(request, ShipmentsQuery)
    offset = (query.page - 1) * query.per_page
    async with _pool(request).acquire() as conn:
        total = await queries.count_shipments(conn, query.order_id, query.status)
        rows = await queries.shipments_page(conn, query.order_id, query.status, query.per_page, offset)
    data = [shipment_view(r) for r in rows]
    page = paginated(request, data, page=query.page, per_page=query.per_page, total=total)
    return model_response(ShipmentCollection.model_validate(page))


async def dispatch_shipment(request: web.Request) -> web.Response:
    require_admin(request)
    shipment_id = path_id(request)
    body = await read_json(request, DispatchRequest)
    async with runtime.unit_of_work(request) as uow:
        shipment = await queries.lock_shipment(uow.conn, shipment_id)
        if shipment is None:
            raise NotFound()
        refusal = domain.dispatch_refusal(shipment["status"])
        if refusal is not None:
            raise ApiError(409, refusal)
        dispatched = await queries.dispatch(uow.conn, shipment_id, body.tracking_no)
        uow.emit(
            ShipmentDispatched(
                shipment_id=dispatched["id"],
                order_id=dispatched["order_id"],
                tracking_no=dispatched["tracking_no"],
                dispatched_at=dispatched["dispatched_at"],
            )
        )
    return model_response(ShipmentResponse(data=shipment_view(dispatched)))
