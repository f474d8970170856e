"""What the benchmark says while it runs: a line on stderr at each phase and every few seconds,
and the samples its chart is drawn from (`bench.chart`).

The shoppers are not slowed by it: they append their outcomes to their list as before, and this
module's own task reads the new ones once per sample, between their requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from bench.load import percentile
from bench.shopper import Outcome

# The chart's latency curves: percentiles of the checkouts that ended in the last few seconds
# (one second holds too few at half load for a p99).
LATENCY_WINDOW = 5.0
# Reading every process's CPU time from /proc costs the harness some milliseconds (all of the
# machine's processes are looked at): every few seconds, not every second, so that the load
# generator's own CPU per order stays what it was.
CPU_EVERY = 5.0


@dataclass
class Sample:
    at: float  # seconds since the start
    placed: int  # checkouts placed so far, every shopper phase
    p50_ms: float | None  # POST /orders/process -> placed, over LATENCY_WINDOW
    p99_ms: float | None


class Progress:
    def __init__(self, stream: TextIO, print_every: float = 5.0, sample_every: float = 1.0) -> None:
        self.stream = stream
        self.print_every = print_every
        self.sample_every = sample_every
        # CPU seconds used so far by process (`cpu_by_process`), once the system is up.
        self.cpu: Callable[[], dict[str, float]] | None = None
        self.phases: list[tuple[float, str]] = []  # (start, name)
        self.samples: list[Sample] = []
        self.cpu_samples: list[tuple[float, dict[str, float]]] = []  # (at, CPU seconds used so far)
        self.placed = self.failed = 0
        self._started = time.perf_counter()
        self._outcomes: list[Outcome] = []
        self._read = 0
        self._ended: list[tuple[float, float]] = []  # (at, process -> placed ms)
        self._printed = (0.0, 0)  # (at, placed) of the last line

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def phase(self, name: str) -> None:
        self._read_outcomes()
        self.phases.append((self.elapsed(), name))
        self._print(starts=True)

    def follow(self, outcomes: list[Outcome]) -> None:
        """The list a shopper phase appends its outcomes to (read, never written, from here); the
        latency curve starts afresh with it."""
        self._read_outcomes()
        self._outcomes, self._read, self._ended = outcomes, 0, []

    async def run(self) -> None:
        """Sample until cancelled; print a line every `print_every` seconds."""
        while True:
            await asyncio.sleep(self.sample_every)
            await self.sample()
            # Within half a sample of the interval: a tick a little early still prints.
            if self.elapsed() - self._printed[0] >= self.print_every - self.sample_every / 2:
                self._print()

    async def sample(self) -> None:
        self._read_outcomes()
        now = self.elapsed()
        self._ended = [(at, ms) for at, ms in self._ended if at > now - LATENCY_WINDOW]
        recent = [ms for _, ms in self._ended]
        p50, p99 = (percentile(recent, 50), percentile(recent, 99)) if recent else (None, None)
        self.samples.append(Sample(now, self.placed, p50, p99))
        last = self.cpu_samples[-1][0] if self.cpu_samples else -CPU_EVERY
        if self.cpu is not None and now - last >= CPU_EVERY - self.sample_every / 2:
            # In a thread: the shoppers' event loop goes on meanwhile.
            self.cpu_samples.append((now, await asyncio.to_thread(self.cpu)))

    def _read_outcomes(self) -> None:
        new = self._outcomes[self._read :]
        self._read += len(new)
        now = self.elapsed()
        for outcome in new:
            if outcome.placed:
                self.placed += 1
                if outcome.process_to_placed_ms is not None:
                    self._ended.append((now, outcome.process_to_placed_ms))
            else:
                self.failed += 1

    def _print(self, starts: bool = False) -> None:
        now = self.elapsed()
        since, placed_then = self._printed
        rate = (self.placed - placed_then) / (now - since) if now > since else 0.0
        start, name = self.phases[-1] if self.phases else (0.0, "-")
        when = "begins" if starts else f"{now - start:.0f}s in phase"
        print(
            f"bench {now:6.0f}s  {name:<18} {when:>14}  "
            f"placed {self.placed:6d}  rate {rate:6.1f}/s  errors {self.failed}",
            file=self.stream,
            flush=True,
        )
        self._printed = (now, self.placed)
