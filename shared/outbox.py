"""Transactional outbox: events are rows written with the state change, published by a relay.

The relay claims due rows in one statement: `FOR UPDATE SKIP LOCKED` (so several replicas never
take the same row at the same time) and a lease (`next_attempt_at` moved past the publish), so
that no transaction stays open while the broker is asked. It publishes them persistent and
mandatory with publisher confirms and deletes them only after the broker confirmed. A relay that
dies in between leaves its rows leased: they are published again once the lease ends, and
consumers' inboxes absorb the duplicate. A pass that fails gives its lease back at once. The
relay is woken by NOTIFY and polls as a fallback (slowly while its LISTEN connection is up).
Every event goes out with `user_id`, the broker user the relay is connected as, which the broker
checks and the consumers compare with the producer the registry names (`shared.bus`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractRobustConnection

from shared import metrics, tracing
from shared.contracts import EVENTS, Contract, envelope_for

log = logging.getLogger(__name__)


def publishing_user(connection: AbstractConnection) -> str:
    """The broker user a connection authenticated as, the user_id of what it publishes (the broker
    refuses any other). aio-pika connects as guest when the URL names no user."""
    return connection.url.user or "guest"  # aio-pika's connections keep their URL (not in the ABC)


def notify_channel(schema: str) -> str:
    return f"{schema}_outbox"


# The events of a unit of work in one statement, written just before its commit. Leased rows
# ($6: seconds) belong to this process's relay, which publishes them right after the commit; the
# others wake the relays with a notification, delivered on commit (never for a rollback).
# current_schema() is the service's own schema (search_path is set per pool).
WRITE_LEASED = """
INSERT INTO outbox (event_id, routing_key, mandatory, body, headers, next_attempt_at)
SELECT event_id, routing_key, mandatory, body, headers, now() + make_interval(secs => $6)
FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::bytea[], $5::jsonb[])
    AS event (event_id, routing_key, mandatory, body, headers)
"""
WRITE_AND_WAKE = """
WITH written AS (
    INSERT INTO outbox (event_id, routing_key, mandatory, body, headers)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::boolean[], $4::bytea[], $5::jsonb[])
    RETURNING id
)
SELECT pg_notify(current_schema() || '_outbox', '') FROM (SELECT 1 FROM written LIMIT 1) AS any_written
"""
CLAIM = """
UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT id FROM outbox WHERE next_attempt_at <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING id, event_id, routing_key, mandatory, body, headers, attempts
"""
# Under load: forget the batch the broker confirmed and claim the next one in one round trip.
CONFIRM_AND_CLAIM = """
WITH confirmed AS (DELETE FROM outbox WHERE id = ANY($3::bigint[]))
UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2)
WHERE id IN (
    SELECT id FROM outbox WHERE next_attempt_at <= now() ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING id, event_id, routing_key, mandatory, body, headers, attempts
"""
GIVE_BACK = "UPDATE outbox SET next_attempt_at = now() WHERE id = ANY($1::bigint[])"


@dataclass(frozen=True)
class Outgoing:
    """An event's outbox row, checked against the registry (see `shared.uow`, which writes it).

    With a `lease` (the relay's), the row is written leased to this process, which publishes it
    itself right after the commit (`Relay.hand_off`). Other relays take it only if the lease runs
    out (the process died in between)."""

    event_id: uuid.UUID
    row: tuple[Any, ...]  # event_id, routing_key, mandatory, body, headers
    lease: float | None = None


def outgoing(
    payload: Contract,
    producer: str,
    *,
    correlation_id: str | None = None,
    causation_id: uuid.UUID | None = None,
    lease: float | None = None,
) -> Outgoing:
    spec = EVENTS.get(payload.routing_key())
    if spec is None:
        raise ValueError(f"{payload.routing_key()} is not in the contract registry")
    if spec.producer != producer:
        raise ValueError(f"{payload.routing_key()} is produced by {spec.producer}, not {producer}")
    envelope = envelope_for(payload, producer, correlation_id=correlation_id, causation_id=causation_id)
    headers = {"correlation_id": correlation_id} if correlation_id else {}
    tracing.inject(headers)  # the trace of the work that emits it, stored with the event
    return Outgoing(
        envelope.event_id,
        (
            envelope.event_id,
            envelope.routing_key,
            not spec.external,
            envelope.model_dump_json().encode(),
            headers,
        ),
        lease,
    )


async def write(conn: asyncpg.Connection, events: list[Outgoing], lease: float | None) -> None:
    """Write events in the caller's transaction (the unit of work's, just before its commit)."""
    columns = [list(column) for column in zip(*(event.row for event in events), strict=True)]
    if lease is None:
        await conn.execute(WRITE_AND_WAKE, *columns)
    else:
        await conn.execute(WRITE_LEASED, *columns, lease)


class Relay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        schema: str,
        exchange_name: str,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        publish_timeout: float = 5.0,
        listen_dsn: str | None = None,
        listening_poll_interval: float = 5.0,
        forget_delay: float = 0.2,
    ) -> None:
        self.pool = pool
        self.schema = schema
        self.exchange_name = exchange_name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.publish_timeout = publish_timeout
        self.listen_dsn = listen_dsn
        # While LISTEN works, NOTIFY wakes the relay for every commit: the poll only covers a
        # notification lost with its connection, so it can be rare.
        self.listening_poll_interval = max(poll_interval, listening_poll_interval)
        # Longer than any batch can take: its publishes run at once, each bounded by publish_timeout.
        # Also how long the rows of a relay that died mid-batch wait before another takes them.
        self.lease = 2 * publish_timeout
        self.forget_delay = min(forget_delay, publish_timeout)
        self.published = 0
        self._retry_at: float | None = None  # when the earliest failed publish is due again
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._user = ""
        self._listener: asyncpg.Connection | None = None
        self._handoffs: set[asyncio.Task] = set()
        self._confirmed: list[uuid.UUID] = []  # handed-off events the broker confirmed, to forget
        self._forget = asyncio.Event()
        self._forgetter: asyncio.Task | None = None

    async def start(self, connection: AbstractRobustConnection) -> None:
        self._user = publishing_user(connection)
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await self._channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        # Its claims and deletes belong to no request: no spans of their own (a publish continues
        # the trace stored with its row, `_publish`).
        with tracing.untraced():
            self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.schema}")
            self._forgetter = asyncio.create_task(self._forget_loop(), name=f"outbox-forget-{self.schema}")

    async def stop(self) -> None:
        """Finish the batch in hand and the hand-offs, then stop."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            # A batch stuck past this (a hung broker) is abandoned: its rows stay in the outbox.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=15)
        if self._handoffs:
            await asyncio.wait(self._handoffs, timeout=self.publish_timeout + 1)
        if self._forgetter is not None:
            self._forget.set()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._forgetter, timeout=5)
        await self._close_listener()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    def wake(self, *_: Any) -> None:
        self._wake.set()

    def hand_off(self, events: list[Outgoing]) -> None:
        """Publish events whose rows the caller has just committed, leased to this relay
        (`Outgoing` with this relay's lease). Failures give the rows back to the relay's usual pass."""
        if events:
            task = asyncio.create_task(self._publish_handed_off(events))
            self._handoffs.add(task)
            task.add_done_callback(self._handoffs.discard)

    async def _publish_handed_off(self, events: list[Outgoing]) -> None:
        results = await asyncio.gather(*(self._publish(*event.row) for event in events), return_exceptions=True)
        sent = [event.event_id for event, result in zip(events, results, strict=True) if result is None]
        failed = [event.event_id for event, result in zip(events, results, strict=True) if result is not None]
        if sent:
            self.published += len(sent)
            metrics.EVENTS_PUBLISHED.inc(len(sent))
            self._confirmed.extend(sent)
            self._forget.set()
        if failed:
            error = next(result for result in results if result is not None)
            log.warning(
                "outbox hand-off failed, leaving it to the relay", extra={"error": f"{type(error).__name__}: {error}"}
            )
            with contextlib.suppress(Exception):
                await self.pool.execute(
                    "UPDATE outbox SET next_attempt_at = now() WHERE event_id = ANY($1::uuid[])", failed
                )
            self.wake()

    async def _forget_loop(self) -> None:
        """Deletes confirmed hand-offs in batches: those confirmed within `forget_delay` of the
        first go together in one statement. Their lease (far longer) keeps other relays off them
        meanwhile."""
        while True:
            await self._forget.wait()
            if not self._stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.forget_delay)
            self._forget.clear()
            batch, self._confirmed = self._confirmed, []
            if batch:
                try:
                    await self.pool.execute("DELETE FROM outbox WHERE event_id = ANY($1::uuid[])", batch)
                except Exception as exc:  # their lease runs out: published again, the inboxes absorb it
                    log.warning("outbox forget failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            if self._stopping.is_set() and not self._handoffs:
                return

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
                await self.drain_once()
            except Exception as exc:  # the database or the broker is away: poll again later
                log.warning("outbox relay pass failed", extra={"error": f"{type(exc).__name__}: {exc}"})
                await self._close_listener()
            # drain_once went on while rows kept coming; a NOTIFY since its last claim is set here.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_wait())

    def _idle_wait(self) -> float:
        listening = self._listener is not None and not self._listener.is_closed()
        wait = self.listening_poll_interval if listening else self.poll_interval
        if self._retry_at is not None:
            # A failed publish is waiting for its backoff: poll as often as without LISTEN until
            # a pass after its due time has taken it.
            if asyncio.get_running_loop().time() > self._retry_at + self.poll_interval:
                self._retry_at = None
            else:
                wait = self.poll_interval
        return wait

    async def drain_once(self) -> int:
        """Publish the due rows, batch after batch while more keep coming; returns how many."""
        if self._channel is None or self._channel.is_closed:
            return 0  # broker down: rows wait without burning their retry budget
        rows = await self.pool.fetch(CLAIM, self.batch_size, self.lease)
        total = 0
        while rows:
            rows = sorted(rows, key=lambda row: row["id"])
            try:
                results = await asyncio.gather(
                    *(
                        self._publish(
                            row["event_id"], row["routing_key"], row["mandatory"], row["body"], row["headers"]
                        )
                        for row in rows
                    ),
                    return_exceptions=True,
                )
                sent = [row["id"] for row, result in zip(rows, results, strict=True) if result is None]
                failed = [(row, result) for row, result in zip(rows, results, strict=True) if result is not None]
                # More committed meanwhile (a NOTIFY came) or a full batch: the next claim goes
                # with this confirmation.
                more = not failed and not self._stopping.is_set()
                more = more and (self._wake.is_set() or len(rows) >= self.batch_size)
                if more:
                    self._wake.clear()
                    following = await self.pool.fetch(CONFIRM_AND_CLAIM, self.batch_size, self.lease, sent)
                else:
                    following = []
                    async with self.pool.acquire() as conn:
                        await self.confirmed(conn, sent)
                        for row, exc in failed:
                            await self._failed(conn, row, exc)
            except BaseException:
                # This pass is over without forgetting its rows: let the next one (or a replica)
                # take them now rather than when the lease ends. Confirmed ones are published
                # again, and the consumers' inboxes absorb that.
                with contextlib.suppress(Exception):
                    await self.pool.execute(GIVE_BACK, [row["id"] for row in rows])
                raise
            self.published += len(sent)
            total += len(sent)
            metrics.EVENTS_PUBLISHED.inc(len(sent))
            rows = following
        return total

    async def confirmed(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        """Forget rows the broker confirmed (a separate step so that tests can crash here)."""
        if ids:
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)

    async def _publish(
        self, event_id: uuid.UUID, routing_key: str, mandatory: bool, body: bytes, headers: dict[str, Any] | None
    ) -> None:
        if self._exchange is None or self._channel is None or self._channel.is_closed:
            raise ConnectionError("broker channel closed")
        headers = dict(headers or {})
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=str(event_id),
            type=routing_key,
            correlation_id=headers.get("correlation_id"),
            headers=headers,
            user_id=self._user,
        )
        # The publish (its span, the traceparent it sends) continues the trace stored with the row.
        with tracing.continued(headers):
            await self._exchange.publish(
                message, routing_key=routing_key, mandatory=mandatory, timeout=self.publish_timeout
            )

    async def _failed(self, conn: asyncpg.Connection, row: asyncpg.Record, exc: BaseException) -> None:
        delay = min(2 ** row["attempts"], 30)
        retry_at = asyncio.get_running_loop().time() + delay
        self._retry_at = retry_at if self._retry_at is None else min(self._retry_at, retry_at)
        error = f"{type(exc).__name__}: {exc}"[:1000]
        headers = row["headers"] or {}
        with tracing.continued(headers):  # the line carries the trace of the work that emitted the event
            log.warning(
                "outbox publish failed",
                extra={
                    "event_id": str(row["event_id"]),
                    "request_id": headers.get("correlation_id"),
                    "routing_key": row["routing_key"],
                    "error": error,
                },
            )
        await conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, "
            "next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
            row["id"],
            error,
            float(delay),
        )
