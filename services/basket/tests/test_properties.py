"""Property, against the real service: any sequence of add/update/remove/delete requests leaves
a basket whose totals are the sum of its lines, exact and never negative."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.basket.tests.testkit import API, create_product

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

PRICES = [("0.99", 2000), ("12.50", 2000), ("7.99", 0), ("3.33", 550)]
CENT = Decimal("0.01")
_catalogue: list[str] = []  # variant ids, created once for the run (the database outlives the test)

operation = st.tuples(
    st.sampled_from(["add", "set", "add1", "remove", "delete"]), st.integers(0, len(PRICES) - 1), st.integers(1, 6)
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=st.lists(operation, min_size=1, max_size=12))
async def test_basket_totals_after_any_sequence(client: Any, operations: list[tuple[str, int, int]]) -> None:
    if not _catalogue:
        product = await create_product(
            client, *({"price": price, "tax_rate_bp": rate, "inventory": 100_000} for price, rate in PRICES)
        )
        _catalogue.extend(v["id"] for v in product["variants"]["data"])
    model: dict[str, int] = {}
    basket_id: str | None = None
    lines_by_variant: dict[str, str] = {}
    for kind, index, quantity in operations:
        variant_id = _catalogue[index]
        line_id = lines_by_variant.get(variant_id)
        if kind == "add" or line_id is None:
            body: dict[str, Any] = {"variants": [{"id": variant_id, "quantity": quantity}]}
            if basket_id:
                body["basket_id"] = basket_id
            response = await client.post(f"{API}/basket-lines?include=lines.variant", json=body)
            model[variant_id] = model.get(variant_id, 0) + quantity
        elif kind == "set":
            response = await client.put(
                f"{API}/basket-lines/{line_id}?include=lines.variant", json={"quantity": quantity}
            )
            model[variant_id] = quantity
        elif kind == "add1":
            response = await client.post(f"{API}/basket-lines/{line_id}/add?include=lines.variant")
            model[variant_id] += 1
        elif kind == "remove":
            response = await client.put(
                f"{API}/basket-lines/{line_id}/remove?include=lines.variant", json={"quantity": quantity}
            )
            model[variant_id] -= quantity
            if model[variant_id] <= 0:
                del model[variant_id]
        else:
            response = await client.delete(f"{API}/basket-lines/{line_id}?include=lines.variant")
            del model[variant_id]
        assert response.status == 200, await response.text()
        basket = (await response.json())["data"]
        basket_id = basket["id"]
        lines = basket["lines"]["data"]
        lines_by_variant = {line["variant"]["data"]["id"]: line["id"] for line in lines}
        assert {line["variant"]["data"]["id"]: line["quantity"] for line in lines} == model

        sub_total = sum((Decimal(str(line["line_total"])) for line in lines), Decimal(0))
        tax_total = sum((Decimal(str(line["tax"])) for line in lines), Decimal(0))
        assert Decimal(str(basket["sub_total"])) == sub_total >= 0
        assert Decimal(str(basket["tax_total"])) == tax_total >= 0
        assert Decimal(str(basket["total"])) == sub_total + tax_total >= 0
        prices = dict(zip(_catalogue, PRICES, strict=True))
        for variant_id, q in model.items():
            price, rate = prices[variant_id]
            line = next(line for line in lines if line["variant"]["data"]["id"] == variant_id)
            assert Decimal(str(line["line_total"])) == Decimal(price) * q
            assert Decimal(str(line["tax"])) == (Decimal(price) * q * rate / 10_000).quantize(CENT, ROUND_DOWN)
