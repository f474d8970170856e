"""Back-pressure instead of pile-ups (issue 17): a pooled connection is waited for a bounded time,
then the request is a 503 and an event is retried; prefetch never exceeds the pool; a service
bounds how long it waits for a request's body.

The service under test is the real basket app, in process, with a pool of one connection that the
test can hold, on a bus namespace of its own (its consumer must not take the stack's events).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import orjson
import pydantic
import pytest

from basket.app import create_app
from basket.settings import BasketSettings
from shared import db, http, runtime
from shared.bus import EventConsumer, Subscription
from shared.contracts import OrderPlaced, envelope_for
from shared.errors import UNAVAILABLE
from shared.metrics import REGISTRY
from shared.uow import UnitOfWork
from tests.platform.conftest import Platform, placed, record_effect, wait_for
from tests.support import Infra, delete_bus_namespace

pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")


def acquire_timeouts() -> float:
    return REGISTRY.get_sample_value("commerce_db_acquire_timeouts_total") or 0


API = "/api/v1"
ACQUIRE_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5


@pytest.fixture
async def basket(infra: Infra, aiohttp_client: Any) -> AsyncIterator[Any]:
    """The basket service with one pooled connection, waited for at most ACQUIRE_TIMEOUT."""
    namespace = f"{infra.namespace}bp{secrets.token_hex(3)}"
    settings = infra.settings(
        BasketSettings,
        bus_namespace=namespace,
        db_pool_min=1,
        db_pool_max=1,
        db_acquire_timeout=ACQUIRE_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
    )
    try:
        yield await aiohttp_client(create_app(settings))
    finally:
        await delete_bus_namespace(infra.amqp_url, namespace)


async def state(admin_db: asyncpg.Connection) -> tuple[int, int, int]:
    """What a request could have changed: baskets, idempotency keys, outbox rows."""
    row = await admin_db.fetchrow(
        "SELECT (SELECT count(*) FROM basket.baskets) AS baskets, "
        "(SELECT count(*) FROM basket.idempotency_keys) AS keys, "
        "(SELECT count(*) FROM basket.outbox) AS outbox"
    )
    return row["baskets"], row["keys"], row["outbox"]


# ---------------------------------------------------------------------------------------------
# The pool's acquire timeout


async def test_an_exhausted_pool_answers_503_within_the_timeout_and_changes_nothing(
    basket: Any, admin_db: asyncpg.Connection
) -> None:
    pool = basket.app[runtime.POOL]
    key = str(uuid.uuid4())
    before = await state(admin_db)
    async with pool.acquire():  # the service's only connection, held by the test
        # A unit of work, the idempotency middleware's claim, a read acquiring for itself.
        for method, path, body, headers in [
            ("POST", f"{API}/baskets", {"meta": {"source": "starved"}}, {}),
            ("POST", f"{API}/baskets", {"meta": {"source": "keyed"}}, {"Idempotency-Key": key}),
            ("GET", f"{API}/products", None, {}),
        ]:
            started = time.monotonic()
            response = await basket.request(method, path, json=body, headers=headers)
            waited = time.monotonic() - started
            assert response.status == 503, (path, await response.text())
            assert response.headers["Retry-After"] == "1"
            assert await response.json() == http.error_body(503)
            assert ACQUIRE_TIMEOUT * 0.9 <= waited < ACQUIRE_TIMEOUT + 1.5, (path, waited)
    assert await state(admin_db) == before

    # The key claimed nothing: its retry runs (not replayed, not "in progress").
    response = await basket.post(f"{API}/baskets", json={"meta": {"source": "keyed"}}, headers={"Idempotency-Key": key})
    assert response.status == 200, await response.text()
    assert "Idempotent-Replayed" not in response.headers
    assert (await response.json())["data"]["meta"] == {"source": "keyed"}


async def test_every_way_of_acquiring_times_out_with_a_pool_timeout(basket: Any) -> None:
    pool = basket.app[runtime.POOL]
    assert isinstance(pool, db.Pool) and pool.acquire_timeout == ACQUIRE_TIMEOUT
    before = acquire_timeouts()
    async with pool.acquire():
        with pytest.raises(db.PoolTimeout, match=r"no database connection became free within 0\.5 s"):
            async with pool.acquire():
                pass
        with pytest.raises(db.PoolTimeout):
            await pool.acquire()
        with pytest.raises(db.PoolTimeout):
            await pool.fetchval("SELECT 1")  # asyncpg's helpers acquire through acquire()
        started = time.monotonic()
        with pytest.raises(db.PoolTimeout, match=r"within 0\.1 s"):
            await pool.acquire(timeout=0.1)  # an explicit timeout still wins
        assert time.monotonic() - started < ACQUIRE_TIMEOUT
    assert acquire_timeouts() == before + 4
    assert isinstance(db.PoolTimeout("x"), UNAVAILABLE)  # what maps it to a 503 and a retry
    assert await pool.fetchval("SELECT 1") == 1  # and the pool works again once it is free


async def test_an_event_handler_that_meets_an_exhausted_pool_is_retried_and_never_parked(platform: Platform) -> None:
    settings = platform.settings["basket"].model_copy(
        update={"db_pool_min": 1, "db_pool_max": 1, "db_acquire_timeout": 0.2}
    )
    pool = await db.create_pool(settings)

    async def on_order_placed(uow: UnitOfWork, event: OrderPlaced) -> None:
        await record_effect(uow, event.order_id)

    topology = platform.topology("basket")  # retry delays 0.1 s and 0.2 s
    consumer = EventConsumer(pool, topology, [Subscription(OrderPlaced, on_order_placed)], prefetch=1)
    assert platform.connection is not None
    await consumer.start(platform.connection)
    try:
        timeouts = acquire_timeouts()
        async with pool.acquire():
            envelope = envelope_for(placed("starved"), "orders")
            channel = await platform.connection.channel()
            exchange = await channel.get_exchange(topology.events_exchange)
            await exchange.publish(
                aio_pika.Message(envelope.model_dump_json().encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                envelope.routing_key,
            )
            await channel.close()

            async def starved_past_the_retry_budget() -> bool:
                return acquire_timeouts() >= timeouts + 4  # more than the 2 retries

            await wait_for(starved_past_the_retry_budget, what="the handler to meet the held pool four times")
            assert await platform.effects("basket", "starved") == 0

        async def handled() -> bool:
            return await platform.effects("basket", "starved") == 1

        await wait_for(handled, what="the event handled once the pool is free")
        channel = await platform.connection.channel()
        dlq = await channel.declare_queue(topology.dead_letter_queue(), passive=True)
        assert dlq.declaration_result.message_count == 0
        await channel.close()
        assert consumer.handled == 1
    finally:
        await consumer.stop()
        await pool.close()


# ---------------------------------------------------------------------------------------------
# Prefetch no larger than the pool


def test_prefetch_defaults_to_the_pool_size() -> None:
    assert BasketSettings(db_pool_max=7).bus_prefetch == 7
    assert BasketSettings(db_pool_max=7, bus_prefetch=7).bus_prefetch == 7
    assert BasketSettings(db_pool_max=7, bus_prefetch=3).bus_prefetch == 3


def test_a_prefetch_larger_than_the_pool_is_refused_naming_both_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"BASKET_BUS_PREFETCH \(8\) must not be larger than "):
        BasketSettings(db_pool_max=7, bus_prefetch=8)
    monkeypatch.setenv("BASKET_DB_POOL_MAX", "10")
    monkeypatch.setenv("BASKET_BUS_PREFETCH", "32")
    with pytest.raises(pydantic.ValidationError, match=r"BASKET_DB_POOL_MAX \(10\)"):
        BasketSettings()
    with pytest.raises(pydantic.ValidationError):
        BasketSettings(bus_prefetch=0)


async def test_the_consumer_takes_no_more_messages_than_the_pool_has_connections(basket: Any) -> None:
    assert basket.app[runtime.CONSUMER].prefetch == 1


# ---------------------------------------------------------------------------------------------
# The body timeout


class RawClient:
    """One connection of its own: the request's head at once, then its body in timed parts."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.sending: asyncio.Task | None = None
        self.sent = 0  # bytes of the body written so far

    async def send(self, head: bytes, parts: list[tuple[float, bytes]]) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.client.server.host, self.client.server.port)

        async def trickle() -> None:
            self.writer.write(head)
            await self.writer.drain()
            for delay, part in parts:
                await asyncio.sleep(delay)
                self.writer.write(part)
                self.sent += len(part)
                await self.writer.drain()

        self.sending = asyncio.create_task(trickle())

    async def answer(self) -> tuple[bytes, Any]:
        """The answer's head and its JSON body (framed by Content-Length)."""
        async with asyncio.timeout(10):
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = next(int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            return head, orjson.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        if self.sending is not None:
            self.sending.cancel()
        self.writer.close()


def head_of(body_length: int) -> bytes:
    return (
        f"POST {API}/baskets HTTP/1.1\r\nHost: basket\r\nContent-Type: application/json\r\n"
        f"Content-Length: {body_length}\r\n\r\n"
    ).encode()


async def test_a_trickled_body_is_a_408_that_closes_the_connection_and_changes_nothing(
    basket: Any, admin_db: asyncpg.Connection
) -> None:
    before = await state(admin_db)
    body = b'{"meta": {"source": "trickled"}}'
    raw = RawClient(basket)
    started = time.monotonic()
    # The head at once, then a byte every 0.2 s: the whole body would take far past the timeout.
    await raw.send(head_of(len(body)), [(0.2, body[i : i + 1]) for i in range(len(body))])
    try:
        head, answer = await raw.answer()
        assert BODY_TIMEOUT * 0.9 <= time.monotonic() - started < BODY_TIMEOUT + 1.5
        assert head.startswith(b"HTTP/1.1 408 ")
        assert b"connection: close" in head.lower()
        assert answer == http.error_body(408, "The request body did not arrive within 0.5 s")
        # The connection is not reused: once the rest of the body is in (aiohttp reads it rather
        # than reset a client still sending), the service closes it.
        assert raw.sending is not None
        raw.sending.cancel()
        raw.writer.write(body[raw.sent :])
        async with asyncio.timeout(5):
            assert await raw.reader.read() == b""
    finally:
        await raw.close()
    assert await state(admin_db) == before


async def test_a_body_that_arrives_in_pieces_within_the_timeout_is_served(basket: Any) -> None:
    body = b'{"meta": {"source": "pieces"}}'
    raw = RawClient(basket)
    await raw.send(head_of(len(body)), [(0.1, body[:10]), (0.1, body[10:])])
    try:
        head, answer = await raw.answer()
    finally:
        await raw.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert answer["data"]["meta"] == {"source": "pieces"}
