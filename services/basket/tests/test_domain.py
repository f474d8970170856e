"""The pure rules and arithmetic of `basket.domain`, without I/O."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from basket import domain, pricing
from basket.domain import VariantRules


def rules(**overrides: object) -> VariantRules:
    values: dict[str, object] = {
        "sku": "SKU-1",
        "purchasable": True,
        "backorder": "in-stock",
        "inventory": 10,
        "incoming": 0,
        "min_qty": 1,
        "max_qty": 0,
        "min_batch": 1,
    }
    values.update(overrides)
    return VariantRules(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("unit_price", "quantity", "rate", "line_total", "tax", "unit_tax"),
    [
        (1250, 1, 2000, 1250, 250, 250),
        (99, 3, 2000, 297, 59, 19),  # 59.4 rounded down, once per line
        (33, 3, 2000, 99, 19, 6),  # per-unit tax x 3 would be 18
        (799, 2, 0, 1598, 0, 0),
        (333, 3, 550, 999, 54, 18),
        (0, 5, 2000, 0, 0, 0),
    ],
)
def test_price_line(unit_price: int, quantity: int, rate: int, line_total: int, tax: int, unit_tax: int) -> None:
    line = pricing.price_line(unit_price, quantity, rate)
    assert (line.line_total, line.tax, line.unit_tax) == (line_total, tax, unit_tax)


def test_basket_totals_sum_the_lines() -> None:
    lines = [pricing.price_line(99, 3, 2000), pricing.price_line(799, 2, 0), pricing.price_line(1, 1, 2000)]
    assert pricing.basket_totals(lines) == pricing.Totals(sub_total=1896, tax_total=59, discount_total=0, total=1955)
    assert pricing.basket_totals([]) == pricing.Totals(0, 0, 0, 0)


@pytest.mark.parametrize(
    ("variant", "quantity", "errors"),
    [
        (rules(), 1, []),
        (rules(), 10, []),
        (rules(), 0, ["The quantity must be at least 1."]),
        (rules(), -1, ["The quantity must be at least 1."]),
        (rules(backorder="always"), 10_001, ["The quantity may not be greater than 10000."]),
        (rules(), 11, ["Insufficient stock levels"]),
        (rules(backorder="expected", incoming=5), 15, []),
        (rules(backorder="expected", incoming=5), 16, ["Insufficient stock levels"]),
        (rules(backorder="always", inventory=0), 10_000, []),
        (rules(backorder="always", inventory=-3), 1, []),
        (rules(min_qty=3), 2, ["You must add at least 3 items."]),
        (rules(min_batch=5), 7, ["You must add this item in multiples of 5"]),
        (rules(min_batch=5), 10, []),
        (rules(max_qty=4), 5, ["You cannot add more than 4 of this item."]),
        (rules(max_qty=4), 4, []),
        (rules(purchasable=False), 1, ["Product SKU-1 is no longer available"]),
        (
            rules(min_qty=3, min_batch=2, inventory=0),
            1,
            ["You must add at least 3 items.", "You must add this item in multiples of 2", "Insufficient stock levels"],
        ),
    ],
)
def test_quantity_rules(variant: VariantRules, quantity: int, errors: list[str]) -> None:
    assert domain.quantity_errors("quantity", variant, quantity) == errors


def test_duplicates_are_flagged_at_every_position() -> None:
    assert domain.duplicate_positions(["a", "b", "a", "c", "b"]) == [0, 1, 2, 4]
    assert domain.duplicate_positions(["a", "b"]) == []


def test_reservation_errors_count_other_reservations_and_sum_repeated_variants() -> None:
    levels = {
        "a": domain.StockLevel("A", True, "in-stock", inventory=5, incoming=0, reserved=3),
        "b": domain.StockLevel("B", True, "expected", inventory=1, incoming=2, reserved=1),
        "c": domain.StockLevel("C", False, "always", inventory=0, incoming=0, reserved=0),
    }
    assert domain.reservation_errors([("a", 2), ("b", 2)], levels) == {}
    assert domain.reservation_errors([("a", 1), ("a", 2)], levels) == {
        "variants.0.quantity": ["Insufficient stock levels"],
        "variants.1.quantity": ["Insufficient stock levels"],
    }
    assert domain.reservation_errors([("b", 3), ("c", 1), ("x", 1)], levels) == {
        "variants.0.quantity": ["Insufficient stock levels"],
        "variants.1.id": ["Product C is no longer available"],
        "variants.2.id": ["The variant ID is incorrect"],
    }


@pytest.mark.parametrize(("grams", "kg"), [(0, "0"), (250, "0.25"), (1000, "1"), (1250, "1.25"), (7, "0.007")])
def test_weights_show_in_kg(grams: int, kg: str) -> None:
    assert domain.weight_kg(grams) == kg


def test_option_label() -> None:
    assert domain.option_label("Red", {"colour": "Blue"}) == "Red"
    assert domain.option_label(None, {"colour": "Blue", "size": "L"}) == "Blue / L"
    assert domain.option_label(None, {}) is None


# ---------------------------------------------------------------------------------------------
# Property: for any sequence of changes, totals are the sum of the lines and never negative

variants_st = st.lists(st.tuples(st.integers(0, 500_000), st.sampled_from([0, 500, 550, 2000])), min_size=1, max_size=4)
operation = st.tuples(st.sampled_from(["add", "set", "remove"]), st.integers(0, 3), st.integers(1, 50))


@given(catalogue=variants_st, operations=st.lists(operation, max_size=30))
def test_totals_follow_any_sequence_of_changes(
    catalogue: list[tuple[int, int]], operations: list[tuple[str, int, int]]
) -> None:
    basket: dict[int, int] = {}
    for kind, index, quantity in operations:
        index %= len(catalogue)
        if kind == "add":
            basket[index] = basket.get(index, 0) + quantity
        elif kind == "set" and index in basket:
            basket[index] = quantity
        elif kind == "remove" and index in basket:
            basket[index] -= quantity
            if basket[index] <= 0:
                del basket[index]
        lines = [pricing.price_line(catalogue[i][0], q, catalogue[i][1]) for i, q in basket.items()]
        totals = pricing.basket_totals(lines)
        assert totals.sub_total == sum(line.line_total for line in lines) >= 0
        assert totals.tax_total == sum(line.tax for line in lines) >= 0
        assert totals.total == totals.sub_total + totals.tax_total - totals.discount_total >= 0
        # Independently: each line's tax is its exact tax rounded down to the penny.
        for i, q in basket.items():
            exact = Decimal(catalogue[i][0] * q) * catalogue[i][1] / 10_000
            line = pricing.price_line(catalogue[i][0], q, catalogue[i][1])
            assert line.tax == int(exact.quantize(Decimal(1), rounding=ROUND_DOWN))
            assert 0 <= exact - line.tax < 1
