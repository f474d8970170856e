"""Baskets of signed-in customers through the real gateway, basket and customers processes (the
`stack`): customers register and sign in (`POST /customers`, `POST /oauth/token`) and send their
access token; the gateway passes them on as the signed identity.

The current basket, claiming and resolving (merging) a guest basket, saved baskets, and the
ownership attacks: customer B's token on each of customer A's baskets is answered as for an
unknown basket, and changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest

from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from services.basket.tests.test_basket_management import place
from services.basket.tests.testkit import sku
from services.customers.tests.testkit import new_email, new_secret
from shared.http import new_id
from shared.identity import CUSTOMER_TOKEN_AUDIENCE, CUSTOMER_TOKEN_ISSUER
from shared.settings import DEV_CUSTOMER_TOKEN_SECRET

ADMIN = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}
INVALID_BASKET = {"basket_id": ["The selected basket id is invalid."]}
NOT_FOUND = {"error": {"http_code": 404, "message": "Resource not found"}}


@pytest.fixture
async def http(stack: Any) -> Any:
    async with aiohttp.ClientSession(base_url=stack.gateway + "/") as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
    async with http.request(method, path, **kwargs) as response:
        assert response.status == status, (method, path, response.status, await response.text())
        return await response.json() if response.status != 204 else None


async def signed_in(http: aiohttp.ClientSession) -> dict[str, str]:
    """A new customer's `Authorization` header, as a storefront holds it after signing in."""
    email, secret = new_email(), new_secret()
    body = {"firstname": "Ada", "lastname": "Lovelace", "email": email, "password": secret}
    await call(http, "POST", "customers", 201, json=body)
    grant = {"grant_type": "password", "username": email, "password": secret}
    tokens = await call(http, "POST", "oauth/token", data=grant)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def new_variant(http: aiohttp.ClientSession, **fields: Any) -> str:
    body = {
        "name": "Customer basket tee",
        "variants": [{"sku": sku("CB"), "price": "10.00", "inventory": 500} | fields],
    }
    product = await call(http, "POST", "products", json=body, headers=ADMIN)
    return product["data"]["variants"]["data"][0]["id"]


async def basket(http: aiohttp.ClientSession, headers: dict[str, str] | None = None, **quantities: int) -> str:
    """A new basket (a guest's without `headers`) with `variant_id=quantity` lines; its id."""
    variants = [{"id": variant, "quantity": quantity} for variant, quantity in quantities.items()]
    created = await call(http, "POST", "baskets", json={"variants": variants}, headers=headers or {})
    return created["data"]["id"]


def quantities(body: dict[str, Any]) -> dict[str, int]:
    return {line["variant"]["data"]["id"]: line["quantity"] for line in body["data"]["lines"]["data"]}


async def lines_of(http: aiohttp.ClientSession, basket_id: str, headers: dict[str, str] | None = None) -> dict:
    return quantities(await call(http, "GET", f"baskets/{basket_id}?include=lines.variant", headers=headers or {}))


async def current(http: aiohttp.ClientSession, headers: dict[str, str]) -> tuple[str, dict[str, int]]:
    body = await call(http, "GET", "baskets/current?include=lines.variant", headers=headers)
    return body["data"]["id"], quantities(body)


async def test_a_basket_made_signed_in_is_the_customers_and_the_newest_is_current(http) -> None:
    alice = await signed_in(http)
    variant = await new_variant(http)
    assert await call(http, "GET", "baskets/current", 404, headers=alice) == NOT_FOUND
    await call(http, "GET", "baskets/current", 401)  # a guest has no current basket

    first = await basket(http, alice, **{variant: 2})
    assert await current(http, alice) == (first, {variant: 2})
    # Hers alone: to a guest holding its id it is unknown.
    assert await call(http, "GET", f"baskets/{first}", 404) == NOT_FOUND
    assert await lines_of(http, first, alice) == {variant: 2}

    added = await call(http, "POST", "basket-lines", json={"variants": [{"id": variant, "quantity": 1}]}, headers=alice)
    assert (await current(http, alice))[0] == added["data"]["id"] != first
    await basket(http, **{variant: 5})  # a guest's basket meanwhile is nobody's
    assert (await current(http, alice))[0] == added["data"]["id"]


async def test_an_invalid_token_on_a_guest_route_is_401_not_a_guest(http) -> None:
    variant = await new_variant(http)
    now = int(time.time())
    claims = {"iss": CUSTOMER_TOKEN_ISSUER, "aud": CUSTOMER_TOKEN_AUDIENCE, "sub": new_id(), "iat": now - 900}
    expired = jwt.encode(claims | {"exp": now - 60}, DEV_CUSTOMER_TOKEN_SECRET, algorithm="HS256")
    body = {"variants": [{"id": variant, "quantity": 1}]}
    for authorization in ("Bearer not-a-token", f"Bearer {expired}"):
        await call(http, "POST", "baskets", 401, json=body, headers={"Authorization": authorization})
    # An admin's token (a back office's) is served as a guest: the basket is nobody's.
    basket_id = (await call(http, "POST", "baskets", json=body, headers=ADMIN))["data"]["id"]
    await call(http, "GET", f"baskets/{basket_id}")


async def test_claim_makes_a_guest_basket_the_customers_current_one(http, pool: asyncpg.Pool) -> None:
    alice, bob = await signed_in(http), await signed_in(http)
    variant = await new_variant(http)
    older = await basket(http, alice, **{variant: 1})
    guest = await basket(http, **{variant: 3})

    claimed = await call(http, "POST", f"baskets/{guest}/claim?include=lines.variant", headers=alice)
    assert (claimed["data"]["id"], quantities(claimed)) == (guest, {variant: 3})
    assert await current(http, alice) == (guest, {variant: 3})
    assert (await current(http, alice))[0] != older
    await call(http, "GET", f"baskets/{guest}", 404)  # no longer a guest's
    # Already hers: answered as it is.
    again = await call(http, "POST", f"baskets/{guest}/claim?include=lines.variant", headers=alice)
    assert quantities(again) == {variant: 3}
    # Another customer's, or unknown: 404, and it stays hers.
    assert await call(http, "POST", f"baskets/{guest}/claim", 404, headers=bob) == NOT_FOUND
    await call(http, "POST", "baskets/nosuchbasket0000/claim", 404, headers=bob)
    assert await current(http, alice) == (guest, {variant: 3})
    await call(http, "GET", "baskets/current", 404, headers=bob)

    # A guest basket whose order is placed cannot be claimed.
    used = await basket(http, **{variant: 1})
    await place(pool, used, variant)
    await call(http, "POST", f"baskets/{used}/claim", 403, headers=bob)
    await call(http, "GET", "baskets/current", 404, headers=bob)


async def test_resolve_adds_quantities_checks_every_rule_and_empties_the_guest_basket(http) -> None:
    alice = await signed_in(http)
    capped = await new_variant(http, max_qty=5)
    other = await new_variant(http)
    mine = await basket(http, alice, **{capped: 2})
    guest = await basket(http, **{capped: 2, other: 1})

    resolved = await call(
        http, "POST", "baskets/resolve?include=lines.variant", json={"basket_id": guest}, headers=alice
    )
    assert (resolved["data"]["id"], quantities(resolved)) == (mine, {capped: 4, other: 1})
    assert await lines_of(http, guest) == {}  # emptied, still the guest's (nothing to merge twice)
    assert await current(http, alice) == (mine, {capped: 4, other: 1})

    # 4 + 3 is past the variant's maximum: a 422 naming the rule, and nothing changed anywhere.
    too_many = await basket(http, **{capped: 3})
    refused = await call(http, "POST", "baskets/resolve", 422, json={"basket_id": too_many}, headers=alice)
    assert refused == {"variants.0.quantity": ["You cannot add more than 5 of this item."]}
    assert await current(http, alice) == (mine, {capped: 4, other: 1})
    assert await lines_of(http, too_many) == {capped: 3}

    # Unknown ids are a 422 of the body, as on POST /basket-lines.
    for bad in ("nosuchbasket0000", "../x"):
        assert (
            await call(http, "POST", "baskets/resolve", 422, json={"basket_id": bad}, headers=alice) == INVALID_BASKET
        )
    await call(http, "POST", "baskets/resolve", 401, json={"basket_id": guest})


async def test_resolve_without_a_current_basket_or_without_merging_makes_the_guest_basket_current(http) -> None:
    alice = await signed_in(http)
    variant = await new_variant(http)
    guest = await basket(http, **{variant: 2})
    resolved = await call(http, "POST", "baskets/resolve", json={"basket_id": guest}, headers=alice)
    assert resolved["data"]["id"] == guest
    assert await current(http, alice) == (guest, {variant: 2})

    # merge: false is upstream's overwrite: the guest basket becomes the current one, unmerged.
    replacement = await basket(http, **{variant: 7})
    await call(http, "POST", "baskets/resolve", json={"basket_id": replacement, "merge": False}, headers=alice)
    assert await current(http, alice) == (replacement, {variant: 7})
    assert await lines_of(http, guest, alice) == {variant: 2}  # the old one is still hers, untouched


async def test_concurrent_resolves_account_for_every_quantity_exactly_once(http) -> None:
    """Two devices (and more) resolving at once: each guest basket is merged once, none is lost."""
    alice = await signed_in(http)
    variant = await new_variant(http, inventory=10_000)
    mine = await basket(http, alice, **{variant: 1})
    guests = [await basket(http, **{variant: quantity}) for quantity in (2, 3, 4, 5)]
    # Every guest basket twice, all at once.
    bodies = [{"basket_id": guest} for guest in guests * 2]
    answers = await asyncio.gather(
        *(call(http, "POST", "baskets/resolve", json=body, headers=alice) for body in bodies)
    )
    assert {answer["data"]["id"] for answer in answers} == {mine}
    assert await current(http, alice) == (mine, {variant: 1 + 2 + 3 + 4 + 5})
    for guest in guests:
        assert await lines_of(http, guest) == {}

    # Without a current basket: one of the two becomes it, the other is merged into it.
    bob = await signed_in(http)
    first, second = await basket(http, **{variant: 2}), await basket(http, **{variant: 3})
    await asyncio.gather(
        *(call(http, "POST", "baskets/resolve", json={"basket_id": b}, headers=bob) for b in (first, second))
    )
    current_id, held = await current(http, bob)
    assert current_id in (first, second) and held == {variant: 5}


async def test_saved_baskets_are_copies_the_basket_does_not_change(http) -> None:
    alice = await signed_in(http)
    variant = await new_variant(http)
    mine = await basket(http, alice, **{variant: 2})
    assert await call(http, "GET", "baskets/saved", headers=alice) == {
        "data": [],
        "meta": {
            "current_page": 1,
            "per_page": 25,
            "total": 0,
            "last_page": 1,
            "from": None,
            "to": None,
            "path": "/api/v1/baskets/saved",
        },
        "links": {
            "first": "/api/v1/baskets/saved?page=1&per_page=25",
            "last": "/api/v1/baskets/saved?page=1&per_page=25",
            "prev": None,
            "next": None,
        },
    }

    copy = await call(
        http, "POST", f"baskets/{mine}/save?include=lines.variant", json={"name": "Weekly"}, headers=alice
    )
    saved_id = copy["data"]["id"]
    assert saved_id != mine and quantities(copy) == {variant: 2}
    await call(
        http,
        "POST",
        "basket-lines",
        json={"basket_id": mine, "variants": [{"id": variant, "quantity": 3}]},
        headers=alice,
    )

    listed = await call(http, "GET", "baskets/saved?include=lines.variant", headers=alice)
    assert [(s["id"], s["name"]) for s in listed["data"]] == [(saved_id, "Weekly")]
    assert quantities(listed["data"][0]["basket"]) == {variant: 2}  # as it was saved
    assert listed["meta"]["total"] == 1
    assert await current(http, alice) == (mine, {variant: 5})  # a saved copy is never the current basket
    # Saved copies live under /baskets/saved only.
    await call(http, "GET", f"baskets/{saved_id}", 404, headers=alice)

    rename = f"baskets/saved/{saved_id}?include=lines.variant"
    renamed = await call(http, "PUT", rename, json={"name": "Monthly"}, headers=alice)
    assert (renamed["data"]["id"], renamed["data"]["name"]) == (saved_id, "Monthly")
    assert quantities(renamed["data"]["basket"]) == {variant: 2}
    await call(http, "PUT", f"baskets/saved/{saved_id}", 422, json={"name": ""}, headers=alice)
    await call(http, "POST", f"baskets/{mine}/save", 422, json={}, headers=alice)

    await call(http, "DELETE", f"baskets/saved/{saved_id}", 204, headers=alice)
    await call(http, "DELETE", f"baskets/saved/{saved_id}", 404, headers=alice)
    assert (await call(http, "GET", "baskets/saved", headers=alice))["data"] == []
    assert await current(http, alice) == (mine, {variant: 5})


async def test_customer_b_can_neither_see_nor_change_customer_a_s_baskets(http, admin_db: asyncpg.Connection) -> None:
    alice, bob = await signed_in(http), await signed_in(http)
    variant = await new_variant(http)
    hers = await basket(http, alice, **{variant: 2})
    line = (await call(http, "GET", f"baskets/{hers}?include=lines", headers=alice))["data"]["lines"]["data"][0]["id"]
    saved = (await call(http, "POST", f"baskets/{hers}/save", json={"name": "Hers"}, headers=alice))["data"]["id"]

    async def state() -> list[tuple]:
        rows = await admin_db.fetch(
            "SELECT b.id, b.version, b.customer_id, b.saved_name, b.meta, l.variant_id, l.quantity "
            "FROM basket.baskets b LEFT JOIN basket.basket_lines l ON l.basket_id = b.id "
            "WHERE b.id = ANY($1::text[]) ORDER BY b.id",
            [hers, saved],
        )
        return [tuple(row) for row in rows]

    before = await state()
    one = {"variants": [{"id": variant, "quantity": 1}]}
    attacks = [
        ("GET", f"baskets/{hers}", None, 404),
        ("PUT", f"baskets/{hers}", {"currency": "GBP"}, 404),
        ("DELETE", f"baskets/{hers}", None, 404),
        ("POST", f"baskets/{hers}/meta", {"key": "gift", "value": True}, 404),
        ("POST", "baskets", {"basket_id": hers, **one}, 422),
        ("POST", "basket-lines", {"basket_id": hers, **one}, 422),
        ("PUT", f"basket-lines/{line}", {"quantity": 9}, 404),
        ("PUT", f"basket-lines/{line}/add", {"quantity": 1}, 404),
        ("POST", f"basket-lines/{line}/add", {"quantity": 1}, 404),
        ("PUT", f"basket-lines/{line}/remove", {"quantity": 1}, 404),
        ("DELETE", f"basket-lines/{line}", None, 404),
        ("DELETE", "basket-lines", {"lines": [{"id": line}]}, 422),
        ("POST", f"baskets/{hers}/claim", None, 404),
        ("POST", f"baskets/{hers}/save", {"name": "Mine now"}, 404),
        ("POST", "baskets/resolve", {"basket_id": hers}, 422),
        ("PUT", f"baskets/saved/{saved}", {"name": "Mine now"}, 404),
        ("DELETE", f"baskets/saved/{saved}", None, 404),
    ]
    for method, path, body, status in attacks:
        # As customer B, and as a guest holding the id (guest-only operations aside).
        for headers in (bob, {}):
            if path.startswith(("baskets/saved", "baskets/resolve")) or path.endswith(("/claim", "/save")):
                if not headers:
                    continue
            answer = await call(http, method, path, status, json=body, headers=headers)
            if status == 404:
                assert answer == NOT_FOUND, (method, path)
    assert (await call(http, "GET", "baskets/saved", headers=bob))["data"] == []
    await call(http, "GET", "baskets/current", 404, headers=bob)
    assert await state() == before
    assert await current(http, alice) == (hers, {variant: 2})
