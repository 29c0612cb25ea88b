"""The figures of comparison reports (:mod:`tying.recipes.report`), drawn from the numbers the
report has taken from the runs' records: the validation metric per epoch, the test metric against
unique parameters, and the figures the runs' tasks add. Agg canvases, no pyplot state: no display needed,
and the same numbers give the same files (no timestamp in their metadata)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from tying.recipes.config import find_task
from tying.training.task import Metric, ReportFigure

__all__ = ["Point", "curve_plot", "scatter_plot", "task_figures", "figure_file"]

#: Tick labels as plain numbers ("200", "1.5"), also on a log axis (never "2×10²").
_PLAIN = FuncFormatter(lambda value, _: f"{value:g}")


@dataclass(frozen=True)
class Point:
    """One report row in the test-against-parameters plot: its label, unique parameters
    (millions), the test value of each seed, and the paper's value (None: none to show)."""

    label: str
    size: float
    values: list[float]
    paper: float | None = None


def _figure() -> Figure:
    """A bare 6.4 x 4 inch Figure with the Agg canvas: no pyplot global state, no display needed."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=120, metadata={"Software": None})
    return path


def curve_plot(path: Path, title: str, m: Metric, records: Sequence[dict[str, Any]]) -> Path:
    """Validation ``m`` per epoch, a line per run (a bar per run when none has more than one epoch)."""
    fig = _figure()
    ax = fig.add_subplot()
    if max(len(x["history"]) for x in records) > 1:
        for x in records:
            ax.plot([h["epoch"] for h in x["history"]], [h[f"valid_{m.name}"] for h in x["history"]], marker="o", label=x["name"])
        positive = all(h[f"valid_{m.name}"] > 0 for x in records for h in x["history"])  # a log-likelihood is not
        ax.set(xlabel="epoch", ylabel=f"validation {m.words}", title=title, yscale="log" if positive else "linear")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter(_PLAIN)
        ax.yaxis.set_minor_formatter(_PLAIN)
        if len(records) > 8:  # many runs (several seeds): the legend beside the axes, not over the curves
            fig.set_size_inches(9.6, max(4.0, 0.16 * len(records) / 2 + 1.0))
            ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5), ncol=2 if len(records) > 20 else 1)
        else:
            ax.legend()
    else:  # one epoch each: a per-epoch line would be a lone dot per run
        names, values = [x["name"] for x in records], [x["history"][0][f"valid_{m.name}"] for x in records]
        bars = ax.barh(names, values)
        ax.bar_label(bars, labels=[m.format(v) for v in values], padding=3)
        ax.invert_yaxis()
        ax.set(xlabel=f"validation {m.words} after epoch 1 ({m.direction} is better)", title=title)
        ax.margins(x=0.15)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def scatter_plot(path: Path, title: str, m: Metric, points: Sequence[Point], *, seeds: bool = False) -> Path:
    """Test ``m`` against unique parameters: mean ± sd per row, a ring per seed, a cross for the
    paper; ``seeds``: some row has several (the legend says what the rings are)."""
    fig = _figure()
    ax = fig.add_subplot()
    papers, shown = False, []
    for p in points:
        sd = statistics.stdev(p.values) if len(p.values) > 1 else 0.0
        line = ax.errorbar(p.size, statistics.mean(p.values), yerr=sd, fmt="o", capsize=3, label=p.label)
        if len(p.values) > 1:  # each seed too: mean ± sd alone hides a bimodal outcome (one seed that stalls)
            ax.scatter([p.size] * len(p.values), p.values, s=14, facecolors="none", edgecolors=line[0].get_color())
        if p.paper is not None:
            ax.scatter(p.size, p.paper, marker="x", color=line[0].get_color())
            papers = True
            shown.append(p.paper)
        shown += p.values
    ax.set(xlabel="unique parameters (millions)", ylabel=f"test {m.words}", title=title)
    if shown and min(shown) > 0 and max(shown) > 3 * min(shown):  # an outlier would flatten the rest on a linear axis
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(_PLAIN)
        ax.yaxis.set_minor_formatter(_PLAIN)
    # A legend, not labels at the points: rows of nearly equal size and value would overlap.
    handles, _ = ax.get_legend_handles_labels()
    if papers:
        handles.append(Line2D([], [], marker="x", ls="", color="gray", label="paper (same colour)"))
    legend = "mean ± sd over seeds\n(rings: each seed)" if seeds else None
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5), title=legend, title_fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def task_figures(records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
    """The figures the runs' tasks add (:meth:`tying.training.Task.report_figures`), each task
    given its own runs' records."""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for x in records:
        by_task.setdefault(x["task"], []).append(x)
    return [f for task, runs in by_task.items() for f in find_task(task).report_figures(runs)]


def figure_file(path: Path, draw: Callable[[Figure], None]) -> Path:
    """A task's figure (:class:`tying.training.ReportFigure`): ``draw`` on a blank figure, saved."""
    fig = _figure()
    draw(fig)
    return _save(fig, path)
