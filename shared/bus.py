"""RabbitMQ: topology, connection, idempotent consumers and request/reply.

Topology (all names under the settings' `bus_namespace`, `ns` below):

- `ns.events`: durable topic exchange for domain events, routing key `<type>.v<N>`.
- `ns.<service>`: one durable quorum queue per consuming service, bound to the routing keys the
  registry says the service consumes, with an explicit delivery limit; past it the broker
  dead-letters the message to `ns.dlx`.
- `ns.<service>.retry.<i>`: delay queues (TTL, then dead-lettered back to `ns.<service>`).
- `ns.<service>.dlq`: parked messages, each with an `x-dead-reason` header.
- `ns.rpc` + `ns.<service>.rpc`: request/reply; replies go to the caller's own reply queue.

Who published: every message goes out with `user_id`, the broker user the service is connected as
(`outbox.publishing_user`); the broker refuses a `user_id` that is not the connection's own, so it
cannot be forged. Consumers accept an event only from the user of the producer the contract
registry names, a request only from a caller's, a reply only from the responder's
(`Topology.refusal`); anything else is parked (events) or refused (requests). The users and their
broker permissions are generated from the registry (`shared.broker_users`, docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import PublishError
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from shared import metrics, outbox, tracing
from shared.contracts import EVENTS, REQUESTS, Contract, Envelope, events_consumed_by, redacted
from shared.errors import UNAVAILABLE
from shared.settings import ServiceSettings, broker_user
from shared.uow import Duplicate, UnitOfWork, unit_of_work

log = logging.getLogger(__name__)

JSON = "application/json"
# The first publisher of a copy a consumer made itself (a retry, a parked message): the copy goes
# out with the consumer's own user_id, and only that user can send it so.
PUBLISHED_BY = "x-published-by"


@dataclass(frozen=True)
class Topology:
    namespace: str
    service: str
    delivery_limit: int = 10
    retry_delays_ms: tuple[int, ...] = (500, 5_000, 30_000)
    # Production: a message without user_id is refused, and so is one from the consumer's own
    # user in the place of another service's (see `refusal`).
    production: bool = False
    user_prefix: str = ""

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.dlx"

    @property
    def rpc_exchange(self) -> str:
        return f"{self.namespace}.rpc"

    def queue(self, service: str | None = None) -> str:
        return f"{self.namespace}.{service or self.service}"

    def dead_letter_queue(self, service: str | None = None) -> str:
        return f"{self.queue(service)}.dlq"

    def retry_queue(self, attempt: int) -> str:
        return f"{self.queue()}.retry.{attempt}"

    def rpc_queue(self, service: str | None = None) -> str:
        return f"{self.queue(service)}.rpc"

    def reply_queue(self, suffix: str) -> str:
        return f"{self.namespace}.reply.{self.service}.{suffix}"

    def broker_user(self, service: str | None = None) -> str:
        return broker_user(service or self.service, self.user_prefix)

    def refusal(self, publisher: str | None, services: Sequence[str], own_user: str) -> str | None:
        """Why a message published by the broker user `publisher` (None: the message has no
        user_id) must not be handled by this service connected as `own_user`; None to accept it.

        Accepted: a message from the user of one of `services`, the ones the registry names (the
        event's producer, a request's callers, a reply's responder). In development only, where
        every service shares the broker's one user (guest; production refuses it), also one from
        the consumer's own user and one without user_id (tests and tools publish by hand).
        """
        expected = sorted(self.broker_user(service) for service in services)
        if publisher in expected:
            return None
        if not self.production and publisher in (None, own_user):
            return None
        wanted = " or ".join(expected) or "nobody"
        if publisher is None:
            return f"no publishing user (user_id), expected {wanted}"
        return f"published by broker user {publisher}, expected {wanted}"

    @property
    def dead_routing_key(self) -> str:
        return f"{self.service}.dead"

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> Topology:
        return cls(
            settings.bus_namespace,
            settings.service,
            settings.bus_delivery_limit,
            settings.bus_retry_delays_ms,
            production=settings.environment == "production",
            user_prefix=settings.bus_user_prefix,
        )


def first_publisher(message: AbstractIncomingMessage, own_user: str) -> str | None:
    """The broker user that published an event first: its user_id, which the broker vouches for;
    for a copy this consumer made itself (user_id its own), the user the copy recorded."""
    recorded = (message.headers or {}).get(PUBLISHED_BY)
    if message.user_id == own_user and isinstance(recorded, str | bytes):
        return recorded.decode() if isinstance(recorded, bytes) else recorded
    return message.user_id


async def declare_topology(channel: AbstractChannel, topology: Topology) -> AbstractQueue | None:
    """Declare what this service publishes to and consumes from; idempotent.

    Returns the service's event queue, or None when the service consumes no events.
    """
    await channel.declare_exchange(topology.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
    await channel.declare_exchange(topology.rpc_exchange, aio_pika.ExchangeType.DIRECT, durable=True)

    consumed = events_consumed_by(topology.service)
    if not consumed:
        return None
    dlq = await channel.declare_queue(topology.dead_letter_queue(), durable=True, arguments={"x-queue-type": "quorum"})
    await dlq.bind(dlx, topology.dead_routing_key)
    queue = await channel.declare_queue(
        topology.queue(),
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": topology.delivery_limit,
            "x-dead-letter-exchange": topology.dead_letter_exchange,
            "x-dead-letter-routing-key": topology.dead_routing_key,
        },
    )
    for spec in consumed:
        await queue.bind(topology.events_exchange, spec.routing_key)
    for attempt, delay in enumerate(topology.retry_delays_ms, start=1):
        await channel.declare_queue(
            topology.retry_queue(attempt),
            durable=True,
            arguments={
                "x-message-ttl": delay,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": topology.queue(),
            },
        )
    return queue


async def connect(settings: ServiceSettings) -> AbstractRobustConnection:
    """A robust connection (reconnects by itself), retried at start-up while the broker boots."""
    delay = 0.5
    for attempt in range(1, settings.bus_connect_attempts + 1):
        try:
            return await aio_pika.connect_robust(
                settings.amqp_url, client_properties={"connection_name": settings.service}
            )
        except (OSError, aio_pika.exceptions.AMQPConnectionError) as exc:
            if attempt == settings.bus_connect_attempts:
                raise
            log.warning("broker not reachable, retrying", extra={"attempt": attempt, "error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise RuntimeError("unreachable")


# ---------------------------------------------------------------------------------------------
# Consuming events


class _Consumption:
    """One consumer on one queue; remembers the messages in hand so that stop() can let them finish."""

    def __init__(self) -> None:
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._inflight: set[asyncio.Task] = set()

    async def start(self, queue: AbstractQueue, handler: Callable[[AbstractIncomingMessage], Awaitable[None]]) -> None:
        async def tracked(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._inflight.add(task)
            try:
                await handler(message)
            finally:
                if task is not None:
                    self._inflight.discard(task)

        self._queue = queue
        self._tag = await queue.consume(tracked)

    async def stop(self, channel: AbstractChannel | None) -> None:
        """Take no more messages, let those in hand finish (bounded), then close the channel."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=10)
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()


EventHandler = Callable[[UnitOfWork, Any], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """`handler` (named `on_<event>`) runs once per event of type `model`, in a unit of work."""

    model: type[Contract]
    handler: EventHandler


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: parked at once, not retried."""


class EventConsumer:
    """Consumes the service's queue; every handler runs in a unit of work with its inbox row."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        topology: Topology,
        subscriptions: Sequence[Subscription],
        *,
        prefetch: int = 32,
        relay: outbox.Relay | None = None,
    ) -> None:
        self.subscriptions = {subscription.model.routing_key(): subscription for subscription in subscriptions}
        if len(self.subscriptions) != len(subscriptions):  # one would silently replace the other
            raise ValueError("more than one subscription to the same event")
        unknown = set(self.subscriptions) - set(EVENTS)
        if unknown:
            raise ValueError(f"not in the contract registry: {sorted(unknown)}")
        self.pool = pool
        self.topology = topology
        self.prefetch = prefetch
        # Events a handler emits are published by this relay right after the commit (no claim).
        self.relay = relay
        self.channel: AbstractChannel | None = None
        self.user = ""  # the broker user it is connected as, once started
        self._consumption = _Consumption()
        self.handled = 0

    @property
    def consumer_name(self) -> str:
        return self.topology.service

    async def start(self, connection: AbstractRobustConnection) -> None:
        self.user = outbox.publishing_user(connection)
        self.channel = await connection.channel(publisher_confirms=True)
        await self.channel.set_qos(prefetch_count=self.prefetch)
        queue = await declare_topology(self.channel, self.topology)
        if queue is None:
            raise RuntimeError(f"{self.topology.service} consumes no events in the registry")
        await self._consumption.start(queue, self.process)

    async def stop(self) -> None:
        await self._consumption.stop(self.channel)

    async def process(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        outcome = await self._process(message)
        # By the message's type: only a type the registry knows becomes a label.
        event = message.type if message.type in EVENTS else "unknown"
        metrics.EVENTS_HANDLED.labels(event, outcome).observe(time.perf_counter() - started)

    async def _process(self, message: AbstractIncomingMessage) -> str:
        """Handle, retry or park the message; returns what became of it (`metrics.EVENTS_HANDLED`)."""
        try:
            envelope = Envelope.model_validate_json(message.body)
            subscription = self.subscriptions.get(envelope.routing_key)
            if subscription is None:
                raise PermanentError(f"no handler for {envelope.routing_key} in {self.consumer_name}")
            payload = subscription.model.model_validate(envelope.payload)
        except (ValidationError, ValueError, PermanentError) as exc:
            await self.park(message, f"invalid message: {_short(exc)}")
            return "parked"
        # Its log lines carry the request that caused it; traced, a span under its delivery's.
        with tracing.working_on(
            f"handle {envelope.routing_key}",
            request_id=envelope.correlation_id,
            event_id=envelope.event_id,
            event_type=envelope.routing_key,
            order_id=getattr(payload, "order_id", None),
        ):
            return await self._process_valid(message, envelope, subscription, payload)

    async def _process_valid(
        self, message: AbstractIncomingMessage, envelope: Envelope, subscription: Subscription, payload: Any
    ) -> str:
        refused = self.topology.refusal(
            first_publisher(message, self.user), (EVENTS[envelope.routing_key].producer,), self.user
        )
        if refused is not None:
            metrics.PUBLISHER_REFUSED.inc()
            await self.park(message, f"refused: {refused}")
            return "refused"
        try:
            handled = await self.handle(envelope, subscription, payload)
        except PermanentError as exc:
            await self.park(message, f"permanent failure: {_short(exc)}")
            return "parked"
        except Exception as exc:  # anything else is retried, then parked
            return await self.retry_or_park(message, exc)
        await self.acknowledge(message)
        return "handled" if handled else "duplicate"

    async def acknowledge(self, message: AbstractIncomingMessage) -> None:
        """After the commit: a crash before this line redelivers, and the inbox absorbs it."""
        await message.ack()

    async def handle(self, envelope: Envelope, subscription: Subscription, payload: Any) -> bool:
        """Run the handler once per event; False when the inbox says it was already handled.

        The unit of work writes the inbox row first: a redelivered event finds it there, and a
        copy running concurrently waits on its key until the first one commits, then finds it.
        A handler that fails rolls its inbox row back with everything else, so the retry runs it
        again from the start.
        """
        try:
            async with unit_of_work(
                self.pool,
                self.consumer_name,
                correlation_id=envelope.correlation_id,
                causation_id=envelope.event_id,
                relay=self.relay,
                inbox=(self.consumer_name, envelope),
            ) as uow:
                await subscription.handler(uow, payload)
        except Duplicate:
            return self._duplicate(envelope)
        self.handled += 1
        return True

    def _duplicate(self, envelope: Envelope) -> bool:
        log.info("duplicate event ignored", extra={"event_id": str(envelope.event_id), "type": envelope.routing_key})
        return False

    async def retry_or_park(self, message: AbstractIncomingMessage, exc: Exception) -> str:
        """A failing handler is retried through the delay queues, then parked with the reason;
        returns which ("retried", "parked").

        A failure of the database or the broker is not the message's fault: it is retried, at the
        longest delay at most, for as long as the outage lasts, and never parked.
        """
        headers = dict(message.headers or {})
        unavailable = isinstance(exc, UNAVAILABLE)
        counter = "x-unavailable-count" if unavailable else "x-retry-count"
        attempt = int(headers.get(counter, 0)) + 1
        delays = len(self.topology.retry_delays_ms)
        if not unavailable and attempt > delays:
            await self.park(message, f"gave up after {attempt - 1} retries: {_short(exc)}")
            return "parked"
        log.warning(
            "event handler failed, retrying",
            extra={"type": message.type, "attempt": attempt, "error": _short(exc)},
            exc_info=not unavailable,
        )
        headers[counter] = attempt
        headers["x-last-error"] = _short(exc)
        assert self.channel is not None
        await self.channel.default_exchange.publish(
            self._copy(message, headers), routing_key=self.topology.retry_queue(min(attempt, delays))
        )
        await message.ack()
        return "retried"

    async def park(self, message: AbstractIncomingMessage, reason: str) -> None:
        log.error("event parked in the dead-letter queue", extra={"type": message.type, "reason": reason})
        headers = dict(message.headers or {})
        headers["x-dead-reason"] = reason[:1000]
        headers["x-dead-consumer"] = self.consumer_name
        assert self.channel is not None
        dlx = await self.channel.get_exchange(self.topology.dead_letter_exchange, ensure=False)
        # The parked copy outlives the delivery: no secret (a payment token) goes with it.
        parked = self._copy(message, headers, body=redacted(message.body))
        await dlx.publish(parked, routing_key=self.topology.dead_routing_key)
        await message.ack()

    def _copy(
        self, message: AbstractIncomingMessage, headers: dict[str, Any], body: bytes | None = None
    ) -> aio_pika.Message:
        """A copy published by this consumer (its own user_id), recording who published the event."""
        publisher = first_publisher(message, self.user)
        if publisher is None:
            headers.pop(PUBLISHED_BY, None)
        else:
            headers[PUBLISHED_BY] = publisher
        return aio_pika.Message(
            message.body if body is None else body,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            type=message.type,
            correlation_id=message.correlation_id,
            headers=headers,
            user_id=self.user,
        )


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) < 500 else text[:497] + "..."


def _caller_headers() -> dict[str, Any]:
    """A request/reply call's headers: the request id of the caller's work, for the responder's logs."""
    request_id = tracing.request_id()
    return {tracing.REQUEST_ID_HEADER: request_id} if request_id else {}


# ---------------------------------------------------------------------------------------------
# Request/reply


class RpcError(Exception):
    pass


class RpcTimeout(RpcError):
    pass


class RpcUnavailable(RpcError):
    pass


class RequestRefused(RpcError):
    """A request from a broker user that is not one of the registry's callers of its type."""


RequestHandler = Callable[[Any], Awaitable[Contract]]


@dataclass(frozen=True)
class Responder:
    """`handler` answers requests of type `model` with the service's current data (reads only)."""

    model: type[Contract]
    handler: RequestHandler


class RpcClient:
    """Asks another service for its current data, with a deadline."""

    def __init__(self, topology: Topology, default_timeout: float = 3.0) -> None:
        self.topology = topology
        self.default_timeout = default_timeout
        # Per correlation id: the caller's future and the service whose reply it waits for.
        self._pending: dict[str, tuple[asyncio.Future, str]] = {}
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._reply_queue = topology.reply_queue(uuid.uuid4().hex[:12])
        self._user = ""

    async def start(self, connection: AbstractRobustConnection) -> None:
        self._user = outbox.publishing_user(connection)
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await self._channel.declare_exchange(
            self.topology.rpc_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue = await self._channel.declare_queue(self._reply_queue, exclusive=True, auto_delete=True)
        await queue.consume(self._on_reply, no_ack=True)

    async def stop(self) -> None:
        for future, _ in self._pending.values():
            future.cancel()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        pending = self._pending.get(message.correlation_id or "")
        if pending is None:
            return
        future, responder = pending
        refused = self.topology.refusal(message.user_id, (responder,), self._user)
        if refused is not None:
            # Not the answer: the call goes on waiting for the responder's, or times out.
            metrics.PUBLISHER_REFUSED.inc()
            log.warning("reply ignored", extra={"reason": refused})
            return
        if not future.done():
            future.set_result(message)

    async def call(self, request: Contract, timeout: float | None = None) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            with tracing.span(f"ask {request.type}", SpanKind.CLIENT):
                reply = await self._call(request, timeout)
            outcome = "ok"
            return reply
        except RpcTimeout:
            outcome = "timeout"
            raise
        except RpcUnavailable:
            outcome = "unavailable"
            raise
        finally:
            metrics.RPC_CALLS.labels(request.type, outcome).observe(time.perf_counter() - started)

    async def _call(self, request: Contract, timeout: float | None) -> Any:
        spec = REQUESTS[request.type]
        if self._exchange is None:
            raise RpcUnavailable("bus not connected")
        timeout = timeout or self.default_timeout
        correlation_id = uuid.uuid4().hex
        metrics.RPC_REQUESTS.inc()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = (future, spec.responder)
        deadline = time.monotonic() + timeout
        try:
            try:
                await asyncio.wait_for(
                    self._exchange.publish(
                        aio_pika.Message(
                            request.model_dump_json().encode(),
                            content_type=JSON,
                            correlation_id=correlation_id,
                            reply_to=self._reply_queue,
                            type=request.type,
                            expiration=timeout,
                            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
                            user_id=self._user,
                            headers=_caller_headers(),
                        ),
                        routing_key=request.type,
                        mandatory=True,
                    ),
                    timeout,
                )
            except PublishError as exc:
                raise RpcUnavailable(f"no {spec.responder} service is listening for {request.type}") from exc
            except (TimeoutError, aio_pika.exceptions.AMQPError, ConnectionError) as exc:
                raise RpcUnavailable(f"cannot reach the broker for {request.type}: {exc}") from exc
            try:
                message = await asyncio.wait_for(future, max(deadline - time.monotonic(), 0.001))
            except TimeoutError as exc:
                raise RpcTimeout(f"{spec.responder} did not answer {request.type} within {timeout}s") from exc
        finally:
            self._pending.pop(correlation_id, None)
        error = (message.headers or {}).get("x-error")
        if error:
            raise RpcError(f"{spec.responder} failed to answer {request.type}: {error}")
        return spec.reply.model_validate_json(message.body)


@dataclass
class RpcServer:
    """Answers requests for this service's data; replicas compete on one queue."""

    topology: Topology
    responders: Sequence[Responder]
    prefetch: int = 32
    _channel: AbstractChannel | None = field(default=None, init=False)
    _consumption: _Consumption = field(default_factory=_Consumption, init=False)
    _user: str = field(default="", init=False)

    @functools.cached_property
    def handlers(self) -> dict[str, RequestHandler]:
        return {responder.model.type: responder.handler for responder in self.responders}

    async def start(self, connection: AbstractRobustConnection) -> None:
        for request_type in self.handlers:
            spec = REQUESTS.get(request_type)
            if spec is None or spec.responder != self.topology.service:
                raise ValueError(f"{self.topology.service} is not the registered responder of {request_type}")
        self._user = outbox.publishing_user(connection)
        self._channel = await connection.channel(publisher_confirms=False)
        await self._channel.set_qos(prefetch_count=self.prefetch)
        exchange = await self._channel.declare_exchange(
            self.topology.rpc_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        # Quorum: requests survive the loss of one broker node; their expiration is the caller's deadline.
        queue = await self._channel.declare_queue(
            self.topology.rpc_queue(), durable=True, arguments={"x-queue-type": "quorum"}
        )
        for request_type in self.handlers:
            await queue.bind(exchange, request_type)
        await self._consumption.start(queue, self._answer_for_caller)

    async def stop(self) -> None:
        """Stop taking requests, answer the ones in hand, then close."""
        await self._consumption.stop(self._channel)

    async def _answer_for_caller(self, message: AbstractIncomingMessage) -> None:
        """Its log lines carry the caller's request id; traced, a span under the request's delivery."""
        request_id = (message.headers or {}).get(tracing.REQUEST_ID_HEADER)
        with tracing.working_on(
            f"answer {message.type}",
            request_id=request_id if isinstance(request_id, str) else None,
            request_type=message.type,
        ):
            await self._answer(message)

    async def _answer(self, message: AbstractIncomingMessage) -> None:
        started = time.perf_counter()
        outcome = "ok"
        headers: dict[str, Any] = {}
        body = b"{}"
        try:
            spec = REQUESTS[message.type or ""]
            refused = self.topology.refusal(message.user_id, spec.callers, self._user)
            if refused is not None:
                raise RequestRefused(refused)
            request = spec.request.model_validate_json(message.body)
            reply = await self.handlers[spec.request.type](request)
            body = reply.model_dump_json().encode()
        except RequestRefused as exc:
            outcome = "refused"
            metrics.PUBLISHER_REFUSED.inc()
            log.error("request refused", extra={"type": message.type, "reason": str(exc)})
            headers["x-error"] = f"refused: {exc}"
        except Exception as exc:
            outcome = "error"
            log.error("request failed", extra={"type": message.type, "error": _short(exc)})
            log.debug("request failure trace: %s", traceback.format_exc())
            headers["x-error"] = _short(exc)
        if message.reply_to and self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.default_exchange.publish(
                    aio_pika.Message(
                        body,
                        content_type=JSON,
                        correlation_id=message.correlation_id,
                        headers=headers,
                        user_id=self._user,
                    ),
                    routing_key=message.reply_to,
                )
        await message.ack()
        request_type = message.type if message.type in REQUESTS else "unknown"
        metrics.RPC_SERVED.labels(request_type, outcome).observe(time.perf_counter() - started)
