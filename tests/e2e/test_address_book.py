"""A customer's address book fills an order's addresses by id, against the real processes: orders
asks customers for the address as the signed-in caller, so another customer's address, or any
address for a guest, is a 422 and the order is left as it was."""

from __future__ import annotations

from typing import Any

from shared.countries import country_id
from tests.e2e.test_checkout import create_product, variant_of
from tests.e2e.test_customer_checkout import call, signed_in
from tests.support import Stack

INVALID = {"address_id": ["The selected address is invalid."]}

HOME = {
    "firstname": "Grace",
    "lastname": "Hopper",
    "company_name": "Eckert-Mauchly",
    "phone": "+44 20 7946 0001",
    "address": "1 Harbour Row",
    "address_two": "Flat 3",
    "city": "Portsmouth",
    "state": "Hampshire",
    "postal_code": "PO1 3AA",
    "country_id": country_id("GB"),
}
# HOME as an order shows it: the book's state and postal code, the country by its name.
HOME_ON_ORDER = {
    "firstname": "Grace",
    "lastname": "Hopper",
    "company_name": "Eckert-Mauchly",
    "address": "1 Harbour Row",
    "address_two": "Flat 3",
    "address_three": None,
    "city": "Portsmouth",
    "county": None,
    "state": "Hampshire",
    "zip": "PO1 3AA",
    "country": "United Kingdom",
    "phone": "+44 20 7946 0001",
    "email": None,
    "vat_no": None,
}


async def new_order(session, stack: Stack, headers: dict[str, str]) -> str:
    product = await create_product(session, stack, inventory=20)
    lines = {"variants": [{"id": variant_of(product)["id"], "quantity": 1}]}
    basket = await call(session, stack, "POST", "/baskets", json=lines, headers=headers)
    order = await call(session, stack, "POST", "/orders", json={"basket_id": basket["data"]["id"]}, headers=headers)
    return order["data"]["id"]


def address_of(details: dict[str, Any]) -> dict[str, Any]:
    return {name: details[name] for name in HOME_ON_ORDER}


async def test_an_order_takes_its_addresses_from_the_customers_book(stack: Stack, session) -> None:
    alice = await signed_in(session, stack)
    home = (await call(session, stack, "POST", "/addresses", 201, json=HOME, headers=alice))["data"]
    order_id = await new_order(session, stack, alice)

    for kind in ("shipping", "billing"):
        path = f"/orders/{order_id}/{kind}/address"
        answer = await call(session, stack, "PUT", path, json={"address_id": home["id"]}, headers=alice)
        assert address_of(answer["data"][f"{kind}_details"]) == HOME_ON_ORDER
    order = (await call(session, stack, "GET", f"/orders/{order_id}", headers=alice))["data"]
    assert address_of(order["shipping_details"]) == address_of(order["billing_details"]) == HOME_ON_ORDER

    # By id and by fields at once: refused, whichever would have won.
    both = {"address_id": home["id"], "firstname": "Mallory", "city": "Elsewhere"}
    refused = await call(session, stack, "PUT", f"/orders/{order_id}/billing/address", 422, json=both, headers=alice)
    assert list(refused) == ["address_id"], refused
    assert (await call(session, stack, "GET", f"/orders/{order_id}", headers=alice))["data"] == order


async def test_another_customers_address_or_a_guests_address_id_is_refused(stack: Stack, session, admin_db) -> None:
    alice, bob = await signed_in(session, stack), await signed_in(session, stack)
    bobs = (await call(session, stack, "POST", "/addresses", 201, json=HOME, headers=bob))["data"]
    alices_order = await new_order(session, stack, alice)
    guest_order = await new_order(session, stack, {})

    async def state(order_id: str) -> tuple:
        row = await admin_db.fetchrow(
            "SELECT version, shipping_details, billing_details, shipping_price_id FROM orders.orders WHERE id = $1",
            order_id,
        )
        return tuple(row)

    before = {order_id: await state(order_id) for order_id in (alices_order, guest_order)}
    attempts = [
        (alices_order, alice, bobs["id"]),  # Bob's address on Alice's order
        (alices_order, alice, "nosuchaddress000"),
        (guest_order, {}, bobs["id"]),  # a guest has no book
    ]
    for order_id, headers, address_id in attempts:
        for kind in ("shipping", "billing"):
            path = f"/orders/{order_id}/{kind}/address"
            answer = await call(session, stack, "PUT", path, 422, json={"address_id": address_id}, headers=headers)
            assert answer == INVALID, (order_id, address_id)
    assert {order_id: await state(order_id) for order_id in before} == before
