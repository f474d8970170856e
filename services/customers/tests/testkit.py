"""The customers test kit: accounts registered and signed in through the service's own API, and
the identity the gateway would pass for them."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from shared.http import new_id
from tests.support import identity_headers

API = "/api/v1"


def new_email() -> str:
    return f"shopper-{new_id()}@example.com"


def new_secret() -> str:
    """A password no list of common ones holds."""
    return secrets.token_urlsafe(12)


def new_client_address() -> str:
    """A client address of the test's own (IPv6 documentation prefix), so that the sign-in
    failures other tests count from theirs never throttle this one."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


def customer_headers(customer_id: str) -> dict[str, str]:
    """What the gateway sends the service for a signed-in customer, signed now (a signature ages:
    call it per request)."""
    return identity_headers(sub=customer_id, roles=("customer",))


@dataclass
class Account:
    id: str
    email: str
    secret: str  # the password

    def headers(self) -> dict[str, str]:
        return customer_headers(self.id)


async def register(client: Any, **fields: Any) -> Account:
    body = {"firstname": "Ada", "lastname": "Lovelace", "email": new_email(), "password": new_secret()} | fields
    response = await client.post(f"{API}/customers", json=body)
    assert response.status == 201, await response.text()
    data = (await response.json())["data"]
    return Account(data["id"], body["email"], body["password"])


async def token_request(client: Any, body: dict[str, str], *, address: str, form: bool = False) -> tuple[int, Any, Any]:
    """POST /oauth/token as a form or as JSON, from `address`: status, body and headers."""
    sent = {"data": body} if form else {"json": body}
    response = await client.post(f"{API}/oauth/token", headers={"X-Forwarded-For": address}, **sent)
    return response.status, await response.json(), response.headers


async def sign_in(client: Any, account: Account, *, address: str | None = None) -> dict[str, Any]:
    """The token pair of a sign-in that must succeed."""
    body = {"grant_type": "password", "username": account.email, "password": account.secret}
    status, tokens, _ = await token_request(client, body, address=address or new_client_address())
    assert status == 200, tokens
    return tokens
