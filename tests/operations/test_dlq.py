"""The dead-letter tool (`python -m shared.dlq`) against the real broker and the five services.

The system is the module's own (a fresh database and bus namespace), so that parking and
replaying messages here never meets another test's queues.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import aio_pika
import aiohttp
import asyncpg
import orjson
import pytest

from bench.shopper import Shopper, pick_variants
from shared.bus import Topology
from shared.contracts import REDACTED, OrderChargeRequested, OrderPlaced, envelope_for
from shared.dlq import Parked, age, blanked_secrets, dead_reason, replay_headers, safe_url
from tests.support import ROOT, Stack, migrate_all, start_infra, start_stack, stop_infra, stop_stack

TOKEN = "fake-valid-nonce"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    infra = start_infra()
    stack = None
    try:
        asyncio.run(migrate_all(infra))
        # `POST /orders/process` answers 202 soon when the charge goes nowhere.
        stack = start_stack(infra, tmp_path_factory.mktemp("dlq-logs"), {"ORDERS_PROCESS_DEADLINE": "2"})
        yield stack
    finally:
        if stack is not None:
            stop_stack(stack)
        stop_infra(infra)


@pytest.fixture
async def broker(system: Stack) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(system.infra.amqp_url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


def dlq(stack: Stack, service: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The tool as an operator runs it: beside the service, with the service's environment."""
    prefix = service.upper()
    env = os.environ | {f"{prefix}_AMQP_URL": stack.infra.amqp_url, f"{prefix}_BUS_NAMESPACE": stack.infra.namespace}
    return subprocess.run(
        [sys.executable, "-m", "shared.dlq", "--service", service, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def listed_ids(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split()[1] for line in result.stdout.splitlines()[1:]]


async def depth(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return queue.declaration_result.message_count or 0


async def eventually(check, timeout: float = 20.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return result


async def order_row(stack: Stack, order_id: str) -> dict:
    conn = await asyncpg.connect(stack.infra.admin_dsn)
    try:
        return dict(await conn.fetchrow("SELECT * FROM orders.orders WHERE id = $1", order_id))
    finally:
        await conn.close()


async def captured_charges(stack: Stack, order_id: str) -> int:
    conn = await asyncpg.connect(stack.infra.admin_dsn)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM payments.transactions WHERE order_id = $1 AND success AND NOT refund", order_id
        )
    finally:
        await conn.close()


async def park_a_charge_request(stack: Stack, channel: aio_pika.abc.AbstractChannel) -> tuple[str, str]:
    """An order left in payment-processing, its charge request dead-lettered by the broker into
    payments' DLQ, token and all, as when payments died on it more often than the delivery limit.

    While the order is processed, the charge request goes to a stand-in for payments' queue (a
    quorum queue with the same dead-lettering and a delivery limit of 1) instead of payments'
    queue; the stand-in's consumer then fails it twice.
    """
    payments = Topology(stack.infra.namespace, "payments")
    key = OrderChargeRequested.routing_key()
    events = await channel.get_exchange(payments.events_exchange)
    queue = await channel.get_queue(payments.queue())
    stand_in = await channel.declare_queue(
        f"{payments.queue()}.stand-in",
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": 1,
            "x-dead-letter-exchange": payments.dead_letter_exchange,
            "x-dead-letter-routing-key": payments.dead_routing_key,
        },
    )
    await stand_in.bind(events, key)
    await queue.unbind(events, key)
    try:
        async with aiohttp.ClientSession() as session:
            shopper = Shopper(session, stack.gateway)
            catalogue = await shopper.catalogue()
            order_id = await shopper.prepare(pick_variants(catalogue, random.Random(7), 2))
            answer = await shopper.call(
                "POST",
                "/orders/process",
                "/orders/process",
                json={"order_id": order_id, "payment_token": TOKEN},
                expect=(202,),
            )
        assert answer["data"]["status"] == "payment-processing"
        seen: list[str] = []

        async def fails() -> bool:  # a consumer that dies on it, past the delivery limit
            message = await stand_in.get(no_ack=False, fail=False)
            if message is not None:
                seen.append(orjson.loads(message.body)["event_id"])
                await message.reject(requeue=True)
            return await depth(channel, payments.dead_letter_queue()) > 0

        await eventually(fails, what="the charge request dead-lettered")
    finally:
        await queue.bind(events, key)
        await stand_in.delete(if_unused=False, if_empty=False)
    assert len(set(seen)) == 1
    return order_id, seen[0]


async def test_a_parked_charge_is_listed_shown_without_its_token_and_replayed_until_the_order_is_placed(
    system: Stack, broker
):
    payments = Topology(system.infra.namespace, "payments")
    order_id, event_id = await park_a_charge_request(system, broker)
    before = await order_row(system, order_id)
    assert before["status"] == "payment-processing" and before["placed_at"] is None

    listed = dlq(system, "payments", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed_ids(listed) == [event_id]
    assert "order.charge_requested.v1" in listed.stdout
    assert "dead-lettered by the broker: delivery_limit" in listed.stdout

    shown = dlq(system, "payments", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert order_id in shown.stdout and f'"payment_token": "{REDACTED}"' in shown.stdout
    assert TOKEN not in shown.stdout + shown.stderr
    assert "x-first-death-reason: delivery_limit" in shown.stdout

    dry = dlq(system, "payments", "replay", "1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would replay #1 {event_id}" in dry.stdout
    await asyncio.sleep(1.0)  # whatever a replay would have set going
    assert await depth(broker, payments.dead_letter_queue()) == 1
    assert await depth(broker, payments.queue()) == 0
    assert await order_row(system, order_id) == before
    assert await captured_charges(system, order_id) == 0

    replayed = dlq(system, "payments", "replay", "--id", event_id)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed #1 {event_id} order.charge_requested.v1 to {payments.queue()}" in replayed.stdout
    assert replayed.stderr == ""  # the token was there: no warning about a blank one

    async def placed() -> dict | None:
        row = await order_row(system, order_id)
        return row if row["placed_at"] is not None else None

    order = await eventually(placed, what="the order placed")
    assert order["status"] == "payment-received"
    assert await captured_charges(system, order_id) == 1
    assert await depth(broker, payments.dead_letter_queue()) == 0
    nothing = dlq(system, "payments", "list")
    assert (nothing.returncode, nothing.stdout.strip()) == (1, "nothing parked")


async def park_invalid(channel: aio_pika.abc.AbstractChannel, stack: Stack, message_ids: list[str]) -> None:
    """Messages shipping's real consumer parks at once (their payload breaks the contract), sent
    as if they had been retried before (retry counters) and with a header of their own."""
    shipping = Topology(stack.infra.namespace, "shipping")
    for message_id in message_ids:
        envelope = envelope_for(
            OrderPlaced(
                order_id=message_id,
                attempt_id=uuid.uuid4(),
                basket_id="b" * 24,
                reference="2026-11-0001",
                status="payment-received",
                order_total=1200,
                currency="GBP",
                lines=[],
                placed_at=datetime.now(UTC),
            ),
            "orders",
        ).model_dump(mode="json")
        envelope["event_id"] = message_id
        envelope["payload"]["order_total"] = "lots"
        await channel.default_exchange.publish(
            aio_pika.Message(
                orjson.dumps(envelope),
                content_type="application/json",
                message_id=message_id,
                type=OrderPlaced.routing_key(),
                headers={"x-retry-count": 2, "x-last-error": "RuntimeError: earlier", "correlation_id": "req-dlq"},
            ),
            routing_key=shipping.queue(),
        )


async def test_replay_resets_the_counters_keeps_the_id_and_purge_removes_exactly_the_chosen_message(
    system: Stack, broker
):
    shipping = Topology(system.infra.namespace, "shipping")
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    await park_invalid(broker, system, [first, second, third])

    async def parked(count: int) -> bool:
        return await depth(broker, shipping.dead_letter_queue()) == count

    await eventually(lambda: parked(3), what="three messages parked")
    listed = dlq(system, "shipping", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed_ids(listed) == [first, second, third]
    assert listed.stdout.count("invalid message") == 3

    shown = dlq(system, "shipping", "show", "--id", second)
    assert "x-retry-count: 2" in shown.stdout and "x-dead-consumer: shipping" in shown.stdout

    # Replayed, the second is parked again by shipping (it is still invalid): behind the others,
    # with the same message id, and only the headers its new parking gave it.
    replayed = dlq(system, "shipping", "replay", "2")
    assert replayed.returncode == 0, replayed.stderr

    async def parked_again() -> bool:
        return listed_ids(dlq(system, "shipping", "list")) == [first, third, second]

    await eventually(parked_again, what="the replayed message parked again")
    again = dlq(system, "shipping", "show", "3").stdout
    assert f"message id:     {second}" in again
    assert "x-retry-count" not in again and "x-last-error" not in again
    assert "correlation_id: req-dlq" in again and "x-dead-reason: invalid message" in again

    dry = dlq(system, "shipping", "purge", "2", "--dry-run")
    assert (dry.returncode, dry.stdout.strip()) == (0, f"would purge #2 {third} order.placed.v1")
    assert listed_ids(dlq(system, "shipping", "list")) == [first, third, second]

    purged = dlq(system, "shipping", "purge", "--id", third)
    assert purged.returncode == 0, purged.stderr
    assert listed_ids(dlq(system, "shipping", "list")) == [first, second]
    assert await depth(broker, shipping.dead_letter_queue()) == 2

    assert dlq(system, "shipping", "purge", "3").returncode == 1
    assert dlq(system, "shipping", "show", "--id", third).returncode == 1
    assert dlq(system, "shipping", "purge", "--all").returncode == 0
    assert await depth(broker, shipping.dead_letter_queue()) == 0


def test_usage_errors_exit_2_and_an_unreachable_broker_3_without_its_password():
    tool = [sys.executable, "-m", "shared.dlq"]
    for args in (["--service", "payments", "replay"], ["--service", "payments", "purge", "1", "--all"], ["list"]):
        result = subprocess.run([*tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 2, (args, result.stderr)
    password = uuid.uuid4().hex  # made here: a literal would be a secret written in the repository
    env = os.environ | {"ORDERS_AMQP_URL": f"amqp://ops:{password}@127.0.0.1:1/"}
    result = subprocess.run(
        [*tool, "--service", "orders", "list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 3
    assert "amqp://ops@127.0.0.1:1/" in result.stderr
    assert password not in result.stdout + result.stderr


# --- what a parked message says (pure) ------------------------------------------------------------


def test_the_reason_is_the_consumers_or_else_the_brokers():
    assert dead_reason({"x-dead-reason": "permanent failure: x", "x-first-death-reason": "rejected"}) == (
        "permanent failure: x"
    )
    assert dead_reason({"x-first-death-reason": b"delivery_limit"}) == "dead-lettered by the broker: delivery_limit"
    assert dead_reason({}).startswith("unknown")


def test_a_replay_drops_the_counters_and_the_dead_letter_headers_only():
    headers = {
        "x-retry-count": 3,
        "x-unavailable-count": 1,
        "x-last-error": "e",
        "x-dead-reason": "r",
        "x-dead-consumer": "payments",
        "x-death": [{"reason": "delivery_limit"}],
        "x-first-death-reason": "delivery_limit",
        "x-delivery-count": 11,
        "correlation_id": "req-1",
        "traceparent": "00-abc-def-01",
    }
    assert replay_headers(headers) == {"correlation_id": "req-1", "traceparent": "00-abc-def-01"}


def _parked(user_id: str | None, headers: dict) -> Parked:
    message = SimpleNamespace(
        body=b"{}",
        content_type="application/json",
        message_id="m-1",
        type="order.placed.v1",
        correlation_id="req-1",
        headers=headers,
        user_id=user_id,
    )
    return Parked(1, message)  # type: ignore[arg-type]  # the attributes a replay reads


def test_a_replay_is_published_as_the_service_with_the_events_first_publisher_recorded():
    """The broker refuses a user_id other than the connection's: the replay goes out as the
    service's own user, and the consumer's publisher check reads the producer from the header it
    trusts on its own user's messages (`bus.first_publisher`)."""
    # Dead-lettered by the broker: the producer's own properties.
    replayed = _parked("orders", {"x-delivery-count": 11}).replayable("shipping")
    assert replayed.user_id == "shipping" and replayed.headers == {"x-published-by": "orders"}
    # Parked by the consumer (as itself): the producer it recorded.
    replayed = _parked("shipping", {"x-published-by": "orders", "x-dead-reason": "r"}).replayable("shipping")
    assert replayed.user_id == "shipping" and replayed.headers == {"x-published-by": "orders"}
    # A header on someone else's message is not believed.
    replayed = _parked("basket", {"x-published-by": "orders"}).replayable("shipping")
    assert replayed.headers == {"x-published-by": "basket"}


def test_ages_are_coarse_and_unknown_ones_a_question_mark():
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    ago = {
        timedelta(seconds=42): "42s",
        timedelta(minutes=3, seconds=12): "3m12s",
        timedelta(hours=5, minutes=3): "5h03m",
    }
    for delta, text in ago.items():
        assert age((now - delta).isoformat(), now) == text
    assert age("2025-12-31T08:00:00Z", now) == "2d04h"
    assert age(None, now) == "?" and age("yesterday", now) == "?" and age(1234, now) == "?"


def test_blanked_secrets_are_found_in_a_parked_charge_request_only():
    request = envelope_for(
        OrderChargeRequested(
            order_id="o", attempt_id=uuid.uuid4(), amount=100, currency="GBP", payment_type_id="t", payment_token=TOKEN
        ),
        "orders",
    ).model_dump(mode="json")
    assert blanked_secrets(orjson.dumps(request)) == []
    request["payload"]["payment_token"] = REDACTED
    assert blanked_secrets(orjson.dumps(request)) == ["payment_token"]
    assert blanked_secrets(b"not json") == []


def test_the_broker_address_is_shown_without_its_password():
    password = uuid.uuid4().hex
    assert safe_url(f"amqps://ops:{password}@rabbit.internal:5671/prod") == "amqps://ops@rabbit.internal:5671/prod"
    assert safe_url("amqp://rabbit/") == "amqp://rabbit/"
