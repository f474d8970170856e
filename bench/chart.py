"""The benchmark's chart: placed checkouts per second, process -> placed p50/p99, and CPU by
process, over the whole run, with its phases marked; a PNG next to the JSON report."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from matplotlib.figure import Figure

from bench.progress import LATENCY_WINDOW, Progress


def draw(progress: Progress, path: Path) -> None:
    samples = progress.samples
    figure = Figure(figsize=(12, 10), layout="constrained")
    throughput, latency, cpu = figure.subplots(3, 1, sharex=True)
    times = [sample.at for sample in samples]
    # Rates between consecutive samples, drawn at the end of each interval.
    pairs = list(itertools.pairwise(samples))
    steps = [later.at for _, later in pairs]

    throughput.plot(steps, [(b.placed - a.placed) / (b.at - a.at) for a, b in pairs], color="tab:green")
    throughput.set_ylabel("placed checkouts/s")

    latency.plot(times, [_nan(sample.p50_ms) for sample in samples], label="p50")
    latency.plot(times, [_nan(sample.p99_ms) for sample in samples], label="p99")
    latency.set_ylabel(f"process -> placed ms\n(last {LATENCY_WINDOW:.0f} s)")
    latency.legend(loc="upper left")

    cpu_pairs = list(itertools.pairwise(progress.cpu_samples))
    names = sorted({name for _, used in progress.cpu_samples for name in used})
    for name in names:
        cpu.plot(
            [later for _, (later, _) in cpu_pairs],
            [_cores(before, after, name, later - earlier) for (earlier, before), (later, after) in cpu_pairs],
            label=name,
        )
    cpu.set_ylabel("CPU (cores)")
    cpu.set_xlabel("seconds since the start")
    if names:
        cpu.legend(loc="upper left", ncols=4, fontsize="small")

    end = times[-1] if times else progress.elapsed()
    bounds = [start for start, _ in progress.phases[1:]] + [end]
    for index, ((start, name), stop) in enumerate(zip(progress.phases, bounds, strict=True)):
        for axes in (throughput, latency, cpu):
            if index % 2:
                axes.axvspan(start, stop, color="0.93", zorder=0)
        throughput.annotate(
            name,
            ((start + stop) / 2, 1.01 + 0.07 * (index % 2)),  # short phases: labels on two rows
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize="small",
        )
    figure.suptitle("make bench")
    figure.savefig(path, dpi=100)


def _cores(before: dict[str, float], after: dict[str, float], name: str, seconds: float) -> float:
    """Cores a process used between two samples; none to draw when its total went down (Postgres
    backends that ended take their CPU time with them)."""
    if name not in before or name not in after or after[name] < before[name]:
        return math.nan
    return (after[name] - before[name]) / seconds


def _nan(value: float | None) -> float:
    return math.nan if value is None else value
