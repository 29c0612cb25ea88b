"""Shared helpers for the benchmark scripts: interleaved timing, medians and goal lines."""

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


def report_goals(goals: list[tuple[bool, str]], quick: bool) -> int:
    """Print one line per ``(met, text)`` goal — ``PASS: text`` or ``FAIL: text``; with ``quick``
    (smoke-test sizes, whose timings judge nothing) ``NOT CHECKED (--quick sizes): text`` — and
    return the script's exit status: 1 if a goal failed, else 0."""
    for met, text in goals:
        print(f"{'NOT CHECKED (--quick sizes)' if quick else 'PASS' if met else 'FAIL'}: {text}")
    return int(not quick and not all(met for met, _ in goals))
