"""Which shipping prices apply to an order, and the life of a shipment: pure rules, no I/O.

For a destination (country, postcode) and an order (sub_total, weight, currency):

1. a price applies only in a zone that contains the country, and only in the order's currency;
2. regional prices: among the prices of one method in one zone, the region with the longest
   postcode prefix matching the order's postcode wins (`*`, and prices without a region, match
   every postcode with length 0); a region whose prefixes do not match does not apply at all;
3. thresholds: `min_basket <= sub_total`, `min_weight <= weight`, `weight <= max_weight` when set;
4. the cheapest remaining price of each method is offered.

The region is chosen before the thresholds: a postcode in a region with its own tariff never
falls back to the general tariff because its regional price's thresholds failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.money import DEFAULT_TAX_RATE_BP, tax

ANY_POSTCODE = "*"


@dataclass(frozen=True)
class Candidate:
    """A price with what deciding on it needs: its method, zone and region."""

    id: str
    rate: int
    currency: str
    min_basket: int
    min_weight: int
    max_weight: int | None
    fixed: bool
    method_id: str
    method_type: str
    method_name: str
    zone_id: str
    zone_name: str
    countries: frozenset[str]
    region_prefixes: tuple[str, ...] | None = None  # None: the price is for the whole zone
    method_description: str | None = None
    method_code: str | None = None

    @property
    def tax(self) -> int:
        return shipping_tax(self.rate)


@dataclass(frozen=True)
class Order:
    country: str
    postcode: str | None
    sub_total: int
    weight: int  # grams
    currency: str


def shipping_tax(rate: int) -> int:
    """Shipping is taxed at the default rate, rounded down to the minor unit."""
    return tax(rate, DEFAULT_TAX_RATE_BP)


def normalise_postcode(postcode: str | None) -> str:
    """Upper case, runs of whitespace as one space: "pa2  0ab" -> "PA2 0AB". The space is kept
    because it separates the outward code: prefix "PA20" must not match "PA2 0AB"."""
    return " ".join((postcode or "").split()).upper()


def normalise_prefix(prefix: str) -> str:
    return ANY_POSTCODE if prefix.strip() == ANY_POSTCODE else normalise_postcode(prefix)


def region_match(prefixes: Sequence[str] | None, postcode: str) -> int | None:
    """How specifically a region matches a normalised postcode (the matching prefix's length), or
    None when it does not match. No region, or `*`, matches everything with 0."""
    if prefixes is None:
        return 0
    best: int | None = None
    for prefix in prefixes:
        if prefix == ANY_POSTCODE:
            length = 0
        elif postcode and postcode.startswith(prefix):
            length = len(prefix)
        else:
            continue
        best = length if best is None else max(best, length)
    return best


def within_thresholds(price: Candidate, order: Order) -> bool:
    return (
        price.min_basket <= order.sub_total
        and price.min_weight <= order.weight
        and (price.max_weight is None or order.weight <= price.max_weight)
    )


def applicable(prices: Iterable[Candidate], order: Order) -> list[Candidate]:
    """Every price that applies to the order (not yet reduced to one per method)."""
    country = order.country.strip().upper()
    currency = order.currency.strip().upper()
    postcode = normalise_postcode(order.postcode)
    matched: list[tuple[Candidate, int]] = []
    for price in prices:
        if country not in price.countries or price.currency.upper() != currency:
            continue
        specificity = region_match(price.region_prefixes, postcode)
        if specificity is not None:
            matched.append((price, specificity))
    best: dict[tuple[str, str], int] = {}
    for price, specificity in matched:
        key = (price.method_id, price.zone_id)
        best[key] = max(best.get(key, specificity), specificity)
    return [
        price
        for price, specificity in matched
        if specificity == best[(price.method_id, price.zone_id)] and within_thresholds(price, order)
    ]


def quote(prices: Iterable[Candidate], order: Order, price_id: str | None = None) -> list[Candidate]:
    """The cheapest applicable price per method (cheapest first); with `price_id`, that one price
    if it applies, else nothing."""
    usable = applicable(prices, order)
    if price_id is not None:
        return [price for price in usable if price.id == price_id][:1]
    cheapest: dict[str, Candidate] = {}
    for price in usable:
        current = cheapest.get(price.method_id)
        if current is None or (price.rate, price.id) < (current.rate, current.id):
            cheapest[price.method_id] = price
    return sorted(cheapest.values(), key=lambda p: (p.rate, p.method_name, p.id))


# ---------------------------------------------------------------------------------------------
# Shipments: `held` (its order is placed but not paid: offline) -> `open` -> `dispatched`.

HELD = "held"
OPEN = "open"
DISPATCHED = "dispatched"

MSG_HELD = "This shipment is held until its order is paid"
MSG_DISPATCHED = "This shipment has already been dispatched"


def first_status(paid: bool) -> str:
    """A placed order's shipment opens at once when the order is paid (placed paid, or marked paid
    already: that announcement may come first); otherwise it is held until the order is paid."""
    return OPEN if paid else HELD


def dispatch_refusal(status: str) -> str | None:
    """Why a shipment in `status` cannot be dispatched (a 409), or None: only an open one can."""
    if status == HELD:
        return MSG_HELD
    if status != OPEN:
        return MSG_DISPATCHED
    return None
