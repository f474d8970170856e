"""Provider outages, attempts left without a result, and the captured amount check, against the
real database and broker: a provider that fails is retried, never parked, and never charges
twice; an attempt it left unsettled is reconciled by its key; a wrong capture is voided."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from payments import domain, queries, sweepers
from payments.app import create_app
from payments.providers import (
    DECLINED_NONCE,
    VALID_NONCE,
    WRONG_AMOUNT_NONCE,
    OfflineProvider,
    ProviderError,
    answer,
    build_providers,
)
from payments.settings import PaymentsSettings
from shared.bus import Topology
from shared.contracts import REDACTED, Envelope, PaymentCaptured, PaymentDeclined, envelope_for
from shared.errors import UNAVAILABLE
from shared.http import new_id
from tests.support import delete_bus_namespace, observing


@pytest.fixture
async def outage(pool: asyncpg.Pool) -> AsyncIterator[Callable[[str, str, int], Awaitable[None]]]:
    """`await outage(operation, failure, calls)`: the sandbox's next `calls` of `operation` fail
    with `failure` (its own `sandbox_outages`); whatever is left of them ends with the test."""

    async def start(operation: str, failure: str, calls: int) -> None:
        await pool.execute(
            "INSERT INTO sandbox_outages (operation, failure, remaining) VALUES ($1, $2, $3)", operation, failure, calls
        )

    yield start
    await pool.execute("DELETE FROM sandbox_outages")


class AnswerLost:
    """The processor charges, but its answer never arrives: the call times out after the charge."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge(self, *args: Any, **kwargs: Any) -> Any:
        await self.inner.charge(*args, **kwargs)
        raise ProviderError(f"{self.inner.name} did not answer within {self.inner.timeout:g} s")


async def intent(pool: asyncpg.Pool, attempt_id: uuid.UUID) -> asyncpg.Record:
    row = await queries.intent_of(pool, attempt_id)
    assert row is not None
    return row


async def settled_at(pool: asyncpg.Pool, attempt_id: uuid.UUID) -> Any:
    return await pool.fetchval("SELECT settled_at FROM charge_intents WHERE attempt_id = $1", attempt_id)


def assert_no_token(records: list[logging.LogRecord], token: str) -> None:
    """Not in any message, any field given to the logger, or any traceback."""
    formatter = logging.Formatter()
    for record in records:
        text = record.getMessage() + repr(vars(record))
        if record.exc_info:
            text += formatter.formatException(record.exc_info)
        assert token not in text, record


# ---------------------------------------------------------------------------------------------
# The sandbox's side: outages, lookups by key, the wrong-amount nonce


async def test_a_sandbox_outage_fails_its_next_charges_then_ends(providers, pool, outage):
    sandbox = providers["sandbox"]
    await outage("charge", "error", 2)
    key = str(uuid.uuid4())
    for _ in range(2):
        with pytest.raises(ProviderError, match="sandbox answered 503") as exc:
            await sandbox.charge(1000, "GBP", VALID_NONCE, idempotency_key=key)
        assert isinstance(exc.value, UNAVAILABLE)
        assert VALID_NONCE not in str(exc.value)
    assert await sandbox.lookup(key) is None  # lookups answer through an outage of charges: nothing charged
    result = await sandbox.charge(1000, "GBP", VALID_NONCE, idempotency_key=key)
    assert (result.success, result.amount, result.currency) == (True, 1000, "GBP")
    assert await sandbox.lookup(key) == result
    assert await pool.fetchval("SELECT remaining FROM sandbox_outages") == 0


async def test_a_silent_sandbox_is_cut_off_by_the_provider_timeout(side_pool, settings, outage):
    sandbox = build_providers(settings.merchant, side_pool, settings.client_token_ttl, timeout=0.2)["sandbox"]
    await outage("charge", "timeout", 1)
    key = str(uuid.uuid4())
    started = time.monotonic()
    with pytest.raises(ProviderError, match=r"Sandbox did not answer within 0\.2 s"):
        await answer(sandbox, sandbox.charge(1000, "GBP", VALID_NONCE, idempotency_key=key))
    assert time.monotonic() - started < 5
    assert await sandbox.lookup(key) is None
    assert (await answer(sandbox, sandbox.charge(1000, "GBP", VALID_NONCE, idempotency_key=key))).success


async def test_lookups_find_each_result_by_its_key(providers, outage):
    sandbox = providers["sandbox"]
    captured_key, declined_key = str(uuid.uuid4()), str(uuid.uuid4())
    captured = await sandbox.charge(1500, "EUR", VALID_NONCE, idempotency_key=captured_key)
    declined = await sandbox.charge(1500, "EUR", DECLINED_NONCE, idempotency_key=declined_key)
    assert await sandbox.lookup(captured_key) == captured
    assert await sandbox.lookup(declined_key) == declined
    assert (captured.success, captured.amount, captured.currency) == (True, 1500, "EUR")
    assert declined.success is False
    assert await sandbox.lookup(str(uuid.uuid4())) is None
    await outage("lookup", "error", 1)
    with pytest.raises(ProviderError, match="503"):
        await sandbox.lookup(captured_key)
    assert await sandbox.lookup(captured_key) == captured


async def test_offline_lookups_are_derived_from_the_key_as_its_charges_are():
    offline = OfflineProvider("shop")
    found = await offline.lookup("k9")
    assert found is not None
    assert (found.success, found.reference) == (True, (await offline.charge(100, "GBP", None, "k9")).reference)
    assert (found.amount, found.currency, offline.moves_money) == (None, None, False)


async def test_the_wrong_amount_nonce_captures_one_minor_unit_more(providers):
    sandbox = providers["sandbox"]
    key = str(uuid.uuid4())
    result = await sandbox.charge(1000, "GBP", WRONG_AMOUNT_NONCE, idempotency_key=key)
    assert (result.success, result.amount, result.currency) == (True, 1001, "GBP")
    assert await sandbox.lookup(key) == result


# ---------------------------------------------------------------------------------------------
# The charger


async def test_an_outage_fails_the_delivery_as_unavailable_and_its_retry_charges_once(checkout, pool, outage):
    await outage("charge", "error", 1)
    msg = await checkout.request(VALID_NONCE, amount=2500)
    envelope = envelope_for(msg, "orders")
    with pytest.raises(ProviderError) as exc:
        await checkout.deliver(msg, envelope)
    assert isinstance(exc.value, UNAVAILABLE)  # the bus retries it for as long as it lasts, never parks it
    assert (await checkout.charges(msg.order_id), await checkout.sandbox_charges(msg.attempt_id)) == ([], [])
    assert checkout.emitted == []
    assert (await intent(pool, msg.attempt_id))["amount"] == 2500
    assert await settled_at(pool, msg.attempt_id) is None

    assert await checkout.deliver(msg, envelope) is True  # the bus's retry, once the provider is back
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["amount"]) == ("captured", 2500)
    assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1
    assert [type(e) for e in checkout.emitted] == [PaymentCaptured]
    assert await settled_at(pool, msg.attempt_id) is not None


async def test_a_capture_for_the_wrong_amount_is_voided_and_the_attempt_declined(checkout, pool):
    order_id = new_id()
    msg = await checkout.request(WRONG_AMOUNT_NONCE, order_id=order_id, amount=1000)
    await checkout.deliver(msg)
    [event] = checkout.emitted
    assert isinstance(event, PaymentDeclined)
    assert event.reason == "The payment provider captured 10.01 GBP instead of 10.00 GBP; the capture was voided"
    assert event.transaction is not None
    assert (event.transaction.status, event.transaction.success, event.transaction.amount) == ("voided", False, 1001)
    [charge] = await checkout.charges(order_id)
    assert (charge["status"], charge["success"], charge["message"]) == ("voided", False, event.reason)
    [processor] = await checkout.sandbox_charges(msg.attempt_id)
    assert processor["reference"] == charge["transaction_id"]
    assert await pool.fetchval("SELECT voided FROM sandbox_charges WHERE reference = $1", processor["reference"])

    await checkout.deliver(msg)  # asked again: the same answer, nothing charged or voided again
    again = checkout.emitted[-1]
    assert isinstance(again, PaymentDeclined) and again.transaction == event.transaction
    assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1

    retry = await checkout.request(VALID_NONCE, order_id=order_id, amount=1000)  # a new attempt of the order
    await checkout.deliver(retry)
    placed = checkout.emitted[-1]
    assert isinstance(placed, PaymentCaptured) and placed.transaction.amount == 1000
    assert [c["status"] for c in await checkout.charges(order_id)] == ["voided", "captured"]


class ChargesInPounds:
    """A faulty integration: the processor account charges its own currency, whatever it is asked."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge(self, amount: int, currency: str, token: str | None, idempotency_key: str) -> Any:
        return await self.inner.charge(amount, "GBP", token, idempotency_key)


@pytest.mark.parametrize(("amount", "currency"), [(4658, "EUR"), (3628, "JPY"), (12_345, "KWD")])
async def test_a_charge_in_any_currency_is_captured_with_its_amount_and_currency(checkout, pool, amount, currency):
    """Amounts are minor units of the order's currency (cents, yen, fils), passed through as they are."""
    msg = await checkout.request(VALID_NONCE, amount=amount, currency=currency)
    await checkout.deliver(msg)
    [event] = checkout.emitted
    assert isinstance(event, PaymentCaptured)
    assert (event.transaction.amount, event.transaction.currency, event.transaction.status) == (
        amount,
        currency,
        "captured",
    )
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["amount"]) == ("captured", amount)
    processor = await pool.fetchrow(
        "SELECT amount, currency, voided FROM sandbox_charges WHERE idempotency_key = $1", str(msg.attempt_id)
    )
    assert tuple(processor) == (amount, currency, False)
    row = await intent(pool, msg.attempt_id)
    assert (row["amount"], row["currency"]) == (amount, currency)


async def test_a_capture_in_another_currency_is_voided_and_the_attempt_declined(checkout, pool):
    order_id = new_id()
    msg = await checkout.request(VALID_NONCE, order_id=order_id, amount=1000, currency="EUR")
    pounds = {**checkout.providers, "sandbox": ChargesInPounds(checkout.providers["sandbox"])}
    await checkout.deliver(msg, providers=pounds)
    [event] = checkout.emitted
    assert isinstance(event, PaymentDeclined)
    assert event.reason == "The payment provider captured 10.00 GBP instead of 10.00 EUR; the capture was voided"
    assert event.transaction is not None
    assert (event.transaction.status, event.transaction.amount, event.transaction.currency) == ("voided", 1000, "GBP")
    [charge] = await checkout.charges(order_id)
    assert (charge["status"], charge["success"]) == ("voided", False)
    processor = await pool.fetchrow(
        "SELECT currency, voided FROM sandbox_charges WHERE idempotency_key = $1", str(msg.attempt_id)
    )
    assert tuple(processor) == ("GBP", True)

    retry = await checkout.request(VALID_NONCE, order_id=order_id, amount=1000, currency="EUR")
    await checkout.deliver(retry)  # the processor charging euros again: captured
    placed = checkout.emitted[-1]
    assert isinstance(placed, PaymentCaptured)
    assert (placed.transaction.amount, placed.transaction.currency) == (1000, "EUR")


async def test_a_wrong_amount_in_yen_is_voided_and_named_in_yen(checkout):
    msg = await checkout.request(WRONG_AMOUNT_NONCE, amount=3628, currency="JPY")
    await checkout.deliver(msg)
    [event] = checkout.emitted
    assert isinstance(event, PaymentDeclined)
    assert event.reason == "The payment provider captured 3629 JPY instead of 3628 JPY; the capture was voided"


async def test_an_attempt_whose_intent_is_left_when_another_captured_is_asked_about_never_charged(
    checkout, pool, outage
):
    """Attempt A recorded its intent and its charge never reached the provider (an outage); B
    captured the order since. A's redelivery must not charge A now: it asks the provider by A's
    key, finds nothing, and declines A with a transaction of its own."""
    order_id = new_id()
    await outage("charge", "error", 1)
    first = await checkout.request(VALID_NONCE, order_id=order_id)
    with pytest.raises(ProviderError):
        await checkout.deliver(first)
    second = await checkout.request(VALID_NONCE, order_id=order_id)
    await checkout.deliver(second)
    await checkout.deliver(first)
    assert await checkout.sandbox_charges(first.attempt_id) == []
    charges = {c["attempt_id"]: c for c in await checkout.charges(order_id)}
    assert (charges[second.attempt_id]["status"], charges[first.attempt_id]["status"]) == ("captured", "declined")
    declined = checkout.emitted[-1]
    assert isinstance(declined, PaymentDeclined) and declined.reason == domain.ALREADY_PAID
    assert await settled_at(pool, first.attempt_id) is not None


async def test_an_attempt_whose_type_was_disabled_since_its_intent_is_asked_about_never_charged(checkout, pool, outage):
    type_id = new_id()
    await pool.execute(
        "INSERT INTO payment_types (id, name, handle, driver, success_status, enabled) "
        "VALUES ($1, 'Card (old terms)', $1, 'sandbox', 'payment-received', true)",
        type_id,
    )
    await outage("charge", "error", 1)
    msg = (await checkout.request(VALID_NONCE)).model_copy(update={"payment_type_id": type_id})
    with pytest.raises(ProviderError):
        await checkout.deliver(msg)
    await pool.execute("UPDATE payment_types SET enabled = false WHERE id = $1", type_id)
    await checkout.deliver(msg)
    assert await checkout.sandbox_charges(msg.attempt_id) == []
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["message"]) == ("declined", domain.NOT_CHARGED)
    assert isinstance(checkout.emitted[-1], PaymentDeclined)
    assert await settled_at(pool, msg.attempt_id) is not None


# ---------------------------------------------------------------------------------------------
# Reconciliation


@pytest.fixture
async def publisher(aiohttp_client, settings: PaymentsSettings) -> None:
    """A payments app, for its outbox relay: what reconciliation emits is published."""
    await aiohttp_client(create_app(settings.model_copy(update={"reconcile_interval": 3600})))


async def test_an_attempt_whose_answer_was_lost_is_reconciled_as_captured(
    checkout, pool, providers, observe, publisher
):
    observer = await observe("payment.#")
    msg = await checkout.request(VALID_NONCE, amount=3300)
    lost = {**checkout.providers, "sandbox": AnswerLost(checkout.providers["sandbox"])}
    with pytest.raises(ProviderError):
        await checkout.deliver(msg, providers=lost)
    [processor] = await checkout.sandbox_charges(msg.attempt_id)
    assert await checkout.charges(msg.order_id) == []

    assert await sweepers.reconcile(pool, providers, await intent(pool, msg.attempt_id)) is True
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["amount"], charge["transaction_id"]) == ("captured", 3300, processor["reference"])
    [event] = await observer.collect(lambda e: e["payload"]["order_id"] == msg.order_id, 1)
    assert event["type"] == "payment.captured"
    assert (event["payload"]["attempt_id"], event["payload"]["success_status"]) == (
        str(msg.attempt_id),
        "payment-received",
    )
    assert event["payload"]["transaction"]["id"] == charge["id"]
    assert await settled_at(pool, msg.attempt_id) is not None
    assert await sweepers.reconcile(pool, providers, await intent(pool, msg.attempt_id)) is False  # nothing left

    await checkout.deliver(msg)  # the charge request, retried: the attempt is settled, the same answer
    assert isinstance(checkout.emitted[-1], PaymentCaptured)
    assert checkout.emitted[-1].transaction.id == charge["id"]
    assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1
    assert len(await checkout.charges(msg.order_id)) == 1


async def test_an_attempt_the_provider_never_got_is_reconciled_as_declined(
    checkout, pool, providers, observe, publisher, outage
):
    observer = await observe("payment.#")
    await outage("charge", "error", 1000)
    msg = await checkout.request(VALID_NONCE)
    with pytest.raises(ProviderError):
        await checkout.deliver(msg)

    assert await sweepers.reconcile(pool, providers, await intent(pool, msg.attempt_id)) is True
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["success"], charge["transaction_id"], charge["message"]) == (
        "declined",
        False,
        "",
        domain.NOT_CHARGED,
    )
    [event] = await observer.collect(lambda e: e["payload"]["order_id"] == msg.order_id, 1)
    assert (event["type"], event["payload"]["reason"]) == ("payment.declined", domain.NOT_CHARGED)

    # The charge request, retried while charges still fail: settled, so the provider is not asked.
    await checkout.deliver(msg)
    assert isinstance(checkout.emitted[-1], PaymentDeclined)
    assert checkout.emitted[-1].reason == domain.NOT_CHARGED
    await pool.execute("DELETE FROM sandbox_outages")
    await checkout.deliver(msg)  # and once they answer again
    assert await checkout.sandbox_charges(msg.attempt_id) == []
    assert len(await checkout.charges(msg.order_id)) == 1


async def test_a_wrong_capture_found_by_reconciliation_is_voided(checkout, pool, providers, observe, publisher):
    observer = await observe("payment.#")
    msg = await checkout.request(WRONG_AMOUNT_NONCE, amount=700)
    lost = {**checkout.providers, "sandbox": AnswerLost(checkout.providers["sandbox"])}
    with pytest.raises(ProviderError):
        await checkout.deliver(msg, providers=lost)
    assert await sweepers.reconcile(pool, providers, await intent(pool, msg.attempt_id)) is True
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["amount"]) == ("voided", 701)
    [event] = await observer.collect(lambda e: e["payload"]["order_id"] == msg.order_id, 1)
    assert event["type"] == "payment.declined"
    assert event["payload"]["reason"].startswith("The payment provider captured 7.01 GBP instead of 7.00 GBP")
    assert await pool.fetchval("SELECT voided FROM sandbox_charges WHERE reference = $1", charge["transaction_id"])


async def test_a_provider_still_down_leaves_the_attempt_for_the_next_sweep(checkout, pool, providers, settings, outage):
    await outage("charge", "error", 1)
    msg = await checkout.request(VALID_NONCE)
    with pytest.raises(ProviderError):
        await checkout.deliver(msg)
    await asyncio.sleep(0.01)  # recorded strictly before the sweep's clock
    assert msg.attempt_id not in {r["attempt_id"] for r in await queries.unsettled_intents(pool, 3600, 1000)}
    assert msg.attempt_id in {r["attempt_id"] for r in await queries.unsettled_intents(pool, 0, 1000)}

    await outage("lookup", "error", 1000)
    with pytest.raises(ProviderError, match="503"):
        await sweepers.reconcile(pool, providers, await intent(pool, msg.attempt_id))
    due = settings.model_copy(update={"reconcile_after": 0})
    await sweepers.reconcile_once(pool, providers, due)  # the sandbox's attempts wait: it gives no answer
    assert await checkout.charges(msg.order_id) == []
    assert await settled_at(pool, msg.attempt_id) is None

    await pool.execute("DELETE FROM sandbox_outages")
    assert await sweepers.reconcile_once(pool, providers, due) >= 1
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["message"]) == ("declined", domain.NOT_CHARGED)
    assert await settled_at(pool, msg.attempt_id) is not None


# ---------------------------------------------------------------------------------------------
# Through the real consumer on a queue of its own: retried, never parked, no token anywhere


@pytest.fixture
async def own_bus(settings: PaymentsSettings) -> AsyncIterator[PaymentsSettings]:
    """A payments app's settings on a bus namespace of its own, so that no other consumer (the
    stack's) takes its messages: what happens to them is this app's doing, in this process's log."""
    namespace = f"{settings.bus_namespace}o{secrets.token_hex(3)}"
    yield settings.model_copy(update={"bus_namespace": namespace, "provider_timeout": 0.5, "reconcile_interval": 3600})
    await delete_bus_namespace(settings.amqp_url, namespace)


async def publish(settings: PaymentsSettings, *bodies: bytes) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange(Topology.from_settings(settings).events_exchange)
        for body in bodies:
            envelope = orjson.loads(body)
            await exchange.publish(
                aio_pika.Message(body, message_id=envelope["event_id"]),
                routing_key=f"{envelope['type']}.v{envelope['version']}",
            )
    finally:
        await connection.close()


async def parked(settings: PaymentsSettings, count: int, timeout: float = 20) -> list[aio_pika.IncomingMessage]:
    """The first `count` messages of the payments dead-letter queue (taken off it)."""
    connection = await aio_pika.connect(settings.amqp_url)
    found: list[aio_pika.IncomingMessage] = []
    try:
        channel = await connection.channel()
        dlq = await channel.declare_queue(Topology.from_settings(settings).dead_letter_queue(), passive=True)
        async with asyncio.timeout(timeout):
            while len(found) < count:
                message = await dlq.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.1)
                else:
                    found.append(message)
        return found
    finally:
        await connection.close()


async def dead_letters(settings: PaymentsSettings) -> int:
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        dlq = await channel.declare_queue(Topology.from_settings(settings).dead_letter_queue(), passive=True)
        return dlq.declaration_result.message_count
    finally:
        await connection.close()


def body_of(envelope: Envelope) -> bytes:
    return envelope.model_dump_json().encode()


async def test_a_provider_timing_out_then_failing_then_recovering_charges_once_and_parks_nothing(
    aiohttp_client, own_bus, checkout, pool, caplog, outage
):
    caplog.set_level(logging.INFO)
    await aiohttp_client(create_app(own_bus))
    # Four failures: one more than the bus's retries before it parks a failing handler's message.
    await outage("charge", "timeout", 1)
    await outage("charge", "error", 3)
    msg = await checkout.request(VALID_NONCE, amount=4100)
    async with observing(own_bus.amqp_url, own_bus.bus_namespace) as bind:
        observer = await bind("payment.#")
        await publish(own_bus, body_of(envelope_for(msg, "orders")))
        # About 8 s of timeouts and retry delays (0.2 s, 1 s, then 3 s each).
        [event] = await observer.collect(lambda e: e["payload"]["order_id"] == msg.order_id, 1, timeout=40)
    assert event["type"] == "payment.captured"
    [charge] = await checkout.charges(msg.order_id)
    assert (charge["status"], charge["amount"]) == ("captured", 4100)
    assert len(await checkout.sandbox_charges(msg.attempt_id)) == 1
    assert await pool.fetchval("SELECT sum(remaining) FROM sandbox_outages") == 0  # all four failures were met
    retried = [r for r in caplog.records if r.getMessage() == "event handler failed, retrying"]
    assert [r.error for r in retried] == [
        "ProviderError: Sandbox did not answer within 0.5 s",
        *["ProviderError: sandbox answered 503 Service Unavailable"] * 3,
    ]
    assert await dead_letters(own_bus) == 0
    assert_no_token(caplog.records, VALID_NONCE)


async def test_a_parked_charge_request_keeps_no_token_in_its_body_its_reason_or_the_log(
    aiohttp_client, own_bus, checkout, pool, caplog
):
    caplog.set_level(logging.INFO)
    token = f"tok_secret_{secrets.token_hex(8)}"
    await aiohttp_client(create_app(own_bus))
    invalid = envelope_for(await checkout.request(token), "orders").model_dump(mode="json")
    del invalid["payload"]["order_id"]  # never valid: parked at once
    # A valid request that can never succeed: its type's driver has no provider in this process.
    type_id = new_id()
    await pool.execute(
        "INSERT INTO payment_types (id, name, handle, driver, success_status, enabled) "
        "VALUES ($1, 'Nowhere', $1, 'nowhere', 'payment-received', true)",
        type_id,
    )
    try:
        unchargeable = (await checkout.request(token)).model_copy(update={"payment_type_id": type_id})
        await publish(own_bus, orjson.dumps(invalid), body_of(envelope_for(unchargeable, "orders")))
        messages = await parked(own_bus, 2)
    finally:
        await pool.execute("DELETE FROM payment_types WHERE id = $1", type_id)
    reasons = sorted(str(m.headers["x-dead-reason"]) for m in messages)
    assert reasons[0].startswith("invalid message: ValidationError") and "order_id" in reasons[0]
    assert reasons[1] == "permanent failure: PermanentError: no provider for driver 'nowhere'"
    for message in messages:
        assert token.encode() not in message.body
        assert token not in repr(message.headers)
        assert orjson.loads(message.body)["payload"]["payment_token"] == REDACTED
    assert_no_token(caplog.records, token)
