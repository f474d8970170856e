"""A signed-in customer's operations at the gateway: the access token of the customers service,
verified here and passed on as the signed identity `{"sub": <customer id>, "roles": ["customer"]}`;
nothing else gets through."""

from __future__ import annotations

import secrets
import time

import jwt
import orjson
import pytest

from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from shared.http import new_id
from shared.identity import (
    CUSTOMER_TOKEN_AUDIENCE,
    CUSTOMER_TOKEN_ISSUER,
    IDENTITY_HEADER,
    SIGNATURE_HEADER,
    verify_identity,
)

KEY = secrets.token_urlsafe(48)
CUSTOMER_ID = new_id()
IDENTITY_KEY = secrets.token_urlsafe(48)
CUSTOMER_PATH = "/api/v1/users/current"
ADMIN_PATH = "/api/v1/shipping/zones"  # GET /shipping/zones is an admin's alone
STOREFRONT_PATH = "/api/v1/products"


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
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_customer_is_passed_on_signed_and_the_token_stops_here(client):
    response = await client.get(CUSTOMER_PATH, headers=bearer(access_token()))
    assert response.status == 200
    seen = (await response.json())["headers"]
    identity = verify_identity(seen[IDENTITY_HEADER.lower()], seen[SIGNATURE_HEADER.lower()], IDENTITY_KEY)
    assert identity == {"sub": CUSTOMER_ID, "roles": ["customer"]}
    assert "authorization" not in seen


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Basic YWRhOmxvdmVsYWNl",
        "Bearer not-a-jwt",
        f"Bearer {access_token(key=secrets.token_urlsafe(48))}",  # another key
        f"Bearer {access_token(exp=int(time.time()) - 10)}",  # expired
        f"Bearer {access_token(iss='someone-else')}",
        f"Bearer {access_token(aud='commerce-admin')}",
        f"Bearer {access_token(aud=None)}",
        f"Bearer {access_token(iat=None)}",
        f"Bearer {access_token(iat=int(time.time()), exp=int(time.time()) + 3601)}",  # lives too long
        f"Bearer {access_token(sub='../orders')}",  # not an id
        f"Bearer {jwt.encode({'sub': CUSTOMER_ID, 'exp': int(time.time()) + 60}, None, algorithm='none')}",
    ],
    ids=lambda value: str(value)[:40],
)
async def test_anything_but_a_valid_access_token_is_401_and_goes_nowhere(client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.get(CUSTOMER_PATH, headers=headers)
    assert response.status == 401
    assert await response.json() == {"error": {"http_code": 401, "message": "Unauthorized"}}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "X-Upstream" not in response.headers


async def test_an_admin_token_is_not_a_customers_and_a_customers_not_an_admins(client, make_gateway):
    admin = mint_token(GatewaySettings())
    assert (await client.get(CUSTOMER_PATH, headers=bearer(admin))).status == 401
    assert (await client.get(ADMIN_PATH, headers=bearer(access_token()))).status == 401
    # Even when both keys are the same (production refuses that): the issuer and audience differ.
    same = await make_gateway(customer_token_secret=GatewaySettings().admin_jwt_secret)
    assert (await same.get(CUSTOMER_PATH, headers=bearer(admin))).status == 401


async def test_a_forged_identity_never_reaches_a_customer_operation(client):
    forged = orjson.dumps({"sub": CUSTOMER_ID, "roles": ["customer"]}).decode()
    response = await client.get(CUSTOMER_PATH, headers={IDENTITY_HEADER: forged})
    assert response.status == 401
    response = await client.get(
        CUSTOMER_PATH,
        headers={IDENTITY_HEADER: orjson.dumps({"sub": "mallory", "roles": ["admin"]}).decode()}
        | bearer(access_token()),
    )
    seen = (await response.json())["headers"]
    assert orjson.loads(seen[IDENTITY_HEADER.lower()]) == {"sub": CUSTOMER_ID, "roles": ["customer"]}


async def test_guest_routes_ignore_a_customer_token(client):
    """A storefront still sending a stale token on a guest route is served as a guest: only the
    operations declared a customer's read it."""
    response = await client.get(STOREFRONT_PATH, headers=bearer(access_token(exp=int(time.time()) - 10)))
    assert response.status == 200
    assert IDENTITY_HEADER.lower() not in (await response.json())["headers"]


def test_production_needs_its_own_customer_token_key():
    production = {
        "environment": "production",
        "identity_signing_key": secrets.token_urlsafe(48),
        "admin_jwt_secret": KEY,
        "admin_jwt_issuer": "https://id.example.com",
        "admin_jwt_audience": "commerce-admin",
    }
    assert GatewaySettings(**production, customer_token_secret=secrets.token_urlsafe(48)).production_problems() == []
    assert GatewaySettings(**production).production_problems() == ["CUSTOMER_TOKEN_SECRET is not set"]
    assert GatewaySettings(**production, customer_token_secret=KEY).production_problems() == [
        "CUSTOMER_TOKEN_SECRET is the admin JWT key"
    ]
