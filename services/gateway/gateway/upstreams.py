"""The instances of one upstream service: round-robin over those up, a short penalty for those down,
and a limit on the requests in flight to the service.

Health is passive: an instance is marked down when a connection to it cannot be made (refused,
reset during the handshake, connect timeout) and is skipped for `down_for` seconds. No probe
traffic, and no state shared between gateway replicas: each learns on its own from its own
failures, at the cost of one quick failover per replica and penalty window.

In flight: each service has its own slots (`InFlight`). A service that slows down fills its own
and its excess is refused at once (503, `Retry-After`); the gateway's connections, memory and the
other services' requests are untouched by it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from shared import metrics
from shared.http import ApiError

UPSTREAM_BUSY = Counter(
    "commerce_upstream_busy_total",
    "requests refused because their service had every in-flight slot taken, by upstream service",
    ("upstream",),
    registry=metrics.REGISTRY,
)


class Busy(ApiError):
    """Every in-flight slot of the service stayed taken for the whole admission wait."""

    def __init__(self, service: str) -> None:
        super().__init__(503, f"The {service} service is busy; please retry", headers={"Retry-After": "1"})


class InFlight:
    """At most `limit` requests in flight to one service (`async with`, around each exchange).

    A request finding every slot taken waits at most `wait` seconds for one (a burst that clears
    at once still goes through), then is refused with `Busy`: a queue without bound in front of a
    slow service only turns its slowness into everyone's timeouts.
    """

    def __init__(self, service: str, limit: int, wait: float) -> None:
        self.service = service
        self._slots = asyncio.Semaphore(limit)
        self._wait = wait

    async def __aenter__(self) -> None:
        if not self._slots.locked():  # the usual case: a free slot, taken without waiting
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(self._wait):
                await self._slots.acquire()
        except TimeoutError:
            UPSTREAM_BUSY.labels(self.service).inc()
            raise Busy(self.service) from None

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots.release()


@dataclass
class Instance:
    url: str  # base URL, no trailing slash
    down_until: float = 0.0

    def up(self, now: float) -> bool:
        return self.down_until <= now


class UpstreamPool:
    def __init__(
        self,
        service: str,
        urls: tuple[str, ...],
        down_for: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_in_flight: int,
        admission_wait: float,
    ):
        if not urls:
            raise ValueError(f"{service}: no upstream instance")
        self.service = service
        self.instances = [Instance(url) for url in urls]
        self.down_for = down_for
        # One limit for the service, whatever its number of instances.
        self.in_flight = InFlight(service, max_in_flight, admission_wait)
        self._clock = clock
        self._turn = itertools.count()

    def candidates(self) -> list[Instance]:
        """Every instance, in the order to try them for one request.

        Those up come first, starting at the next one in turn; those marked down follow, the one
        whose penalty ends first leading: when every instance looks down, the request still tries
        them all rather than answering 503 from stale knowledge (an instance restarted within its
        penalty window is found at once).
        """
        now = self._clock()
        start = next(self._turn) % len(self.instances)
        rotated = self.instances[start:] + self.instances[:start]
        down = [instance for instance in rotated if not instance.up(now)]
        if not down:  # the usual case, once per forwarded request
            return rotated
        down.sort(key=lambda i: i.down_until)
        return [instance for instance in rotated if instance.up(now)] + down

    def mark_down(self, instance: Instance) -> None:
        instance.down_until = self._clock() + self.down_for

    def mark_up(self, instance: Instance) -> None:
        instance.down_until = 0.0
