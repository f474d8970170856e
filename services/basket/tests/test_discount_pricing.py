"""The arithmetic of discounts (`basket.domain`), without I/O: percentages, fixed amounts spread
over lines, free shipping, tax on the discounted amount, criteria, periods and limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from basket import pricing
from basket.pricing import DiscountTerms, PricingLine

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def terms(**overrides: object) -> DiscountTerms:
    values: dict[str, object] = {
        "id": "d1",
        "name": "Sale",
        "coupon": "SALE",
        "enabled": True,
        "priority": 0,
        "stop_rules": False,
        "start_at": None,
        "end_at": None,
        "currency": "GBP",
        "min_basket": 0,
        "product_ids": frozenset(),
        "variant_ids": frozenset(),
        "percentage_bp": None,
        "fixed_amount": None,
        "free_shipping": False,
    }
    values.update(overrides)
    return DiscountTerms(**values)  # type: ignore[arg-type]


def line(variant: str, unit_price: int, quantity: int = 1, rate_bp: int = 2000, product: str = "p") -> PricingLine:
    return PricingLine(variant, product, unit_price, quantity, rate_bp)


def price(lines: list[PricingLine], *discounts: DiscountTerms, currency: str = "GBP") -> pricing.PricedLines:
    return pricing.price_basket(lines, list(discounts), currency=currency, now=NOW)


def test_without_discounts_a_basket_is_priced_as_before() -> None:
    lines = [line("a", 99, 3), line("b", 799, 2, 0)]
    priced = price(lines)
    assert priced.lines == [pricing.price_line(99, 3, 2000), pricing.price_line(799, 2, 0)]
    assert priced.applied == [] and not priced.free_shipping
    assert priced.totals == pricing.basket_totals(
        pricing.price_line(lne.unit_price, lne.quantity, lne.tax_rate_bp) for lne in lines
    )


def test_a_percentage_is_taken_per_basket_rounded_half_up_and_tax_is_on_what_is_left() -> None:
    # 10% of 995 is 99.5: 100 off (half up). Tax 20% on 895 is 179.
    priced = price([line("a", 995)], terms(percentage_bp=1000))
    [amounts] = priced.lines
    assert (amounts.line_total, amounts.discount, amounts.tax) == (995, 100, 179)
    assert priced.totals == pricing.Totals(sub_total=995, tax_total=179, discount_total=100, total=995 - 100 + 179)
    assert priced.applied == [pricing.AppliedDiscount("d1", "Sale", "SALE", 100, False)]


def test_a_percentage_is_spread_over_lines_in_proportion_and_adds_up() -> None:
    # 12.5% of 1000 + 333 + 1 = 1334 is 166.75: 167, spread 125.19 / 41.63 / 0.13 -> 125, 42, 0.
    lines = [line("a", 500, 2), line("b", 333, 1, 550), line("c", 1)]
    priced = price(lines, terms(percentage_bp=1250))
    assert [a.discount for a in priced.lines] == [125, 42, 0]
    assert priced.totals.discount_total == 167
    # Tax per line on its discounted total, rounded down: 875 x 20%, 291 x 5.5%, 1 x 20%.
    assert [a.tax for a in priced.lines] == [175, 16, 0]


def test_a_fixed_amount_is_spread_with_the_units_left_to_the_largest_remainders() -> None:
    # 1000 over 300/300/300: 333.33 each, the last unit to the first line (tie).
    priced = price([line("a", 300), line("b", 300), line("c", 300)], terms(fixed_amount=1000))
    assert [a.discount for a in priced.lines] == [300, 300, 300]  # never more than a line: capped at 900
    priced = price([line("a", 300), line("b", 300), line("c", 300)], terms(fixed_amount=500))
    assert [a.discount for a in priced.lines] == [167, 167, 166]
    assert priced.totals.discount_total == 500


def test_a_fixed_amount_larger_than_the_basket_takes_it_to_zero_never_below() -> None:
    priced = price([line("a", 250, 2), line("b", 100, 1, 0)], terms(fixed_amount=10_000))
    assert [(a.discount, a.tax) for a in priced.lines] == [(500, 0), (100, 0)]
    assert priced.totals == pricing.Totals(sub_total=600, tax_total=0, discount_total=600, total=0)
    assert priced.applied[0].amount == 600


def test_percentage_and_fixed_together_are_capped_at_the_lines() -> None:
    priced = price([line("a", 1000)], terms(percentage_bp=5000, fixed_amount=700))
    assert priced.lines[0].discount == 1000


def test_free_shipping_alone_takes_nothing_off_the_goods() -> None:
    priced = price([line("a", 1000)], terms(free_shipping=True))
    assert priced.free_shipping and priced.totals.discount_total == 0
    assert priced.applied == [pricing.AppliedDiscount("d1", "Sale", "SALE", 0, True)]


def test_only_the_eligible_lines_are_discounted() -> None:
    lines = [line("a", 1000, product="p1"), line("b", 1000, product="p2"), line("c", 1000, product="p3")]
    by_variant = price(lines, terms(percentage_bp=1000, variant_ids=frozenset({"b"})))
    assert [a.discount for a in by_variant.lines] == [0, 100, 0]
    by_product = price(lines, terms(fixed_amount=300, product_ids=frozenset({"p1"}), variant_ids=frozenset({"c"})))
    assert [a.discount for a in by_product.lines] == [150, 0, 150]
    assert price(lines, terms(percentage_bp=1000, variant_ids=frozenset({"x"}))).applied == []


def test_the_minimum_basket_is_the_sub_total_before_tax_and_discounts() -> None:
    lines = [line("a", 2500, 2)]
    assert price(lines, terms(percentage_bp=1000, min_basket=5000)).totals.discount_total == 500
    assert price(lines, terms(percentage_bp=1000, min_basket=5001)).applied == []
    refusal = pricing.basket_refusal(terms(percentage_bp=1000, min_basket=5001), lines, "GBP", NOW)
    assert refusal == "The basket must come to at least 50.01 GBP before tax to use this coupon."


def test_the_period_start_is_inclusive_and_the_end_exclusive() -> None:
    lines = [line("a", 1000)]
    assert price(lines, terms(percentage_bp=1000, start_at=NOW)).totals.discount_total == 100
    assert price(lines, terms(percentage_bp=1000, start_at=NOW + timedelta(seconds=1))).applied == []
    assert price(lines, terms(percentage_bp=1000, end_at=NOW)).applied == []
    assert price(lines, terms(percentage_bp=1000, end_at=NOW + timedelta(seconds=1))).totals.discount_total == 100
    assert price(lines, terms(percentage_bp=1000, enabled=False)).applied == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"enabled": False}, "This coupon code is invalid."),
        ({"start_at": NOW + timedelta(days=1)}, "This coupon is not valid yet."),
        ({"end_at": NOW - timedelta(days=1)}, "This coupon has expired."),
        ({"usage_limit": 3, "uses": 2, "reserved": 1}, "This coupon has reached its usage limit."),
        ({"min_basket": 10_000}, "The basket must come to at least 100.00 GBP before tax to use this coupon."),
        ({"variant_ids": frozenset({"x"})}, "This coupon does not apply to any item in the basket."),
        ({"currency": "EUR", "fixed_amount": 500}, "This coupon cannot be used in this basket's currency."),
        ({"usage_limit": 3, "uses": 2, "reserved": 0}, None),
        ({"currency": "EUR"}, None),  # a percentage alone applies in any currency
    ],
)
def test_why_a_coupon_cannot_be_applied(overrides: dict[str, object], message: str | None) -> None:
    coupon = terms(**{"percentage_bp": 1000, **overrides})
    assert pricing.coupon_refusal(coupon, [line("a", 1000)], "GBP", NOW) == message


def test_a_use_is_refused_past_either_limit_and_the_per_email_limit_needs_an_email() -> None:
    coupon = terms(percentage_bp=1000, usage_limit=5, usage_limit_per_email=2, uses=3, reserved=1)
    assert pricing.use_refusal(coupon, NOW, uses_by_email=1) is None
    assert pricing.use_refusal(coupon, NOW, uses_by_email=2) == (
        "This coupon has already been used the maximum number of times with this email address."
    )
    assert pricing.use_refusal(coupon, NOW, uses_by_email=None) is not None
    assert pricing.use_refusal(replace(coupon, reserved=2), NOW, uses_by_email=0) == (
        "This coupon has reached its usage limit."
    )
    automatic = terms(coupon=None, percentage_bp=1000, end_at=NOW)
    assert pricing.use_refusal(automatic, NOW, uses_by_email=None) == "This discount has expired."


def test_discounts_apply_by_priority_on_what_is_left_and_stop_rules_ends_the_chain() -> None:
    lines = [line("a", 1000)]
    first = terms(id="d1", priority=10, percentage_bp=5000)
    second = terms(id="d2", coupon=None, priority=0, fixed_amount=100)
    priced = price(lines, second, first)
    assert [(d.id, d.amount) for d in priced.applied] == [("d1", 500), ("d2", 100)]
    assert priced.lines[0].discount == 600
    stopping = price(lines, second, replace(first, stop_rules=True))
    assert [(d.id, d.amount) for d in stopping.applied] == [("d1", 500)]
    # A discount with nothing left to take does not apply (and does not stop the chain).
    everything = terms(id="d0", priority=20, fixed_amount=5000, stop_rules=False)
    assert [(d.id, d.amount) for d in price(lines, everything, first).applied] == [("d0", 1000)]


def test_minor_units_follow_the_currency() -> None:
    # JPY has no minor unit: amounts are whole yen, and the minimum is shown as such.
    refusal = pricing.basket_refusal(terms(currency="JPY", min_basket=5000), [line("a", 100)], "JPY", NOW)
    assert refusal == "The basket must come to at least 5000 JPY before tax to use this coupon."


def test_email_keys_ignore_case_and_spaces_and_keep_no_address() -> None:
    key = pricing.email_key(" Ada@Example.com ")
    assert key == pricing.email_key("ada@example.com") and key is not None and "ada" not in key
    assert pricing.email_key(None) is None and pricing.email_key("  ") is None


@given(amount=st.integers(0, 10**7), weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
def test_spread_adds_up_and_never_exceeds_a_weight(amount: int, weights: list[int]) -> None:
    amount = min(amount, sum(weights))
    shares = pricing.spread(amount, weights)
    assert sum(shares) == amount
    assert all(0 <= share <= weight for share, weight in zip(shares, weights, strict=True))
    # In proportion, within one minor unit.
    if sum(weights):
        assert all(
            abs(share * sum(weights) - amount * weight) < sum(weights)
            for share, weight in zip(shares, weights, strict=True)
        )


def test_spread_refuses_more_than_the_weights() -> None:
    with pytest.raises(ValueError):
        pricing.spread(11, [5, 5])


lines_st = st.lists(
    st.builds(
        PricingLine,
        variant_id=st.sampled_from(["a", "b", "c", "d"]),
        product_id=st.sampled_from(["p", "q"]),
        unit_price=st.integers(0, 100_000),
        quantity=st.integers(1, 20),
        tax_rate_bp=st.sampled_from([0, 500, 550, 2000]),
    ),
    min_size=1,
    max_size=5,
)
discount_st = st.builds(
    terms,
    id=st.sampled_from(["d1", "d2", "d3"]),
    priority=st.integers(-2, 2),
    stop_rules=st.booleans(),
    percentage_bp=st.none() | st.integers(1, 10_000),
    fixed_amount=st.none() | st.integers(1, 500_000),
    free_shipping=st.booleans(),
    variant_ids=st.frozensets(st.sampled_from(["a", "b", "x"]), max_size=2),
    min_basket=st.integers(0, 200_000),
)


@given(lines=lines_st, discounts=st.lists(discount_st, max_size=3))
def test_any_discounts_keep_every_line_between_zero_and_its_total(
    lines: list[PricingLine], discounts: list[DiscountTerms]
) -> None:
    priced = price(lines, *discounts)
    for line, amounts in zip(lines, priced.lines, strict=True):
        assert 0 <= amounts.discount <= amounts.line_total
        assert amounts.tax == (amounts.line_total - amounts.discount) * line.tax_rate_bp // 10_000
    totals = priced.totals
    assert totals.discount_total == sum(d.amount for d in priced.applied)
    assert totals.total == totals.sub_total - totals.discount_total + totals.tax_total >= 0
