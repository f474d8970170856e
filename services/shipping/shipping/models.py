"""Pydantic models at the shipping service's HTTP edge, the views, and the OpenAPI operations."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator

from shared.contracts import ShippingMethodView, ShippingPriceView, ShippingZoneView
from shared.http import PaginationLinks, PaginationMeta
from shipping.domain import ANY_POSTCODE, Candidate, normalise_prefix, shipping_tax

WEIGHT_UNIT = "g"  # min_weight / max_weight are integer grams


Id = Annotated[str, StringConstraints(max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Country = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{2}$"), AfterValidator(str.upper)]
Currency = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{3}$"), AfterValidator(str.upper)]
Money = Annotated[int, Field(strict=True, ge=0, le=10**12)]
Grams = Annotated[int, Field(strict=True, ge=0, le=10**9)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]
MethodType = Literal["standard", "collection", "regional"]


_PREFIX = re.compile(r"[A-Z0-9][A-Z0-9 ]{0,9}")


def _prefix(value: str) -> str:
    prefix = normalise_prefix(value)
    if prefix != ANY_POSTCODE and not _PREFIX.fullmatch(prefix):
        raise ValueError("A postcode prefix is 1 to 10 letters, digits and spaces, or * for the rest of the zone")
    return prefix


Prefix = Annotated[str, AfterValidator(_prefix)]


def _unique_countries(values: list[str] | None) -> list[str] | None:
    return None if values is None else sorted(set(values))


class RegionIn(BaseModel):
    id: Id | None = None
    name: Name
    prefixes: Annotated[list[Prefix], Field(min_length=1, max_length=500)]

    @field_validator("prefixes")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


def _unique_region_names(regions: list[RegionIn] | None) -> list[RegionIn] | None:
    if regions is not None and len({r.name for r in regions}) != len(regions):
        raise ValueError("Region names must be unique in a zone")
    return regions


class ZoneCreate(BaseModel):
    name: Name
    countries: Annotated[list[Country], Field(max_length=300)] = []
    regions: Annotated[list[RegionIn], Field(max_length=100)] = []

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str] | None) -> list[str] | None:
        return _unique_countries(value)

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[RegionIn] | None) -> list[RegionIn] | None:
        return _unique_region_names(value)


class ZoneUpdate(BaseModel):
    """Only the fields sent change; `regions`, when sent, is the zone's full list (by `id` for
    the ones kept; a region a price uses cannot be removed)."""

    name: Name | None = None
    countries: Annotated[list[Country], Field(max_length=300)] | None = None
    regions: Annotated[list[RegionIn], Field(max_length=100)] | None = None

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str] | None) -> list[str] | None:
        return _unique_countries(value)

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[RegionIn] | None) -> list[RegionIn] | None:
        return _unique_region_names(value)


class MethodCreate(BaseModel):
    type: MethodType
    name: Name
    description: Description | None = None
    code: Code | None = None


class MethodUpdate(BaseModel):
    type: MethodType | None = None
    name: Name | None = None
    description: Description | None = None
    code: Code | None = None


class PriceCreate(BaseModel):
    method_id: Id
    zone_id: Id
    region_id: Id | None = None
    rate: Money
    currency: Currency = "GBP"
    min_basket: Money = 0
    min_weight: Grams = 0
    max_weight: Grams | None = None
    fixed: Annotated[bool, Field(strict=True)] = True


class PriceUpdate(BaseModel):
    """Only the fields sent change (`region_id` and `max_weight` may be sent as null to clear)."""

    method_id: Id | None = None
    zone_id: Id | None = None
    region_id: Id | None = None
    rate: Money | None = None
    currency: Currency | None = None
    min_basket: Money | None = None
    min_weight: Grams | None = None
    max_weight: Grams | None = None
    fixed: Annotated[bool, Field(strict=True)] | None = None


class ShipmentsQuery(BaseModel):
    order_id: Id | None = None
    status: Literal["open", "dispatched"] | None = None
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=200)


class DispatchRequest(BaseModel):
    tracking_no: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None


# ---------------------------------------------------------------------------------------------
# Responses


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
    min_weight: int
    max_weight: int | None
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
# Views: records -> wire dicts and contract models


def region_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "prefixes": list(row["prefixes"])}


def zone_view(row: asyncpg.Record, regions: list[asyncpg.Record]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "countries": list(row["countries"]),
        "regions": {"data": [region_view(r) for r in regions]},
    }


def method_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": row["type"],
        "name": row["name"],
        "description": row["description"],
        "code": row["code"],
    }


def price_view(row: asyncpg.Record) -> dict[str, Any]:
    """A price joined with its method and zone (queries.price_details)."""
    return {
        "id": row["id"],
        "rate": row["rate"],
        "tax": shipping_tax(row["rate"]),
        "fixed": row["fixed"],
        "currency": row["currency"],
        "min_basket": row["min_basket"],
        "min_weight": row["min_weight"],
        "max_weight": row["max_weight"],
        "weight_unit": WEIGHT_UNIT,
        "region_id": row["region_id"],
        "method": {
            "data": {
                "id": row["method_id"],
                "type": row["method_type"],
                "name": row["method_name"],
                "description": row["method_description"],
                "code": row["method_code"],
            }
        },
        "zone": {"data": {"id": row["zone_id"], "name": row["zone_name"]}},
    }


def shipment_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "order_id": row["order_id"],
        "reference": row["reference"],
        "status": row["status"],
        "shipping_method": row["shipping_method"],
        "shipping_price_id": row["shipping_price_id"],
        "address": row["address"],
        "tracking_no": row["tracking_no"],
        "dispatched_at": row["dispatched_at"],
        "created_at": row["created_at"],
    }


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


# ---------------------------------------------------------------------------------------------
# OpenAPI: (method, path as in gateway/routes.py) -> models

_ADMIN_ERRORS = [401, 403]

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/shipping/zones"): {"request": None, "response": ZoneCollection, "status": 200, "errors": _ADMIN_ERRORS},
    ("POST", "/shipping/zones"): {
        "request": ZoneCreate,
        "response": ZoneResponse,
        "status": 201,
        "errors": [*_ADMIN_ERRORS, 422],
    },
    ("PUT", "/shipping/zones/{id}"): {
        "request": ZoneUpdate,
        "response": ZoneResponse,
        "status": 200,
        "errors": [*_ADMIN_ERRORS, 404, 422],
    },
    ("GET", "/shipping/methods"): {
        "request": None,
        "response": MethodCollection,
        "status": 200,
        "errors": _ADMIN_ERRORS,
    },
    ("POST", "/shipping/methods"): {
        "request": MethodCreate,
        "response": MethodResponse,
        "status": 201,
        "errors": [*_ADMIN_ERRORS, 422],
    },
    ("PUT", "/shipping/methods/{id}"): {
        "request": MethodUpdate,
        "response": MethodResponse,
        "status": 200,
        "errors": [*_ADMIN_ERRORS, 404, 422],
    },
    ("GET", "/shipping/prices"): {"request": None, "response": PriceCollection, "status": 200, "errors": _ADMIN_ERRORS},
    ("POST", "/shipping/prices"): {
        "request": PriceCreate,
        "response": PriceResponse,
        "status": 201,
        "errors": [*_ADMIN_ERRORS, 422],
    },
    ("PUT", "/shipping/prices/{id}"): {
        "request": PriceUpdate,
        "response": PriceResponse,
        "status": 200,
        "errors": [*_ADMIN_ERRORS, 404, 422],
    },
    ("GET", "/shipments"): {
        "request": None,
        "query": ShipmentsQuery,
        "response": ShipmentCollection,
        "status": 200,
        "errors": [*_ADMIN_ERRORS, 422],
    },
    ("POST", "/shipments/{id}/dispatch"): {
        "request": DispatchRequest,
        "response": ShipmentResponse,
        "status": 200,
        "errors": [*_ADMIN_ERRORS, 404, 409, 422],
    },
}
