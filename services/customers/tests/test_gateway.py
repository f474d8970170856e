"""A customer through the gateway, as a storefront sees it: register, sign in (a form, as OAuth2
clients post it), the current user with the access token, refresh, addresses that another
customer cannot reach, sign out."""

from __future__ import annotations

import time

import aiohttp
import jwt

from gateway.auth import mint_token
from gateway.settings import GatewaySettings
from services.customers.tests.testkit import new_email, new_secret
from shared.countries import country_id
from shared.identity import CUSTOMER_TOKEN_AUDIENCE, CUSTOMER_TOKEN_ISSUER
from shared.settings import DEV_CUSTOMER_TOKEN_SECRET
from tests.support import Stack

ADDRESS = {
    "firstname": "Ada",
    "lastname": "Lovelace",
    "address": "12 St James's Square",
    "city": "London",
    "state": "Greater London",
    "postal_code": "SW1Y 4JH",
    "country_id": country_id("GB"),
    "shipping": True,
}


def bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def signed_up(session: aiohttp.ClientSession, base: str) -> tuple[dict, dict]:
    """A new customer (as the user answered) and the tokens of their first sign-in."""
    email, secret = new_email(), new_secret()
    body = {"firstname": "Ada", "lastname": "Lovelace", "email": email, "password": secret}
    async with session.post(f"{base}/customers", json=body) as response:
        assert response.status == 201, await response.text()
        user = (await response.json())["data"]
    grant = {"grant_type": "password", "username": email, "password": secret, "client_id": "1"}
    async with session.post(f"{base}/oauth/token", data=grant) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        tokens = await response.json()
    return user, tokens


async def test_a_customer_signs_in_and_uses_the_access_token_through_the_gateway(stack: Stack):
    base = stack.gateway
    async with aiohttp.ClientSession() as session:
        user, tokens = await signed_up(session, base)
        async with session.get(f"{base}/users/current?include=customer", headers=bearer(tokens)) as response:
            assert response.status == 200
            current = (await response.json())["data"]
        assert (current["id"], current["email"], current["customer"]["data"]["id"]) == (
            user["id"],
            user["email"],
            user["id"],
        )

        # Without the token, with an admin's, or with one the customers service never issued.
        others = [
            {},
            {"Authorization": f"Bearer {mint_token(GatewaySettings())}"},
            {"Authorization": "Bearer " + forged_token(user["id"], exp=int(time.time()) - 30)},
            {"Authorization": "Bearer " + forged_token(user["id"], key="another-key-" + new_secret() * 3)},
        ]
        for headers in others:
            async with session.get(f"{base}/users/current", headers=headers) as response:
                assert response.status == 401
                assert (await response.json())["error"]["http_code"] == 401
        # The customer's token opens no admin operation.
        async with session.get(f"{base}/shipping/zones", headers=bearer(tokens)) as response:
            assert response.status == 401

        # A refresh answers a new pair that works; sign-out ends the session.
        grant = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        async with session.post(f"{base}/oauth/token", json=grant) as response:
            assert response.status == 200
            renewed = await response.json()
        async with session.get(f"{base}/users/current", headers=bearer(renewed)) as response:
            assert response.status == 200
        async with session.post(f"{base}/oauth/revoke", data={"token": renewed["refresh_token"]}) as response:
            assert response.status == 200
        again = {"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"]}
        async with session.post(f"{base}/oauth/token", json=again) as response:
            assert response.status == 400


async def test_customer_b_cannot_reach_customer_a_s_address_through_the_gateway(stack: Stack):
    base = stack.gateway
    async with aiohttp.ClientSession() as session:
        _, alice = await signed_up(session, base)
        _, bob = await signed_up(session, base)
        async with session.post(f"{base}/addresses", json=ADDRESS, headers=bearer(alice)) as response:
            assert response.status == 201, await response.text()
            address = (await response.json())["data"]

        async with session.put(
            f"{base}/addresses/{address['id']}", json={"city": "Elsewhere"}, headers=bearer(bob)
        ) as response:
            assert response.status == 404
        async with session.delete(f"{base}/addresses/{address['id']}", headers=bearer(bob)) as response:
            assert response.status == 404
        async with session.get(f"{base}/user/addresses", headers=bearer(bob)) as response:
            assert (await response.json())["data"] == []

        async with session.get(f"{base}/user/addresses", headers=bearer(alice)) as response:
            assert (await response.json())["data"] == [address]


def forged_token(customer_id: str, *, key: str = DEV_CUSTOMER_TOKEN_SECRET, **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": CUSTOMER_TOKEN_ISSUER,
        "aud": CUSTOMER_TOKEN_AUDIENCE,
        "sub": customer_id,
        "iat": now - 900,
        "exp": now + 60,
    } | claims
    return jwt.encode(payload, key, algorithm="HS256")
