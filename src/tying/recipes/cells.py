"""Formatting of the cells of a report row: values over seeds, epochs, durations and memory."""

from __future__ import annotations

import statistics
from typing import Any

from tying._text import plural
from tying.training.task import Metric

__all__ = ["spread", "shortened", "epochs", "duration", "memory"]


def spread(values: list[float], metric: Metric) -> str:
    """One value, or ``mean ± sd`` (sample standard deviation) of several."""
    if len(values) == 1:
        return metric.format(values[0])
    return f"{metric.format(statistics.mean(values))} ± {metric.format(statistics.stdev(values))}"


def shortened(record: dict[str, Any]) -> bool:
    return record["recipe"]["train"]["epochs"] < record["recipe"]["schedule_epochs"]


def epochs(record: dict[str, Any], words: bool = False) -> str:
    """``"13"``, or ``"2 of 40 (shortened)"`` for a run on a shortened schedule (with ``words``:
    ``"1 epoch"``, ``"2 of 40 epochs (shortened)"``), and the cap on batches per epoch if there
    is one (``"4, 250 batches each"``)."""
    trained, schedule = len(record["history"]), record["recipe"]["schedule_epochs"]
    if shortened(record):
        text = f"{trained} of {plural(schedule, 'epoch') if words else schedule} (shortened)"
    else:
        text = plural(trained, "epoch") if words else str(trained)
    cap = record["recipe"]["train"].get("max_batches")
    return f"{text}, {plural(cap, 'batch', 'batches')} each" if cap else text


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def memory(records: list[dict[str, Any]]) -> str | None:
    """The runs' peak resident memory (``peak_rss_mib``, the process's high-water mark: model,
    data, activations and the interpreter), mean over seeds; None when a record predates it."""
    values = [x.get("peak_rss_mib") for x in records]
    if None in values:
        return None
    return f"{statistics.mean(float(v) for v in values if v is not None):,.0f} MiB"
