"""Each service's own broker user (issue 17), against the real RabbitMQ.

The users get the permissions `shared.broker_users` generates from the contract registry, imported
with `rabbitmqctl import_definitions` exactly as docker compose's `rabbitmq-users` step imports
them, under names unique to the test (deleted afterwards). Then: the broker refuses what a user
may not do, the services' own machinery (relay, consumers with their retries and parking,
request/reply) works with nothing more, and the consumers refuse what another user published.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import ChannelClosed

from shared import broker_users
from shared.bus import (
    EventConsumer,
    Responder,
    RpcClient,
    RpcServer,
    Subscription,
    Topology,
    declare_topology,
)
from shared.contracts import EVENTS, BasketSnapshot, BasketSnapshotReply, GetBasketSnapshot, OrderPlaced, envelope_for
from shared.metrics import REGISTRY
from shared.outbox import Relay
from shared.uow import UnitOfWork
from tests.platform.conftest import Platform, placed, record_effect, wait_for
from tests.support import Infra

RABBITMQCTL = shutil.which("rabbitmqctl")


def refused_count() -> float:
    return REGISTRY.get_sample_value("commerce_publisher_refused_total") or 0


def rabbitmqctl(*args: str) -> None:
    assert RABBITMQCTL is not None
    subprocess.run([RABBITMQCTL, *args], check=True, capture_output=True, timeout=60)


def import_definitions(definitions: dict[str, Any]) -> None:
    """`rabbitmqctl import_definitions`, which reads the file as the broker's system user (3.10
    takes no stdin): a file it can read, gone once it has (the CLI reads it before it returns)."""
    handle, name = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(definitions, file)
        os.chmod(name, 0o644)
        rabbitmqctl("import_definitions", name)
    finally:
        os.unlink(name)


@dataclass(frozen=True)
class RunUsers:
    """One user per service of the registry, named for this test run."""

    prefix: str
    passwords: dict[str, str]

    def user(self, service: str) -> str:
        return f"{self.prefix}{service}"


@pytest.fixture(scope="module")
def run_users(infra: Infra) -> Iterator[RunUsers]:
    """Created by the first test's import, deleted at the end (each rabbitmqctl call takes a
    second or two: in parallel)."""
    if RABBITMQCTL is None:
        pytest.skip("rabbitmqctl is not installed: the users cannot be created")
    services = broker_users.services()
    run = RunUsers(f"{infra.namespace}-", {service: secrets.token_hex(16) for service in services})
    try:
        yield run
    finally:
        deletions = [
            subprocess.Popen(
                [RABBITMQCTL, "delete_user", run.user(s)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for s in services
        ]
        for deletion in deletions:
            deletion.wait(timeout=60)


@dataclass
class Users:
    """The run's users with the permissions of the platform's namespace (the test's own)."""

    platform: Platform
    run: RunUsers
    connections: list[AbstractRobustConnection] = field(default_factory=list)
    stoppable: list[Any] = field(default_factory=list)

    def user(self, service: str) -> str:
        return self.run.user(service)

    def url(self, service: str) -> str:
        parts = urlsplit(self.platform.infra.amqp_url)
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{self.user(service)}:{self.run.passwords[service]}@{host}"))

    def topology(self, service: str) -> Topology:
        """A production topology: the consumers accept nothing but the registry's users."""
        return Topology(
            self.platform.namespace,
            service,
            delivery_limit=5,
            retry_delays_ms=(100, 200),
            production=True,
            user_prefix=self.run.prefix,
        )

    async def connect(self, service: str) -> AbstractRobustConnection:
        connection = await aio_pika.connect_robust(self.url(service))
        self.connections.append(connection)
        return connection

    async def consumer(
        self, service: str, handler: Callable[[UnitOfWork, OrderPlaced], Awaitable[None]]
    ) -> EventConsumer:
        """A consumer of `order.placed.v1`, connected as the service's own user."""
        consumer = EventConsumer(
            self.platform.pools[service], self.topology(service), [Subscription(OrderPlaced, handler)]
        )
        await consumer.start(await self.connect(service))
        self.stoppable.append(consumer)
        return consumer

    async def relay(self) -> Relay:
        relay = Relay(
            self.platform.pools["orders"],
            self.platform.settings["orders"].db_schema,
            self.topology("orders").events_exchange,
            poll_interval=0.2,
        )
        await relay.start(await self.connect("orders"))
        self.stoppable.append(relay)
        return relay


@pytest.fixture
async def users(platform: Platform, run_users: RunUsers) -> AsyncIterator[Users]:
    definitions = broker_users.definitions(run_users.passwords.__getitem__, platform.namespace, run_users.prefix)
    import_definitions(definitions)
    users = Users(platform, run_users)
    try:
        # The topology as each service declares it at start-up, with its own user: once the
        # import (which the broker finishes in the background) has given them their rights.
        for service in broker_users.services():
            await wait_for(lambda s=service: _declared(users, s), what=f"{service}'s topology declared as its user")
        yield users
    finally:
        for item in reversed(users.stoppable):
            await item.stop()
        for connection in users.connections:
            await connection.close()


async def _declared(users: Users, service: str) -> bool:
    try:
        connection = await aio_pika.connect(users.url(service), timeout=2)
    except (aio_pika.exceptions.AMQPConnectionError, OSError):
        return False
    try:
        await declare_topology(await connection.channel(), users.topology(service))
    except ChannelClosed:  # refused: the rights are not there yet
        return False
    finally:
        await connection.close()
    return True


async def refused(connection: AbstractRobustConnection, action: Callable[[Any], Awaitable[Any]]) -> str:
    """What the broker answers `action` on a fresh channel with publisher confirms: "ok", or the
    error that closed the channel."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        await action(channel)
    except ChannelClosed as exc:  # aiormq's subclass names the broker's reason
        return type(exc).__name__
    await channel.close()
    return "ok"


def publish(exchange: str, routing_key: str, **properties: Any) -> Callable[[Any], Awaitable[Any]]:
    async def action(channel: Any) -> None:
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(aio_pika.Message(b"{}", **properties), routing_key=routing_key)

    return action


async def _handled(users: Users, service: str, order_id: str) -> bool:
    return await users.platform.effects(service, order_id) > 0


async def parked_reasons(users: Users, service: str, count: int) -> list[str]:
    """The reasons of the first `count` messages in the service's dead-letter queue, taken as the
    service's own user (the dead-letter tool reads it so)."""
    channel = await (await users.connect(service)).channel()
    queue = await channel.get_queue(users.topology(service).dead_letter_queue(), ensure=False)
    reasons: list[str] = []

    async def taken() -> bool:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            reasons.append(str(message.headers["x-dead-reason"]))
        return len(reasons) >= count

    await wait_for(taken, what=f"{count} parked messages in {service}'s dead-letter queue")
    await channel.close()
    return reasons


# ---------------------------------------------------------------------------------------------
# What the broker refuses


async def test_a_service_publishes_only_its_own_events_as_itself(users: Users):
    events = users.topology("orders").events_exchange
    for service in broker_users.services():
        connection = await users.connect(service)
        for key, spec in EVENTS.items():
            outcome = await refused(connection, publish(events, key, user_id=users.user(service)))
            assert outcome == ("ok" if spec.producer == service else "ChannelAccessRefused"), (service, key)
    # user_id is vouched for by the broker: nobody passes for another service.
    basket = await users.connect("basket")
    key = next(key for key, spec in EVENTS.items() if spec.producer == "basket")
    assert await refused(basket, publish(events, key, user_id=users.user("orders"))) == "ChannelPreconditionFailed"


async def test_a_service_reads_binds_and_declares_only_its_own_queues(users: Users):
    basket = await users.connect("basket")
    own, other = users.topology("basket"), users.topology("orders")

    def get(queue: str) -> Callable[[Any], Awaitable[Any]]:
        async def action(channel: Any) -> None:
            await (await channel.get_queue(queue, ensure=False)).get(fail=False)

        return action

    for queue in (own.queue(), own.dead_letter_queue()):
        assert await refused(basket, get(queue)) == "ok", queue
    for queue in (other.queue(), other.dead_letter_queue(), users.topology("payments").queue()):
        assert await refused(basket, get(queue)) == "ChannelAccessRefused", queue

    def bind(key: str) -> Callable[[Any], Awaitable[Any]]:
        async def action(channel: Any) -> None:
            await (await channel.get_queue(own.queue(), ensure=False)).bind(own.events_exchange, key)

        return action

    # Its own queue, bound to a key it does not consume (the charge requests, with their payment
    # tokens): refused; to one it consumes: fine.
    assert await refused(basket, bind("order.charge_requested.v1")) == "ChannelAccessRefused"
    assert await refused(basket, bind("#")) == "ChannelAccessRefused"
    assert await refused(basket, bind("order.placed.v1")) == "ok"

    async def declare_another(channel: Any) -> None:
        await channel.declare_queue(f"{own.queue()}-tap", exclusive=True)

    assert await refused(basket, declare_another) == "ChannelAccessRefused"
    # Requests: only a registered caller sends them (basket calls nobody).
    request = publish(own.rpc_exchange, GetBasketSnapshot.type, user_id=users.user("basket"))
    assert await refused(basket, request) == "ChannelAccessRefused"


# ---------------------------------------------------------------------------------------------
# The services' machinery needs nothing more


async def test_relay_consumers_retries_and_parking_work_with_the_generated_permissions(users: Users):
    """Production consumers, each as its own user: an event handled after a retry (the retried copy
    comes back from the consumer's retry queue with the consumer's own user_id and the first
    publisher recorded), another parked once its retries are spent."""
    attempts: list[str] = []

    async def flaky(uow: UnitOfWork, event: OrderPlaced) -> None:
        attempts.append(event.order_id)
        if event.order_id == "never" or attempts.count(event.order_id) < 2:
            raise RuntimeError("transient failure")
        await record_effect(uow, event.order_id)

    async def steady(uow: UnitOfWork, event: OrderPlaced) -> None:
        await record_effect(uow, event.order_id)

    await users.consumer("shipping", flaky)
    await users.consumer("basket", steady)
    relay = await users.relay()
    await users.platform.announce("retried", relay=relay)
    await users.platform.announce("never", relay=relay)

    await wait_for(lambda: _handled(users, "shipping", "retried"), what="the retried event handled")
    await wait_for(lambda: _handled(users, "basket", "never"), what="basket's copy handled")
    (reason,) = await parked_reasons(users, "shipping", 1)
    assert reason.startswith("gave up after 2 retries"), reason
    assert attempts.count("retried") == 2 and attempts.count("never") == 3


async def test_request_reply_works_with_the_generated_permissions(users: Users):
    asked: list[str] = []

    async def answer(request: GetBasketSnapshot) -> BasketSnapshotReply:
        asked.append(request.basket_id)
        return BasketSnapshotReply(basket=snapshot(request.basket_id))

    server = RpcServer(users.topology("basket"), [Responder(GetBasketSnapshot, answer)])
    await server.start(await users.connect("basket"))
    users.stoppable.append(server)
    client = RpcClient(users.topology("orders"), default_timeout=5)
    await client.start(await users.connect("orders"))
    users.stoppable.append(client)

    reply = await client.call(GetBasketSnapshot(basket_id="b1"))
    assert reply.basket.id == "b1" and asked == ["b1"]


def snapshot(basket_id: str) -> BasketSnapshot:
    return BasketSnapshot(
        id=basket_id,
        currency="GBP",
        used=False,
        sub_total=1000,
        tax_total=200,
        discount_total=0,
        total=1200,
        weight_grams=0,
        lines=[],
    )


# ---------------------------------------------------------------------------------------------
# What the consumers refuse


async def test_an_event_not_published_by_its_registered_producer_is_parked_unhandled(users: Users):
    """Basket may write to the default exchange (its retries), so it can put an `order.placed` into
    shipping's queue by name; the broker stamps it with basket's user, and shipping parks it. So
    does it a message without user_id, and one from guest. The producer's own one is handled."""
    handled: list[str] = []

    async def on_placed(uow: UnitOfWork, event: OrderPlaced) -> None:
        handled.append(event.order_id)
        await record_effect(uow, event.order_id)

    shipping = users.topology("shipping")
    await users.consumer("shipping", on_placed)
    before = refused_count()

    def forged(order_id: str) -> aio_pika.Message:
        envelope = envelope_for(placed(order_id), "orders")
        return aio_pika.Message(envelope.model_dump_json().encode(), type=envelope.routing_key)

    basket = await (await users.connect("basket")).channel(publisher_confirms=True)
    message = forged("from-basket")
    message.user_id = users.user("basket")
    await basket.default_exchange.publish(message, routing_key=shipping.queue())
    assert users.platform.connection is not None
    guest = await users.platform.connection.channel(publisher_confirms=True)
    await guest.default_exchange.publish(forged("no-user-id"), routing_key=shipping.queue())
    message = forged("from-guest")
    message.user_id = "guest"
    await guest.default_exchange.publish(message, routing_key=shipping.queue())
    await guest.close()

    reasons = sorted(await parked_reasons(users, "shipping", 3))
    expected = users.user("orders")
    assert reasons == sorted(
        [
            f"refused: published by broker user {users.user('basket')}, expected {expected}",
            f"refused: no publishing user (user_id), expected {expected}",
            f"refused: published by broker user guest, expected {expected}",
        ]
    )
    assert refused_count() - before == 3
    assert handled == []

    relay = await users.relay()
    await users.platform.announce("from-orders", relay=relay)
    await wait_for(lambda: _handled(users, "shipping", "from-orders"), what="the producer's event handled")
    assert handled == ["from-orders"]


async def test_a_request_from_a_service_that_is_not_a_caller_is_refused(users: Users):
    asked: list[str] = []

    async def answer(request: GetBasketSnapshot) -> BasketSnapshotReply:
        asked.append(request.basket_id)
        return BasketSnapshotReply(basket=snapshot(request.basket_id))

    basket = users.topology("basket")
    server = RpcServer(basket, [Responder(GetBasketSnapshot, answer)])
    await server.start(await users.connect("basket"))
    users.stoppable.append(server)
    # Shipping calls nobody: it cannot publish on the request exchange, but it can put a request
    # into basket's request queue by name. The refusal goes to the reply queue it names.
    assert users.platform.connection is not None
    tap = await users.platform.connection.channel()
    replies = await tap.declare_queue(exclusive=True)
    request = aio_pika.Message(
        GetBasketSnapshot(basket_id="b1").model_dump_json().encode(),
        type=GetBasketSnapshot.type,
        reply_to=replies.name,
        correlation_id="c1",
        user_id=users.user("shipping"),
    )
    shipping = await (await users.connect("shipping")).channel(publisher_confirms=True)
    await shipping.default_exchange.publish(request, routing_key=basket.rpc_queue())

    got: list[AbstractIncomingMessage] = []

    async def answered() -> bool:
        message = await replies.get(no_ack=True, fail=False)
        if message is not None:
            got.append(message)
        return bool(got)

    await wait_for(answered, what="the refusal")
    assert got[0].headers["x-error"] == (
        f"refused: published by broker user {users.user('shipping')}, expected {users.user('orders')}"
    )
    assert got[0].user_id == users.user("basket")
    assert asked == []
    await tap.close()


async def test_a_reply_from_anyone_but_the_responder_is_ignored(users: Users):
    """Payments answers requests, so it may write to the default exchange: a reply it slips into
    orders' reply queue, with the right correlation id, does not answer orders' call."""
    client = RpcClient(users.topology("orders"), default_timeout=5)
    await client.start(await users.connect("orders"))
    users.stoppable.append(client)
    payments = await (await users.connect("payments")).channel(publisher_confirms=True)
    forged = BasketSnapshotReply(basket=snapshot("forged")).model_dump_json().encode()

    async def answer(request: GetBasketSnapshot) -> BasketSnapshotReply:
        (correlation_id,) = client._pending
        message = aio_pika.Message(forged, correlation_id=correlation_id, user_id=users.user("payments"))
        await payments.default_exchange.publish(message, routing_key=client._reply_queue)
        await asyncio.sleep(0.3)  # the forged reply arrives first
        return BasketSnapshotReply(basket=snapshot(request.basket_id))

    server = RpcServer(users.topology("basket"), [Responder(GetBasketSnapshot, answer)])
    await server.start(await users.connect("basket"))
    users.stoppable.append(server)
    before = refused_count()
    reply = await client.call(GetBasketSnapshot(basket_id="real"))
    assert reply.basket.id == "real"
    assert refused_count() - before == 1


# ---------------------------------------------------------------------------------------------
# Every message says who published it


async def test_events_requests_and_replies_carry_their_publishers_user(users: Users):
    assert users.platform.connection is not None
    tap = await users.platform.connection.channel()
    events = await tap.declare_queue(exclusive=True)
    await events.bind(users.topology("orders").events_exchange, "#")
    requests = await tap.declare_queue(exclusive=True)
    await requests.bind(users.topology("orders").rpc_exchange, GetBasketSnapshot.type)

    async def answer(request: GetBasketSnapshot) -> BasketSnapshotReply:
        return BasketSnapshotReply(basket=snapshot(request.basket_id))

    server = RpcServer(users.topology("basket"), [Responder(GetBasketSnapshot, answer)])
    await server.start(await users.connect("basket"))
    users.stoppable.append(server)
    replies: list[AbstractIncomingMessage] = []
    client = RpcClient(users.topology("orders"), default_timeout=5)
    original = client._on_reply

    async def on_reply(message: AbstractIncomingMessage) -> None:
        replies.append(message)
        await original(message)

    client._on_reply = on_reply  # type: ignore[method-assign]
    await client.start(await users.connect("orders"))
    users.stoppable.append(client)
    await client.call(GetBasketSnapshot(basket_id="b1"))
    relay = await users.relay()
    await users.platform.announce("stamped", relay=relay)

    event = await _next(events)
    request = await _next(requests)
    assert (event.type, event.user_id) == ("order.placed.v1", users.user("orders"))
    assert (request.type, request.user_id) == (GetBasketSnapshot.type, users.user("orders"))
    assert [reply.user_id for reply in replies] == [users.user("basket")]
    await tap.close()


async def _next(queue: Any) -> AbstractIncomingMessage:
    got: list[AbstractIncomingMessage] = []

    async def one() -> bool:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            got.append(message)
        return bool(got)

    await wait_for(one, what=f"a message in {queue.name}")
    return got[0]
