"""Pure pricing of a basket: line and basket totals, conversion into the basket's currency, and
discounts (whether one applies, what it takes off). No I/O here.

Amounts are integer minor units. Tax is computed per line on the ex-tax line total after its
discount and rounded down to the minor unit (as upstream GetCandy did), so a basket's tax is the
sum of its lines' taxes, not the tax of its sub-total (`price_basket` says how discounts are spread).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from shared import money

# ---------------------------------------------------------------------------------------------
# Totals


@dataclass(frozen=True)
class LineAmounts:
    unit_price: int
    unit_tax: int
    quantity: int
    line_total: int
    tax: int
    discount: int = 0


def price_line(unit_price: int, quantity: int, tax_rate_bp: int) -> LineAmounts:
    """A line's amounts: ex-tax total, and its tax floored once on that total."""
    if unit_price < 0 or quantity < 0:
        raise ValueError("price and quantity must not be negative")
    line_total = unit_price * quantity
    return LineAmounts(
        unit_price=unit_price,
        unit_tax=money.tax(unit_price, tax_rate_bp),
        quantity=quantity,
        line_total=line_total,
        tax=money.tax(line_total, tax_rate_bp),
    )


@dataclass(frozen=True)
class Totals:
    sub_total: int
    tax_total: int
    discount_total: int
    total: int


def basket_totals(lines: Iterable[LineAmounts]) -> Totals:
    sub_total = tax_total = discount_total = 0
    for line in lines:
        sub_total += line.line_total
        tax_total += line.tax
        discount_total += line.discount
    return Totals(sub_total, tax_total, discount_total, sub_total + tax_total - discount_total)


# ---------------------------------------------------------------------------------------------
# Currencies


@dataclass(frozen=True)
class Conversion:
    """Catalogue prices, kept in the `base` currency, as a basket in `currency` sees them:
    each unit price converted at `rate` (units of `currency` per unit of `base`) and rounded half
    up to the currency's minor unit (`money.convert`) before anything is multiplied or taxed, so
    a line is always quantity x a unit price the shopper was shown."""

    base: str
    currency: str
    rate: Decimal

    @classmethod
    def none(cls, base: str) -> Conversion:
        return cls(base, base, Decimal(1))

    def price(self, amount: int) -> int:
        return money.convert(amount, self.rate, self.base, self.currency)

    def terms(self, terms: DiscountTerms) -> DiscountTerms:
        """A discount's amounts as this basket sees them. One set in the base currency has its
        minimum and fixed amount converted like a price; one set in another currency is left as
        it is (`basket_refusal` lets it apply only in that currency)."""
        if terms.currency != self.base or self.currency == self.base:
            return terms
        fixed = None if terms.fixed_amount is None else self.price(terms.fixed_amount)
        return replace(terms, currency=self.currency, min_basket=self.price(terms.min_basket), fixed_amount=fixed)


# ---------------------------------------------------------------------------------------------
# Discounts: pricing a basket with them, and whether one may be used


@dataclass(frozen=True)
class DiscountTerms:
    """A discount as pricing sees it. Amounts are minor units of `currency`; `percentage_bp` is
    in basis points (1250 = 12.5%). Empty `product_ids` and `variant_ids`: every line is eligible."""

    id: str
    name: str
    coupon: str | None
    enabled: bool
    priority: int
    stop_rules: bool
    start_at: datetime | None
    end_at: datetime | None
    currency: str
    min_basket: int
    product_ids: frozenset[str]
    variant_ids: frozenset[str]
    percentage_bp: int | None
    fixed_amount: int | None
    free_shipping: bool
    usage_limit: int | None = None
    usage_limit_per_email: int | None = None
    uses: int = 0  # committed: orders placed with it
    reserved: int = 0  # held by checkouts in flight


@dataclass(frozen=True)
class PricingLine:
    variant_id: str
    product_id: str
    unit_price: int
    quantity: int
    tax_rate_bp: int


@dataclass(frozen=True)
class AppliedDiscount:
    """A discount a basket gets: `amount` off its goods (minor units), and free shipping or not."""

    id: str
    name: str
    coupon: str | None
    amount: int
    free_shipping: bool


@dataclass(frozen=True)
class PricedLines:
    lines: list[LineAmounts]  # in the order given
    applied: list[AppliedDiscount]
    free_shipping: bool
    totals: Totals


def _noun(terms: DiscountTerms) -> str:
    return "coupon" if terms.coupon else "discount"


MSG_COUPON_INVALID = "This coupon code is invalid."


def msg_not_started(terms: DiscountTerms) -> str:
    return f"This {_noun(terms)} is not valid yet."


def msg_expired(terms: DiscountTerms) -> str:
    return f"This {_noun(terms)} has expired."


def msg_used_up(terms: DiscountTerms) -> str:
    return f"This {_noun(terms)} has reached its usage limit."


def msg_used_up_by_email(terms: DiscountTerms) -> str:
    return f"This {_noun(terms)} has already been used the maximum number of times with this email address."


def msg_min_basket(terms: DiscountTerms) -> str:
    minimum = money.to_major(terms.min_basket, terms.currency)
    return f"The basket must come to at least {minimum} {terms.currency} before tax to use this {_noun(terms)}."


def msg_not_eligible(terms: DiscountTerms) -> str:
    return f"This {_noun(terms)} does not apply to any item in the basket."


def msg_wrong_currency(terms: DiscountTerms) -> str:
    return f"This {_noun(terms)} cannot be used in this basket's currency."


def period_refusal(terms: DiscountTerms, now: datetime) -> str | None:
    """Why the discount cannot be used at `now` (disabled, not started, ended); None when it can.
    `start_at` is inclusive, `end_at` exclusive."""
    if not terms.enabled:
        return MSG_COUPON_INVALID if terms.coupon else f"This {_noun(terms)} is not available."
    if terms.start_at is not None and now < terms.start_at:
        return msg_not_started(terms)
    if terms.end_at is not None and now >= terms.end_at:
        return msg_expired(terms)
    return None


def _eligible(terms: DiscountTerms, line: PricingLine) -> bool:
    if not terms.product_ids and not terms.variant_ids:
        return True
    return line.variant_id in terms.variant_ids or line.product_id in terms.product_ids


def basket_refusal(terms: DiscountTerms, lines: list[PricingLine], currency: str, now: datetime) -> str | None:
    """Why the discount does not apply to a basket of `lines` in `currency` now; None when it does.

    The minimum basket is the basket's sub-total before tax and before any discount, in the
    discount's currency: a discount with a minimum or a fixed amount applies only to baskets in
    that currency (a percentage or free shipping alone applies in any)."""
    refusal = period_refusal(terms, now)
    if refusal is not None:
        return refusal
    if (terms.min_basket or terms.fixed_amount) and terms.currency != currency:
        return msg_wrong_currency(terms)
    if sum(line.unit_price * line.quantity for line in lines) < terms.min_basket:
        return msg_min_basket(terms)
    if not any(_eligible(terms, line) for line in lines):
        return msg_not_eligible(terms)
    return None


def coupon_refusal(terms: DiscountTerms, lines: list[PricingLine], currency: str, now: datetime) -> str | None:
    """Why a shopper cannot apply the coupon to a basket now; None when they can. A limit already
    reached by placed orders and checkouts in flight refuses it; the per-email limit is checked at
    checkout, where the order's email is known."""
    refusal = period_refusal(terms, now)
    if refusal is not None:
        return refusal
    if terms.usage_limit is not None and terms.uses + terms.reserved >= terms.usage_limit:
        return msg_used_up(terms)
    return basket_refusal(terms, lines, currency, now)


def use_refusal(terms: DiscountTerms, now: datetime, *, uses_by_email: int | None) -> str | None:
    """Why a checkout cannot use the discount (its use is reserved with the order's stock); None
    when it can. The overall limit counts placed orders and checkouts in flight; the per-email
    limit those with the order's contact email (`uses_by_email`; None when the order has none)."""
    refusal = period_refusal(terms, now)
    if refusal is not None:
        return refusal
    if terms.usage_limit is not None and terms.uses + terms.reserved >= terms.usage_limit:
        return msg_used_up(terms)
    per_email = terms.usage_limit_per_email
    if per_email is not None and (uses_by_email is None or uses_by_email >= per_email):
        return msg_used_up_by_email(terms)
    return None


def spread(amount: int, weights: list[int]) -> list[int]:
    """`amount` split over `weights` in proportion, in whole minor units, summing to `amount`.

    Each share is first rounded down; the units left over go one each to the largest remainders
    (the earlier line on a tie). With `0 <= amount <= sum(weights)` no share exceeds its weight:
    a share rounded up had a fractional part, so its floor was below its weight."""
    total = sum(weights)
    if amount < 0 or any(weight < 0 for weight in weights) or amount > total:
        raise ValueError("the amount must be between 0 and the sum of the weights")
    if total == 0:
        return [0] * len(weights)
    shares = [amount * weight // total for weight in weights]
    remainders = [amount * weight % total for weight in weights]
    left = amount - sum(shares)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        shares[index] += 1
    return shares


def percentage_of(amount: int, rate_bp: int) -> int:
    """`rate_bp` of `amount`, rounded half up to the minor unit (10% of 995 is 100, not 99)."""
    return (amount * rate_bp + 5_000) // 10_000


def price_basket(
    lines: list[PricingLine], discounts: list[DiscountTerms], *, currency: str, now: datetime
) -> PricedLines:
    """A basket's lines priced with the discounts that apply to it now.

    - Discounts are taken by `priority` (highest first, then id); one with `stop_rules` that applies
      is the last one taken. Each works on what the ones before it left of its eligible lines.
    - A percentage is taken of the eligible lines' remaining total, rounded half up to the minor
      unit; a fixed amount is at most that total. Either is spread over the eligible lines in
      proportion to what each has left (`spread`), so a line's discount is in whole minor units,
      never more than the line and never below zero.
    - Free shipping is a flag for the order's shipping line (the basket has none).
    - Tax is computed on each line's discounted total and rounded down, as without discounts.
    """
    discounted = [0] * len(lines)
    applied: list[AppliedDiscount] = []
    for terms in sorted(discounts, key=lambda d: (-d.priority, d.id)):
        if basket_refusal(terms, lines, currency, now) is not None:
            continue
        eligible = [i for i, line in enumerate(lines) if _eligible(terms, line)]
        remaining = [lines[i].unit_price * lines[i].quantity - discounted[i] for i in eligible]
        amount = 0
        if terms.percentage_bp:
            amount += percentage_of(sum(remaining), terms.percentage_bp)
        if terms.fixed_amount:
            amount += terms.fixed_amount
        amount = min(amount, sum(remaining))
        if amount == 0 and not terms.free_shipping:
            continue
        for i, share in zip(eligible, spread(amount, remaining), strict=True):
            discounted[i] += share
        applied.append(AppliedDiscount(terms.id, terms.name, terms.coupon, amount, terms.free_shipping))
        if terms.stop_rules:
            break
    amounts = []
    for line, discount in zip(lines, discounted, strict=True):
        priced = price_line(line.unit_price, line.quantity, line.tax_rate_bp)
        amounts.append(
            LineAmounts(
                unit_price=priced.unit_price,
                unit_tax=priced.unit_tax,
                quantity=priced.quantity,
                line_total=priced.line_total,
                tax=money.tax(priced.line_total - discount, line.tax_rate_bp),
                discount=discount,
            )
        )
    return PricedLines(amounts, applied, any(d.free_shipping for d in applied), basket_totals(amounts))


def email_key(email: str | None) -> str | None:
    """What a per-email limit counts by: a digest of the normalised address, so that the basket
    service keeps no email address."""
    if not email or not email.strip():
        return None
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()
