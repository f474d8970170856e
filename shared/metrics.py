"""Process counters exposed at `/metrics` in the Prometheus text format.

Counted where the work happens (the pool's query logger, the relay, the consumers, request/reply),
so that the benchmark can report SQL statements and broker messages per placed order and an
operator can alert on an outbox backlog or parked messages.
"""

from __future__ import annotations

from collections import defaultdict


class Counters:
    def __init__(self) -> None:
        self._values: dict[str, float] = defaultdict(float)
        self._help: dict[str, str] = {}

    def describe(self, name: str, text: str) -> None:
        self._help[name] = text

    def inc(self, name: str, amount: float = 1) -> None:
        self._values[name] += amount

    def get(self, name: str) -> float:
        return self._values.get(name, 0)

    def snapshot(self) -> dict[str, float]:
        return dict(self._values)

    def render(self, service: str, gauges: dict[str, float] | None = None) -> str:
        lines: list[str] = []
        for kind, values in (("counter", self._values), ("gauge", gauges or {})):
            for name in sorted(values):
                metric = f"commerce_{name}"
                if name in self._help:
                    lines.append(f"# HELP {metric} {self._help[name]}")
                lines.append(f"# TYPE {metric} {kind}")
                lines.append(f'{metric}{{service="{service}"}} {values[name]:g}')
        return "\n".join(lines) + "\n"


COUNTERS = Counters()
COUNTERS.describe("sql_statements_total", "SQL statements sent to Postgres")
COUNTERS.describe("events_published_total", "events published by the outbox relay and confirmed by the broker")
COUNTERS.describe("events_consumed_total", "events handled (inbox row inserted, effect committed)")
COUNTERS.describe("events_duplicate_total", "events ignored because the inbox had them")
COUNTERS.describe("events_retried_total", "events sent to a retry queue after a handler failure")
COUNTERS.describe("events_parked_total", "events parked in the dead-letter queue")
COUNTERS.describe("rpc_requests_total", "requests sent over request/reply")
COUNTERS.describe("rpc_served_total", "requests answered over request/reply")
COUNTERS.describe("rpc_timeouts_total", "requests over request/reply that got no answer within their deadline")
for _class in (2, 3, 4, 5):
    COUNTERS.describe(f"http_responses_{_class}xx_total", f"HTTP responses with a {_class}xx status")
