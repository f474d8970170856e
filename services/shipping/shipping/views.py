"""Wire shapes of the shipping service: the response models (the OpenAPI document's) and the
functions that build responses and contract views from records."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic import BaseModel

from shared.contracts import ShippingMethodView, ShippingPriceView, ShippingZoneView
from shared.http import PaginationLinks, PaginationMeta
from shipping.domain import Candidate, shipping_tax

WEIGHT_UNIT = "g"  # min_weight / max_weight are integer grams


def dimension(value: int) -> str:
    """A dimension as upstream's decimal columns went out: a string with five places ("0.00000")."""
    return f"{Decimal(value):.5f}"


class RegionOut(BaseModel):
    id: str
    name: str
    prefixes: list[str]


class RegionList(BaseModel):
    data: list[RegionOut]


class ZoneOut(BaseModel):
    id: str
    name: str
    countries: list[str]
    regions: RegionList


class ZoneResponse(BaseModel):
    data: ZoneOut


class ZoneCollection(BaseModel):
    data: list[ZoneOut]


class MethodOut(BaseModel):
    id: str
    type: str
    name: str
    description: str | None
    code: str | None


class MethodResponse(BaseModel):
    data: MethodOut


class MethodCollection(BaseModel):
    data: list[MethodOut]


class MethodRef(BaseModel):
    data: MethodOut


class ZoneRefOut(BaseModel):
    id: str
    name: str


class ZoneRef(BaseModel):
    data: ZoneRefOut


class PriceOut(BaseModel):
    id: str
    rate: int
    tax: int
    fixed: bool
    currency: str
    min_basket: int
    min_weight: str
    max_weight: str | None
    weight_unit: str
    region_id: str | None
    method: MethodRef
    zone: ZoneRef


class PriceResponse(BaseModel):
    data: PriceOut


class PriceCollection(BaseModel):
    data: list[PriceOut]


class ShipmentOut(BaseModel):
    id: str
    order_id: str
    reference: str | None
    status: str
    shipping_method: str | None
    shipping_price_id: str | None
    address: dict[str, Any] | None
    tracking_no: str | None
    dispatched_at: datetime | None
    created_at: datetime


class ShipmentResponse(BaseModel):
    data: ShipmentOut


class ShipmentCollection(BaseModel):
    data: list[ShipmentOut]
    meta: PaginationMeta
    links: PaginationLinks


# ---------------------------------------------------------------------------------------------
# Records to the wire


def region_view(row: asyncpg.Record) -> RegionOut:
    return RegionOut(id=row["id"], name=row["name"], prefixes=list(row["prefixes"]))


def zone_view(row: asyncpg.Record, regions: list[asyncpg.Record]) -> ZoneOut:
    return ZoneOut(
        id=row["id"],
        name=row["name"],
        countries=list(row["countries"]),
        regions=RegionList(data=[region_view(r) for r in regions]),
    )


def method_view(row: asyncpg.Record) -> MethodOut:
    return MethodOut(id=row["id"], type=row["type"], name=row["name"], description=row["description"], code=row["code"])


def price_view(row: asyncpg.Record) -> PriceOut:
    """A price joined with its method and zone (queries.price_details)."""
    return PriceOut(
        id=row["id"],
        rate=row["rate"],
        tax=shipping_tax(row["rate"]),
        fixed=row["fixed"],
        currency=row["currency"],
        min_basket=row["min_basket"],
        min_weight=dimension(row["min_weight"]),
        max_weight=None if row["max_weight"] is None else dimension(row["max_weight"]),
        weight_unit=WEIGHT_UNIT,
        region_id=row["region_id"],
        method=MethodRef(
            data=MethodOut(
                id=row["method_id"],
                type=row["method_type"],
                name=row["method_name"],
                description=row["method_description"],
                code=row["method_code"],
            )
        ),
        zone=ZoneRef(data=ZoneRefOut(id=row["zone_id"], name=row["zone_name"])),
    )


def shipment_view(row: asyncpg.Record) -> ShipmentOut:
    return ShipmentOut(
        id=row["id"],
        order_id=row["order_id"],
        reference=row["reference"],
        status=row["status"],
        shipping_method=row["shipping_method"],
        shipping_price_id=row["shipping_price_id"],
        address=row["address"],
        tracking_no=row["tracking_no"],
        dispatched_at=row["dispatched_at"],
        created_at=row["created_at"],
    )


def price_contract(price: Candidate) -> ShippingPriceView:
    return ShippingPriceView(
        id=price.id,
        rate=price.rate,
        tax=price.tax,
        fixed=price.fixed,
        min_basket=price.min_basket,
        min_weight=price.min_weight,
        weight_unit=WEIGHT_UNIT,
        currency=price.currency,
        method=ShippingMethodView(
            id=price.method_id,
            type=price.method_type,
            name=price.method_name,
            description=price.method_description,
            code=price.method_code,
        ),
        zone=ShippingZoneView(id=price.zone_id, name=price.zone_name),
    )
