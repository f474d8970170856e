"""The stack's own limits on this machine: what aiohttp, asyncpg and aio-pika do with no business logic.

`python -m bench.targets json PORT` and `python -m bench.targets write PORT DSN` serve the bare
handlers in their own process (like a service); `publish_rate()` measures confirmed persistent
publishes per second with aio-pika.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid

import aio_pika
import asyncpg
from aiohttp import web

from shared import runtime
from shared.http import json_response


async def bare_json(request: web.Request) -> web.Response:
    return json_response({"data": {"id": "abc", "status": "ok"}})


def json_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/json", bare_json)
    return app


POOL = web.AppKey("pool", asyncpg.Pool)


async def bare_write(request: web.Request) -> web.Response:
    async with request.app[POOL].acquire() as conn, conn.transaction():
        row_id = await conn.fetchval(
            "INSERT INTO bench_limits.writes (payload) VALUES ($1) RETURNING id", await request.text()
        )
    return json_response({"data": {"id": row_id}}, status=201)


def write_app(dsn: str) -> web.Application:
    app = web.Application()

    async def pool(app: web.Application):
        app[POOL] = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
        async with app[POOL].acquire() as conn:
            await conn.execute(
                "CREATE SCHEMA IF NOT EXISTS bench_limits; "
                "CREATE TABLE IF NOT EXISTS bench_limits.writes (id bigint GENERATED ALWAYS AS IDENTITY "
                "PRIMARY KEY, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
            )
        yield
        await app[POOL].close()

    app.cleanup_ctx.append(pool)
    app.router.add_post("/write", bare_write)
    return app


async def publish_rate(amqp_url: str, namespace: str, duration: float = 3.0, in_flight: int = 64) -> dict[str, float]:
    """Confirmed, persistent, mandatory publishes per second into a quorum queue (as the relay does)."""
    connection = await aio_pika.connect(amqp_url)
    name = f"{namespace}.bench.{uuid.uuid4().hex[:6]}"
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        await queue.bind(exchange, "#")
        body = b'{"event_id": "00000000-0000-0000-0000-000000000000", "payload": {"order_id": "abc"}}'
        sent = 0
        stop_at = time.perf_counter() + duration

        async def publisher() -> None:
            nonlocal sent
            while time.perf_counter() < stop_at:
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "bench.event.v1"
                )
                sent += 1

        started = time.perf_counter()
        await asyncio.gather(*(publisher() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
        with contextlib.suppress(Exception):
            await queue.delete(if_unused=False, if_empty=False)
        return {"publishes_per_second": round(sent / elapsed, 1), "published": sent}
    finally:
        await connection.close()


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    runtime.install_uvloop()  # as the services run
    app = json_app() if kind == "json" else write_app(sys.argv[3])
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
