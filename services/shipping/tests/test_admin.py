"""Admin endpoints of the shipping table: create, change, list; bad input is a 422 that writes nothing."""

from __future__ import annotations

import time

import orjson
import pytest

from shared.http import new_id
from shared.identity import CLOCK_SKEW, IDENTITY_HEADER, MAX_AGE, SIGNATURE_HEADER, signed_identity_headers
from shared.settings import DEV_IDENTITY_SIGNING_KEY
from tests.support import identity_headers


def admin() -> dict[str, str]:
    return identity_headers()


async def call(client, method: str, path: str, body=None):
    response = await client.request(method, f"/api/v1{path}", json=body, headers=admin())
    return response.status, await response.json()


async def test_zones_create_change_list(client):
    name = f"Zone {new_id()}"
    status, body = await call(
        client,
        "POST",
        "/shipping/zones",
        {"name": name, "countries": ["xa", "XB", "xa"], "regions": [{"name": "North", "prefixes": ["ab 1", "*"]}]},
    )
    assert status == 201, body
    zone = body["data"]
    assert (zone["name"], zone["countries"]) == (name, ["XA", "XB"])
    [north] = zone["regions"]["data"]
    assert (north["name"], north["prefixes"]) == ("North", ["AB 1", "*"])

    renamed = f"{name} renamed"
    status, body = await call(
        client,
        "PUT",
        f"/shipping/zones/{zone['id']}",
        {
            "name": renamed,
            "regions": [
                {"id": north["id"], "name": "South", "prefixes": ["CD"]},
                {"name": "North", "prefixes": ["AB"]},
            ],
        },
    )
    assert status == 200, body
    assert (body["data"]["name"], body["data"]["countries"]) == (renamed, ["XA", "XB"])
    regions = {r["name"]: r for r in body["data"]["regions"]["data"]}
    assert regions["South"]["id"] == north["id"]
    assert regions["South"]["prefixes"] == ["CD"]
    assert regions["North"]["id"] != north["id"]

    status, body = await call(client, "GET", "/shipping/zones")
    assert status == 200
    listed = next(z for z in body["data"] if z["id"] == zone["id"])
    assert listed["name"] == renamed
    assert len(listed["regions"]["data"]) == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "Z", "countries": ["GBR"]}, "countries.0"),
        ({"name": "Z", "countries": "GB"}, "countries"),
        ({"name": "Z", "regions": [{"name": "R", "prefixes": []}]}, "regions.0.prefixes"),
        ({"name": "Z", "regions": [{"name": "R", "prefixes": ["A-1"]}]}, "regions.0.prefixes.0"),
        ({"name": "Z", "regions": [{"name": "R", "prefixes": ["A"]}, {"name": "R", "prefixes": ["B"]}]}, "regions"),
        ({"name": "Z\u0000"}, "name"),
        ({"name": "Z", "regions": [{"name": "R", "prefixes": ["A\u0000"]}]}, "regions.0.prefixes.0"),
    ],
)
async def test_zone_validation(client, body, field):
    status, errors = await call(client, "POST", "/shipping/zones", body)
    assert status == 422
    assert field in errors


async def test_zone_name_is_unique_and_unknown_zone_is_404(client):
    name = f"Zone {new_id()}"
    assert (await call(client, "POST", "/shipping/zones", {"name": name}))[0] == 201
    assert await call(client, "POST", "/shipping/zones", {"name": name}) == (
        422,
        {"name": ["The name has already been taken."]},
    )
    assert (await call(client, "PUT", f"/shipping/zones/{new_id()}", {"name": "x"}))[0] == 404


async def test_admin_is_required(client):
    response = await client.get("/api/v1/shipping/zones")
    assert response.status == 401
    response = await client.get("/api/v1/shipping/zones", headers=identity_headers("c", ("customer",)))
    assert response.status == 403


async def make_zone(client, countries, regions=()):
    status, body = await call(
        client,
        "POST",
        "/shipping/zones",
        {"name": f"Zone {new_id()}", "countries": countries, "regions": list(regions)},
    )
    assert status == 201, body
    return body["data"]


async def make_method(client, type_="standard", name="Standard", **extra):
    status, body = await call(client, "POST", "/shipping/methods", {"type": type_, "name": name, **extra})
    assert status == 201, body
    return body["data"]


async def test_methods_create_change_list(client):
    code = new_id()[:10]
    method = await make_method(client, "collection", "Pick up", description="At the shop", code=code)
    assert (method["type"], method["name"], method["description"], method["code"]) == (
        "collection",
        "Pick up",
        "At the shop",
        code,
    )
    assert await call(client, "POST", "/shipping/methods", {"type": "standard", "name": "Other", "code": code}) == (
        422,
        {"code": ["The code has already been taken."]},
    )
    assert (await call(client, "POST", "/shipping/methods", {"type": "drone", "name": "Fly"}))[0] == 422
    status, body = await call(client, "PUT", f"/shipping/methods/{method['id']}", {"name": "Collect", "code": None})
    assert (status, body["data"]["name"], body["data"]["code"], body["data"]["type"]) == (
        200,
        "Collect",
        None,
        "collection",
    )
    assert (await call(client, "PUT", f"/shipping/methods/{method['id']}", {"name": None}))[0] == 422
    status, body = await call(client, "GET", "/shipping/methods")
    assert any(m["id"] == method["id"] and m["name"] == "Collect" for m in body["data"])


async def test_prices_create_change_and_references(client, pool):
    zone = await make_zone(client, ["XC"], [{"name": "Isles", "prefixes": ["HS"]}])
    other = await make_zone(client, ["XD"], [{"name": "Elsewhere", "prefixes": ["ZZ"]}])
    method = await make_method(client, "regional", "Courier")
    isles = zone["regions"]["data"][0]["id"]
    status, body = await call(
        client,
        "POST",
        "/shipping/prices",
        {"method_id": method["id"], "zone_id": zone["id"], "region_id": isles, "rate": 1499, "max_weight": 2000},
    )
    assert status == 201, body
    price = body["data"]
    assert price == {
        "id": price["id"],
        "rate": 1499,
        "tax": 299,
        "fixed": True,
        "currency": "GBP",
        "min_basket": 0,
        "min_weight": "0.00000",
        "max_weight": "2000.00000",
        "weight_unit": "g",
        "region_id": isles,
        "method": {
            "data": {"id": method["id"], "type": "regional", "name": "Courier", "description": None, "code": None}
        },
        "zone": {"data": {"id": zone["id"], "name": zone["name"]}},
    }
    bad = [
        ({"method_id": new_id(), "zone_id": zone["id"], "rate": 1}, {"method_id"}),
        ({"method_id": method["id"], "zone_id": new_id(), "rate": 1}, {"zone_id"}),
        (
            {
                "method_id": method["id"],
                "zone_id": zone["id"],
                "region_id": other["regions"]["data"][0]["id"],
                "rate": 1,
            },
            {"region_id"},
        ),
        (
            {"method_id": method["id"], "zone_id": zone["id"], "rate": 1, "min_weight": 500, "max_weight": 100},
            {"max_weight"},
        ),
        ({"method_id": method["id"], "zone_id": zone["id"], "rate": -1}, {"rate"}),
        ({"method_id": method["id"], "zone_id": zone["id"], "rate": 1.5}, {"rate"}),
        ({"method_id": method["id"], "zone_id": zone["id"], "rate": 1, "currency": "POUND"}, {"currency"}),
        ({"method_id": method["id"], "zone_id": zone["id"], "rate": 1, "currency": "ABC"}, {"currency"}),  # not ISO
        ({"method_id": method["id"], "zone_id": zone["id"]}, {"rate"}),
        ({"method_id": "m\u0000", "zone_id": zone["id"], "rate": 1}, {"method_id"}),
    ]
    before = await pool.fetchval("SELECT count(*) FROM prices")
    for payload, fields in bad:
        status, errors = await call(client, "POST", "/shipping/prices", payload)
        assert (status, set(errors)) == (422, fields), payload
    assert await pool.fetchval("SELECT count(*) FROM prices") == before

    status, body = await call(client, "PUT", f"/shipping/prices/{price['id']}", {"rate": 1599, "max_weight": None})
    assert (status, body["data"]["rate"], body["data"]["max_weight"], body["data"]["region_id"]) == (
        200,
        1599,
        None,
        isles,
    )
    # Moving a price to another zone leaves its region behind.
    status, body = await call(client, "PUT", f"/shipping/prices/{price['id']}", {"zone_id": other["id"]})
    assert (status, body["data"]["zone"]["data"]["id"], body["data"]["region_id"]) == (200, other["id"], None)
    assert (await call(client, "PUT", f"/shipping/prices/{price['id']}", {"rate": None}))[0] == 422
    assert (await call(client, "PUT", f"/shipping/prices/{new_id()}", {"rate": 1}))[0] == 404
    status, body = await call(client, "GET", "/shipping/prices")
    assert any(p["id"] == price["id"] and p["rate"] == 1599 for p in body["data"])


async def test_a_region_a_price_uses_cannot_be_removed(client, pool):
    zone = await make_zone(client, ["XE"], [{"name": "Isles", "prefixes": ["HS"]}])
    method = await make_method(client)
    region = zone["regions"]["data"][0]
    status, _ = await call(
        client,
        "POST",
        "/shipping/prices",
        {"method_id": method["id"], "zone_id": zone["id"], "region_id": region["id"], "rate": 100},
    )
    assert status == 201
    status, errors = await call(
        client, "PUT", f"/shipping/zones/{zone['id']}", {"name": "Renamed " + zone["name"], "regions": []}
    )
    assert (status, errors) == (422, {"regions": ["A region that a price uses cannot be removed."]})
    # nothing half-written: the name did not change either
    assert await pool.fetchval("SELECT name FROM zones WHERE id = $1", zone["id"]) == zone["name"]
    status, errors = await call(
        client, "PUT", f"/shipping/zones/{zone['id']}", {"regions": [{"id": new_id(), "name": "X", "prefixes": ["A"]}]}
    )
    assert (status, set(errors)) == (422, {"regions.0.id"})


# --- the identity must be the gateway's, signed and fresh (shared.identity) -----------------------

ADMIN_IDENTITY = {"sub": "mallory", "roles": ["admin"]}
ZONES = "/api/v1/shipping/zones"


async def assert_401(client, headers: dict[str, str]) -> None:
    response = await client.get(ZONES, headers=headers)
    assert response.status == 401
    assert await response.json() == {"error": {"http_code": 401, "message": "Unauthorized"}}


async def test_an_unsigned_identity_is_401(client):
    await assert_401(client, {IDENTITY_HEADER: orjson.dumps(ADMIN_IDENTITY).decode()})


async def test_an_identity_signed_with_another_key_is_401(client):
    await assert_401(client, signed_identity_headers(ADMIN_IDENTITY, "x" * 64))


async def test_a_tampered_identity_is_401(client):
    headers = identity_headers("c", ("customer",))
    headers[IDENTITY_HEADER] = orjson.dumps(ADMIN_IDENTITY).decode()
    await assert_401(client, headers)


@pytest.mark.parametrize("age", [MAX_AGE + 1, -(CLOCK_SKEW + 5)])
async def test_a_stale_or_future_identity_is_401(client, age):
    await assert_401(client, signed_identity_headers(ADMIN_IDENTITY, DEV_IDENTITY_SIGNING_KEY, at=time.time() - age))


@pytest.mark.parametrize("roles", ["admin", "nonadmin", [["admin"]], None, {"admin": True}])
async def test_roles_must_be_a_list_of_strings(client, roles):
    await assert_401(client, signed_identity_headers({"sub": "m", "roles": roles}, DEV_IDENTITY_SIGNING_KEY))


@pytest.mark.parametrize("signature", ["", "v1=" + "0" * 64, "t=1,v1=zz", "t=abc,v1=" + "0" * 64])
async def test_a_malformed_signature_is_401(client, signature):
    headers = identity_headers()
    headers[SIGNATURE_HEADER] = signature
    await assert_401(client, headers)


async def test_a_fresh_signed_identity_within_the_window_is_accepted(client):
    headers = signed_identity_headers(ADMIN_IDENTITY, DEV_IDENTITY_SIGNING_KEY, at=time.time() - MAX_AGE + 5)
    assert (await client.get(ZONES, headers=headers)).status == 200
