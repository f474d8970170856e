"""Request and response models at the edge of the orders service, and its OPERATIONS table.

Requests are validated with these models (`shared.http.read_json`); responses are built as
plain dicts in `views.py` and described here for the OpenAPI document. Amounts are integer minor
units, except the basket's own decimal amounts under `include=basket`.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from shared.http import PaginationLinks, PaginationMeta

# Upstream limits (names 20, address 40, zip 8) were too tight for real addresses.
NAME = 100
ZIP = 20
PHONE = 40
ID = 64


class _In(BaseModel):
    # NUL characters are refused for every body and query by shared.http before this runs.
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


# ---------------------------------------------------------------------------------------------
# Requests


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
    meta: dict[str, Any] | list[Any] | None = None
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


# ---------------------------------------------------------------------------------------------
# Responses


class AddressOut(BaseModel):
    firstname: str | None
    lastname: str | None
    company_name: str | None
    address: str | None
    address_two: str | None
    address_three: str | None
    city: str | None
    county: str | None
    state: str | None
    zip: str | None
    country: str | None = Field(description="The country's name, as upstream")
    phone: str | None
    email: str | None
    vat_no: str | None


class ShippingDetailsOut(AddressOut):
    method: str | None
    preference: str | None


class ContactOut(BaseModel):
    email: str | None
    phone: str | None


class WeightOut(BaseModel):
    value: int | float
    unit: str


class VariantSnapshotOut(BaseModel):
    id: str
    product_id: str | None
    sku: str
    name: str
    options: str | None
    requires_shipping: bool
    weight: WeightOut


class VariantRel(BaseModel):
    data: VariantSnapshotOut


class LineOut(BaseModel):
    id: str
    sku: str
    description: str
    option: str | None
    quantity: int
    unit_price: int
    unit_qty: int
    line_total: int
    tax_total: int
    tax_rate: int | float = Field(description="Percent, as upstream (20)")
    discount_total: int
    delivery_total: int
    is_shipping: bool
    is_manual: bool
    meta: dict[str, Any]
    variant: VariantRel | None = Field(default=None, description="With include=lines.variant; goods lines only")


class LinesRel(BaseModel):
    data: list[LineOut]


class ShippingRel(BaseModel):
    data: LineOut | None


class TransactionOut(BaseModel):
    id: str
    transaction_id: str
    merchant: str
    amount: int
    currency: str
    provider: str
    driver: str
    success: bool
    refund: bool
    status: str
    card_type: str | None
    last_four: str | None
    notes: str | None
    created_at: str


class TransactionsRel(BaseModel):
    data: list[TransactionOut]


class BasketOut(BaseModel):
    """The basket as of the order's last sync, in the basket's decimal wire amounts."""

    id: str
    sub_total: int | float
    tax_total: int | float
    discount_total: int | float
    total: int | float
    currency: str


class BasketRel(BaseModel):
    data: BasketOut | None


class OrderOut(BaseModel):
    id: str
    display_id: str
    reference: str | None
    invoice_reference: str | None
    customer_reference: str | None
    type: str | None
    status: str
    currency: str
    sub_total: int
    delivery_total: int
    discount_total: int
    tax_total: int
    order_total: int
    shipping_method: str | None
    shipping_preference: str | None
    tracking_no: str | None
    contact_details: ContactOut
    billing_details: AddressOut
    shipping_details: ShippingDetailsOut
    notes: str | None
    meta: dict[str, Any] | list[Any]
    placed_at: str | None
    dispatched_at: str | None
    created_at: str
    updated_at: str
    lines: LinesRel | None = None
    shipping: ShippingRel | None = None
    transactions: TransactionsRel | None = None
    basket: BasketRel | None = None


class OrderEnvelope(BaseModel):
    data: OrderOut


class OrderList(BaseModel):
    data: list[OrderOut]
    meta: PaginationMeta
    links: PaginationLinks


class ShippingMethodOut(BaseModel):
    id: str
    type: str
    name: str
    description: str | None
    code: str | None


class ShippingMethodRel(BaseModel):
    data: ShippingMethodOut


class ShippingZoneOut(BaseModel):
    id: str
    name: str


class ShippingZoneRel(BaseModel):
    data: ShippingZoneOut


class ShippingPriceOut(BaseModel):
    id: str = Field(description="The shipping price id, to send to PUT /orders/{id}/shipping/cost")
    rate: int
    tax: int
    fixed: bool
    min_basket: int
    min_weight: int
    weight_unit: str
    currency: str
    method: ShippingMethodRel
    zone: ShippingZoneRel


class ShippingPriceList(BaseModel):
    data: list[ShippingPriceOut]


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/orders"): {
        "request": CreateOrderIn,
        "response": OrderEnvelope,
        "status": 200,
        "errors": [403, 409, 422, 503],
    },
    ("GET", "/orders"): {
        "request": None,
        "query": ListOrdersQuery,
        "response": OrderList,
        "status": 200,
        "errors": [401, 403, 422],
    },
    ("GET", "/orders/{id}"): {"request": None, "response": OrderEnvelope, "status": 200, "errors": [404]},
    ("PUT", "/orders/{id}"): {
        "request": UpdateOrderIn,
        "response": OrderEnvelope,
        "status": 200,
        "errors": [401, 403, 404, 409, 422],
    },
    ("POST", "/orders/{id}/expire"): {
        "request": None,
        "response": None,
        "status": 204,
        "errors": [401, 403, 404, 409, 422],
    },
    ("PUT", "/orders/{id}/shipping/address"): {
        "request": AddressIn,
        "response": OrderEnvelope,
        "status": 200,
        "errors": [403, 404, 409, 422, 503],
    },
    ("PUT", "/orders/{id}/billing/address"): {
        "request": AddressIn,
        "response": OrderEnvelope,
        "status": 200,
        "errors": [403, 404, 409, 422],
    },
    ("PUT", "/orders/{id}/contact"): {
        "request": ContactIn,
        "response": OrderEnvelope,
        "status": 200,
        "errors": [403, 404, 409, 422],
    },
    ("GET", "/orders/{id}/shipping/methods"): {
        "request": None,
        "response": ShippingPriceList,
        "status": 200,
        "errors": [404, 422, 503],
    },
    ("PUT", "/orders/{id}/shipping/cost"): {
        "request": ShippingCostIn,
        "response": OrderEnvelope,
        "status": 200,
        "errors": [403, 404, 409, 422, 503],
    },
    ("POST", "/orders/process"): {
        "request": ProcessIn,
        "response": OrderEnvelope,
        "status": 200,
        "errors": [403, 409, 422, 503],
        "description": (
            "Runs the checkout saga and waits for its outcome: 200 with the placed order (lines, shipping, "
            "transactions); 403 `Payment has failed` (the order is `failed` and can be processed again with a "
            "new token); 422 `This order has already been processed`, a map of what the order lacks, or the "
            "stock errors; 409 while another attempt is in flight. Past the deadline: 202 with the order "
            "still `payment-processing` (same body shape); a later GET shows the outcome."
        ),
    },
}
