"""Transactional outbox: events are rows written with the state change, published by a relay.

The relay claims due rows with `FOR UPDATE SKIP LOCKED` (so several replicas never publish the
same row at the same time), publishes them persistent and mandatory with publisher confirms,
and deletes them only after the broker confirmed, in the same transaction that held the lock.
A crash between the confirm and the commit publishes the row again; consumers' inboxes absorb
the duplicate. The relay is woken by NOTIFY and polls as a fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

from shared.contracts import EVENTS, Contract, envelope_for
from shared.metrics import COUNTERS

log = logging.getLogger(__name__)


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


async def enqueue(
    conn: asyncpg.Connection,
    payload: Contract,
    producer: str,
    *,
    correlation_id: str | None = None,
    causation_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Write an event in the caller's transaction. Nothing is published outside the outbox."""
    spec = EVENTS.get(payload.routing_key())
    if spec is None:
        raise ValueError(f"{payload.routing_key()} is not in the contract registry")
    if spec.producer != producer:
        raise ValueError(f"{payload.routing_key()} is produced by {spec.producer}, not {producer}")
    envelope = envelope_for(payload, producer, correlation_id=correlation_id, causation_id=causation_id)
    await conn.execute(
        "INSERT INTO outbox (event_id, routing_key, mandatory, body, headers) VALUES ($1, $2, $3, $4, $5)",
        envelope.event_id,
        envelope.routing_key,
        not spec.external,
        envelope.model_dump_json().encode(),
        {"correlation_id": correlation_id} if correlation_id else {},
    )
    # current_schema() is the service's own schema: search_path is set per pool.
    await conn.execute("SELECT pg_notify(current_schema() || '_outbox', '')")
    return envelope.event_id


class Relay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        exchange_name: str,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        publish_timeout: float = 10.0,
        listen_dsn: str | None = None,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.exchange_name = exchange_name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.publish_timeout = publish_timeout
        self.listen_dsn = listen_dsn
        self.published = 0
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._listener: asyncpg.Connection | None = None

    async def start(self, connection: AbstractRobustConnection) -> None:
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await self._channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.schema}")

    async def stop(self) -> None:
        """Finish the batch in hand, then stop."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            # A batch stuck past this (a hung broker) is abandoned: its rows stay in the outbox.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=15)
        await self._close_listener()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    def wake(self, *_: Any) -> None:
        self._wake.set()

    async def _listen(self) -> None:
        """A connection of its own for LISTEN (a pooled one may be recycled under it)."""
        if self._listener is not None and not self._listener.is_closed():
            return
        await self._close_listener()
        dsn = self.listen_dsn
        if dsn is None:
            return  # polling only
        try:
            self._listener = await asyncpg.connect(dsn, timeout=5)
            await self._listener.add_listener(notify_channel(self.schema), self.wake)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("outbox listener unavailable, polling", extra={"error": str(exc)})
            await self._close_listener()

    async def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.terminate()

    async def _run(self) -> None:
        # Nothing may end this loop but stop(): a dead relay is an outbox that silently grows.
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                await self._listen()
                count = await self.drain_once()
            except Exception as exc:  # the database or the broker is away: poll again later
                log.warning("outbox relay pass failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                count = 0
                await self._close_listener()
            if count >= self.batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    async def drain_once(self) -> int:
        """Publish one batch of due rows; returns how many were published."""
        if self._channel is None or self._channel.is_closed:
            return 0  # broker down: rows wait without burning their retry budget
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                SELECT id, event_id, routing_key, mandatory, body, headers, attempts
                FROM outbox
                WHERE next_attempt_at <= now()
                ORDER BY id
                LIMIT $1
                FOR UPDATE SKIP LOCKED
                """,
                self.batch_size,
            )
            if not rows:
                return 0
            results = await asyncio.gather(*(self._publish(row) for row in rows), return_exceptions=True)
            sent = [row["id"] for row, result in zip(rows, results, strict=True) if result is None]
            await self.confirmed(conn, sent)
            for row, result in zip(rows, results, strict=True):
                if result is not None:
                    await self._failed(conn, row, result)
        self.published += len(sent)
        COUNTERS.inc("events_published_total", len(sent))
        return len(sent)

    async def confirmed(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        """Forget rows the broker confirmed (a separate step so that tests can crash here)."""
        if ids:
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)

    async def _publish(self, row: asyncpg.Record) -> None:
        assert self._exchange is not None
        headers = dict(row["headers"] or {})
        message = aio_pika.Message(
            row["body"],
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(row["event_id"]),
            type=row["routing_key"],
            correlation_id=headers.get("correlation_id"),
            headers=headers,
        )
        await self._exchange.publish(
            message, routing_key=row["routing_key"], mandatory=row["mandatory"], timeout=self.publish_timeout
        )

    async def _failed(self, conn: asyncpg.Connection, row: asyncpg.Record, exc: BaseException) -> None:
        delay = min(2 ** row["attempts"], 30)
        error = f"{type(exc).__name__}: {exc}"[:1000]
        log.warning(
            "outbox publish failed",
            extra={"event_id": str(row["event_id"]), "routing_key": row["routing_key"], "error": error},
        )
        await conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, "
            "next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
            row["id"],
            error,
            float(delay),
        )
