"""Rows to the wire (GetCandy shapes) and to the snapshot contract.

Basket and catalogue amounts go out as exact decimals in major units, converted from integer
minor units by `shared.money`; nothing is computed in floats.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from basket import domain
from shared import money
from shared.contracts import BasketSnapshot, BasketSnapshotLine

Row = Mapping[str, Any]


def variant_view(row: Row, product: Row | None = None) -> dict[str, Any]:
    currency = row["currency"]
    price = row["price"]
    data: dict[str, Any] = {
        "id": row["id"],
        "product_id": row["product_id"],
        "sku": row["sku"],
        "name": row["name"],
        "options": row["options"] or {},
        "price": money.to_major_number(price, currency),
        "unit_price": money.to_major_number(price, currency),
        "unit_tax": money.to_major_number(money.tax(price, row["tax_rate_bp"]), currency),
        "tax": money.rate_percent(row["tax_rate_bp"]),
        "tax_rate_bp": row["tax_rate_bp"],
        "currency": currency,
        "inventory": row["inventory"],
        "incoming": row["incoming"],
        "backorder": row["backorder"],
        "min_qty": row["min_qty"],
        "max_qty": row["max_qty"],
        "min_batch": row["min_batch"],
        "unit_qty": row["unit_qty"],
        "weight": {"value": domain.weight_kg(row["weight_grams"]), "unit": "kg"},
        "requires_shipping": row["requires_shipping"],
        "purchasable": row["purchasable"],
    }
    if product is not None:
        data["product"] = {"data": product_view(product)}
    return data


def product_view(row: Row, variants: Sequence[Row] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        # Where GetCandy storefronts read a product's name.
        "attribute_data": {"name": {"webstore": {"en": row["name"]}}},
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    if variants is not None:
        data["variants"] = {"data": [variant_view(v) for v in variants]}
    return data


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


def basket_view(basket_row: Row, line_rows: Sequence[Row], includes: set[str]) -> dict[str, Any]:
    currency = basket_row["currency"]
    priced = price_lines(line_rows)
    totals = priced.totals

    def major(amount: int) -> int | float:
        return money.to_major_number(amount, currency)

    data: dict[str, Any] = {
        "id": basket_row["id"],
        "sub_total": major(totals.sub_total),
        "tax_total": major(totals.tax_total),
        "discount_total": major(totals.discount_total),
        "total": major(totals.total),
        "currency": currency,
        "meta": basket_row["meta"] or {},
        "changed": False,
    }
    if "lines" in includes:
        lines = []
        for row, amounts in priced.lines:
            item: dict[str, Any] = {
                "id": row["line_id"],
                "quantity": amounts.quantity,
                "unit_price": major(amounts.unit_price),
                "unit_tax": major(amounts.unit_tax),
                "line_total": major(amounts.line_total),
                "tax": major(amounts.tax),
                "line_discount": major(amounts.discount),
                "meta": row["line_meta"] or {},
            }
            if "lines.variant" in includes:
                item["variant"] = {"data": variant_view(row)}
            lines.append(item)
        data["lines"] = {"data": lines}
    return data


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
