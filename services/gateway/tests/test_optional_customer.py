"""The gateway's two other customer modes (`shared.operations`):

- a guest's operation that also serves a signed-in customer (`customer="optional"`: baskets and
  orders): no credential is a guest, a valid access token is passed on as the customer, anything
  else is a 401 that goes nowhere (a storefront with an expired token refreshes it, rather than
  losing its customer's basket);
- an operation of an admin and a customer alike (`GET /orders`): either token, each passed on as
  its own identity.
"""

from __future__ import annotations

import secrets
import time

import jwt
import pytest

from gateway.auth import mint_token
from gateway.routes import load_routes
from gateway.settings import GatewaySettings
from shared.http import new_id
from shared.identity import (
    CUSTOMER_TOKEN_AUDIENCE,
    CUSTOMER_TOKEN_ISSUER,
    IDENTITY_HEADER,
    SIGNATURE_HEADER,
    verify_identity,
)
from shared.operations import OPTIONAL

KEY = secrets.token_urlsafe(48)
IDENTITY_KEY = secrets.token_urlsafe(48)
CUSTOMER_ID = new_id()
GUEST_OR_CUSTOMER = "/api/v1/baskets/" + new_id()
ADMIN_OR_CUSTOMER = "/api/v1/orders"


@pytest.fixture
async def client(make_gateway):
    return await make_gateway(customer_token_secret=KEY, identity_signing_key=IDENTITY_KEY)


def access_token(key: str = KEY, **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": CUSTOMER_TOKEN_ISSUER,
        "aud": CUSTOMER_TOKEN_AUDIENCE,
        "sub": CUSTOMER_ID,
        "iat": now,
        "exp": now + 900,
    } | claims
    return jwt.encode(payload, key, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def identity_seen(body: dict) -> dict | None:
    seen = body["headers"]
    if IDENTITY_HEADER.lower() not in seen:
        return None
    return verify_identity(seen[IDENTITY_HEADER.lower()], seen[SIGNATURE_HEADER.lower()], IDENTITY_KEY)


def test_baskets_and_orders_serve_guests_and_customers_alike():
    modes = {(route.method, route.path): route.customer for route in load_routes()}
    for key in [("POST", "/baskets"), ("GET", "/baskets/{id}"), ("POST", "/basket-lines"), ("POST", "/orders")]:
        assert modes[key] == OPTIONAL, key
    for key in [("GET", "/orders/{id}"), ("PUT", "/orders/{id}/contact"), ("POST", "/orders/process")]:
        assert modes[key] == OPTIONAL, key
    assert modes[("GET", "/baskets/current")] is True
    assert modes[("GET", "/products")] is False


async def test_without_a_token_the_caller_is_a_guest(client):
    response = await client.get(GUEST_OR_CUSTOMER)
    assert response.status == 200
    assert identity_seen(await response.json()) is None


async def test_with_a_valid_token_the_customer_is_passed_on_and_the_token_stops_here(client):
    response = await client.get(GUEST_OR_CUSTOMER, headers=bearer(access_token()))
    assert response.status == 200
    body = await response.json()
    assert identity_seen(body) == {"sub": CUSTOMER_ID, "roles": ["customer"]}
    assert "authorization" not in body["headers"]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer",
        "Basic YWRhOmxvdmVsYWNl",
        "Bearer not-a-jwt",
        f"Bearer {access_token(exp=int(time.time()) - 10)}",  # expired: refresh, do not shop as a guest
        f"Bearer {access_token(key=secrets.token_urlsafe(48))}",  # another key
        f"Bearer {access_token(aud='commerce-admin')}",
        f"Bearer {mint_token(GatewaySettings(), ttl=-3600)}",  # an admin's, expired
    ],
    ids=lambda value: str(value)[:40],
)
async def test_a_credential_that_is_not_a_valid_access_token_is_401_and_goes_nowhere(client, authorization):
    response = await client.post("/api/v1/baskets", json={}, headers={"Authorization": authorization})
    assert response.status == 401
    assert await response.json() == {"error": {"http_code": 401, "message": "Unauthorized"}}
    assert "X-Upstream" not in response.headers


async def test_an_admins_token_is_passed_on_as_the_admin(client):
    """A back office sending its token on every call: the admin, whom baskets and orders serve as
    a guest (`shared.http.optional_customer` is None for anyone but a customer)."""
    response = await client.get(GUEST_OR_CUSTOMER, headers=bearer(mint_token(GatewaySettings(), "ops")))
    assert response.status == 200
    assert identity_seen(await response.json()) == {"sub": "ops", "roles": ["admin"]}


async def test_orders_list_takes_an_admins_token_or_a_customers(client):
    as_customer = await client.get(ADMIN_OR_CUSTOMER, headers=bearer(access_token()))
    assert as_customer.status == 200
    assert identity_seen(await as_customer.json()) == {"sub": CUSTOMER_ID, "roles": ["customer"]}

    as_admin = await client.get(ADMIN_OR_CUSTOMER, headers=bearer(mint_token(GatewaySettings(), "ops")))
    assert as_admin.status == 200
    assert identity_seen(await as_admin.json()) == {"sub": "ops", "roles": ["admin"]}

    viewer = mint_token(GatewaySettings(), "viewer", roles=("viewer",))
    assert (await client.get(ADMIN_OR_CUSTOMER, headers=bearer(viewer))).status == 403
    for headers in ({}, bearer("not-a-jwt"), bearer(access_token(exp=int(time.time()) - 10))):
        response = await client.get(ADMIN_OR_CUSTOMER, headers=headers)
        assert response.status == 401
        assert "X-Upstream" not in response.headers
