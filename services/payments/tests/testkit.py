"""The payments test kit: charge requests delivered through the bus's own consumer."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from payments.consumers import Charger
from payments.providers import Provider
from payments.settings import PaymentsSettings
from shared.bus import EventConsumer, Subscription, Topology
from shared.contracts import EVENTS, Contract, Envelope, OrderChargeRequested, envelope_for
from shared.http import new_id
from shared.outbox import Outgoing
from shared.uow import UnitOfWork
from tests.support import identity_headers


def admin() -> dict[str, str]:
    return identity_headers()


def contracts(events: list[Outgoing]) -> list[Contract]:
    """What a unit of work emitted, as the contracts it was given (read back from its outbox rows)."""
    envelopes = [Envelope.model_validate_json(event.row[3]) for event in events]
    return [EVENTS[envelope.routing_key].model.model_validate(envelope.payload) for envelope in envelopes]


class Checkout:
    """Delivers `order.charge_requested` to the payments consumer as the bus does
    (`EventConsumer.handle`: the inbox row, the handler, the outbox, one unit of work), and keeps
    what each delivery that committed emitted."""

    def __init__(
        self, pool: asyncpg.Pool, side_pool: asyncpg.Pool, settings: PaymentsSettings, providers: dict[str, Provider]
    ) -> None:
        self.pool = pool
        self.side_pool = side_pool
        self.providers = providers
        self.consumer = EventConsumer(pool, Topology.from_settings(settings), [])
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
        self, msg: OrderChargeRequested, envelope: Envelope | None = None, providers: dict[str, Provider] | None = None
    ) -> bool:
        """One delivery; False when the inbox recognised a duplicate. A failing handler raises, as
        it would to the bus, which retries it."""
        charger = Charger(self.side_pool, providers or self.providers)
        emitted: list[Outgoing] = []

        async def on_order_charge_requested(uow: UnitOfWork, event: OrderChargeRequested) -> None:
            await charger.on_order_charge_requested(uow, event)
            emitted.extend(uow.events)

        subscription = Subscription(OrderChargeRequested, on_order_charge_requested)
        handled = await self.consumer.handle(envelope or envelope_for(msg, "orders"), subscription, msg)
        self.emitted.extend(contracts(emitted))  # empty for a duplicate: it never ran
        return handled

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
