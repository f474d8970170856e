"""Request bodies and query models at the customers service's HTTP edge (responses: `views.py`).

Passwords are bounded here and judged in `domain.password_problems`; they are never stripped or
otherwise changed: what the customer typed is what is hashed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from customers.domain import MAX_PASSWORD_CHARS
from shared.http import Meta

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)]
VatNo = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)]
PostalCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PASSWORD_CHARS)]


class _In(BaseModel):
    # NUL characters are refused for every body and query by shared.http before this runs.
    model_config = ConfigDict(extra="ignore")


class RegisterIn(_In):
    firstname: Name
    lastname: Name
    email: EmailStr = Field(description="Unique whatever its case")
    password: Password = Field(description="At least 8 characters, not a commonly used one")
    password_confirmation: Password | None = Field(default=None, description="When sent, the same as `password`")
    company_name: Text | None = None
    vat_no: VatNo | None = None
    contact_number: Phone | None = None
    alt_contact_number: Phone | None = None


class TokenIn(_In):
    """An OAuth2 token request (RFC 6749 4.3 and 6), as a form or as JSON. `client_id`,
    `client_secret` and `scope` are what GetCandy-era clients send for their Passport client:
    accepted and not used (a storefront is a public client: it can keep no secret)."""

    grant_type: Annotated[str, StringConstraints(max_length=40)] = Field(description="`password` or `refresh_token`")
    username: Annotated[str, StringConstraints(strip_whitespace=True, max_length=254)] | None = Field(
        default=None, description="The customer's email (`password` grant)"
    )
    password: Password | None = Field(default=None, description="`password` grant")
    refresh_token: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="`refresh_token` grant"
    )
    client_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    client_secret: Annotated[str, StringConstraints(max_length=200)] | None = None
    scope: Annotated[str, StringConstraints(max_length=200)] | None = None


class RevokeIn(_In):
    """RFC 7009: the refresh token whose session ends."""

    token: Annotated[str, StringConstraints(max_length=2000)]
    token_type_hint: Annotated[str, StringConstraints(max_length=40)] | None = None


class ChangePasswordIn(_In):
    current_password: Password
    password: Password = Field(description="At least 8 characters, not a commonly used one")
    password_confirmation: Password


class IncludeQuery(_In):
    include: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="`customer`, `addresses` (comma-separated)"
    )


class AddressIn(_In):
    """A new address of the signed-in customer's book. The country by `country_id` (the id
    `GET /countries` shows) as upstream, or by `country` (a name or an ISO 3166 code) as an
    order's address takes it."""

    salutation: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    firstname: Name
    lastname: Name
    company_name: Text | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    address: Name
    address_two: Text | None = None
    address_three: Text | None = None
    city: Name
    state: Name
    postal_code: PostalCode
    country_id: Id | None = None
    country: Text | None = None
    shipping: bool = False
    billing: bool = False
    default: bool = Field(default=False, description="The default for its kinds: another one loses it")
    delivery_instructions: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    last_used_at: datetime | None = None
    meta: Meta = Field(default_factory=dict)


class AddressUpdate(_In):
    """Only the fields sent change; the optional ones may be sent as null to clear them."""

    salutation: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    firstname: Name | None = None
    lastname: Name | None = None
    company_name: Text | None = None
    email: EmailStr | None = None
    phone: Phone | None = None
    address: Name | None = None
    address_two: Text | None = None
    address_three: Text | None = None
    city: Name | None = None
    state: Name | None = None
    postal_code: PostalCode | None = None
    country_id: Id | None = None
    country: Text | None = None
    shipping: bool | None = None
    billing: bool | None = None
    default: bool | None = None
    delivery_instructions: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    last_used_at: datetime | None = None
    meta: Meta | None = None
