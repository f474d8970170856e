"""A closed-loop HTTP load client: N workers, each sending its next request when the last answered."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[index]


@dataclass
class Latencies:
    """Milliseconds per named operation (an endpoint's route template)."""

    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, name: str, ms: float) -> None:
        self.samples[name].append(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "count": len(values),
                "p50_ms": round(percentile(values, 50), 2),
                "p95_ms": round(percentile(values, 95), 2),
                "p99_ms": round(percentile(values, 99), 2),
                "mean_ms": round(statistics.fmean(values), 2),
            }
            for name, values in sorted(self.samples.items())
        }


@dataclass
class Throughput:
    requests: int
    seconds: float
    errors: int
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @classmethod
    def combined(cls, runs: list[Throughput]) -> Throughput:
        return cls(
            sum(r.requests for r in runs),
            sum(r.seconds for r in runs),
            sum(r.errors for r in runs),
            [ms for r in runs for ms in r.latencies],
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "requests_per_second": round(self.per_second, 1),
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": round(percentile(self.latencies, 50), 2),
            "p99_ms": round(percentile(self.latencies, 99), 2),
        }


async def hammer(
    make_request: Callable[[aiohttp.ClientSession], Awaitable[int]],
    *,
    concurrency: int,
    duration: float,
    warmup: float = 0.5,
) -> Throughput:
    """Run `make_request` from `concurrency` workers for `duration` seconds after a warm-up."""
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    latencies: list[float] = []
    counted = errors = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def worker() -> None:
            nonlocal counted, errors
            while (now := time.perf_counter()) < stop_at:
                try:
                    status = await make_request(session)
                except (aiohttp.ClientError, TimeoutError):
                    status = 599
                done = time.perf_counter()
                if now >= measure_from:
                    latencies.append((done - now) * 1000)
                    counted += 1
                    if status >= 400:
                        errors += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Throughput(counted, duration, errors, latencies)


def get(url: str) -> Callable[[aiohttp.ClientSession], Awaitable[int]]:
    async def request(session: aiohttp.ClientSession) -> int:
        async with session.get(url) as response:
            await response.read()
            return response.status

    return request


def post(url: str, body: bytes) -> Callable[[aiohttp.ClientSession], Awaitable[int]]:
    async def request(session: aiohttp.ClientSession) -> int:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            await response.read()
            return response.status

    return request
