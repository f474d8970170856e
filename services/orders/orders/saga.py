"""The checkout saga's shared steps: failing an attempt, waiting for an outcome, the sweeper.

The saga's state is the order's status (the compare-and-set guard) plus its checkout attempt's
stage (`stock_requested` -> `charge_requested` -> `captured` | `declined`, or `refused` /
`timed_out` before any charge). Every step checks both in its transaction, so a late or
duplicate event changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from aiohttp import web

from orders import domain, queries
from orders.settings import OrdersSettings
from shared import outbox, runtime
from shared.contracts import Contract, OrderFailed, OrderStatusChanged

log = logging.getLogger(__name__)

T = TypeVar("T")
Emit = Callable[[Contract], Awaitable[object]]


async def fail_attempt(
    conn: asyncpg.Connection,
    emit: Emit,
    *,
    order_id: str,
    attempt_id: uuid.UUID,
    expected_stage: str,
    stage: str,
    reason: str,
    errors: dict[str, list[str]] | None = None,
) -> bool:
    """End an attempt without placing: the order goes `failed` (retryable), basket releases stock.

    False (and no effect) when the attempt is not at `expected_stage` any more.
    """
    attempt = await queries.lock_attempt(conn, attempt_id, order_id)
    if attempt is None or attempt["stage"] != expected_stage:
        log.info(
            "late or duplicate saga step ignored",
            extra={"order_id": order_id, "attempt_id": str(attempt_id), "stage": attempt and attempt["stage"]},
        )
        return False
    await queries.finish_attempt(conn, attempt_id, expected=expected_stage, stage=stage, reason=reason, errors=errors)
    domain.transition(domain.PAYMENT_PROCESSING, domain.FAILED)
    order = await queries.fail_attempt_order(conn, order_id, attempt_id)
    if order is None:
        log.warning("attempt ended but its order was not in flight", extra={"order_id": order_id})
        basket_id = await conn.fetchval("SELECT basket_id FROM orders WHERE id = $1", order_id)
    else:
        basket_id = order["basket_id"]
        await emit(
            OrderStatusChanged(order_id=order_id, from_status=domain.PAYMENT_PROCESSING, to_status=domain.FAILED)
        )
    # Always: whatever basket reserved for this attempt must be released.
    await emit(OrderFailed(order_id=order_id, attempt_id=attempt_id, basket_id=basket_id or "", reason=reason))
    await queries.notify_outcome(conn, order_id)
    return True


# ---------------------------------------------------------------------------------------------
# Waiting for an outcome


class OutcomeWaiter:
    """Wakes `POST /orders/process` when the transaction that places or fails its order commits.

    One LISTEN connection per process; whichever replica ran the consumer sends the NOTIFY. A
    slow poll covers a lost connection or a missed notification.
    """

    def __init__(self, settings: OrdersSettings) -> None:
        self.dsn = settings.database_url
        self.channel = f"{settings.db_schema}_outcome"
        self.schema = settings.db_schema
        self.poll_interval = settings.process_poll_interval
        self._conn: asyncpg.Connection | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._ensure_listening()

    async def stop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for event in self._waiters.get(payload, ()):
            event.set()

    async def _ensure_listening(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            return
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return
            try:
                conn = await asyncpg.connect(self.dsn, server_settings={"search_path": self.schema}, timeout=5)
                await conn.add_listener(self.channel, self._on_notify)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("outcome listener unavailable, polling", extra={"error": str(exc)})
                return
            self._conn = conn

    async def expect(self, order_id: str) -> Expectation:
        """Register for an order's outcome before committing what leads to it (see `wait`)."""
        await self._ensure_listening()
        event = asyncio.Event()
        self._waiters.setdefault(order_id, set()).add(event)
        return Expectation(order_id, event, listening=self._conn is not None and not self._conn.is_closed())

    def forget(self, expectation: Expectation) -> None:
        waiters = self._waiters.get(expectation.order_id)
        if waiters is not None:
            waiters.discard(expectation.event)
            if not waiters:
                del self._waiters[expectation.order_id]

    async def wait(
        self,
        order_id: str,
        check: Callable[[], Awaitable[T | None]],
        timeout: float,
        expectation: Expectation | None = None,
    ) -> T | None:
        """`check()` until it returns a value, woken by NOTIFY; None once `timeout` passed.

        With an `expectation` registered while listening, before the commit that starts the
        work, no notification can have been missed: the first check waits for one (or the poll).
        """
        if expectation is None:
            await self._ensure_listening()
            expectation = Expectation(order_id, asyncio.Event(), listening=False)
            self._waiters.setdefault(order_id, set()).add(expectation.event)
        event = expectation.event
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        skip_check = expectation.listening
        try:
            while True:
                if skip_check:
                    skip_check = False
                else:
                    event.clear()  # before the check, so that a NOTIFY during it is not lost
                    result = await check()
                    if result is not None:
                        return result
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(self.poll_interval, remaining))
        finally:
            self.forget(expectation)


@dataclass(frozen=True)
class Expectation:
    order_id: str
    event: asyncio.Event
    listening: bool


WAITER = web.AppKey("outcome_waiter", OutcomeWaiter)


def outcome_waiter(settings: OrdersSettings) -> runtime.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        waiter = OutcomeWaiter(settings)
        await waiter.start()
        app[WAITER] = waiter
        yield
        await waiter.stop()

    return ctx


# ---------------------------------------------------------------------------------------------
# Stalled attempts


async def sweep_stalled_once(pool: asyncpg.Pool, settings: OrdersSettings) -> int:
    """Fail attempts still waiting for stock past the timeout; none of them was charged."""
    swept = 0
    for row in await queries.stalled_attempts(pool, settings.stock_reservation_timeout):
        async with pool.acquire() as conn, conn.transaction():

            async def emit(payload: Contract, conn: asyncpg.Connection = conn) -> object:
                return await outbox.enqueue(conn, payload, settings.service)

            if await fail_attempt(
                conn,
                emit,
                order_id=row["order_id"],
                attempt_id=row["attempt_id"],
                expected_stage="stock_requested",
                stage="timed_out",
                reason="stock-reservation-timed-out",
            ):
                swept += 1
    if swept:
        log.warning("stalled checkout attempts failed", extra={"count": swept})
    return swept


def attempt_sweeper(settings: OrdersSettings) -> runtime.CleanupCtx:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                await asyncio.sleep(settings.attempt_sweep_interval)
                try:
                    await sweep_stalled_once(app[runtime.POOL], settings)
                except Exception as exc:
                    log.warning("attempt sweep failed", extra={"error": f"{type(exc).__name__}: {exc}"})

        task = asyncio.create_task(run(), name="orders-attempt-sweeper")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx
