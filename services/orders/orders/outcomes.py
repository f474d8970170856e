"""Waiting for a checkout's outcome: `POST /orders/process` answers when the unit of work that
places or fails its order commits, whichever replica ran it (a NOTIFY on the outcome)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from aiohttp import web

from orders.settings import OrdersSettings
from shared import runtime

log = logging.getLogger(__name__)

T = TypeVar("T")


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
