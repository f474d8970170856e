"""Catalogue: storefront reads and admin writes, against the real database."""

from __future__ import annotations

from typing import Any

import pytest

from basket.seed import CATALOGUE, seed
from services.basket.tests.testkit import API, admin, create_product, create_variant, sku
from tests.support import identity_headers

# The shared request-id middleware stores a string key on the request (aiohttp 3.14 warns).
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


async def test_create_product_and_read_it_back(client: Any) -> None:
    product = await create_product(
        client,
        {
            "sku": (first := sku()),
            "name": "Red / Large",
            "options": {"colour": "Red", "size": "L"},
            "price": 12.5,
            "tax_rate_bp": 2000,
            "inventory": 7,
            "incoming": 3,
            "backorder": "expected",
            "min_qty": 2,
            "max_qty": 10,
            "min_batch": 2,
            "unit_qty": 1,
            "weight_grams": 1250,
            "requires_shipping": True,
        },
        {"sku": (second := sku()), "price": "7.99", "tax_rate_bp": 0, "weight_grams": 0},
        name="Shirt",
    )
    assert product["name"] == "Shirt"
    assert product["attribute_data"] == {"name": {"webstore": {"en": "Shirt"}}}
    red, book = product["variants"]["data"]
    assert red == {
        "id": red["id"],
        "product_id": product["id"],
        "sku": first,
        "name": "Red / Large",
        "options": {"colour": "Red", "size": "L"},
        "price": 12.5,
        "unit_price": 12.5,
        "unit_tax": 2.5,
        "tax": 20,
        "tax_rate_bp": 2000,
        "currency": "GBP",
        "inventory": 7,
        "incoming": 3,
        "backorder": "expected",
        "min_qty": 2,
        "max_qty": 10,
        "min_batch": 2,
        "unit_qty": 1,
        "weight": {"value": "1.25", "unit": "kg"},
        "requires_shipping": True,
        "purchasable": True,
    }
    assert (book["sku"], book["price"], book["unit_tax"], book["tax"], book["weight"]) == (
        second,
        7.99,
        0,
        0,
        {"value": "0", "unit": "kg"},
    )

    response = await client.get(f"{API}/products/{product['id']}?include=variants")
    assert response.status == 200
    assert (await response.json())["data"] == product

    response = await client.get(f"{API}/products/{product['id']}")
    assert "variants" not in (await response.json())["data"]

    response = await client.get(f"{API}/products/variants/{red['id']}?include=product")
    body = (await response.json())["data"]
    assert body["product"]["data"]["id"] == product["id"]
    assert {k: v for k, v in body.items() if k != "product"} == red


async def test_products_are_paginated(client: Any) -> None:
    for _ in range(3):
        await create_product(client, {})
    response = await client.get(f"{API}/products?per_page=2&page=1&include=variants")
    assert response.status == 200
    body = await response.json()
    total = body["meta"]["total"]
    assert total >= 3
    assert len(body["data"]) == 2
    assert body["meta"]["current_page"] == 1
    assert body["meta"]["per_page"] == 2
    assert body["meta"]["last_page"] == -(-total // 2)
    assert (body["meta"]["from"], body["meta"]["to"]) == (1, 2)
    assert body["links"]["prev"] is None
    assert body["links"]["next"] == f"{API}/products?page=2&per_page=2&include=variants"  # keeps the include
    assert all(len(p["variants"]["data"]) >= 1 for p in body["data"])

    last = await (await client.get(f"{API}/products?per_page=2&page={body['meta']['last_page']}")).json()
    assert last["links"]["next"] is None
    assert len(last["data"]) == total - 2 * (body["meta"]["last_page"] - 1)

    response = await client.get(f"{API}/products?per_page=0")
    assert response.status == 422
    assert list(await response.json()) == ["per_page"]


@pytest.mark.parametrize("path", ["/products/nosuchproduct0", "/products/variants/nosuchvariant", "/products/BAD!"])
async def test_unknown_ids_are_404(client: Any, path: str) -> None:
    response = await client.get(API + path)
    assert response.status == 404
    assert await response.json() == {"error": {"http_code": 404, "message": "Resource not found"}}


async def test_admin_routes_need_the_admin_identity(client: Any) -> None:
    body = {"name": "x", "variants": [{"sku": sku(), "price": 1}]}
    response = await client.post(f"{API}/products", json=body)
    assert response.status == 401
    shopper = identity_headers("s", ())
    response = await client.post(f"{API}/products", json=body, headers=shopper)
    assert response.status == 403
    variant = await create_variant(client)
    response = await client.put(f"{API}/products/variants/{variant['id']}/inventory", json={"inventory": 1})
    assert response.status == 401


async def test_update_variant_and_set_inventory(client: Any) -> None:
    variant = await create_variant(client, price="10.00", inventory=5)
    response = await client.put(
        f"{API}/products/variants/{variant['id']}",
        json={"price": "19.99", "tax_rate_bp": 0, "backorder": "always", "name": "Blue", "purchasable": False},
        headers=admin(),
    )
    assert response.status == 200, await response.text()
    updated = (await response.json())["data"]
    assert (updated["price"], updated["tax"], updated["backorder"], updated["name"], updated["purchasable"]) == (
        19.99,
        0,
        "always",
        "Blue",
        False,
    )
    assert updated["inventory"] == 5 and updated["sku"] == variant["sku"]

    response = await client.put(
        f"{API}/products/variants/{variant['id']}/inventory", json={"inventory": 42}, headers=admin()
    )
    assert response.status == 200
    assert (await response.json())["data"]["inventory"] == 42
    fetched = await (await client.get(f"{API}/products/variants/{variant['id']}")).json()
    assert fetched["data"]["inventory"] == 42 and fetched["data"]["price"] == 19.99


async def test_catalogue_validation(client: Any) -> None:
    taken = await create_variant(client)
    duplicate = sku()
    response = await client.post(
        f"{API}/products",
        json={
            "name": "Dupes",
            "variants": [
                {"sku": duplicate, "price": 1},
                {"sku": duplicate, "price": 1},
                {"sku": taken["sku"], "price": 1},
                {"sku": sku(), "price": 1, "min_qty": 5, "max_qty": 2},
            ],
        },
        headers=admin(),
    )
    assert response.status == 422
    assert await response.json() == {
        "variants.0.sku": ["The variants.0.sku field has a duplicate value."],
        "variants.1.sku": ["The variants.1.sku field has a duplicate value."],
        "variants.2.sku": ["The sku has already been taken."],
        "variants.3.max_qty": ["The max qty must be 0 (no maximum) or at least the min qty."],
    }

    response = await client.post(
        f"{API}/products", json={"name": "Cents", "variants": [{"sku": sku(), "price": "1.001"}]}, headers=admin()
    )
    assert response.status == 422
    assert list(await response.json()) == ["variants.0.price"]

    other = await create_variant(client)
    response = await client.put(f"{API}/products/variants/{other['id']}", json={"sku": taken["sku"]}, headers=admin())
    assert response.status == 422
    assert await response.json() == {"sku": ["The sku has already been taken."]}
    response = await client.put(
        f"{API}/products/variants/{other['id']}/inventory", json={"inventory": -1}, headers=admin()
    )
    assert response.status == 422
    assert list(await response.json()) == ["inventory"]
    unchanged = await (await client.get(f"{API}/products/variants/{other['id']}")).json()
    assert unchanged["data"] == other


async def test_demo_seed_is_idempotent(settings: Any, admin_db: Any) -> None:
    skus = [variants[0]["sku"] for _, variants in CATALOGUE]
    count = "SELECT count(*) FROM basket.variants WHERE sku = ANY($1::text[])"
    await seed(settings)
    assert await admin_db.fetchval(count, skus) == len(skus)
    products = await admin_db.fetchval("SELECT count(*) FROM basket.products")
    await seed(settings)
    assert await admin_db.fetchval("SELECT count(*) FROM basket.products") == products
    assert len(CATALOGUE) == 12
    assert sum(len(variants) > 1 for _, variants in CATALOGUE) >= 3
    rows = await admin_db.fetch(
        "SELECT sku, tax_rate_bp, min_batch, inventory, backorder FROM basket.variants WHERE sku = ANY($1::text[])",
        [v["sku"] for _, variants in CATALOGUE for v in variants],
    )
    assert any(r["tax_rate_bp"] == 0 for r in rows)
    assert any(r["min_batch"] > 1 for r in rows)
    assert any(r["inventory"] <= 2 and r["backorder"] == "in-stock" for r in rows)
