"""What orders keeps of other services' answers (caches.py), and when it asks again."""

from __future__ import annotations

from typing import Any

from orders.caches import TtlCache
from services.orders.tests.testkit import ADDRESS, FakeShipping, Store, line

URL = "/api/v1/orders"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(10.0, clock=clock)
    cache.put("a", "first")
    clock.now += 9.9
    assert cache.get("a") == "first"
    clock.now += 0.2
    assert cache.get("a") is None


def test_size_is_bounded_and_expired_entries_go_first() -> None:
    clock = Clock()
    cache: TtlCache[int] = TtlCache(10.0, max_entries=3, clock=clock)
    for key in range(5):
        cache.put(key, key)
    assert [cache.get(key) for key in range(5)] == [None, None, 2, 3, 4]
    clock.now += 11  # all of them expired: the next put drops them
    cache.put("new", 5)
    assert len(cache._entries) == 1 and cache.get("new") == 5


async def _order_with_address(client: Any, store: Store) -> str:
    response = await client.post(URL, json={"basket_id": store.put([line("A", 2, 1000, weight_grams=750)])})
    assert response.status == 200, await response.text()
    order_id = (await response.json())["data"]["id"]
    response = await client.put(f"{URL}/{order_id}/shipping/address", json=ADDRESS)
    assert response.status == 200, await response.text()
    return order_id


async def test_shipping_cost_reuses_the_quote_just_shown(client: Any, store: Store, shipping: FakeShipping) -> None:
    order_id = await _order_with_address(client, store)
    response = await client.get(f"{URL}/{order_id}/shipping/methods")
    assert response.status == 200
    asked = len(shipping.requests)
    response = await client.put(f"{URL}/{order_id}/shipping/cost", json={"price_id": shipping.uk_express.id})
    assert response.status == 200, await response.text()
    chosen = (await response.json())["data"]
    assert (chosen["delivery_total"], chosen["shipping_method"]) == (1000, "Express Delivery")
    assert len(shipping.requests) == asked  # the quote of shipping/methods, not a new one


async def test_shipping_cost_asks_again_once_the_order_changed(
    client: Any, store: Store, shipping: FakeShipping
) -> None:
    order_id = await _order_with_address(client, store)
    assert (await client.get(f"{URL}/{order_id}/shipping/methods")).status == 200
    # another address: the quote shown was for the old one
    moved = ADDRESS | {"zip": "SW1A 1AA"}
    assert (await client.put(f"{URL}/{order_id}/shipping/address", json=moved)).status == 200
    asked = len(shipping.requests)
    response = await client.put(f"{URL}/{order_id}/shipping/cost", json={"price_id": shipping.uk_standard.id})
    assert response.status == 200, await response.text()
    assert len(shipping.requests) == asked + 1
    assert (shipping.requests[-1].zip, shipping.requests[-1].price_id) == ("SW1A 1AA", shipping.uk_standard.id)


async def test_a_price_not_in_the_quote_shown_is_refused(client: Any, store: Store, shipping: FakeShipping) -> None:
    order_id = await _order_with_address(client, store)
    assert (await client.get(f"{URL}/{order_id}/shipping/methods")).status == 200
    response = await client.put(f"{URL}/{order_id}/shipping/cost", json={"price_id": shipping.eu_standard.id})
    assert response.status == 422
    assert await response.json() == {"price_id": ["Please choose a shipping option"]}
