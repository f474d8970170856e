"""Countries, order types and an order's empty meta (issue 18): the in-process orders app on the
real database and bus, and the same routes through the gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pycountry
import pytest

from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from services.orders.tests.testkit import ADDRESS, Store, admin, line
from shared import countries
from tests.support import identity_headers

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

API = "/api/v1"
NOT_FOUND = {"error": {"http_code": 404, "message": "Resource not found"}}
# Countries no other test's address names: the tests here change their flags, and put them back.
RARE = ("AQ", "BV", "HM", "UM", "TF", "GS", "PN", "NF", "CC", "CX")


def cid(alpha_2: str) -> str:
    return countries.country_id(alpha_2)


@pytest.fixture
async def rare(pool: asyncpg.Pool) -> AsyncIterator[tuple[str, ...]]:
    """The countries a test may set flags on: no admin's flags before it, none after it."""
    await pool.execute("DELETE FROM countries WHERE alpha_2 = ANY($1::text[])", list(RARE))
    yield RARE
    await pool.execute("DELETE FROM countries WHERE alpha_2 = ANY($1::text[])", list(RARE))


async def flags(pool: asyncpg.Pool) -> list[tuple]:
    return [tuple(row) for row in await pool.fetch("SELECT alpha_2, enabled, preferred FROM countries ORDER BY 1")]


async def set_flags(client: Any, alpha_2: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.put(f"{API}/countries/{cid(alpha_2)}", json=body, headers=admin())
    assert response.status == 200, await response.text()
    return (await response.json())["data"]


# ---------------------------------------------------------------------------------------------
# Countries


def test_the_list_is_iso_3166_with_stable_opaque_ids() -> None:
    assert len(countries.COUNTRIES) == len(pycountry.countries)
    assert {c.alpha_2 for c in countries.COUNTRIES} == {c.alpha_2 for c in pycountry.countries}
    assert len(countries.COUNTRIES_BY_ID) == len(countries.COUNTRIES)  # no two share an id
    # The same id on every installation (derived from the code), shaped like every other id.
    assert cid("GB") == countries.country_id("GB") != cid("FR")
    assert all(len(c.id) == 24 and c.id.isalnum() and c.id.islower() for c in countries.COUNTRIES)
    names = [c.name for c in countries.COUNTRIES]
    assert names[:3] == ["Afghanistan", "Åland Islands", "Albania"] and names[-1] == "Zimbabwe"


async def test_countries_in_getcandys_shape(client: Any) -> None:
    response = await client.get(f"{API}/countries")
    assert response.status == 200, await response.text()
    body = await response.json()
    assert len(body["data"]) == 50 and body["meta"]["per_page"] == 50 and body["meta"]["current_page"] == 1
    enabled = body["meta"]["total"]
    assert body["links"]["next"] is not None
    everything = await (await client.get(f"{API}/countries?paginate=false")).json()
    assert set(everything) == {"data"} and len(everything["data"]) == enabled
    assert everything["data"][:50] == body["data"]
    uk = next(country for country in everything["data"] if country["iso_a_2"] == "GB")
    assert uk == {
        "id": cid("GB"),
        "name": "United Kingdom",
        "region": None,
        "iso_a_2": "GB",
        "iso_a_3": "GBR",
        "iso_numeric": "826",
        "preferred": False,
        "enabled": True,
    }
    response = await client.get(f"{API}/countries/{cid('GB')}")
    assert (response.status, await response.json()) == (200, {"data": uk})
    page = await (await client.get(f"{API}/countries?per_page=200&page=2")).json()
    assert page["data"] == everything["data"][200:400] and page["meta"]["last_page"] == -(-enabled // 200)

    for query, field in [("per_page=201", "per_page"), ("page=0", "page"), ("paginate=maybe", "paginate")]:
        response = await client.get(f"{API}/countries?{query}")
        assert response.status == 422 and list(await response.json()) == [field], query
    for country_id in ("nosuchcountry0000", "GB", "gb", cid("GB").upper()):
        response = await client.get(f"{API}/countries/{country_id}")
        assert (response.status, await response.json()) == (404, NOT_FOUND), country_id


async def test_admin_sets_the_flags(client: Any, rare: tuple[str, ...]) -> None:
    aq, bv = rare[:2]
    antarctica = await set_flags(client, aq, {"enabled": False})
    assert (antarctica["enabled"], antarctica["preferred"]) == (False, False)
    bouvet = await set_flags(client, bv, {"preferred": True})
    assert (bouvet["enabled"], bouvet["preferred"]) == (True, True)
    # null (or absent) leaves a flag as it is.
    assert await set_flags(client, aq, {"preferred": True, "enabled": None}) == antarctica | {"preferred": True}
    assert await set_flags(client, aq, {}) == antarctica | {"preferred": True}

    listed = await (await client.get(f"{API}/countries?paginate=false")).json()
    assert cid(aq) not in {c["id"] for c in listed["data"]}
    shown = await (await client.get(f"{API}/countries?paginate=false&show_disabled=true")).json()
    assert len(shown["data"]) == len(countries.COUNTRIES) and cid(aq) in {c["id"] for c in shown["data"]}
    preferred = await (await client.get(f"{API}/countries?paginate=false&only_preferred=1")).json()
    assert cid(bv) in [c["id"] for c in preferred["data"]] and cid(aq) not in [c["id"] for c in preferred["data"]]
    preferred = await (await client.get(f"{API}/countries?paginate=0&only_preferred=1&show_disabled=1")).json()
    assert {cid(aq), cid(bv)} <= {c["id"] for c in preferred["data"]}
    response = await client.get(f"{API}/countries/{cid(aq)}")  # a disabled country is still readable
    assert (await response.json())["data"] == antarctica | {"preferred": True}

    await set_flags(client, aq, {"enabled": True})
    listed = await (await client.get(f"{API}/countries?paginate=false")).json()
    assert cid(aq) in {c["id"] for c in listed["data"]}


async def test_flag_refusals_change_nothing(client: Any, pool: asyncpg.Pool, rare: tuple[str, ...]) -> None:
    await set_flags(client, rare[2], {"enabled": False})
    before = await flags(pool)
    url = f"{API}/countries/{cid(rare[2])}"
    for headers, body, status in [
        ({}, {"enabled": True}, 401),
        (identity_headers("c", ("customer",)), {"enabled": True}, 403),
        (admin(), {"enabled": "maybe"}, 422),
        (admin(), {"preferred": [True]}, 422),
    ]:
        response = await client.put(url, json=body, headers=headers)
        assert response.status == status, await response.text()
    response = await client.put(url, data=b"[1]", headers={**admin(), "Content-Type": "application/json"})
    assert response.status == 422
    response = await client.put(f"{API}/countries/nosuchcountry0000", json={"enabled": True}, headers=admin())
    assert (response.status, await response.json()) == (404, NOT_FOUND)
    assert await flags(pool) == before


async def test_concurrent_changes_of_different_flags_are_all_kept(
    client: Any, pool: asyncpg.Pool, rare: tuple[str, ...]
) -> None:
    """Each change is one statement (an upsert setting only its flags): a change of `enabled` and
    one of `preferred`, at once, on a country no admin has set yet, both stay."""
    countries = rare[3:]
    requests = [
        client.put(f"{API}/countries/{cid(code)}", json=body, headers=admin())
        for code in countries
        for body in ({"enabled": False}, {"preferred": True}, {"enabled": False}, {"preferred": True})
    ]
    assert [response.status for response in await asyncio.gather(*requests)] == [200] * len(requests)
    rows = {row[0]: row[1:] for row in await flags(pool)}
    assert {code: rows[code] for code in countries} == dict.fromkeys(countries, (False, True))


async def test_addresses_name_an_enabled_country(client: Any, store: Store, rare: tuple[str, ...]) -> None:
    antarctica = pycountry.countries.get(alpha_2=rare[0])
    response = await client.post(f"{API}/orders", json={"basket_id": store.put([line("A", 1, 1000)])})
    order = (await response.json())["data"]
    url = f"{API}/orders/{order['id']}"
    for kind in ("shipping", "billing"):
        response = await client.put(f"{url}/{kind}/address", json={**ADDRESS, "country": antarctica.name})
        assert response.status == 200, await response.text()
    await set_flags(client, rare[0], {"enabled": False})
    before = await (await client.get(url)).json()
    for kind in ("shipping", "billing"):
        for country in (antarctica.name, antarctica.alpha_2, antarctica.alpha_3.lower()):
            body = {**ADDRESS, "firstname": "New", "country": country}
            response = await client.put(f"{url}/{kind}/address", json=body)
            assert (response.status, await response.json()) == (422, {"country": ["The selected country is invalid."]})
    assert await (await client.get(url)).json() == before
    await set_flags(client, rare[0], {"enabled": True})
    body = {**ADDRESS, "firstname": "New", "country": antarctica.alpha_2}
    response = await client.put(f"{url}/billing/address", json=body)
    assert response.status == 200
    assert (await response.json())["data"]["billing_details"]["country"] == antarctica.name


# ---------------------------------------------------------------------------------------------
# Order types, and an order's meta


async def _place(pool: asyncpg.Pool, order_id: str, order_type: str | None) -> None:
    """Marks an order placed as the saga would leave it (the saga is tested in test_saga.py)."""
    await pool.execute(
        "UPDATE orders SET status = 'payment-received', placed_at = now(), reference = $2, type = $3 WHERE id = $1",
        order_id,
        f"T-{uuid.uuid4().hex}",
        order_type,
    )


async def test_order_types_are_those_of_placed_orders(client: Any, store: Store, pool: asyncpg.Pool) -> None:
    marker = uuid.uuid4().hex[:8]
    placed_types = [f"Collection {marker}", f"PayPal {marker}", f"Collection {marker}", None]
    for order_type in placed_types:
        response = await client.post(f"{API}/orders", json={"basket_id": store.put([line("A", 1, 1000)])})
        await _place(pool, (await response.json())["data"]["id"], order_type)
    # An order never placed does not put its type (anyone may send one) on the list.
    response = await client.post(
        f"{API}/orders", json={"basket_id": store.put([line("A", 1, 1000)]), "type": f"Spam {marker}"}
    )
    assert response.status == 200

    response = await client.get(f"{API}/orders/types")
    assert response.status == 200, await response.text()
    labels = [item["label"] for item in (await response.json())["data"]]
    assert labels == sorted(set(labels))
    assert [label for label in labels if marker in label] == [f"Collection {marker}", f"PayPal {marker}"]
    assert all(set(item) == {"label"} for item in (await (await client.get(f"{API}/orders/types")).json())["data"])


async def test_an_orders_empty_meta_is_an_array(client: Any, store: Store, pool: asyncpg.Pool) -> None:
    response = await client.post(f"{API}/orders", json={"basket_id": store.put([line("A", 1, 1000)])})
    order = (await response.json())["data"]
    assert order["meta"] == []  # upstream's PHP empty array
    await pool.execute("""UPDATE orders SET meta = '{"gift": true}' WHERE id = $1""", order["id"])
    assert (await (await client.get(f"{API}/orders/{order['id']}")).json())["data"]["meta"] == {"gift": True}


# ---------------------------------------------------------------------------------------------
# Through the gateway


async def test_countries_and_types_through_the_gateway(stack: Any) -> None:
    token = {"Authorization": f"Bearer {mint_token(GatewaySettings())}"}
    async with aiohttp.ClientSession(base_url=stack.gateway + "/") as http:
        response = await http.get("countries?paginate=false")
        assert response.status == 200
        assert cid("GB") in {c["id"] for c in (await response.json())["data"]}
        response = await http.get(f"countries/{cid('FR')}")
        assert (await response.json())["data"]["name"] == "France"
        response = await http.put(f"countries/{cid('PN')}", json={"preferred": True})
        assert response.status == 401
        response = await http.put(f"countries/{cid('PN')}", json={"preferred": True}, headers=token)
        assert response.status == 200 and (await response.json())["data"]["preferred"] is True
        response = await http.put(f"countries/{cid('PN')}", json={"preferred": False}, headers=token)
        assert (await response.json())["data"]["preferred"] is False
        response = await http.get("orders/types")
        assert response.status == 200 and isinstance((await response.json())["data"], list)
