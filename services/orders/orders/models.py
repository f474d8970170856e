"""The request bodies and query models of the orders service, validated at the edge
(`shared.http.read_json`, `shared.http.query_model`). Responses are in `views.py`."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, RootModel

from shared.http import Meta

# Upstream limits (names 20, address 40, zip 8) were too tight for real addresses.
NAME = 100
ZIP = 20
PHONE = 40
ID = 64


class _In(BaseModel):
    # NUL characters are refused for every body and query by shared.http before this runs.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class CreateOrderIn(_In):
    basket_id: str = Field(min_length=1, max_length=ID)
    type: str | None = Field(default=None, max_length=40)
    include: str | None = Field(default=None, max_length=200)


class AddressIn(_In):
    firstname: str = Field(min_length=1, max_length=NAME)
    lastname: str = Field(min_length=1, max_length=NAME)
    company_name: str | None = Field(default=None, max_length=NAME)
    address: str = Field(min_length=1, max_length=NAME)
    address_two: str | None = Field(default=None, max_length=NAME)
    address_three: str | None = Field(default=None, max_length=NAME)
    city: str = Field(min_length=1, max_length=NAME)
    county: str | None = Field(default=None, max_length=NAME, description="County, or `state`: one is required")
    state: str | None = Field(default=None, max_length=NAME)
    zip: str = Field(min_length=1, max_length=ZIP)
    country: str = Field(
        min_length=1, max_length=NAME, description='A country name as upstream ("United Kingdom") or ISO alpha-2'
    )
    phone: str | None = Field(default=None, max_length=PHONE)
    email: EmailStr | None = None
    vat_no: str | None = Field(default=None, max_length=40)


class AddressByIdIn(_In):
    """An address of the signed-in customer's book (customers' `GET /user/addresses`), by its id."""

    # The other keys are kept to be refused: an address by id and by fields at once is a 422.
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)
    address_id: str = Field(min_length=1, max_length=ID)


class AddressBody(RootModel[AddressIn | AddressByIdIn]):
    """An order's address: its fields, or the id of one of the signed-in customer's addresses."""


class ContactIn(_In):
    email: EmailStr
    phone: str | None = Field(default=None, max_length=PHONE)


class ShippingCostIn(_In):
    price_id: str | None = Field(default=None, max_length=ID)
    preference: str | None = Field(default=None, max_length=NAME)


class UpdateOrderIn(_In):
    status: str | None = Field(default=None, max_length=40)
    tracking_no: str | None = Field(default=None, min_length=1, max_length=NAME)
    send_emails: bool | None = None


class ProcessIn(_In):
    order_id: str = Field(min_length=1, max_length=ID)
    payment_token: str | None = Field(default=None, max_length=4096)
    payment_type_id: str | None = Field(default=None, max_length=ID)
    payment_type: str | None = Field(default=None, max_length=ID)
    notes: str | None = Field(default=None, max_length=2000)
    customer_reference: str | None = Field(default=None, max_length=NAME)
    company_name: str | None = Field(default=None, max_length=NAME)
    meta: Meta | None = None
    data: dict[str, Any] | None = None


class ListOrdersQuery(_In):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    page: int = Field(default=1, ge=1, le=100_000)
    per_page: int = Field(default=25, ge=1, le=100)
    status: str | None = Field(default=None, max_length=400, description="One status or a comma-separated list")
    date_from: date | None = Field(default=None, alias="from", description="Placed (or created) on or after")
    date_to: date | None = Field(default=None, alias="to", description="Placed (or created) on or before")
    placed: bool = Field(default=True, description="Only placed orders (ignored when `status` is given)")
    include: str | None = None


class CountriesQuery(_In):
    """Upstream's: 50 a page unless `paginate=false`; enabled countries unless `show_disabled`."""

    page: int = Field(default=1, ge=1, le=100_000)
    per_page: int = Field(default=50, ge=1, le=200)
    paginate: bool = True
    show_disabled: bool = False
    only_preferred: bool = False


class CountryIn(_In):
    enabled: bool | None = Field(default=None, description="Addresses may name it (null: unchanged)")
    preferred: bool | None = Field(default=None, description="Listed with `only_preferred` (null: unchanged)")
