"""A signed-in customer's checkout through the gateway, against the real processes: the basket and
the order are the customer's, the order ends in the customer's `GET /orders`, and another
customer (or a guest holding the ids) can neither see nor change them. Guest orders stay reachable
by their id, as before accounts."""

from __future__ import annotations

from typing import Any

import aiohttp

from bench.shopper import UK_ADDRESS, Shopper
from services.customers.tests.testkit import new_email, new_secret
from tests.e2e.test_checkout import ADMIN, create_product, variant_of
from tests.support import Stack

NOT_FOUND = {"error": {"http_code": 404, "message": "Resource not found"}}


async def signed_in(session: aiohttp.ClientSession, stack: Stack) -> dict[str, str]:
    email, secret = new_email(), new_secret()
    body = {"firstname": "Grace", "lastname": "Hopper", "email": email, "password": secret}
    async with session.post(f"{stack.gateway}/customers", json=body) as response:
        assert response.status == 201, await response.text()
    grant = {"grant_type": "password", "username": email, "password": secret}
    async with session.post(f"{stack.gateway}/oauth/token", data=grant) as response:
        assert response.status == 200, await response.text()
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def call(
    session: aiohttp.ClientSession, stack: Stack, method: str, path: str, status: int = 200, **kwargs: Any
) -> Any:
    async with session.request(method, stack.gateway + path, **kwargs) as response:
        assert response.status == status, (method, path, response.status, await response.text())
        return await response.json()


async def orders_of(session: aiohttp.ClientSession, stack: Stack, headers: dict[str, str], query: str = "") -> Any:
    return await call(session, stack, "GET", f"/orders{query}", headers=headers)


async def test_a_signed_in_checkout_ends_in_the_customers_orders(stack: Stack, session) -> None:
    product = await create_product(session, stack, inventory=20)
    variant = variant_of(product)["id"]
    alice = await signed_in(session, stack)
    async with aiohttp.ClientSession(headers=alice) as signed:
        shopper = Shopper(signed, stack.gateway)
        first = await shopper.checkout([(variant, 2)])
        second = await shopper.checkout([(variant, 1)])
    assert first.error is None and second.error is None, (first.error, second.error)
    assert first.placed and second.placed

    mine = await orders_of(session, stack, alice)
    assert [order["id"] for order in mine["data"]] == [second.order_id, first.order_id]  # newest first
    assert mine["meta"]["total"] == 2
    page = await orders_of(session, stack, alice, "?per_page=1&page=2")
    assert [order["id"] for order in page["data"]] == [first.order_id]
    # The admin sees every order, hers among them; another customer none of hers; a guest nothing.
    everyone = await orders_of(session, stack, ADMIN, "?per_page=100")
    assert {first.order_id, second.order_id} <= {order["id"] for order in everyone["data"]}
    bob = await signed_in(session, stack)
    assert (await orders_of(session, stack, bob))["data"] == []
    await call(session, stack, "GET", "/orders", 401)

    # Her placed order, and her basket (now used), are hers alone.
    await call(session, stack, "GET", f"/orders/{first.order_id}", headers=alice)
    for headers in (bob, {}):
        assert await call(session, stack, "GET", f"/orders/{first.order_id}", 404, headers=headers) == NOT_FOUND
        await call(session, stack, "GET", f"/orders/{first.order_id}/invoice", 404, headers=headers)
    basket_id = next(body["data"]["id"] for route, _, body in shopper.responses if route == "POST /baskets")
    await call(session, stack, "POST", f"/baskets/{basket_id}/claim", 404, headers=bob)
    await call(session, stack, "POST", "/orders", 422, json={"basket_id": basket_id}, headers=bob)


async def test_customer_b_can_neither_see_nor_change_customer_a_s_order(stack: Stack, session, admin_db) -> None:
    product = await create_product(session, stack, inventory=20)
    variant = variant_of(product)["id"]
    alice, bob = await signed_in(session, stack), await signed_in(session, stack)
    basket = await call(
        session, stack, "POST", "/baskets", json={"variants": [{"id": variant, "quantity": 1}]}, headers=alice
    )
    order = await call(session, stack, "POST", "/orders", json={"basket_id": basket["data"]["id"]}, headers=alice)
    order_id = order["data"]["id"]
    await call(session, stack, "PUT", f"/orders/{order_id}/shipping/address", json=UK_ADDRESS, headers=alice)

    async def state() -> tuple:
        row = await admin_db.fetchrow(
            "SELECT version, status, shipping_details, billing_details, contact_details, shipping_price_id, "
            "customer_id FROM orders.orders WHERE id = $1",
            order_id,
        )
        return tuple(row)

    before = await state()
    attacks = [
        ("GET", f"/orders/{order_id}", None, 404),
        ("GET", f"/orders/{order_id}/shipping/methods", None, 404),
        ("PUT", f"/orders/{order_id}/shipping/address", UK_ADDRESS, 404),
        ("PUT", f"/orders/{order_id}/billing/address", UK_ADDRESS, 404),
        ("PUT", f"/orders/{order_id}/contact", {"email": "mallory@example.com"}, 404),
        ("PUT", f"/orders/{order_id}/shipping/cost", {"price_id": "nosuchprice0000"}, 404),
        ("POST", "/orders", {"basket_id": basket["data"]["id"]}, 422),
        ("POST", "/orders/process", {"order_id": order_id, "payment_token": "fake-valid-nonce"}, 422),
    ]
    for method, path, body, status in attacks:
        for headers in (bob, {}):
            answer = await call(session, stack, method, path, status, json=body, headers=headers)
            if status == 404:
                assert answer == NOT_FOUND, (method, path)
    assert await state() == before
    assert (await call(session, stack, "GET", f"/orders/{order_id}", headers=alice))["data"]["id"] == order_id


async def test_guest_orders_stay_reachable_by_id_and_a_signed_in_order_of_a_guest_basket_is_the_customers(
    stack: Stack, session
) -> None:
    product = await create_product(session, stack, inventory=20)
    variant = variant_of(product)["id"]
    guest = await Shopper(session, stack.gateway).checkout([(variant, 1)])
    assert guest.placed, guest.error
    await call(session, stack, "GET", f"/orders/{guest.order_id}")
    alice = await signed_in(session, stack)
    await call(session, stack, "GET", f"/orders/{guest.order_id}", headers=alice)  # anyone holding its id
    assert (await orders_of(session, stack, alice))["data"] == []

    # A guest basket checked out while signed in: the order is the customer's.
    basket = await call(session, stack, "POST", "/baskets", json={"variants": [{"id": variant, "quantity": 1}]})
    order = await call(session, stack, "POST", "/orders", json={"basket_id": basket["data"]["id"]}, headers=alice)
    await call(session, stack, "GET", f"/orders/{order['data']['id']}", 404)
    await call(session, stack, "GET", f"/orders/{order['data']['id']}", headers=alice)
    unplaced = await orders_of(session, stack, alice, "?placed=false")
    assert [o["id"] for o in unplaced["data"]] == [order["data"]["id"]]
