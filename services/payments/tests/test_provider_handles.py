"""`GET /payments/providers/{handle}` (issue 18): a provider's client info by its handle, in-process
and through the gateway."""

from __future__ import annotations

import aiohttp
import pytest

from payments.app import create_app

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

NOT_FOUND = {"error": {"http_code": 404, "message": "Resource not found"}}


async def test_each_enabled_provider_by_its_handle(aiohttp_client, settings) -> None:
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/api/v1/payments/providers/sandbox")
    assert response.status == 200, await response.text()
    sandbox = (await response.json())["data"]
    assert set(sandbox) == {"name", "client_token", "exires_at", "expires_at"}
    assert sandbox["name"] == "Sandbox" and sandbox["client_token"].startswith("sandbox-")
    assert sandbox["exires_at"] == sandbox["expires_at"] is not None
    # The default's answer is the same provider's, each with a token of its own.
    default = (await (await client.get("/api/v1/payments/provider")).json())["data"]
    assert default["name"] == sandbox["name"] and default["client_token"] != sandbox["client_token"]

    response = await client.get("/api/v1/payments/providers/offline")
    assert (response.status, await response.json()) == (
        200,
        {"data": {"name": "Offline", "client_token": "OFFLINE", "exires_at": None, "expires_at": None}},
    )
    # A payment type's handle (card) is not a provider's; unknown or odd handles are 404s.
    for handle in ("card", "braintree", "SANDBOX", "sandbox%00", "a" * 300):
        response = await client.get(f"/api/v1/payments/providers/{handle}")
        assert (response.status, await response.json()) == (404, NOT_FOUND), handle


async def test_a_disabled_provider_is_not_found(aiohttp_client, settings) -> None:
    """Without the sandbox (production), its handle names no provider."""
    client = await aiohttp_client(create_app(settings.model_copy(update={"sandbox_enabled": False})))
    response = await client.get("/api/v1/payments/providers/sandbox")
    assert (response.status, await response.json()) == (404, NOT_FOUND)
    response = await client.get("/api/v1/payments/providers/offline")
    assert response.status == 200


async def test_provider_by_handle_through_the_gateway(stack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.gateway}/payments/providers/sandbox") as response:
            assert response.status == 200
            assert (await response.json())["data"]["name"] == "Sandbox"
        async with session.get(f"{stack.gateway}/payments/providers/nosuchprovider") as response:
            assert (response.status, await response.json()) == (404, NOT_FOUND)
