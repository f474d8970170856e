"""Request/reply over RabbitMQ: answers within the deadline, clear errors otherwise."""

from __future__ import annotations

import time

import pytest

from shared.bus import Responder, RpcClient, RpcError, RpcServer, RpcTimeout, RpcUnavailable
from shared.contracts import BasketSnapshot, BasketSnapshotReply, GetBasketSnapshot
from tests.platform.conftest import Platform


def snapshot(basket_id: str) -> BasketSnapshot:
    return BasketSnapshot(
        id=basket_id,
        currency="GBP",
        used=False,
        sub_total=1000,
        tax_total=200,
        discount_total=0,
        total=1200,
        weight_grams=0,
        lines=[],
    )


async def answer(request: GetBasketSnapshot) -> BasketSnapshotReply:
    if request.basket_id == "explode":
        raise RuntimeError("database on fire")
    return BasketSnapshotReply(basket=snapshot(request.basket_id))


async def test_request_is_answered_within_the_deadline(platform: Platform):
    assert platform.connection is not None
    server = RpcServer(platform.topology("basket"), [Responder(GetBasketSnapshot, answer)])
    await server.start(platform.connection)
    platform._stoppable.append(server)
    client = RpcClient(platform.topology("orders"))
    await client.start(platform.connection)
    platform._stoppable.append(client)

    reply = await client.call(GetBasketSnapshot(basket_id="abc123"), timeout=2)
    assert reply.basket.id == "abc123" and reply.basket.total == 1200

    with pytest.raises(RpcError, match="database on fire"):
        await client.call(GetBasketSnapshot(basket_id="explode"), timeout=2)


async def test_a_stopped_responder_is_a_timeout_and_a_missing_one_is_unavailable(platform: Platform):
    assert platform.connection is not None
    client = RpcClient(platform.topology("orders"))
    await client.start(platform.connection)
    platform._stoppable.append(client)

    with pytest.raises(RpcUnavailable, match="no basket service"):
        await client.call(GetBasketSnapshot(basket_id="abc"), timeout=1)

    server = RpcServer(platform.topology("basket"), [Responder(GetBasketSnapshot, answer)])
    await server.start(platform.connection)
    await server.stop()  # its queue stays bound, nobody consumes: the service is down
    started = time.monotonic()
    with pytest.raises(RpcTimeout, match=r"did not answer basket\.snapshot within 0\.5s"):
        await client.call(GetBasketSnapshot(basket_id="abc"), timeout=0.5)
    assert time.monotonic() - started < 1.5


async def test_only_the_registered_responder_may_answer(platform: Platform):
    assert platform.connection is not None
    server = RpcServer(platform.topology("orders"), [Responder(GetBasketSnapshot, answer)])
    with pytest.raises(ValueError, match="not the registered responder"):
        await server.start(platform.connection)
