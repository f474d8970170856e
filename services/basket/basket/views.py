"""Wire shapes: the response models, and the functions that build responses from rows (and
the basket snapshot contract).

Responses follow GetCandy's envelope: `{"data": ...}`, relations nested under their own `data`
and present only when included. Basket and catalogue amounts go out as exact decimals in major
units, converted from integer minor units by `shared.money`; nothing is computed in floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

from basket import domain
from shared import money
from shared.contracts import BasketSnapshot, BasketSnapshotLine
from shared.http import PaginationLinks, PaginationMeta

Row = Mapping[str, Any]
# An amount (or rate) as upstream sent it: 25 when whole, 12.5 otherwise (`money.to_major_number`);
# a JSON number in the document.
Number = Annotated[int | float, WithJsonSchema({"type": "number"})]


# ---------------------------------------------------------------------------------------------
# Response models: the wire shapes `routes.OPERATIONS` names (and the OpenAPI document shows)


class Weight(BaseModel):
    value: str
    unit: str


class ProductOut(BaseModel):
    id: str
    name: str
    attribute_data: dict[str, Any]
    created_at: str
    updated_at: str
    variants: VariantList | None = None


class ProductData(BaseModel):
    data: ProductOut


class VariantOut(BaseModel):
    id: str
    product_id: str
    sku: str
    name: str | None
    options: dict[str, str]
    price: Number = Field(description="Ex-tax price in major units")
    unit_price: Number
    unit_tax: Number
    tax: Number = Field(description="Tax rate in percent")
    tax_rate_bp: int
    currency: str
    inventory: int
    incoming: int
    backorder: domain.Backorder
    min_qty: int
    max_qty: int
    min_batch: int
    unit_qty: int
    weight: Weight
    requires_shipping: bool
    purchasable: bool
    product: ProductData | None = None


class VariantList(BaseModel):
    data: list[VariantOut]


class ProductCollection(BaseModel):
    data: list[ProductOut]
    meta: PaginationMeta
    links: PaginationLinks


class ProductResponse(BaseModel):
    data: ProductOut


class VariantResponse(BaseModel):
    data: VariantOut


class VariantData(BaseModel):
    data: VariantOut


class BasketLineOut(BaseModel):
    id: str
    quantity: int
    unit_price: Number
    unit_tax: Number
    line_total: Number
    tax: Number
    line_discount: Number
    meta: dict[str, Any]
    variant: VariantData | None = None


class BasketLineList(BaseModel):
    data: list[BasketLineOut]


class BasketOut(BaseModel):
    id: str
    sub_total: Number
    tax_total: Number
    discount_total: Number
    total: Number
    currency: str
    meta: dict[str, Any]
    changed: bool
    lines: BasketLineList | None = None


class BasketResponse(BaseModel):
    data: BasketOut


class Success(BaseModel):
    http_code: int
    message: str | None


class SuccessResponse(BaseModel):
    """Upstream's answer to a delete: `{"success": {"http_code": 200, "message": null}}`."""

    success: Success


ProductOut.model_rebuild()


# ---------------------------------------------------------------------------------------------
# Rows to the wire


def variant_view(row: Row, product: Row | None = None) -> VariantOut:
    currency = row["currency"]
    price = row["price"]
    variant = VariantOut(
        id=row["id"],
        product_id=row["product_id"],
        sku=row["sku"],
        name=row["name"],
        options=row["options"] or {},
        price=money.to_major_number(price, currency),
        unit_price=money.to_major_number(price, currency),
        unit_tax=money.to_major_number(money.tax(price, row["tax_rate_bp"]), currency),
        tax=money.rate_percent(row["tax_rate_bp"]),
        tax_rate_bp=row["tax_rate_bp"],
        currency=currency,
        inventory=row["inventory"],
        incoming=row["incoming"],
        backorder=row["backorder"],
        min_qty=row["min_qty"],
        max_qty=row["max_qty"],
        min_batch=row["min_batch"],
        unit_qty=row["unit_qty"],
        weight=Weight(value=domain.weight_kg(row["weight_grams"]), unit="kg"),
        requires_shipping=row["requires_shipping"],
        purchasable=row["purchasable"],
    )
    if product is not None:
        variant.product = ProductData(data=product_view(product))
    return variant


def product_view(row: Row, variants: Sequence[Row] | None = None) -> ProductOut:
    product = ProductOut(
        id=row["id"],
        name=row["name"],
        # Where GetCandy storefronts read a product's name.
        attribute_data={"name": {"webstore": {"en": row["name"]}}},
        created_at=row["created_at"].isoformat(),
        updated_at=row["updated_at"].isoformat(),
    )
    if variants is not None:
        product.variants = VariantList(data=[variant_view(v) for v in variants])
    return product


def variant_rules(row: Row) -> domain.VariantRules:
    return domain.VariantRules(
        sku=row["sku"],
        purchasable=row["purchasable"],
        backorder=row["backorder"],
        inventory=row["inventory"],
        incoming=row["incoming"],
        min_qty=row["min_qty"],
        max_qty=row["max_qty"],
        min_batch=row["min_batch"],
    )


@dataclass(frozen=True)
class PricedBasket:
    lines: list[tuple[Row, domain.LineAmounts]]
    totals: domain.Totals
    weight_grams: int


def price_lines(line_rows: Sequence[Row]) -> PricedBasket:
    """`line_rows` from `queries.basket_lines`: each line with its variant's columns."""
    lines = [(row, domain.price_line(row["price"], row["line_quantity"], row["tax_rate_bp"])) for row in line_rows]
    weight = sum(row["weight_grams"] * row["line_quantity"] for row in line_rows if row["requires_shipping"])
    return PricedBasket(lines, domain.basket_totals(amounts for _, amounts in lines), weight)


def basket_view(basket_row: Row, line_rows: Sequence[Row], includes: set[str]) -> BasketOut:
    currency = basket_row["currency"]
    priced = price_lines(line_rows)
    totals = priced.totals

    def major(amount: int) -> int | float:
        return money.to_major_number(amount, currency)

    basket = BasketOut(
        id=basket_row["id"],
        sub_total=major(totals.sub_total),
        tax_total=major(totals.tax_total),
        discount_total=major(totals.discount_total),
        total=major(totals.total),
        currency=currency,
        meta=basket_row["meta"] or {},
        changed=False,
    )
    if "lines" in includes:
        lines = []
        for row, amounts in priced.lines:
            line = BasketLineOut(
                id=row["line_id"],
                quantity=amounts.quantity,
                unit_price=major(amounts.unit_price),
                unit_tax=major(amounts.unit_tax),
                line_total=major(amounts.line_total),
                tax=major(amounts.tax),
                line_discount=major(amounts.discount),
                meta=row["line_meta"] or {},
            )
            if "lines.variant" in includes:
                line.variant = VariantData(data=variant_view(row))
            lines.append(line)
        basket.lines = BasketLineList(data=lines)
    return basket


def snapshot(basket_row: Row, line_rows: Sequence[Row]) -> BasketSnapshot:
    """What orders copies into its order lines: integer minor units, per-line weights in grams.

    A line's `weight_grams` is the weight of the whole line (unit weight x quantity), like its
    `line_total`; the basket's `weight_grams` sums the lines that need shipping.
    """
    priced = price_lines(line_rows)
    return BasketSnapshot(
        id=basket_row["id"],
        currency=basket_row["currency"],
        used=basket_row["order_id"] is not None,
        sub_total=priced.totals.sub_total,
        tax_total=priced.totals.tax_total,
        discount_total=priced.totals.discount_total,
        total=priced.totals.total,
        weight_grams=priced.weight_grams,
        lines=[
            BasketSnapshotLine(
                variant_id=row["id"],
                product_id=row["product_id"],
                sku=row["sku"],
                description=row["product_name"],
                option=domain.option_label(row["name"], row["options"]),
                quantity=amounts.quantity,
                unit_price=amounts.unit_price,
                unit_qty=row["unit_qty"],
                tax_rate_bp=row["tax_rate_bp"],
                line_total=amounts.line_total,
                tax_total=amounts.tax,
                discount_total=amounts.discount,
                weight_grams=row["weight_grams"] * amounts.quantity,
                requires_shipping=row["requires_shipping"],
            )
            for row, amounts in priced.lines
        ],
    )
