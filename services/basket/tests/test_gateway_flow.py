"""The shopper's happy path through the real gateway and basket processes (the `stack`)."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

import aiohttp
import pytest

from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from services.basket.tests.testkit import sku


@pytest.fixture
async def http(stack: Any) -> Any:
    async with aiohttp.ClientSession(base_url=stack.gateway + "/") as session:
        yield session


async def _json(response: aiohttp.ClientResponse, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


def expected_totals(lines: list[tuple[str, int, int]]) -> tuple[Decimal, Decimal, Decimal]:
    sub = sum((Decimal(p) * q for p, _, q in lines), Decimal(0))
    tax = sum(((Decimal(p) * q * r / 10_000).quantize(Decimal("0.01"), ROUND_DOWN) for p, r, q in lines), Decimal(0))
    return sub, tax, sub + tax


def totals_of(basket: dict[str, Any]) -> tuple[Decimal, Decimal, Decimal]:
    return tuple(Decimal(str(basket[k])) for k in ("sub_total", "tax_total", "total"))  # type: ignore[return-value]


async def test_shopper_happy_path_through_the_gateway(http: aiohttp.ClientSession) -> None:
    admin = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}
    body = {
        "name": "Gateway tee",
        "variants": [
            {"sku": sku("GW"), "name": "S", "price": "12.50", "inventory": 50},
            {"sku": sku("GW"), "name": "M", "price": "0.99", "inventory": 50},
        ],
    }
    assert (await http.post("products", json=body)).status == 401
    product = (await _json(await http.post("products", json=body, headers=admin)))["data"]
    book = (
        await _json(
            await http.post(
                "products",
                json={
                    "name": "Gateway book",
                    "variants": [{"sku": sku("GW"), "price": "7.99", "tax_rate_bp": 0, "inventory": 9}],
                },
                headers=admin,
            )
        )
    )["data"]
    small, medium = (v["id"] for v in product["variants"]["data"])
    zero = book["variants"]["data"][0]["id"]

    listed = await _json(await http.get(f"products/{product['id']}?include=variants"))
    assert [v["id"] for v in listed["data"]["variants"]["data"]] == [small, medium]
    variant = (await _json(await http.get(f"products/variants/{medium}")))["data"]
    assert (variant["price"], variant["unit_tax"], variant["tax"]) == (0.99, 0.19, 20)

    # Create with two lines.
    created = await _json(
        await http.post(
            "baskets?include=lines.variant",
            json={"variants": [{"id": small, "quantity": 1}, {"id": zero, "quantity": 2}]},
        )
    )
    basket_id = created["data"]["id"]
    assert totals_of(created["data"]) == expected_totals([("12.50", 2000, 1), ("7.99", 0, 2)])

    # Add a new variant, then merge more of it into the same line.
    added = await _json(
        await http.post(
            "basket-lines?include=lines.variant",
            json={"basket_id": basket_id, "variants": [{"id": medium, "quantity": 3}]},
        )
    )
    merged = await _json(
        await http.post(
            "basket-lines?include=lines.variant",
            json={"basket_id": basket_id, "variants": [{"id": medium, "quantity": 4}]},
        )
    )
    assert len(added["data"]["lines"]["data"]) == len(merged["data"]["lines"]["data"]) == 3
    by_variant = {line["variant"]["data"]["id"]: line for line in merged["data"]["lines"]["data"]}
    assert by_variant[medium]["quantity"] == 7
    assert totals_of(merged["data"]) == expected_totals([("12.50", 2000, 1), ("7.99", 0, 2), ("0.99", 2000, 7)])

    # Update, add, remove.
    line_small = by_variant[small]["id"]
    await _json(await http.put(f"basket-lines/{line_small}", json={"quantity": 4}))
    await _json(await http.post(f"basket-lines/{line_small}/add", json={"quantity": 1}))
    removed = await _json(await http.put(f"basket-lines/{line_small}/remove?include=lines", json={"quantity": 2}))
    assert {line["id"]: line["quantity"] for line in removed["data"]["lines"]["data"]}[line_small] == 3
    assert totals_of(removed["data"]) == expected_totals([("12.50", 2000, 3), ("7.99", 0, 2), ("0.99", 2000, 7)])

    # A rule through the gateway: the flat 422 map arrives unchanged.
    response = await http.put(f"basket-lines/{line_small}", json={"quantity": 51})
    assert await _json(response, 422) == {"quantity": ["Insufficient stock levels"]}

    # Delete one line, then the rest.
    after_one = await _json(await http.delete(f"basket-lines/{by_variant[zero]['id']}?include=lines"))
    assert totals_of(after_one["data"]) == expected_totals([("12.50", 2000, 3), ("0.99", 2000, 7)])
    remaining = [{"id": line["id"]} for line in after_one["data"]["lines"]["data"]]
    emptied = await _json(await http.delete("basket-lines?include=lines", json={"lines": remaining}))
    assert emptied["data"]["lines"]["data"] == []
    assert totals_of(emptied["data"]) == (0, 0, 0)

    fetched = await _json(await http.get(f"baskets/{basket_id}"))
    assert fetched["data"]["total"] == 0 and fetched["data"]["currency"] == "GBP"
    missing = await http.get("baskets/nosuchbasket0000")
    assert await _json(missing, 404) == {"error": {"http_code": 404, "message": "Resource not found"}}
