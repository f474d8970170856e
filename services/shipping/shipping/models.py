"""Request bodies and query models at the shipping service's HTTP edge (responses: `views.py`)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, field_validator

from shared import money
from shipping.domain import ANY_POSTCODE, normalise_prefix

Id = Annotated[str, StringConstraints(max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Country = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{2}$"), AfterValidator(str.upper)]


def _iso_currency(code: str) -> str:
    if not money.is_currency(code):
        raise ValueError("The currency must be an ISO 4217 currency code.")
    return code


Currency = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{3}$"),
    AfterValidator(str.upper),
    AfterValidator(_iso_currency),
]
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
    status: Literal["held", "open", "dispatched"] | None = None
    page: int = Field(1, ge=1, le=100_000)
    per_page: int = Field(50, ge=1, le=200)


class DispatchRequest(BaseModel):
    tracking_no: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
