"""`python -m shared.dlq`: look at, replay and purge the messages a service has parked.

    python -m shared.dlq --service payments list
    python -m shared.dlq --service payments show 1            (or --id <message id>)
    python -m shared.dlq --service payments replay 1 --dry-run (or --id, or --all)
    python -m shared.dlq --service payments purge --id <message id>

The broker and the namespace are the service's own settings (`PAYMENTS_AMQP_URL`,
`PAYMENTS_BUS_NAMESPACE`...), so the tool runs beside the service with its environment. Positions
count from the head of `<ns>.<service>.dlq`, 1 first, as `list` shows them; `--id` is the message
id (the event's id), which does not move when other messages come and go.

How the queue is read: the messages are taken with `basic.get` and held unacknowledged, so no
other reader gets them meanwhile; the ones acted on are acknowledged (purge), or first published
to the service's queue with a publisher confirm and then acknowledged (replay); all the others are
given back with `basic.nack(requeue)` in their order, and stay where they were. Should the tool
die half-way, the broker gives back whatever it still held: no message is lost, and a replayed
one acknowledged too late stays parked as well (replaying it again is harmless: the consumer's
inbox absorbs the duplicate by its event id).

Exit status: 0 done, 1 nothing matched (or nothing parked, for `list`), 2 usage, 3 the broker or
the queue cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import urlsplit

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, ChannelNotFoundEntity

from shared.bus import PUBLISHED_BY, Topology, first_publisher
from shared.contracts import EVENTS, REDACTED, redacted
from shared.outbox import publishing_user
from shared.settings import ServiceSettings, prefixed

# Exit statuses; argparse exits with 2 on a usage error.
OK, NOTHING_MATCHED, UNREACHABLE = 0, 1, 3

# What the retries and the parking added (shared.bus), and what the broker adds when it
# dead-letters a message itself (past the delivery limit): a replayed message starts afresh.
RESET_HEADERS = frozenset(
    {
        "x-retry-count",
        "x-unavailable-count",
        "x-last-error",
        "x-dead-reason",
        "x-dead-consumer",
        "x-death",
        "x-delivery-count",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)
LIST_REASON_CHARS = 100


def consuming_services() -> list[str]:
    return sorted({service for spec in EVENTS.values() for service in spec.consumers})


def settings_for(service: str) -> ServiceSettings:
    """The service's bus settings, read from the environment exactly as its process reads them."""
    cls = type(f"{service.title()}DeadLetterSettings", (ServiceSettings,), {"model_config": prefixed(service)})
    cls.service = service
    return cls()


def safe_url(url: str) -> str:
    """The broker's address for messages: the password never appears."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{parts.path}"


# ---------------------------------------------------------------------------------------------
# What a parked message says (pure)


def dead_reason(headers: Mapping[str, Any]) -> str:
    """Why it was parked: the consumer's reason, or the broker's when the broker dead-lettered it."""
    reason = headers.get("x-dead-reason")
    if reason:
        return _text(reason)
    broker = headers.get("x-first-death-reason")
    if broker:
        return f"dead-lettered by the broker: {_text(broker)}"
    return "unknown (no x-dead-reason header)"


def replay_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The headers a replayed message goes with: its own (a trace, a correlation id), no counters."""
    return {name: value for name, value in headers.items() if name not in RESET_HEADERS}


def envelope_fields(body: bytes) -> dict[str, Any]:
    """The envelope's top-level fields, or nothing for a body that is not a JSON object."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def blanked_secrets(body: bytes) -> list[str]:
    """The secret fields of an event whose values were blanked when it was parked: replayed, the
    consumer receives the blank (a charge request without its token is declined)."""
    data = envelope_fields(body)
    spec = EVENTS.get(f"{data.get('type')}.v{data.get('version')}")
    payload = data.get("payload")
    if spec is None or not isinstance(payload, dict):
        return []
    return sorted(name for name in spec.model.secret_fields if payload.get(name) == REDACTED)


def age(occurred_at: Any, now: datetime) -> str:
    """How long ago the event occurred, coarsely (`42s`, `3m12s`, `5h03m`, `2d04h`); `?` if unknown.

    The event's age, not the parking's (which is not stamped): a message is parked at once, or
    after its retry delays, or after the outage it waited through."""
    try:
        then = datetime.fromisoformat(occurred_at or "")
    except (TypeError, ValueError):  # a malformed envelope is parked too
        return "?"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(int((now - then).total_seconds()), 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if days:
        return f"{days}d{hours % 24:02d}h"
    if hours:
        return f"{hours}h{minutes % 60:02d}m"
    if minutes:
        return f"{minutes}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, str):
        return value
    return orjson.dumps(value, default=str).decode()


# ---------------------------------------------------------------------------------------------
# The queue


@dataclass(frozen=True)
class Parked:
    """A message taken from the DLQ and held unacknowledged, with its position (1 = the head)."""

    position: int
    message: AbstractIncomingMessage

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.message.headers or {})

    @property
    def message_id(self) -> str:
        return self.message.message_id or "-"

    @property
    def event_type(self) -> str:
        data = envelope_fields(self.message.body)
        if "type" in data and "version" in data:
            return f"{data['type']}.v{data['version']}"
        return self.message.type or "?"

    def summary(self, now: datetime) -> str:
        reason = " ".join(dead_reason(self.headers).split())  # one line (a validation error has several)
        if len(reason) > LIST_REASON_CHARS:
            reason = reason[: LIST_REASON_CHARS - 3] + "..."
        occurred = envelope_fields(self.message.body).get("occurred_at")
        return f"{self.position:>4}  {self.message_id:<36}  {self.event_type:<30}  {age(occurred, now):>7}  {reason}"

    def details(self) -> str:
        """Everything about it, with the body's secret fields blanked."""
        message = self.message
        lines = [
            f"position:       {self.position}",
            f"message id:     {self.message_id}",
            f"type:           {self.event_type}",
            f"correlation id: {message.correlation_id or '-'}",
            f"content type:   {message.content_type or '-'}",
            "headers:",
            *(f"  {name}: {_text(value)}" for name, value in sorted(self.headers.items())),
            "body:",
        ]
        body = redacted(message.body)
        try:
            lines.append(orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode())
        except orjson.JSONDecodeError:
            lines.append(body.decode(errors="replace"))
        return "\n".join(lines)

    def replayable(self, own_user: str) -> aio_pika.Message:
        """The message as first delivered: same body, id and type, no retry or dead-letter headers.

        Published as the service's own broker user (the broker refuses any other user_id), with
        the event's first publisher recorded as the consumer's own retries do (`bus.first_publisher`),
        so the consumer's publisher check still sees who produced the event.
        """
        message = self.message
        headers = replay_headers(self.headers)
        publisher = first_publisher(message, own_user)
        if publisher is not None:
            headers[PUBLISHED_BY] = publisher
        return aio_pika.Message(
            message.body,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            type=message.type,
            correlation_id=message.correlation_id,
            headers=headers,
            user_id=own_user,
        )


async def take(queue: AbstractQueue) -> list[Parked]:
    """Every message, from the head, held unacknowledged (no other reader gets them meanwhile).

    All of them, even to look at one: a quorum queue may put a message given back behind the
    others (RabbitMQ 3.10's do), so only the whole queue, given back in its order, keeps it.
    """
    taken: list[Parked] = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        taken.append(Parked(len(taken) + 1, message))
    return taken


async def give_back(held: Iterable[Parked]) -> None:
    """Back to the queue in their order (`basic.nack`: not counted as a failed delivery)."""
    for parked in held:
        await parked.message.nack(requeue=True)


def select(taken: list[Parked], args: argparse.Namespace) -> list[Parked]:
    if getattr(args, "all", False):
        return list(taken)
    if args.id is not None:
        return [parked for parked in taken if parked.message_id == args.id]
    return [parked for parked in taken if parked.position == args.position]


# ---------------------------------------------------------------------------------------------
# The commands


async def command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    settings = settings_for(args.service)
    topology = Topology.from_settings(settings)
    try:
        connection = await aio_pika.connect(settings.amqp_url, timeout=10)
    except (OSError, AMQPError, TimeoutError) as exc:
        print(f"cannot reach the broker at {safe_url(settings.amqp_url)}: {_scrub(exc, settings.amqp_url)}", file=err)
        return UNREACHABLE
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        name = topology.dead_letter_queue()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except ChannelNotFoundEntity:
            print(f"no queue {name}: has {args.service} started with bus namespace {topology.namespace!r}?", file=err)
            return UNREACHABLE
        taken = await take(queue)
        done: set[int] = set()
        try:
            if args.command == "list":
                return list_parked(taken, out)
            chosen = select(taken, args)
            if not chosen:
                print(f"nothing in {name} matches ({len(taken)} parked)", file=err)
                return NOTHING_MATCHED
            if args.command == "show":
                print("\n\n".join(parked.details() for parked in chosen), file=out)
                return OK
            for parked in chosen:
                if args.command == "replay":
                    await replay(channel, publishing_user(connection), topology, parked, args.dry_run, out, err)
                else:
                    await purge(parked, args.dry_run, out)
                if not args.dry_run:
                    done.add(parked.position)
            return OK
        finally:
            # Should the channel be gone, the broker has given them back already, in order.
            with contextlib.suppress(AMQPError, ChannelInvalidStateError):
                await give_back(parked for parked in taken if parked.position not in done)
    except AMQPError as exc:
        print(f"the broker refused: {_scrub(exc, settings.amqp_url)}", file=err)
        return UNREACHABLE
    finally:
        await connection.close()


def list_parked(taken: list[Parked], out: TextIO) -> int:
    if not taken:
        print("nothing parked", file=out)
        return NOTHING_MATCHED
    now = datetime.now(UTC)
    print(f"{'#':>4}  {'message id':<36}  {'type':<30}  {'age':>7}  reason", file=out)
    for parked in taken:
        print(parked.summary(now), file=out)
    return OK


async def replay(
    channel: AbstractChannel,
    own_user: str,
    topology: Topology,
    parked: Parked,
    dry_run: bool,
    out: TextIO,
    err: TextIO,
) -> None:
    """To the service's own queue only (other consumers of the event have handled it already):
    published with a confirm, then the parked copy acknowledged."""
    target = topology.queue()
    blanked = blanked_secrets(parked.message.body)
    if blanked:
        print(
            f"warning: #{parked.position} had {', '.join(blanked)} blanked when it was parked; "
            f"{topology.service} receives {REDACTED!r} in its place",
            file=err,
        )
    if dry_run:
        print(f"would replay #{parked.position} {_label(parked)} to {target}", file=out)
        return
    await channel.default_exchange.publish(parked.replayable(own_user), routing_key=target, mandatory=True)
    await parked.message.ack()
    print(f"replayed #{parked.position} {_label(parked)} to {target}", file=out)


async def purge(parked: Parked, dry_run: bool, out: TextIO) -> None:
    if dry_run:
        print(f"would purge #{parked.position} {_label(parked)}", file=out)
        return
    await parked.message.ack()
    print(f"purged #{parked.position} {_label(parked)}", file=out)


def _label(parked: Parked) -> str:
    return f"{parked.message_id} {parked.event_type}"


def _scrub(exc: BaseException, url: str) -> str:
    text = f"{type(exc).__name__}: {exc}"
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m shared.dlq", description="A service's parked messages.")
    root.add_argument("--service", required=True, choices=consuming_services())
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="one line per parked message: position, message id, type, age, reason")
    show = commands.add_parser("show", help="a message's headers and body (secrets blanked)")
    chosen = show.add_mutually_exclusive_group(required=True)
    chosen.add_argument("position", type=int, nargs="?", help="position in the queue, 1 = the head")
    chosen.add_argument("--id", help="message id")
    for name, text in (
        ("replay", "publish to the service's queue again, counters reset, then remove from the DLQ"),
        ("purge", "remove from the DLQ for good"),
    ):
        sub = commands.add_parser(name, help=text)
        chosen = sub.add_mutually_exclusive_group(required=True)
        chosen.add_argument("position", type=int, nargs="?", help="position in the queue, 1 = the head")
        chosen.add_argument("--id", help="message id")
        chosen.add_argument("--all", action="store_true", help="every parked message")
        sub.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    return root


def main() -> int:
    args = parser().parse_args()
    if getattr(args, "position", None) is not None and args.position < 1:
        parser().error("positions start at 1")
    return asyncio.run(command(args, sys.stdout, sys.stderr))


if __name__ == "__main__":
    sys.exit(main())
