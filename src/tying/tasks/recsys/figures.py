"""The report figure of the recommender task: test AUC by the candidate item's number of
training ratings, one bar per recipe (mean over its seeds, the bar's whisker their spread)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["bucket_means", "frequency_figure"]


def bucket_means(records: Sequence[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Recipe name -> (mean, sample standard deviation over seeds) of the test AUC per bucket, in
    report order (one seed: deviation 0)."""
    runs: dict[str, list[list[float]]] = {}
    for x in records:
        runs.setdefault(x["recipe"]["name"], []).append(x["extras"]["bucket_auc"])
    out = {}
    for name, values in runs.items():
        columns = list(zip(*values))
        out[name] = ([statistics.fmean(c) for c in columns], [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns])
    return out


def frequency_figure(fig: Figure, records: Sequence[dict[str, Any]]) -> None:
    """Grouped bars: buckets along x (with their test example counts), a bar per recipe; the y axis
    spans the bars' range (it does not start at 0.5)."""
    first = records[0]["extras"]
    means = bucket_means(records)
    fig.set_size_inches(8.0, 4.0)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(means))
    for k, (name, (mean, spread)) in enumerate(means.items()):
        xs = [b + (k - (len(means) - 1) / 2) * width for b in range(len(mean))]
        ax.bar(xs, mean, width, yerr=spread, capsize=2, label=name)
    ax.set_xticks(range(len(first["buckets"])), [f"{b}\n(n={n:,})" for b, n in zip(first["buckets"], first["bucket_n"])])
    ax.set_xlabel("candidate item's training ratings (test examples)")
    ax.set_ylabel("test AUC")
    values = [v for mean, _ in means.values() for v in mean if v == v]  # NaN (one class) left out
    if values:  # zoomed in: the recipes differ by hundredths
        ax.set_ylim(math.floor(min(values) * 50 - 1) / 50, math.ceil(max(values) * 50 + 1) / 50)
    ax.legend(fontsize=7)
