"""Pure basket logic: quantity rules, stock policies, who may see a basket. No I/O here.
Prices, currencies and discounts are in `pricing.py`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Backorder = Literal["in-stock", "expected", "always"]

# A sane cap on one line's quantity: keeps arithmetic far from any integer limit and stops a
# typo (or a fuzzer) from putting a million items in a basket.
MAX_QUANTITY = 10_000

MSG_VARIANT_INCORRECT = "The variant ID is incorrect"
MSG_INSUFFICIENT_STOCK = "Insufficient stock levels"
MSG_BASKET_USED = "This basket belongs to a placed order and can no longer be changed"


def msg_min_qty(min_qty: int) -> str:
    return f"You must add at least {min_qty} items."


def msg_min_batch(min_batch: int) -> str:
    return f"You must add this item in multiples of {min_batch}"


def msg_max_qty(max_qty: int) -> str:
    return f"You cannot add more than {max_qty} of this item."


def msg_unavailable(sku: str) -> str:
    return f"Product {sku} is no longer available"


def msg_at_least_one(field: str) -> str:
    return f"The {field} must be at least 1."


def msg_too_many(field: str) -> str:
    return f"The {field} may not be greater than {MAX_QUANTITY}."


def msg_distinct(field: str) -> str:
    return f"The {field} field has a duplicate value."


@dataclass(frozen=True)
class VariantRules:
    """What a quantity of one variant is checked against."""

    sku: str
    purchasable: bool
    backorder: str
    inventory: int
    incoming: int
    min_qty: int = 1
    max_qty: int = 0  # 0: no maximum
    min_batch: int = 1


def stock_allows(backorder: str, inventory: int, incoming: int, quantity: int) -> bool:
    """`in-stock` sells what is on hand, `expected` also what is incoming, `always` anything."""
    if backorder == "always":
        return True
    if backorder == "expected":
        return quantity <= inventory + incoming
    return quantity <= inventory


def quantity_range_errors(field: str, quantity: int) -> list[str]:
    """The checks that need no variant: an integer in 1..MAX_QUANTITY."""
    if quantity < 1:
        return [msg_at_least_one(field)]
    if quantity > MAX_QUANTITY:
        return [msg_too_many(field)]
    return []


def quantity_errors(field: str, rules: VariantRules, quantity: int) -> list[str]:
    """Every rule a line's resulting quantity must satisfy; empty when it may be set.

    Upstream skipped some of these on updates; here every quantity change runs them all.
    """
    errors = quantity_range_errors(field, quantity)
    if errors:
        return errors
    if not rules.purchasable:
        return [msg_unavailable(rules.sku)]
    if quantity < rules.min_qty:
        errors.append(msg_min_qty(rules.min_qty))
    if rules.min_batch > 1 and quantity % rules.min_batch:
        errors.append(msg_min_batch(rules.min_batch))
    if rules.max_qty and quantity > rules.max_qty:
        errors.append(msg_max_qty(rules.max_qty))
    if not stock_allows(rules.backorder, rules.inventory, rules.incoming, quantity):
        errors.append(MSG_INSUFFICIENT_STOCK)
    return errors


def duplicate_positions(ids: list[str]) -> list[int]:
    """Positions of ids that occur more than once in one request (every occurrence)."""
    seen: dict[str, int] = {}
    for value in ids:
        seen[value] = seen.get(value, 0) + 1
    return [i for i, value in enumerate(ids) if seen[value] > 1]


# ---------------------------------------------------------------------------------------------
# Stock reservations


@dataclass(frozen=True)
class StockLevel:
    sku: str
    purchasable: bool
    backorder: str
    inventory: int
    incoming: int
    reserved: int  # by other active reservations


def reservation_errors(wanted: list[tuple[str, int]], levels: dict[str, StockLevel]) -> dict[str, list[str]]:
    """Why a reservation of `wanted` (variant id, quantity) cannot be made; empty when it can.

    Quantities of a variant listed twice are summed: availability is per variant. Keys follow
    the request's positions (`variants.0.quantity`), as the basket rules do.
    """
    totals: dict[str, int] = {}
    for variant_id, quantity in wanted:
        totals[variant_id] = totals.get(variant_id, 0) + quantity
    errors: dict[str, list[str]] = {}
    for index, (variant_id, _) in enumerate(wanted):
        level = levels.get(variant_id)
        if level is None:
            errors[f"variants.{index}.id"] = [MSG_VARIANT_INCORRECT]
        elif not level.purchasable:
            errors[f"variants.{index}.id"] = [msg_unavailable(level.sku)]
        elif not stock_allows(level.backorder, level.inventory - level.reserved, level.incoming, totals[variant_id]):
            errors[f"variants.{index}.quantity"] = [MSG_INSUFFICIENT_STOCK]
    return errors


# ---------------------------------------------------------------------------------------------
# Presentation helpers (exact conversions)


def weight_kg(grams: int) -> str:
    """250 -> "0.25": upstream showed weights as a string value with a unit."""
    value = (Decimal(grams).scaleb(-3)).normalize()
    return f"{value:f}"


def option_label(name: str | None, options: dict[str, str] | None) -> str | None:
    if name:
        return name
    if options:
        return " / ".join(str(v) for v in options.values())
    return None


# ---------------------------------------------------------------------------------------------
# Baskets of signed-in customers


def visible_to(owner: str | None, saved: bool, caller: str | None) -> bool:
    """Whether a basket's routes (and its snapshot) show the basket to the caller, a customer's id
    or None for a guest: a guest's basket to whoever holds its id, a customer's to that customer
    alone (to anyone else it is unknown), a saved copy only under /baskets/saved."""
    return not saved and (owner is None or owner == caller)
