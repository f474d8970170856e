"""Orders, lines, transactions and shipping prices as the GetCandy wire shows them: the response
models (the OpenAPI document is generated from them, see `routes.py`) and the functions that
build the responses. Amounts are integer minor units, except the basket's own decimal amounts
under `include=basket`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, Field

from orders import attempt_queries, domain, queries
from shared import http, money, runtime
from shared.contracts import ShippingPriceView
from shared.countries import Country
from shared.http import PaginationLinks, PaginationMeta, TransactionOut, wire_timestamp

# ---------------------------------------------------------------------------------------------
# Response models


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


class OrderDiscountOut(BaseModel):
    """A discount the order uses, as its basket gave it."""

    id: str
    name: str
    coupon: str | None
    amount: int = Field(description="Off the goods, in minor units (the lines' discount_total add up to it)")
    free_shipping: bool = Field(description="The shipping line is waived (its discount_total is its rate)")


class DiscountsRel(BaseModel):
    data: list[OrderDiscountOut]


class OrderOut(BaseModel):
    id: str
    display_id: str
    reference: str | None
    invoice_reference: str | None
    customer_reference: str | None
    customer_name: str | None = Field(description="The billing first and last name, as upstream")
    vat_no: str | None = Field(description="The billing VAT number, as upstream")
    type: str | None
    status: str
    currency: str
    conversion: str = Field(
        description="The exchange rate the order's prices were converted at from the catalogue's base currency "
        "(GBP by default): units of `currency` per unit of the base, a decimal string without trailing zeros "
        '("1.165" for euros; "1" for an order in the base currency), as upstream\'s `conversion`. '
        "Kept as the basket gave it at the order's last sync; the amounts are in `currency` already.",
        pattern=r"^[0-9]+(\.[0-9]*[1-9])?$",
        examples=["1", "1.165"],
    )
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
    meta: dict[str, Any] | list[Any] = Field(description="`[]` when empty, as upstream (PHP's empty array)")
    placed_at: str | None
    dispatched_at: str | None
    created_at: str
    updated_at: str
    lines: LinesRel | None = None
    shipping: ShippingRel | None = None
    transactions: TransactionsRel | None = None
    basket: BasketRel | None = None
    discounts: DiscountsRel | None = Field(default=None, description="With include=discounts")


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


# Upstream's dimension minimums were decimal columns, sent as strings with five places.
Dimension = Annotated[str, Field(pattern=r"^\d+\.\d{5}$", examples=["0.00000"])]


def dimension(value: int) -> str:
    return f"{Decimal(value):.5f}"


class ShippingPriceOut(BaseModel):
    id: str = Field(description="The shipping price id, to send to PUT /orders/{id}/shipping/cost")
    rate: int
    tax: int
    fixed: bool
    min_basket: int
    min_weight: Dimension = Field(description="In `weight_unit`")
    weight_unit: str
    # No rule looks at the other dimensions: their minimums are zero, upstream's default.
    min_height: Dimension
    height_unit: str
    min_width: Dimension
    width_unit: str
    min_depth: Dimension
    depth_unit: str
    min_volume: Dimension
    volume_unit: str
    currency: str
    method: ShippingMethodRel
    zone: ShippingZoneRel


class ShippingPriceList(BaseModel):
    data: list[ShippingPriceOut]


class OrderTypeOut(BaseModel):
    label: str


class OrderTypeList(BaseModel):
    data: list[OrderTypeOut]


class CountryOut(BaseModel):
    id: str
    name: str
    region: str | None = Field(description="Not known (ISO 3166 has no regions): null")
    iso_a_2: str
    iso_a_3: str
    iso_numeric: str
    preferred: bool
    enabled: bool


class CountryResponse(BaseModel):
    data: CountryOut


class CountryCollection(BaseModel):
    """Paginated as upstream (`paginate=false`: every country, without `meta` and `links`)."""

    data: list[CountryOut]
    meta: PaginationMeta | None = None
    links: PaginationLinks | None = None


# ---------------------------------------------------------------------------------------------
# Building responses: every body is one of the models above, serialised with only the fields
# set (a relation not included is absent, not null)


ORDER_INCLUDES = frozenset({"lines", "lines.variant", "shipping", "transactions", "basket", "discounts"})


def _grams_as_kg(grams: int) -> int | float:
    kg = Decimal(grams).scaleb(-3)
    return int(kg) if kg == kg.to_integral_value() else float(kg)


def line_out(row: Mapping[str, Any], with_variant: bool = False) -> LineOut:
    line = LineOut(
        id=row["id"],
        sku=row["sku"],
        description=row["description"],
        option=row["option"],
        quantity=row["quantity"],
        unit_price=row["unit_price"],
        unit_qty=row["unit_qty"],
        line_total=row["line_total"],
        tax_total=row["tax_total"],
        tax_rate=money.rate_percent(row["tax_rate"]),
        discount_total=row["discount_total"],
        delivery_total=row["delivery_total"],
        is_shipping=row["is_shipping"],
        is_manual=row["is_manual"],
        meta=row["meta"] or {},
    )
    if with_variant and row["variant_id"]:
        # The variant as it was when the basket was snapshot: orders never reads basket's data.
        line.variant = VariantRel(
            data=VariantSnapshotOut(
                id=row["variant_id"],
                product_id=row["product_id"],
                sku=row["sku"],
                name=row["description"],
                options=row["option"],
                requires_shipping=row["requires_shipping"],
                weight=WeightOut(value=_grams_as_kg(row["weight_grams"]), unit="kg"),
            )
        )
    return line


def basket_out(order: Mapping[str, Any]) -> BasketOut | None:
    totals = order["basket_totals"]
    if not totals:
        return None
    currency = totals.get("currency", order["currency"])
    return BasketOut(
        id=order["basket_id"],
        sub_total=money.to_major_number(totals["sub_total"], currency),
        tax_total=money.to_major_number(totals["tax_total"], currency),
        discount_total=money.to_major_number(totals["discount_total"], currency),
        total=money.to_major_number(totals["total"], currency),
        currency=currency,
    )


def order_out(
    order: Mapping[str, Any],
    includes: Iterable[str] = (),
    lines: Sequence[Mapping[str, Any]] | None = None,
    transactions: Sequence[Mapping[str, Any]] | None = None,
) -> OrderOut:
    """The order, with the relations in `includes` that were read (`lines`, `transactions`)."""
    wanted = set(includes)
    contact = order["contact_details"] or {}
    billing = domain.address_view(order["billing_details"])
    name = " ".join(part for part in (billing["firstname"], billing["lastname"]) if part)
    out = OrderOut(
        id=order["id"],
        display_id=order["display_id"],
        reference=order["reference"],
        invoice_reference=order["invoice_reference"],
        customer_reference=order["customer_reference"],
        customer_name=name or None,
        vat_no=billing["vat_no"],
        type=order["type"],
        status=order["status"],
        currency=order["currency"],
        conversion=money.rate_text(order["conversion"]),
        sub_total=order["sub_total"],
        delivery_total=order["delivery_total"],
        discount_total=order["discount_total"],
        tax_total=order["tax_total"],
        order_total=order["order_total"],
        shipping_method=order["shipping_method"],
        shipping_preference=order["shipping_preference"],
        tracking_no=order["tracking_no"],
        contact_details=ContactOut(email=contact.get("email"), phone=contact.get("phone")),
        billing_details=AddressOut(**billing),
        shipping_details=ShippingDetailsOut(
            **domain.address_view(order["shipping_details"]),
            method=order["shipping_method"],
            preference=order["shipping_preference"],
        ),
        notes=order["notes"],
        meta=order["meta"] or [],
        placed_at=wire_timestamp(order["placed_at"]),
        dispatched_at=wire_timestamp(order["dispatched_at"]),
        created_at=wire_timestamp(order["created_at"]),
        updated_at=wire_timestamp(order["updated_at"]),
    )
    if lines is not None:
        if "lines" in wanted:
            out.lines = LinesRel(data=[line_out(line, "lines.variant" in wanted) for line in lines])
        if "shipping" in wanted:
            ship = next((line for line in lines if line["is_shipping"]), None)
            out.shipping = ShippingRel(data=line_out(ship) if ship is not None else None)
    if transactions is not None and "transactions" in wanted:
        out.transactions = TransactionsRel(data=[TransactionOut.of(tx) for tx in transactions])
    if "basket" in wanted:
        out.basket = BasketRel(data=basket_out(order))
    if "discounts" in wanted:
        out.discounts = DiscountsRel(data=[OrderDiscountOut.model_validate(d) for d in order["discounts"]])
    return out


async def load_order_outs(
    conn: queries.Conn, orders: Sequence[asyncpg.Record], includes: Iterable[str]
) -> list[OrderOut]:
    """Orders with the relations asked for: one query per relation, whatever the number of orders."""
    wanted = set(includes) & ORDER_INCLUDES
    ids = [order["id"] for order in orders]
    lines: dict[str, list[asyncpg.Record]] | None = None
    if ids and wanted & {"lines", "shipping"}:
        lines = {order_id: [] for order_id in ids}
        for line in await queries.get_lines_for(conn, ids):
            lines[line["order_id"]].append(line)
    transactions: dict[str, list[asyncpg.Record]] | None = None
    if ids and "transactions" in wanted:
        transactions = {order_id: [] for order_id in ids}
        for tx in await attempt_queries.get_transactions_for(conn, ids):
            transactions[tx["order_id"]].append(tx)
    return [
        order_out(
            order,
            wanted,
            lines[order["id"]] if lines is not None else None,
            transactions[order["id"]] if transactions is not None else None,
        )
        for order in orders
    ]


async def respond(
    request: web.Request, order: asyncpg.Record, status: int = 200, extra: Iterable[str] = ()
) -> web.Response:
    """The order as the response, with the relations the request includes (and `extra`)."""
    [out] = await load_order_outs(request.app[runtime.POOL], [order], http.includes(request) | set(extra))
    return http.model_response(OrderEnvelope(data=out), status)


def price_out(price: ShippingPriceView) -> ShippingPriceOut:
    method = price.method
    return ShippingPriceOut(
        id=price.id,
        rate=price.rate,
        tax=price.tax,
        fixed=price.fixed,
        min_basket=price.min_basket,
        min_weight=dimension(price.min_weight),
        weight_unit=price.weight_unit,
        min_height=dimension(0),
        height_unit="cm",
        min_width=dimension(0),
        width_unit="cm",
        min_depth=dimension(0),
        depth_unit="cm",
        min_volume=dimension(0),
        volume_unit="l",
        currency=price.currency,
        method=ShippingMethodRel(
            data=ShippingMethodOut(
                id=method.id, type=method.type, name=method.name, description=method.description, code=method.code
            )
        ),
        zone=ShippingZoneRel(data=ShippingZoneOut(id=price.zone.id, name=price.zone.name)),
    )


def country_out(country: Country, flags: Mapping[str, Any] | None) -> CountryOut:
    """`flags`: the admin's row for the country, None when no admin has set it (the defaults)."""
    return CountryOut(
        id=country.id,
        name=country.name,
        region=None,
        iso_a_2=country.alpha_2,
        iso_a_3=country.alpha_3,
        iso_numeric=country.numeric,
        preferred=flags["preferred"] if flags else domain.PREFERRED_BY_DEFAULT,
        enabled=flags["enabled"] if flags else domain.ENABLED_BY_DEFAULT,
    )
