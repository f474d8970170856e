"""Payment provider outages and wrong captures through the five real processes.

The sandbox processor is told to fail (its `sandbox_outages` table, written here as the
processor's side of the world): a provider that times out and then recovers places the order
exactly once and parks nothing; an attempt left without a result is settled by payments' own
sweeper from the provider's record of its key (captured: placed; not found: failed); a capture
for the wrong amount is voided and the attempt fails. No payment token reaches a log.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import pytest

from bench.shopper import Shopper
from payments.domain import NOT_CHARGED
from payments.providers import VALID_NONCE, WRONG_AMOUNT_NONCE
from shared.bus import Topology
from tests.e2e.test_checkout import create_product, eventually, get_order, variant_of
from tests.support import ALL_SERVICES, SERVICES, Stack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def outage(admin_db: asyncpg.Connection) -> AsyncIterator[Callable[[str, str, int], Awaitable[None]]]:
    """`await outage(operation, failure, calls)`: the sandbox's next `calls` of `operation` fail
    with `failure`; whatever is left of them ends with the test."""

    async def start(operation: str, failure: str, calls: int) -> None:
        await admin_db.execute(
            "INSERT INTO payments.sandbox_outages (operation, failure, remaining) VALUES ($1, $2, $3)",
            operation,
            failure,
            calls,
        )

    yield start
    await admin_db.execute("DELETE FROM payments.sandbox_outages")


async def ready_order(session: aiohttp.ClientSession, stack: Stack) -> tuple[Shopper, str]:
    product = await create_product(session, stack, inventory=5)
    shopper = Shopper(session, stack.gateway)
    return shopper, await shopper.prepare([(variant_of(product)["id"], 1)])


async def process(session: aiohttp.ClientSession, stack: Stack, order_id: str, token: str) -> tuple[int, Any]:
    body = {"order_id": order_id, "payment_token": token}
    async with session.post(stack.gateway + "/orders/process", json=body) as response:
        return response.status, await response.json()


async def outcome(session: aiohttp.ClientSession, stack: Stack, order_id: str) -> dict[str, Any] | None:
    order = await get_order(session, stack, order_id)
    return order if order["placed_at"] is not None or order["status"] == "failed" else None


async def charges(admin_db: asyncpg.Connection, order_id: str) -> list[asyncpg.Record]:
    return await admin_db.fetch(
        "SELECT t.attempt_id, t.amount, t.status, t.transaction_id, t.message, "
        "(SELECT count(*) FROM payments.sandbox_charges s WHERE s.idempotency_key = t.attempt_id::text) AS processed "
        "FROM payments.transactions t WHERE t.order_id = $1 AND t.kind = 'charge' ORDER BY t.created_at",
        order_id,
    )


async def stalled_intent(admin_db: asyncpg.Connection, order_id: str) -> asyncpg.Record:
    """The attempt's intent, recorded while its charge fails, made old enough for the sweeper."""

    async def recorded() -> asyncpg.Record | None:
        return await admin_db.fetchrow(
            "SELECT attempt_id, amount, currency FROM payments.charge_intents WHERE order_id = $1", order_id
        )

    intent = await eventually(recorded)
    await admin_db.execute(
        "UPDATE payments.charge_intents SET created_at = now() - interval '1 hour' WHERE attempt_id = $1",
        intent["attempt_id"],
    )
    return intent


async def parked_for(stack: Stack, order_id: str) -> list[bytes]:
    """Messages about the order in any service's dead-letter queue (looked at, left there)."""
    connection = await aio_pika.connect(stack.infra.amqp_url)
    found: list[bytes] = []
    try:
        channel = await connection.channel()
        for service in SERVICES:
            dlq = await channel.declare_queue(
                Topology(stack.infra.namespace, service).dead_letter_queue(), passive=True
            )
            while (message := await dlq.get(no_ack=False, fail=False)) is not None:
                if order_id.encode() in message.body:
                    found.append(message.body)
    finally:
        await connection.close()  # unacknowledged, so they stay parked
    return found


def log_sizes(stack: Stack) -> dict[str, int]:
    return {name: stack[name].log_path.stat().st_size for name in ALL_SERVICES}


def logged_since(stack: Stack, sizes: dict[str, int]) -> dict[str, str]:
    texts = {}
    for name, size in sizes.items():
        with stack[name].log_path.open("rb") as log:
            log.seek(size)
            texts[name] = log.read().decode(errors="replace")
    return texts


async def test_a_provider_that_times_out_then_recovers_places_the_order_exactly_once(
    stack: Stack, session, admin_db, outage
):
    _, order_id = await ready_order(session, stack)
    sizes = log_sizes(stack)
    # Four failures: one more than the bus's retries before it parks a failing handler's message.
    await outage("charge", "error", 3)
    await outage("charge", "timeout", 1)  # as long as payments' provider timeout (10 s)

    status, body = await process(session, stack, order_id, VALID_NONCE)
    assert status in (200, 202), body
    order = await eventually(lambda: outcome(session, stack, order_id), timeout=60)

    assert (order["status"], order["placed_at"] is not None) == ("payment-received", True)
    captured = [t for t in order["transactions"]["data"] if t["success"] and not t["refund"]]
    assert [t["amount"] for t in captured] == [order["order_total"]]
    [charge] = await charges(admin_db, order_id)
    assert (charge["status"], charge["processed"]) == ("captured", 1)  # one capture at the processor
    assert await admin_db.fetchval("SELECT sum(remaining) FROM payments.sandbox_outages") == 0
    logs = logged_since(stack, sizes)
    assert "ProviderError: sandbox answered 503 Service Unavailable" in logs["payments"]
    assert "ProviderError: Sandbox did not answer within 10 s" in logs["payments"]
    assert await parked_for(stack, order_id) == []
    for name, text in logs.items():
        assert VALID_NONCE not in text, name


async def test_an_attempt_captured_at_the_provider_whose_answers_were_lost_is_reconciled_and_placed(
    stack: Stack, session, admin_db, outage
):
    _, order_id = await ready_order(session, stack)
    await outage("charge", "error", 100_000)  # its charge request is retried, and fails, throughout
    processing = asyncio.create_task(process(session, stack, order_id, VALID_NONCE))
    intent = await stalled_intent(admin_db, order_id)
    # The processor did capture it; every answer since was lost. Its record, as it keeps it:
    reference = f"sbx_{secrets.token_hex(8)}"
    await admin_db.execute(
        "INSERT INTO payments.sandbox_charges "
        "(idempotency_key, reference, amount, currency, success, status, card_type, last_four) "
        "VALUES ($1, $2, $3, $4, true, 'captured', 'Visa', '1881')",
        str(intent["attempt_id"]),
        reference,
        intent["amount"],
        intent["currency"],
    )

    order = await eventually(lambda: outcome(session, stack, order_id), timeout=60)  # the sweeper's next round
    assert (order["status"], order["placed_at"] is not None) == ("payment-received", True)
    [charge] = await charges(admin_db, order_id)
    assert (charge["status"], charge["transaction_id"], charge["amount"]) == ("captured", reference, intent["amount"])
    assert [t["transaction_id"] for t in order["transactions"]["data"] if t["success"]] == [reference]
    status, _ = await processing
    assert status in (200, 202)
    # The charge request, still retried, finds the attempt settled: the same answer, nothing more.
    await asyncio.sleep(4)  # past the longest retry delay of the stack
    assert len(await charges(admin_db, order_id)) == 1
    assert await parked_for(stack, order_id) == []


async def test_an_attempt_the_provider_never_got_is_reconciled_as_failed_and_can_be_retried(
    stack: Stack, session, admin_db, outage
):
    shopper, order_id = await ready_order(session, stack)
    await outage("charge", "error", 100_000)
    processing = asyncio.create_task(process(session, stack, order_id, VALID_NONCE))
    intent = await stalled_intent(admin_db, order_id)

    order = await eventually(lambda: outcome(session, stack, order_id), timeout=60)
    assert (order["status"], order["placed_at"]) == ("failed", None)
    [charge] = await charges(admin_db, order_id)
    assert (charge["attempt_id"], charge["status"], charge["message"], charge["processed"]) == (
        intent["attempt_id"],
        "declined",
        NOT_CHARGED,
        0,
    )
    status, _ = await processing
    assert status in (202, 403)

    await admin_db.execute("DELETE FROM payments.sandbox_outages")  # the provider is back
    retried = await shopper.call(
        "POST", "/orders/process", "/orders/process", json={"order_id": order_id, "payment_token": VALID_NONCE}
    )
    assert retried["data"]["status"] == "payment-received"
    first, second = await charges(admin_db, order_id)
    assert (first["status"], first["processed"]) == ("declined", 0)  # the stalled attempt was never charged
    assert (second["status"], second["processed"]) == ("captured", 1)
    assert await parked_for(stack, order_id) == []


async def test_a_capture_for_the_wrong_amount_is_voided_and_the_order_not_placed(stack: Stack, session, admin_db):
    shopper, order_id = await ready_order(session, stack)
    sizes = log_sizes(stack)

    status, body = await process(session, stack, order_id, WRONG_AMOUNT_NONCE)
    assert (status, body) == (403, {"error": {"http_code": 403, "message": "Payment has failed"}})
    order = await get_order(session, stack, order_id)
    assert (order["status"], order["placed_at"]) == ("failed", None)
    [voided] = order["transactions"]["data"]
    assert (voided["status"], voided["success"], voided["amount"]) == ("voided", False, order["order_total"] + 1)
    [charge] = await charges(admin_db, order_id)
    assert charge["message"].startswith("The payment provider captured ")
    assert charge["message"].endswith("; the capture was voided")
    assert await admin_db.fetchval(
        "SELECT voided FROM payments.sandbox_charges WHERE reference = $1", charge["transaction_id"]
    )

    retried = await shopper.call(
        "POST", "/orders/process", "/orders/process", json={"order_id": order_id, "payment_token": VALID_NONCE}
    )
    assert retried["data"]["status"] == "payment-received"
    order = await get_order(session, stack, order_id)
    captured = [t for t in order["transactions"]["data"] if t["success"]]
    assert [t["amount"] for t in captured] == [order["order_total"]]
    for name, text in logged_since(stack, sizes).items():
        assert WRONG_AMOUNT_NONCE not in text and VALID_NONCE not in text, name
