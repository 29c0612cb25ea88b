"""Shared helpers for the benchmark scripts: interleaved timing and medians."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, interleaved (A, B, B, A, A, B ...) so drifts in
    machine speed and cache effects hit every variant alike. Returns the seconds of each run per name."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(repeats):
        # Reverse the order every other repeat, so no variant always runs right after the same one.
        for name, fn in list(fns.items())[:: 1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over repeats of ``a[r] / b[r]``: each pair ran back to back in one repeat of
    :func:`interleaved`, so slow drifts of the machine cancel within the pair."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))
