"""A customer's address book: add, change, delete, list; another customer's address is a 404
and nothing changes."""

from __future__ import annotations

import asyncio

import pytest

from customers.domain import MAX_ADDRESSES
from services.customers.tests.testkit import API, register
from shared.countries import country_id
from tests.support import identity_headers

HOME = {
    "salutation": "Ms",
    "firstname": "Ada",
    "lastname": "Lovelace",
    "company_name": "Analytical Engines Ltd",
    "email": "ada@example.com",
    "phone": "+44 20 7946 0000",
    "address": "12 St James's Square",
    "address_two": "Second floor",
    "city": "London",
    "state": "Greater London",
    "postal_code": "SW1Y 4JH",
    "country_id": country_id("GB"),
    "shipping": True,
    "billing": True,
    "default": True,
    "delivery_instructions": "Ring twice",
    "meta": {"label": "home"},
}


async def add(client, account, body=None) -> dict:
    response = await client.post(f"{API}/addresses", json=body or HOME, headers=account.headers())
    assert response.status == 201, await response.text()
    return (await response.json())["data"]


async def book(client, account) -> list[dict]:
    response = await client.get(f"{API}/user/addresses", headers=account.headers())
    assert response.status == 200
    return (await response.json())["data"]


async def test_add_change_list_and_delete(client):
    account = await register(client)
    address = await add(client, account)
    assert address == {
        "id": address["id"],
        **{k: v for k, v in HOME.items() if k != "country_id"},
        "address_three": None,
        "last_used_at": None,
        "country": {
            "data": {
                "id": country_id("GB"),
                "name": "United Kingdom",
                "iso_a_2": "GB",
                "iso_a_3": "GBR",
                "iso_numeric": "826",
            }
        },
    }

    response = await client.put(
        f"{API}/addresses/{address['id']}",
        json={"city": "Cambridge", "country": "France", "company_name": None, "meta": []},
        headers=account.headers(),
    )
    assert response.status == 200, await response.text()
    changed = (await response.json())["data"]
    assert (changed["city"], changed["country"]["data"]["iso_a_2"], changed["company_name"]) == (
        "Cambridge",
        "FR",
        None,
    )
    assert changed["meta"] == {}
    assert changed["firstname"] == "Ada"  # not sent: kept

    assert [a["id"] for a in await book(client, account)] == [address["id"]]
    response = await client.delete(f"{API}/addresses/{address['id']}", headers=account.headers())
    assert response.status == 204
    assert await book(client, account) == []
    response = await client.delete(f"{API}/addresses/{address['id']}", headers=account.headers())
    assert response.status == 404


async def test_a_new_default_takes_the_place_of_the_old_one_of_its_kind(client):
    account = await register(client)
    shipping = await add(client, account, HOME | {"billing": False})
    billing = await add(client, account, HOME | {"shipping": False})
    both = await add(client, account, HOME)
    defaults = {a["id"]: a["default"] for a in await book(client, account)}
    assert defaults == {shipping["id"]: False, billing["id"]: False, both["id"]: True}

    response = await client.put(f"{API}/addresses/{shipping['id']}", json={"default": True}, headers=account.headers())
    assert response.status == 200
    defaults = {a["id"]: a["default"] for a in await book(client, account)}
    assert defaults == {shipping["id"]: True, billing["id"]: False, both["id"]: False}


async def test_concurrent_defaults_leave_one_of_each_kind(client):
    account = await register(client)
    await asyncio.gather(*(add(client, account) for _ in range(6)))
    assert sum(a["default"] for a in await book(client, account)) == 1


async def test_another_customers_address_is_not_found_and_stays_as_it_was(client, pool):
    alice, mallory = await register(client), await register(client)
    address = await add(client, alice)
    before = await pool.fetchrow("SELECT * FROM addresses WHERE id = $1", address["id"])

    attacks = [
        ("PUT", {"city": "Nowhere", "default": False}),
        ("DELETE", None),
    ]
    for method, body in attacks:
        response = await client.request(
            method, f"{API}/addresses/{address['id']}", json=body, headers=mallory.headers()
        )
        assert response.status == 404, method
        assert await response.json() == {"error": {"http_code": 404, "message": "Resource not found"}}
    assert await book(client, mallory) == []
    # Mallory's own default does not take Alice's place either.
    await add(client, mallory)
    assert await pool.fetchrow("SELECT * FROM addresses WHERE id = $1", address["id"]) == before
    assert [a["id"] for a in await book(client, alice)] == [address["id"]]


async def test_the_address_book_needs_a_customer(client):
    for method, path, body in [
        ("GET", "/user/addresses", None),
        ("POST", "/addresses", HOME),
        ("PUT", "/addresses/abcdefgh12345678", {"city": "X"}),
        ("DELETE", "/addresses/abcdefgh12345678", None),
    ]:
        for headers in ({}, identity_headers()):
            response = await client.request(method, f"{API}{path}", json=body, headers=headers)
            assert response.status == 401, (method, path)


@pytest.mark.parametrize(
    ("change", "errors"),
    [
        ({"country_id": None}, {"country_id": ["The country id field is required."]}),
        ({"country_id": "zzzzzzzzzzzzzzzzzzzzzzzz"}, {"country_id": ["The selected country id is invalid."]}),
        ({"country_id": None, "country": "Atlantis"}, {"country": ["The selected country is invalid."]}),
        ({"firstname": ""}, None),
        ({"postal_code": "x" * 21}, None),
        ({"email": "nope"}, None),
        ({"shipping": ["x"]}, None),
        ({"meta": "text"}, None),
    ],
)
async def test_a_refused_address_writes_nothing(client, pool, change, errors):
    account = await register(client)
    body = {k: v for k, v in (HOME | change).items() if v is not None}
    response = await client.post(f"{API}/addresses", json=body, headers=account.headers())
    assert response.status == 422
    if errors is not None:
        assert await response.json() == errors
    else:
        assert set(await response.json()) == set(change)
    assert await pool.fetchval("SELECT count(*) FROM addresses WHERE customer_id = $1", account.id) == 0


@pytest.mark.parametrize("field", ["firstname", "city", "postal_code", "country_id", "default", "meta"])
async def test_a_required_field_cannot_be_cleared(client, pool, field):
    account = await register(client)
    address = await add(client, account)
    before = await pool.fetchrow("SELECT * FROM addresses WHERE id = $1", address["id"])
    response = await client.put(f"{API}/addresses/{address['id']}", json={field: None}, headers=account.headers())
    assert (response.status, await response.json()) == (422, {field: ["This field cannot be null."]})
    assert await pool.fetchrow("SELECT * FROM addresses WHERE id = $1", address["id"]) == before


async def test_an_address_book_is_bounded(client, pool):
    account = await register(client)
    rows = [(f"seeded{i:018d}", account.id) for i in range(MAX_ADDRESSES)]
    await pool.executemany(
        "INSERT INTO addresses (id, customer_id, firstname, lastname, address, city, state, postal_code, country) "
        "VALUES ($1, $2, 'A', 'B', 'C', 'D', 'E', 'F', 'GB')",
        rows,
    )
    response = await client.post(f"{API}/addresses", json=HOME, headers=account.headers())
    assert response.status == 422
    assert (await response.json())["error"]["message"] == f"An address book holds at most {MAX_ADDRESSES} addresses"
    assert await pool.fetchval("SELECT count(*) FROM addresses WHERE customer_id = $1", account.id) == MAX_ADDRESSES
