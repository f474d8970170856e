"""Wire shapes: the response models, and the functions that build responses from rows (and
the basket snapshot contract).

Responses follow GetCandy's envelope: `{"data": ...}`, relations nested under their own `data`
and present only when included. Basket and catalogue amounts go out as exact decimals in major
units, converted from integer minor units by `shared.money`; nothing is computed in floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

from basket import domain, pricing
from shared import money
from shared.contracts import BasketSnapshot, BasketSnapshotLine, DiscountUse
from shared.http import PaginationLinks, PaginationMeta, wire_timestamp

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
    discounts: BasketDiscountList | None = Field(default=None, description="With include=discounts: those that apply")


class BasketDiscountOut(BaseModel):
    """A discount the basket gets: `amount` off its goods (major units); free shipping waives the
    order's shipping line."""

    id: str
    name: str
    coupon: str | None
    amount: Number
    free_shipping: bool


class BasketDiscountList(BaseModel):
    data: list[BasketDiscountOut]


class BasketResponse(BaseModel):
    data: BasketOut


class BasketData(BaseModel):
    data: BasketOut


class SavedBasketOut(BaseModel):
    """Upstream's saved basket: its own id (here the copy's), its name, the copy."""

    id: str
    name: str
    basket: BasketData


class SavedBasketResponse(BaseModel):
    data: SavedBasketOut


class SavedBasketCollection(BaseModel):
    data: list[SavedBasketOut]
    meta: PaginationMeta
    links: PaginationLinks


class Success(BaseModel):
    http_code: int
    message: str | None


class SuccessResponse(BaseModel):
    """Upstream's answer to a delete: `{"success": {"http_code": 200, "message": null}}`."""

    success: Success


class DiscountOut(BaseModel):
    """A discount as an admin sees it: upstream's fields (`name`, `start_at`, `end_at`,
    `priority`, `status` = enabled, `stop_rules`, `uses`), its coupon (null: automatic), its
    limits, criteria and rewards."""

    id: str
    name: str
    attribute_data: dict[str, Any]
    coupon: str | None = Field(description="null: automatic, for every basket that meets the criteria")
    status: bool = Field(description="Enabled")
    priority: int
    stop_rules: bool
    start_at: str | None
    end_at: str | None
    uses: int = Field(description="Orders placed with it")
    reserved: int = Field(description="Checkouts in flight that hold a use")
    usage_limit: int | None
    usage_limit_per_email: int | None
    currency: str
    min_basket: Number = Field(description="Minimum basket sub-total before tax, in major units")
    product_ids: list[str]
    variant_ids: list[str]
    percentage: Number | None = Field(description="Percent off the eligible lines")
    fixed_amount: Number | None = Field(description="Off the eligible lines, in major units")
    free_shipping: bool
    version: int
    created_at: str
    updated_at: str


class DiscountResponse(BaseModel):
    data: DiscountOut


class DiscountCollection(BaseModel):
    data: list[DiscountOut]
    meta: PaginationMeta
    links: PaginationLinks


class CurrencyOut(BaseModel):
    """Upstream's currency resource, and its version (for a compare-and-set update)."""

    id: str
    code: str
    name: str
    enabled: bool
    format: str = Field(description="How a price is shown: `{price}` replaced by the amount")
    decimal_point: str
    thousand_point: str
    exchange_rate: str = Field(description="Units of this currency per unit of the base currency (a decimal string)")
    default: bool = Field(description="The currency of a new basket that names none")
    decimal_places: int = Field(description="Minor units (ISO 4217): 2 for GBP, 0 for JPY")
    version: int


class CurrencyResponse(BaseModel):
    data: CurrencyOut


class CurrencyCollection(BaseModel):
    data: list[CurrencyOut]
    meta: PaginationMeta
    links: PaginationLinks


ProductOut.model_rebuild()
BasketOut.model_rebuild()


# ---------------------------------------------------------------------------------------------
# Rows to the wire


def variant_view(row: Row, product: Row | None = None, conversion: pricing.Conversion | None = None) -> VariantOut:
    """The variant with its price in `conversion`'s currency (none: the catalogue's own)."""
    currency = conversion.currency if conversion is not None else row["currency"]
    price = conversion.price(row["price"]) if conversion is not None else row["price"]
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


def product_view(
    row: Row, variants: Sequence[Row] | None = None, conversion: pricing.Conversion | None = None
) -> ProductOut:
    product = ProductOut(
        id=row["id"],
        name=row["name"],
        # Where GetCandy storefronts read a product's name.
        attribute_data={"name": {"webstore": {"en": row["name"]}}},
        created_at=row["created_at"].isoformat(),
        updated_at=row["updated_at"].isoformat(),
    )
    if variants is not None:
        product.variants = VariantList(data=[variant_view(v, conversion=conversion) for v in variants])
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
    lines: list[tuple[Row, pricing.LineAmounts]]
    totals: pricing.Totals
    weight_grams: int
    discounts: list[pricing.AppliedDiscount]
    free_shipping: bool


def discount_terms(row: Row) -> pricing.DiscountTerms:
    """A row of `pricing_queries.DISCOUNT_COLUMNS` as pricing sees it."""
    return pricing.DiscountTerms(
        id=row["id"],
        name=row["name"],
        coupon=row["coupon"],
        enabled=row["status"],
        priority=row["priority"],
        stop_rules=row["stop_rules"],
        start_at=row["start_at"],
        end_at=row["end_at"],
        currency=row["currency"],
        min_basket=row["min_basket"],
        product_ids=frozenset(row["product_ids"]),
        variant_ids=frozenset(row["variant_ids"]),
        percentage_bp=row["percentage_bp"],
        fixed_amount=row["fixed_amount"],
        free_shipping=row["free_shipping"],
        usage_limit=row["usage_limit"],
        usage_limit_per_email=row["usage_limit_per_email"],
        uses=row["uses"],
        reserved=row["reserved"],
    )


def pricing_lines(line_rows: Sequence[Row], conversion: pricing.Conversion) -> list[pricing.PricingLine]:
    """The lines at their unit prices in `conversion`'s currency."""
    return [
        pricing.PricingLine(
            row["id"], row["product_id"], conversion.price(row["price"]), row["line_quantity"], row["tax_rate_bp"]
        )
        for row in line_rows
    ]


def price_lines(line_rows: Sequence[Row], discounts: Sequence[Row], conversion: pricing.Conversion) -> PricedBasket:
    """`line_rows` from `queries.basket_lines` (each line with its variant's columns), priced in
    `conversion`'s currency with the `discounts` that may apply (`pricing_queries.basket_discounts`) as
    they stand now."""
    priced = pricing.price_basket(
        pricing_lines(line_rows, conversion),
        [conversion.terms(discount_terms(d)) for d in discounts],
        currency=conversion.currency,
        now=datetime.now(UTC),
    )
    weight = sum(row["weight_grams"] * row["line_quantity"] for row in line_rows if row["requires_shipping"])
    return PricedBasket(
        list(zip(line_rows, priced.lines, strict=True)), priced.totals, weight, priced.applied, priced.free_shipping
    )


def basket_view(
    basket_row: Row,
    line_rows: Sequence[Row],
    includes: set[str],
    discounts: Sequence[Row],
    conversion: pricing.Conversion,
) -> BasketOut:
    """The basket on the wire, its lines priced in `conversion`'s currency (the basket's own, or
    the one the request asked to see) with `discounts` (`pricing_queries.basket_discounts`)."""
    currency = conversion.currency
    priced = price_lines(line_rows, discounts, conversion)
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
                line.variant = VariantData(data=variant_view(row, conversion=conversion))
            lines.append(line)
        basket.lines = BasketLineList(data=lines)
    if "discounts" in includes:
        basket.discounts = BasketDiscountList(
            data=[
                BasketDiscountOut(
                    id=d.id, name=d.name, coupon=d.coupon, amount=major(d.amount), free_shipping=d.free_shipping
                )
                for d in priced.discounts
            ]
        )
    return basket


def saved_basket_view(
    basket_row: Row, line_rows: Sequence[Row], includes: set[str], conversion: pricing.Conversion
) -> SavedBasketOut:
    """A saved copy; its lines always (what else would a list of saved baskets show)."""
    # A copy takes no part in a checkout: it is shown at its list prices, without discounts.
    basket = basket_view(basket_row, line_rows, includes | {"lines"}, (), conversion)
    return SavedBasketOut(id=basket_row["id"], name=basket_row["saved_name"], basket=BasketData(data=basket))


def discount_view(row: Row) -> DiscountOut:
    currency = row["currency"]
    fixed = row["fixed_amount"]
    percentage = row["percentage_bp"]
    return DiscountOut(
        id=row["id"],
        name=row["name"],
        # Where GetCandy's hub read a discount's name.
        attribute_data={"name": {"webstore": {"en": row["name"]}}},
        coupon=row["coupon"],
        status=row["status"],
        priority=row["priority"],
        stop_rules=row["stop_rules"],
        start_at=wire_timestamp(row["start_at"]),
        end_at=wire_timestamp(row["end_at"]),
        uses=row["uses"],
        reserved=row["reserved"],
        usage_limit=row["usage_limit"],
        usage_limit_per_email=row["usage_limit_per_email"],
        currency=currency,
        min_basket=money.to_major_number(row["min_basket"], currency),
        product_ids=list(row["product_ids"]),
        variant_ids=list(row["variant_ids"]),
        percentage=money.rate_percent(percentage) if percentage is not None else None,
        fixed_amount=money.to_major_number(fixed, currency) if fixed is not None else None,
        free_shipping=row["free_shipping"],
        version=row["version"],
        created_at=wire_timestamp(row["created_at"]),
        updated_at=wire_timestamp(row["updated_at"]),
    )


def snapshot(
    basket_row: Row, line_rows: Sequence[Row], discounts: Sequence[Row], conversion: pricing.Conversion
) -> BasketSnapshot:
    """What orders copies into its order lines: integer minor units, per-line weights in grams.

    A line's `weight_grams` is the weight of the whole line (unit weight x quantity), like its
    `line_total`; the basket's `weight_grams` sums the lines that need shipping. The discounts that
    apply (`discounts`: `pricing_queries.basket_discounts`) are in each line's `discount_total` and listed
    with their amounts; `free_shipping` tells orders to waive its shipping line.
    """
    priced = price_lines(line_rows, discounts, conversion)
    return BasketSnapshot(
        id=basket_row["id"],
        currency=conversion.currency,
        base_currency=conversion.base,
        exchange_rate=money.rate_text(conversion.rate),
        used=basket_row["order_id"] is not None,
        sub_total=priced.totals.sub_total,
        tax_total=priced.totals.tax_total,
        discount_total=priced.totals.discount_total,
        total=priced.totals.total,
        weight_grams=priced.weight_grams,
        customer_id=basket_row["customer_id"],
        discounts=[
            DiscountUse(discount_id=d.id, name=d.name, coupon=d.coupon, amount=d.amount, free_shipping=d.free_shipping)
            for d in priced.discounts
        ],
        free_shipping=priced.free_shipping,
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


def currency_view(row: Row) -> CurrencyOut:
    return CurrencyOut(
        id=row["id"],
        code=row["code"],
        name=row["name"],
        enabled=row["enabled"],
        format=row["format"],
        decimal_point=row["decimal_point"],
        thousand_point=row["thousand_point"],
        exchange_rate=money.rate_text(row["exchange_rate"]),
        default=row["is_default"],
        decimal_places=money.exponent(row["code"]),
        version=row["version"],
    )
