"""Orders, lines and transactions as the GetCandy wire shows them (see models.py for the schema)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from orders import domain, queries
from shared import money

ORDER_INCLUDES = frozenset({"lines", "lines.variant", "shipping", "transactions", "basket"})


def iso(value: datetime | None) -> str | None:
    """Upstream's timestamp shape: `2018-02-28T15:33:26.000000Z`."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _grams_as_kg(grams: int) -> int | float:
    kg = Decimal(grams).scaleb(-3)
    return int(kg) if kg == kg.to_integral_value() else float(kg)


def line_view(row: Mapping[str, Any], with_variant: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row["id"],
        "sku": row["sku"],
        "description": row["description"],
        "option": row["option"],
        "quantity": row["quantity"],
        "unit_price": row["unit_price"],
        "unit_qty": row["unit_qty"],
        "line_total": row["line_total"],
        "tax_total": row["tax_total"],
        "tax_rate": money.rate_percent(row["tax_rate"]),
        "discount_total": row["discount_total"],
        "delivery_total": row["delivery_total"],
        "is_shipping": row["is_shipping"],
        "is_manual": row["is_manual"],
        "meta": row["meta"] or {},
    }
    if with_variant and row["variant_id"]:
        # The variant as it was when the basket was snapshot: orders never reads basket's data.
        view["variant"] = {
            "data": {
                "id": row["variant_id"],
                "product_id": row["product_id"],
                "sku": row["sku"],
                "name": row["description"],
                "options": row["option"],
                "requires_shipping": row["requires_shipping"],
                "weight": {"value": _grams_as_kg(row["weight_grams"]), "unit": "kg"},
            }
        }
    return view


def transaction_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "transaction_id": row["transaction_id"],
        "merchant": row["merchant"],
        "amount": row["amount"],
        "currency": row["currency"],
        "provider": row["provider"],
        "driver": row["driver"],
        "success": row["success"],
        "refund": row["refund"],
        "status": row["status"],
        "card_type": row["card_type"],
        "last_four": row["last_four"],
        "notes": row["notes"],
        "created_at": iso(row["created_at"]),
    }


def basket_view(order: Mapping[str, Any]) -> dict[str, Any] | None:
    totals = order["basket_totals"]
    if not totals:
        return None
    currency = totals.get("currency", order["currency"])
    return {
        "id": order["basket_id"],
        "sub_total": money.to_major_number(totals["sub_total"], currency),
        "tax_total": money.to_major_number(totals["tax_total"], currency),
        "discount_total": money.to_major_number(totals["discount_total"], currency),
        "total": money.to_major_number(totals["total"], currency),
        "currency": currency,
    }


def order_view(
    order: Mapping[str, Any],
    includes: Iterable[str] = (),
    lines: list[Mapping[str, Any]] | None = None,
    transactions: list[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    wanted = set(includes)
    contact = order["contact_details"] or {}
    shipping = domain.address_view(order["shipping_details"])
    shipping["method"] = order["shipping_method"]
    shipping["preference"] = order["shipping_preference"]
    view: dict[str, Any] = {
        "id": order["id"],
        "display_id": order["display_id"],
        "reference": order["reference"],
        "invoice_reference": order["invoice_reference"],
        "customer_reference": order["customer_reference"],
        "type": order["type"],
        "status": order["status"],
        "currency": order["currency"],
        "sub_total": order["sub_total"],
        "delivery_total": order["delivery_total"],
        "discount_total": order["discount_total"],
        "tax_total": order["tax_total"],
        "order_total": order["order_total"],
        "shipping_method": order["shipping_method"],
        "shipping_preference": order["shipping_preference"],
        "tracking_no": order["tracking_no"],
        "contact_details": {"email": contact.get("email"), "phone": contact.get("phone")},
        "billing_details": domain.address_view(order["billing_details"]),
        "shipping_details": shipping,
        "notes": order["notes"],
        "meta": order["meta"] if order["meta"] is not None else {},
        "placed_at": iso(order["placed_at"]),
        "dispatched_at": iso(order["dispatched_at"]),
        "created_at": iso(order["created_at"]),
        "updated_at": iso(order["updated_at"]),
    }
    if lines is not None:
        if "lines" in wanted:
            view["lines"] = {"data": [line_view(line, "lines.variant" in wanted) for line in lines]}
        if "shipping" in wanted:
            ship = next((line for line in lines if line["is_shipping"]), None)
            view["shipping"] = {"data": line_view(ship) if ship is not None else None}
    if transactions is not None and "transactions" in wanted:
        view["transactions"] = {"data": [transaction_view(tx) for tx in transactions]}
    if "basket" in wanted:
        view["basket"] = {"data": basket_view(order)}
    return view


async def load_order_view(conn: queries.Conn, order: asyncpg.Record, includes: Iterable[str]) -> dict[str, Any]:
    """The order with the relations asked for, read with as few queries as they need."""
    wanted = set(includes) & ORDER_INCLUDES
    lines = await queries.get_lines(conn, order["id"]) if wanted & {"lines", "shipping"} else None
    transactions = await queries.get_transactions(conn, order["id"]) if "transactions" in wanted else None
    return order_view(order, wanted, lines, transactions)
