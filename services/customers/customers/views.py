"""Wire shapes of the customers service: the response models (the OpenAPI document's) and the
functions that build them from records.

A user is GetCandy's `{id, email, name}` with the customer's details under `customer` when asked
for (`?include=customer`). Upstream kept users and customers apart (a company's customer could have
several users); here an account is both, so the user and its customer share one id.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from customers.domain import display_name
from shared.countries import COUNTRIES_BY_CODE
from shared.http import wire_timestamp


class CustomerOut(BaseModel):
    id: str
    firstname: str
    lastname: str
    company_name: str | None
    contact_number: str | None
    alt_contact_number: str | None
    vat_no: str | None


class CustomerRef(BaseModel):
    data: CustomerOut


class CountryOut(BaseModel):
    """The address's country as `GET /countries` (orders) shows it, less the shop's own flags."""

    id: str
    name: str
    iso_a_2: str
    iso_a_3: str
    iso_numeric: str


class CountryRef(BaseModel):
    data: CountryOut


class AddressOut(BaseModel):
    id: str
    salutation: str | None
    firstname: str
    lastname: str
    email: str | None
    phone: str | None
    company_name: str | None
    address: str
    address_two: str | None
    address_three: str | None
    city: str
    state: str
    postal_code: str
    billing: bool
    shipping: bool
    default: bool
    delivery_instructions: str | None
    last_used_at: str | None
    meta: dict[str, Any]
    country: CountryRef


class AddressResponse(BaseModel):
    data: AddressOut


class AddressCollection(BaseModel):
    data: list[AddressOut]


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    customer: CustomerRef | None = Field(default=None, description="With `?include=customer`")
    addresses: AddressCollection | None = Field(default=None, description="With `?include=addresses`")


class UserResponse(BaseModel):
    data: UserOut


class TokenResponse(BaseModel):
    """RFC 6749 5.1, as Laravel Passport answered it (not wrapped in `data`)."""

    token_type: Literal["Bearer"]
    expires_in: int = Field(description="Seconds the access token is good for")
    access_token: str
    refresh_token: str


class MessageResponse(BaseModel):
    message: str


# ---------------------------------------------------------------------------------------------
# Records to the wire


def customer_view(row: Mapping[str, Any]) -> CustomerOut:
    return CustomerOut(
        id=row["id"],
        firstname=row["firstname"],
        lastname=row["lastname"],
        company_name=row["company_name"],
        contact_number=row["contact_number"],
        alt_contact_number=row["alt_contact_number"],
        vat_no=row["vat_no"],
    )


def user_view(
    row: Mapping[str, Any], *, customer: bool = False, addresses: list[Mapping[str, Any]] | None = None
) -> UserOut:
    relations: dict[str, Any] = {}
    if customer:
        relations["customer"] = CustomerRef(data=customer_view(row))
    if addresses is not None:
        relations["addresses"] = AddressCollection(data=[address_view(a) for a in addresses])
    return UserOut(id=row["id"], email=row["email"], name=display_name(row["firstname"], row["lastname"]), **relations)


def country_view(alpha_2: str) -> CountryOut:
    country = COUNTRIES_BY_CODE[alpha_2]
    return CountryOut(
        id=country.id,
        name=country.name,
        iso_a_2=country.alpha_2,
        iso_a_3=country.alpha_3,
        iso_numeric=country.numeric,
    )


def address_view(row: Mapping[str, Any]) -> AddressOut:
    return AddressOut(
        id=row["id"],
        salutation=row["salutation"],
        firstname=row["firstname"],
        lastname=row["lastname"],
        email=row["email"],
        phone=row["phone"],
        company_name=row["company_name"],
        address=row["address"],
        address_two=row["address_two"],
        address_three=row["address_three"],
        city=row["city"],
        state=row["state"],
        postal_code=row["postal_code"],
        billing=row["billing"],
        shipping=row["shipping"],
        default=row["is_default"],
        delivery_instructions=row["delivery_instructions"],
        last_used_at=wire_timestamp(row["last_used_at"]),
        meta=row["meta"],
        country=CountryRef(data=country_view(row["country"])),
    )
