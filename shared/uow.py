"""The one way to change state: a unit of work.

Every write, in an HTTP handler or an event consumer, in every service, has the same shape:

    async with runtime.unit_of_work(request) as uow:       # an HTTP handler
        order = await queries.lock_order(uow.conn, order_id)  # read the aggregate with its lock
        ...                                                   # change it
        uow.emit(OrderStatusChanged(...))                     # announce it

An event consumer's handler is given its unit of work by the bus (`async def on_<event>(uow,
event)`); there the unit of work has also written the inbox row, first, so a duplicate never
reaches the handler.

A unit of work is one transaction. The events it emits are written to the outbox inside that
transaction, just before the commit, so the change and its announcement commit together or not at
all. Anything the change needs from another service is asked before the unit of work opens: no
transaction waits on the broker.

After the commit the events are handed straight to this process's relay, which publishes them
without waiting for its next pass (their rows are leased to it meanwhile, so no other relay takes
them unless this process dies first). That is an optimisation hidden here; services never see it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from shared import outbox
from shared.contracts import Contract, Envelope
from shared.http import ApiError

if TYPE_CHECKING:
    from shared.outbox import Relay

T = TypeVar("T")

CONFLICT_ATTEMPTS = 5
MSG_CONFLICT = "The resource changed while it was being updated; please retry"


class UnitOfWork:
    """One transaction on `conn`, and the events to write to the outbox with it."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        producer: str,
        *,
        correlation_id: str | None = None,
        causation_id: uuid.UUID | None = None,
        lease: float | None = None,
    ) -> None:
        self.conn = conn
        self.producer = producer
        self.correlation_id = correlation_id
        self.causation_id = causation_id
        self._lease = lease
        self.events: list[outbox.Outgoing] = []

    def emit(self, payload: Contract) -> None:
        """Announce a change of this unit of work: written to the outbox before it commits.

        Checked against the contract registry here, so a wrong producer fails where it is emitted.
        """
        self.events.append(
            outbox.outgoing(
                payload,
                self.producer,
                correlation_id=self.correlation_id,
                causation_id=self.causation_id,
                lease=self._lease,
            )
        )

    async def _write_events(self) -> None:
        if self.events:
            await outbox.write(self.conn, self.events, self._lease)


@contextlib.asynccontextmanager
async def unit_of_work(
    pool: asyncpg.Pool,
    producer: str,
    *,
    correlation_id: str | None = None,
    causation_id: uuid.UUID | None = None,
    relay: Relay | None = None,
    inbox: tuple[str, Envelope] | None = None,
) -> AsyncIterator[UnitOfWork]:
    """Open a unit of work on a pooled connection; see the module's docstring.

    `inbox` (consumer name, envelope): the bus's own use. The inbox row is written first; when it
    is there already the event was handled and `Duplicate` is raised before the body runs.
    """
    lease = relay.lease if relay is not None else None
    async with pool.acquire() as conn:
        async with conn.transaction():
            if inbox is not None:
                await _record_inbox(conn, *inbox)
            uow = UnitOfWork(conn, producer, correlation_id=correlation_id, causation_id=causation_id, lease=lease)
            yield uow
            await uow._write_events()
    if relay is not None:
        relay.hand_off(uow.events)


class Duplicate(Exception):
    """The inbox already holds this event: it was handled once and must not be handled again."""


async def _record_inbox(conn: asyncpg.Connection, consumer: str, envelope: Envelope) -> None:
    # A concurrent copy of the same event waits here on the key until the first one commits (then
    # finds the row) or rolls back (then goes on as the first): never two effects.
    recorded = await conn.fetchval(
        "INSERT INTO inbox (consumer, event_id, event_type) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
        consumer,
        envelope.event_id,
        envelope.routing_key,
    )
    if not recorded:
        raise Duplicate


class Conflict(Exception):
    """What a change was planned on (an answer asked of another service before the unit of work,
    a version read before it) no longer holds: the change is rolled back and planned again."""


async def retry_on_conflict(change: Callable[[], Awaitable[T]], attempts: int = CONFLICT_ATTEMPTS) -> T:
    """The one retry policy: run `change` again while it raises `Conflict` (or Postgres found a
    deadlock); past `attempts`, the client gets a 409 and may retry itself."""
    for _ in range(attempts):
        try:
            return await change()
        except (Conflict, asyncpg.DeadlockDetectedError):
            continue
    raise ApiError(409, MSG_CONFLICT)
