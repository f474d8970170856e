"""The metrics of a service process (prometheus-client), served at `/metrics` by `shared.runtime`.

One registry per process, `REGISTRY`. A process runs one service, so nothing is labelled with
the service where it is counted: `exposition` adds `service` to every sample it serves, the
process collector's included. (A test that runs several services in one process sees their
counts together.) Every name of ours starts with `commerce_`; the process collectors keep their
standard `process_*` and `python_*` names.

- Counted where the work happens: HTTP requests (`shared.runtime`'s access middleware, by route
  template), SQL statements (the pool's query logger, `shared.db`), events published (the relay),
  events handled, request/reply calls and answers (`shared.bus`); the checkout saga (orders) and
  the gateway's upstream failures (gateway) next to their code.
- Read at scrape time (`scrape_gauges`): the outbox's depth and the age of its oldest row (one
  cheap query with a timeout), the dead-letter queue's depth (a passive declare, cached a few
  seconds), the database pool's connections (`shared.db.Pool.usage`). A probe that fails says so
  in `commerce_scrape_probe_success` and leaves its gauges out: a scrape never fails because
  the database or the broker is down.

The benchmark (`bench/`) reads `commerce_sql_statements_total`, `commerce_events_published_total`
and `commerce_rpc_requests_total`: one series each per service, so that its parser stays simple.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from shared.db import Pool

CONTENT_TYPE = CONTENT_TYPE_LATEST

# The `_created` series would double every counter and histogram, and nothing reads them.
disable_created_metrics()

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Seconds. From a cached read to a checkout that waits for its outcome (the route's deadline).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# A saga stage waits on other services and the broker, and a stalled one on the sweeper's timeout.
SAGA_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUESTS = Histogram(
    "commerce_http_request_duration_seconds",
    "HTTP requests answered, by route template (never the raw path), method and status",
    ("route", "method", "status"),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
EVENTS_HANDLED = Histogram(
    "commerce_event_handling_duration_seconds",
    "events taken from the service's queue, by event type and outcome: handled, duplicate (the inbox "
    "had it), retried (sent to a delay queue), parked (dead-letter queue), refused (wrong publisher, parked)",
    ("event", "outcome"),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RPC_CALLS = Histogram(
    "commerce_rpc_call_duration_seconds",
    "request/reply calls this service made, by request type and outcome: ok, error (the responder "
    "failed or refused), timeout, unavailable (no broker or no responder)",
    ("request", "outcome"),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
RPC_SERVED = Histogram(
    "commerce_rpc_served_duration_seconds",
    "request/reply requests this service answered, by request type and outcome: ok, error, refused",
    ("request", "outcome"),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
SQL_STATEMENTS = Counter("commerce_sql_statements_total", "SQL statements sent to Postgres", registry=REGISTRY)
EVENTS_PUBLISHED = Counter(
    "commerce_events_published_total",
    "events published by the outbox relay and confirmed by the broker",
    registry=REGISTRY,
)
RPC_REQUESTS = Counter("commerce_rpc_requests_total", "requests sent over request/reply", registry=REGISTRY)
PUBLISHER_REFUSED = Counter(
    "commerce_publisher_refused_total",
    "messages parked, refused or ignored because the broker user that published them is not the one "
    "the contract registry names",
    registry=REGISTRY,
)
DB_ACQUIRE_TIMEOUTS = Counter(
    "commerce_db_acquire_timeouts_total",
    "waits for a pooled database connection that timed out",
    registry=REGISTRY,
)


# ---------------------------------------------------------------------------------------------
# Read at scrape time

PROBE_TIMEOUT = 1.0  # seconds; Prometheus's default scrape timeout is 10
# A backlog is counted up to here, so that counting stays cheap: past it, it is an outage anyway.
OUTBOX_COUNT_CAP = 100_000
# The oldest row by its primary key (an index scan), and a count that stops at the cap.
OUTBOX_QUERY = f"""
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM outbox LIMIT {OUTBOX_COUNT_CAP}) AS capped) AS depth,
    coalesce((SELECT extract(epoch FROM clock_timestamp() - created_at) FROM outbox ORDER BY id LIMIT 1), 0)::float8
        AS oldest
"""


class PoolUsage(NamedTuple):
    in_use: int
    idle: int
    max: int
    waiting: int


class QueueDepth:
    """The number of messages ready in one queue (the service's dead-letter queue), by a passive
    declare on a channel of its own, read at most every `ttl` seconds: scrapes from several
    Prometheus replicas cost the broker one declare."""

    def __init__(
        self, connection: AbstractRobustConnection, queue: str, *, ttl: float = 5.0, timeout: float = PROBE_TIMEOUT
    ) -> None:
        self.connection = connection
        self.queue = queue
        self.ttl = ttl
        self.timeout = timeout
        self._channel: AbstractRobustChannel | None = None
        self._value = 0
        self._read_at = -math.inf

    async def read(self) -> int:
        """The depth; raises when the broker cannot tell within the timeout."""
        if time.monotonic() - self._read_at < self.ttl:
            return self._value
        try:
            async with asyncio.timeout(self.timeout):
                if self._channel is None or self._channel.is_closed:
                    self._channel = await self.connection.channel(publisher_confirms=False)
                # Not robust: a robust channel answers a passive declare it made before from memory.
                queue = await self._channel.declare_queue(self.queue, passive=True, robust=False)
        except Exception:
            await self.close()  # a failed declare closes the channel anyway: the next read opens one
            raise
        self._value = queue.declaration_result.message_count or 0
        self._read_at = time.monotonic()
        return self._value

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.timeout):
                    await channel.close()


async def scrape_gauges(pool: Pool | None, dead_letters: QueueDepth | None) -> list[Metric]:
    """The gauges read now, from what the process has: its pool (none at the gateway) and its
    dead-letter queue (only a service that consumes events has one)."""
    probes = GaugeMetricFamily(
        "commerce_scrape_probe_success",
        "1 when what /metrics reads at scrape time (outbox, dlq) could be read, 0 when not",
        labels=("probe",),
    )
    families: list[Metric] = [probes]
    if pool is not None:
        # The pool first: the outbox query below would count itself in use.
        families += _pool_gauges(pool.usage())
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                row = await pool.fetchrow(OUTBOX_QUERY)
        except Exception:
            probes.add_metric(("outbox",), 0)
        else:
            probes.add_metric(("outbox",), 1)
            families += [
                GaugeMetricFamily(
                    "commerce_outbox_backlog",
                    f"events in the outbox not yet confirmed by the broker (counted up to {OUTBOX_COUNT_CAP})",
                    value=row["depth"],
                ),
                GaugeMetricFamily(
                    "commerce_outbox_oldest_seconds",
                    "age of the oldest event in the outbox (0 when empty)",
                    row["oldest"],
                ),
            ]
    if dead_letters is not None:
        try:
            depth = await dead_letters.read()
        except Exception:
            probes.add_metric(("dlq",), 0)
        else:
            probes.add_metric(("dlq",), 1)
            dlq = GaugeMetricFamily(
                "commerce_dlq_depth", "messages parked in the service's dead-letter queue", labels=("queue",)
            )
            dlq.add_metric((dead_letters.queue,), depth)
            families.append(dlq)
    return families


def _pool_gauges(usage: PoolUsage) -> list[Metric]:
    connections = GaugeMetricFamily(
        "commerce_db_pool_connections", "database connections of the pool, by state", labels=("state",)
    )
    connections.add_metric(("in_use",), usage.in_use)
    connections.add_metric(("idle",), usage.idle)
    return [
        connections,
        GaugeMetricFamily("commerce_db_pool_max_connections", "the pool's maximum size", usage.max),
        GaugeMetricFamily("commerce_db_pool_waiting", "acquires of a pooled connection under way", usage.waiting),
    ]


# ---------------------------------------------------------------------------------------------
# Exposition


class _Served:
    """What `generate_latest` reads: the registry's families and the scrape's gauges, every sample
    labelled with the service."""

    def __init__(self, service: str, gauges: Iterable[Metric]) -> None:
        self.service = service
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        for family in (*REGISTRY.collect(), *self.gauges):
            family.samples = [
                sample._replace(labels={"service": self.service, **sample.labels}) for sample in family.samples
            ]
            yield family


def exposition(service: str, gauges: Iterable[Metric] = ()) -> bytes:
    """The process's metrics and `gauges`, in the Prometheus text format (`CONTENT_TYPE`)."""
    return generate_latest(_Served(service, gauges))
