"""Interleaved A/B timing on a noisy shared machine: paired rounds, medians, min-max.

Each round times every configuration once, in a rotating order, so slow phases of the machine
(other engineers' tests, a scheduler waking up) hit all configurations alike. A figure is the
median of the per-round ratios B/A, with their min-max: a ratio of paired neighbours is far
steadier here than a ratio of two independent medians.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence


def time_batch(fn: Callable[[object], object], inputs: Sequence[object]) -> float:
    """ns per call of ``fn`` over ``inputs``, without the cyclic GC firing mid-batch."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter_ns()
        for x in inputs:
            fn(x)
        return (time.perf_counter_ns() - t0) / len(inputs)
    finally:
        gc.enable()


def calibrate(fn: Callable[[object], object], x: object, target_s: float) -> int:
    """How many calls make one batch of about ``target_s`` seconds."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn(x)
        dt = time.perf_counter() - t0
        if dt >= target_s / 4 or n >= 1 << 20:
            return max(1, int(n * target_s / max(dt, 1e-9)))
        n *= 4


def interleave(configs: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    names = list(configs)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        order = names[k:] + names[:k]
        if (r // len(names)) % 2:
            order.reverse()
        for name in order:
            samples[name].append(configs[name]())
    return samples


@dataclass
class Ratio:
    median: float
    lo: float
    hi: float
    a_median: float
    b_median: float
    a_range: tuple[float, float]
    b_range: tuple[float, float]
    rounds: int

    @classmethod
    def of(cls, a: list[float], b: list[float]) -> "Ratio":
        ratios = [y / x for x, y in zip(a, b)]
        return cls(
            statistics.median(ratios), min(ratios), max(ratios),
            statistics.median(a), statistics.median(b), (min(a), max(a)), (min(b), max(b)), len(ratios),
        )


def fmt_time(ns: float) -> str:
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def table(rows: Iterable[Sequence[str]], header: Sequence[str]) -> str:
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
