"""`payment.resolve` over the real bus, and the storefront endpoints through the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from payments.app import create_app
from payments.providers import CONSUMED_NONCE, DECLINED_NONCE, TOKEN_CONSUMED, TOKEN_REQUIRED, VALID_NONCE
from shared import bus
from shared.contracts import ResolvePayment, ResolvePaymentReply


@pytest.fixture
async def rpc(aiohttp_client, settings) -> AsyncIterator[bus.RpcClient]:
    await aiohttp_client(create_app(settings))
    client = bus.RpcClient(bus.Topology(settings.bus_namespace, "orders"), default_timeout=5.0)
    connection = await bus.connect(settings)
    await client.start(connection)
    yield client
    await client.stop()
    await connection.close()


async def resolve(rpc: bus.RpcClient, **fields) -> ResolvePaymentReply:
    return await rpc.call(ResolvePayment(**fields))


async def test_resolve_defaults_to_the_card_type(rpc, pool):
    reply = await resolve(rpc, payment_token=VALID_NONCE)
    card_id = await pool.fetchval("SELECT id FROM payment_types WHERE handle = 'card'")
    assert reply.errors == {}
    assert reply.payment_type is not None
    assert reply.payment_type.model_dump() == {
        "id": card_id,
        "name": "Card",
        "handle": "card",
        "driver": "sandbox",
        "success_status": "payment-received",
    }


async def test_resolve_by_id_and_by_handle(rpc, pool):
    offline_id = await pool.fetchval("SELECT id FROM payment_types WHERE handle = 'offline'")
    by_id = await resolve(rpc, payment_type_id=offline_id)
    by_handle = await resolve(rpc, payment_type="offline")
    assert by_id == by_handle
    assert (by_id.errors, by_id.payment_type.success_status) == ({}, "offline-payment")


@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        ({"payment_token": CONSUMED_NONCE}, {"payment_token": [TOKEN_CONSUMED]}),
        ({}, {"payment_token": [TOKEN_REQUIRED]}),
        (
            {"payment_type_id": "nosuchtype00000", "payment_token": VALID_NONCE},
            {"payment_type_id": ["The selected payment type is invalid."]},
        ),
        ({"payment_type": "bitcoin"}, {"payment_type": ["The selected payment type is invalid."]}),
        ({"payment_type_id": "card\u0000"}, {"payment_type_id": ["The selected payment type is invalid."]}),
    ],
)
async def test_resolve_errors(rpc, fields, errors):
    assert (await resolve(rpc, **fields)).errors == errors


async def test_a_declining_nonce_is_still_a_valid_token(rpc):
    # Declines happen at charge time; only tokens that can never be charged are refused here.
    assert (await resolve(rpc, payment_token=DECLINED_NONCE)).errors == {}


async def test_provider_and_types_through_the_gateway(stack):
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.gateway}/payments/provider") as response:
            assert response.status == 200
            provider = (await response.json())["data"]
        async with session.get(f"{stack.gateway}/payments/provider") as response:
            other = (await response.json())["data"]
        async with session.get(f"{stack.gateway}/payments/types") as response:
            assert response.status == 200
            types = (await response.json())["data"]
        async with session.post(f"{stack.gateway}/payments/whatever0000/refund", json={"amount": 1}) as response:
            assert response.status == 401
    assert set(provider) == {"name", "client_token", "exires_at", "expires_at"}
    assert provider["name"] == "Sandbox"
    assert provider["client_token"].startswith("sandbox-")
    assert provider["client_token"] != other["client_token"]
    assert provider["exires_at"] == provider["expires_at"] is not None
    assert sorted((t["handle"], t["name"], t["driver"]) for t in types) == [
        ("card", "Card", "sandbox"),
        ("offline", "Offline", "offline"),
    ]
    assert all(set(t) == {"id", "name", "handle", "driver"} for t in types)


async def test_seed_is_idempotent(pool):
    from payments.seed import seed_types

    async with pool.acquire() as conn:
        assert await seed_types(conn) == 0  # the migration already has them
        assert await seed_types(conn) == 0
    rows = await pool.fetch("SELECT handle, count(*) AS n FROM payment_types GROUP BY handle ORDER BY handle")
    assert [(r["handle"], r["n"]) for r in rows] == [("card", 1), ("offline", 1)]
