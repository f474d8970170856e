"""Fixtures of the payments tests: pools on the run's database and a charger driven directly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from payments.consumers import Charger
from payments.providers import Provider, build_providers
from payments.settings import PaymentsSettings
from shared import db
from shared.bus import EventConsumer, HandlerContext, Subscription, Topology
from shared.contracts import Contract, OrderChargeRequested, envelope_for
from shared.http import new_id
from tests.support import observing

ADMIN = {"X-Commerce-Identity": '{"sub": "t", "roles": ["admin"]}'}


@pytest.fixture
def settings(infra) -> PaymentsSettings:
    return infra.settings(PaymentsSettings)


@pytest.fixture
async def pool(settings: PaymentsSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture
def providers(pool: asyncpg.Pool, settings: PaymentsSettings) -> dict[str, Provider]:
    # The main pool stands in for the side pool: these tests never hold many connections.
    return build_providers(settings.merchant, pool, settings.client_token_ttl)


RETRIES = 3


class Checkout:
    """Delivers `order.charge_requested` to the payments handler as the consumer does, and keeps
    what each delivery emitted."""

    def __init__(self, pool: asyncpg.Pool, settings: PaymentsSettings, providers: dict[str, Provider]) -> None:
        self.pool = pool
        self.providers = providers
        self.consumer = EventConsumer(pool, Topology.from_settings(settings), {})
        self.emitted: list[Contract] = []

    async def type_id(self, handle: str) -> str:
        return await self.pool.fetchval("SELECT id FROM payment_types WHERE handle = $1", handle)

    async def request(
        self, token: str | None, *, handle: str = "card", order_id: str | None = None, amount: int = 1000, **kw: Any
    ) -> OrderChargeRequested:
        return OrderChargeRequested(
            order_id=order_id or new_id(),
            attempt_id=kw.pop("attempt_id", None) or uuid.uuid4(),
            amount=amount,
            currency=kw.pop("currency", "GBP"),
            payment_type_id=await self.type_id(handle),
            payment_token=token,
            **kw,
        )

    async def deliver(
        self, msg: OrderChargeRequested, envelope=None, providers: dict[str, Provider] | None = None
    ) -> bool:
        """One delivery, retried as the bus's retry queue would when its closing statement found
        its change refused (`change_not_made`); returns False when the inbox recognised a duplicate."""
        envelope = envelope or envelope_for(msg, "orders")
        charger = Charger(self.pool, providers or self.providers)
        for attempt in range(RETRIES):
            emitted: list[Contract] = []

            async def handler(ctx: HandlerContext, payload: OrderChargeRequested, emitted=emitted) -> None:
                emit = ctx.emit

                async def recording_emit(event: Contract) -> None:
                    await emit(event)
                    emitted.append(event)

                ctx.emit = recording_emit  # type: ignore[method-assign]
                await charger.handle(ctx, payload)

            subscription = Subscription(OrderChargeRequested, handler, transaction=False)
            try:
                handled = await self.consumer.handle(envelope, subscription, msg)
            except asyncpg.RaiseError:
                if attempt == RETRIES - 1:
                    raise
                continue
            if handled:  # a duplicate writes nothing, its events included
                self.emitted.extend(emitted)
            return handled
        raise AssertionError("unreachable")

    async def charges(self, order_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT id, attempt_id, amount, status, success, transaction_id, message FROM transactions "
            "WHERE order_id = $1 AND kind = 'charge' ORDER BY created_at, id",
            order_id,
        )

    async def sandbox_charges(self, attempt_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT reference, amount, success FROM sandbox_charges WHERE idempotency_key = $1", str(attempt_id)
        )


@pytest.fixture
def checkout(pool: asyncpg.Pool, settings: PaymentsSettings, providers: dict[str, Provider]) -> Checkout:
    return Checkout(pool, settings, providers)


@pytest.fixture
async def observe(settings: PaymentsSettings) -> AsyncIterator[Any]:
    async with observing(settings.amqp_url, settings.bus_namespace) as bind:
        yield bind
