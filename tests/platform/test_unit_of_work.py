"""The unit of work of an HTTP handler (shared/uow.py), against the real database.

A change and the events it announces commit together or not at all; concurrent edits of one
aggregate lose nothing; a change planned on something that no longer holds is planned again by the
one retry policy, and past it the client gets a 409 in the GetCandy shape, never a 500.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web

from shared import http, runtime
from shared.contracts import StockCommitted
from shared.uow import CONFLICT_ATTEMPTS, MSG_CONFLICT, Conflict, retry_on_conflict, unit_of_work
from tests.platform.conftest import Platform, RolledBack, placed, record_effect


async def outbox(platform: Platform) -> list[asyncpg.Record]:
    return await platform.pools["orders"].fetch("SELECT routing_key, body, headers FROM outbox ORDER BY id")


async def test_the_change_and_its_events_commit_together(platform: Platform):
    async with unit_of_work(platform.pools["orders"], "orders", correlation_id="req-1") as uow:
        await record_effect(uow, "together")
        uow.emit(placed("together"))
        uow.emit(placed("together-too"))
        # Nothing is visible outside before the commit, the events included.
        assert await platform.effects("orders", "together") == 0
        assert await platform.outbox_rows() == 0

    assert await platform.effects("orders", "together") == 1
    rows = await outbox(platform)
    assert [row["routing_key"] for row in rows] == ["order.placed.v1", "order.placed.v1"]
    bodies = [orjson.loads(row["body"]) for row in rows]
    assert [body["payload"]["order_id"] for body in bodies] == ["together", "together-too"]
    assert all(body["producer"] == "orders" and body["correlation_id"] == "req-1" for body in bodies)
    assert all(row["headers"] == {"correlation_id": "req-1"} for row in rows)


async def test_an_exception_inside_rolls_back_the_change_and_its_events(platform: Platform):
    with pytest.raises(RolledBack):
        async with unit_of_work(platform.pools["orders"], "orders") as uow:
            await record_effect(uow, "rolled-back")
            uow.emit(placed("rolled-back"))
            raise RolledBack

    # A failure of the database itself (here: the change breaks a constraint) likewise.
    with pytest.raises(asyncpg.NotNullViolationError):
        async with unit_of_work(platform.pools["orders"], "orders") as uow:
            uow.emit(placed("broken"))
            await uow.conn.execute("INSERT INTO effects (consumer, order_id) VALUES (NULL, 'broken')")

    assert await platform.effects("orders") == 0
    assert await platform.outbox_rows() == 0


async def test_an_event_of_another_producer_fails_where_it_is_emitted(platform: Platform):
    with pytest.raises(ValueError, match=r"stock\.committed\.v1 is produced by basket, not orders"):
        async with unit_of_work(platform.pools["orders"], "orders") as uow:
            await record_effect(uow, "wrong-producer")
            uow.emit(StockCommitted(order_id="wrong-producer", reservation_id="r1", lines=[]))
    assert await platform.effects("orders") == 0
    assert await platform.outbox_rows() == 0


async def _add_locked(platform: Platform, counter: str, amount: int) -> None:
    """The idiom: read the aggregate with its lock, change it, announce it."""
    async with unit_of_work(platform.pools["orders"], "orders") as uow:
        row = await uow.conn.fetchrow("SELECT value FROM counters WHERE id = $1 FOR UPDATE", counter)
        await asyncio.sleep(0.001)  # a read-modify-write with room for the others to interleave
        await uow.conn.execute("UPDATE counters SET value = $2 WHERE id = $1", counter, row["value"] + amount)
        uow.emit(placed(f"{counter}-{amount}"))


async def _add_compare_and_set(platform: Platform, counter: str, amount: int, tries: list[int]) -> None:
    """The other form of the idiom: plan on a version read before, compare-and-set it inside."""

    async def change() -> None:
        tries.append(amount)
        pool = platform.pools["orders"]
        row = await pool.fetchrow("SELECT value, version FROM counters WHERE id = $1", counter)
        await asyncio.sleep(0.001)
        async with unit_of_work(pool, "orders") as uow:
            changed = await uow.conn.fetchval(
                "UPDATE counters SET value = $2, version = version + 1 WHERE id = $1 AND version = $3 RETURNING true",
                counter,
                row["value"] + amount,
                row["version"],
            )
            if not changed:
                raise Conflict
            uow.emit(placed(f"{counter}-{amount}"))

    await retry_on_conflict(change)


async def test_concurrent_edits_of_one_aggregate_lose_nothing(platform: Platform):
    pool = platform.pools["orders"]
    await pool.execute("INSERT INTO counters (id, value, version) VALUES ('locked', 0, 0), ('cas', 0, 0)")

    await asyncio.gather(*(_add_locked(platform, "locked", amount) for amount in range(1, 21)))
    assert await pool.fetchval("SELECT value FROM counters WHERE id = 'locked'") == sum(range(1, 21))

    # As many writers as the policy has attempts: each loses at most once to each of the others,
    # so every one of them gets through, and the losers' events were rolled back with their change.
    tries: list[int] = []
    writers = range(1, CONFLICT_ATTEMPTS + 1)
    await asyncio.gather(*(_add_compare_and_set(platform, "cas", amount, tries) for amount in writers))
    cas = await pool.fetchrow("SELECT value, version FROM counters WHERE id = 'cas'")
    assert (cas["value"], cas["version"]) == (sum(writers), len(writers))
    assert len(tries) > len(writers), "the writers never conflicted: the test proves nothing"
    assert await platform.outbox_rows() == 20 + len(writers)


async def test_retry_on_conflict_plans_again_then_answers_409(platform: Platform):
    calls = 0

    async def settles_on_the_third_try() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Conflict
        return "done"

    assert await retry_on_conflict(settles_on_the_third_try) == "done"
    assert calls == 3

    calls = 0

    async def deadlocks_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return "done"

    assert await retry_on_conflict(deadlocks_once) == "done"
    assert calls == 2

    calls = 0

    async def never_settles() -> None:
        nonlocal calls
        calls += 1
        async with unit_of_work(platform.pools["orders"], "orders") as uow:
            await record_effect(uow, "never")
            uow.emit(placed("never"))
            raise Conflict

    with pytest.raises(http.ApiError) as raised:
        await retry_on_conflict(never_settles)
    assert (raised.value.status, raised.value.message) == (409, MSG_CONFLICT)
    assert calls == CONFLICT_ATTEMPTS == 5
    assert await platform.effects("orders") == 0
    assert await platform.outbox_rows() == 0

    calls = 0

    async def fails_otherwise() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("not a conflict")

    with pytest.raises(RuntimeError):  # anything else is not retried
        await retry_on_conflict(fails_otherwise)
    assert calls == 1


TRIES = web.AppKey("tries", list)


def http_app(platform: Platform, relay: Any = None) -> web.Application:
    """An app with what `runtime.unit_of_work(request)` reads, and handlers written in the idiom."""
    app = web.Application(middlewares=http.standard_middlewares())
    app[runtime.POOL] = platform.pools["orders"]
    app[runtime.SETTINGS] = platform.settings["orders"]
    if relay is not None:
        app[runtime.RELAY] = relay
    tries: list[str] = []

    async def place(request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"]
        async with runtime.unit_of_work(request) as uow:
            await record_effect(uow, order_id)
            uow.emit(placed(order_id))
            if request.query.get("fail"):
                raise RuntimeError("the handler failed after its change")
        return http.json_response({"placed": order_id}, status=201)

    async def contended(request: web.Request) -> web.Response:
        async def change() -> None:
            tries.append(request.match_info["order_id"])
            async with runtime.unit_of_work(request) as uow:
                await record_effect(uow, request.match_info["order_id"])
                raise Conflict

        await retry_on_conflict(change)
        return http.json_response({})

    app.router.add_post("/place/{order_id}", place)
    app.router.add_post("/contended/{order_id}", contended)
    app[TRIES] = tries
    return app


async def test_through_http_the_events_carry_the_request_id_and_a_failure_writes_nothing(
    platform: Platform, aiohttp_client: Any
):
    client = await aiohttp_client(http_app(platform))

    response = await client.post("/place/by-http", headers={http.REQUEST_ID_HEADER: "req-http"})
    assert response.status == 201
    rows = await outbox(platform)
    assert len(rows) == 1
    assert orjson.loads(rows[0]["body"])["correlation_id"] == "req-http"
    assert await platform.effects("orders", "by-http") == 1

    response = await client.post("/place/failing?fail=1")
    assert response.status == 500
    assert await response.json() == http.error_body(500)
    assert await platform.effects("orders", "failing") == 0
    assert await platform.outbox_rows() == 1


async def test_through_http_a_change_that_keeps_conflicting_is_a_409(platform: Platform, aiohttp_client: Any):
    app = http_app(platform)
    client = await aiohttp_client(app)
    response = await client.post("/contended/busy")
    assert response.status == 409
    assert await response.json() == http.error_body(409, MSG_CONFLICT)
    assert app[TRIES] == ["busy"] * 5
    assert await platform.effects("orders", "busy") == 0
