"""The instances of one upstream service: round-robin over those up, a short penalty for those down.

Health is passive: an instance is marked down when a connection to it cannot be made (refused,
reset during the handshake, connect timeout) and is skipped for `down_for` seconds. No probe
traffic, and no state shared between gateway replicas: each learns on its own from its own
failures, at the cost of one quick failover per replica and penalty window.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Instance:
    url: str  # base URL, no trailing slash
    down_until: float = 0.0

    def up(self, now: float) -> bool:
        return self.down_until <= now


class UpstreamPool:
    def __init__(
        self, service: str, urls: tuple[str, ...], down_for: float, clock: Callable[[], float] = time.monotonic
    ):
        if not urls:
            raise ValueError(f"{service}: no upstream instance")
        self.service = service
        self.instances = [Instance(url) for url in urls]
        self.down_for = down_for
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
