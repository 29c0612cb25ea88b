"""The SGNS task's report figures, drawn from the runs' records: each run's test scores (mean and
sample standard deviation over its seeds), and the reflected tie's scores against its fraction of
negative signs (the plain tie C = W at 0), with the untied and gensim runs as reference lines."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tying.training.task import ReportFigure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["SCORES", "score_figures", "grouped"]

#: The test scores drawn: metric name -> axis label.
SCORES = {"ws353": "WordSim-353 Spearman", "simlex": "SimLex-999 Spearman", "analogy": "Google analogy accuracy (%)"}


def grouped(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The records by recipe name (one entry per seed), in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for x in records:
        if x.get("task") == "sgns" and x.get("test"):
            groups.setdefault(x["recipe"]["name"], []).append(x)
    return groups


def _fraction(record: dict[str, Any]) -> float | None:
    """The fraction of negative signs of a tied run: its ``negative_fraction`` when reflected, 0
    for the plain tie (C = W is the reflection with no sign negative); None when untied."""
    model = record["recipe"]["model"]
    if model.get("kind") == "gensim" or model.get("tie") not in ("tied", "reflected"):
        return None
    return float(model["negative_fraction"]) if model["tie"] == "reflected" else 0.0


def _mean_sd(runs: Sequence[dict[str, Any]], metric: str) -> tuple[float, float]:
    values = [float(x["test"][metric]) for x in runs if metric in x["test"]]
    if not values:
        return float("nan"), 0.0
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _scores(fig: Figure, groups: dict[str, list[dict[str, Any]]]) -> None:
    fig.set_size_inches(3.2 * len(SCORES), 0.9 + 0.32 * len(groups))
    axes = fig.subplots(1, len(SCORES), sharey=True)
    names = list(groups)
    for ax, (metric, label) in zip(axes, SCORES.items()):
        stats = [_mean_sd(groups[n], metric) for n in names]
        ax.barh(range(len(names)), [m for m, _ in stats], xerr=[s for _, s in stats], color="tab:blue", alpha=0.7, capsize=3)
        ax.set_xlabel(label, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].invert_yaxis()


def _fraction_axis(ax: Axes, groups: dict[str, list[dict[str, Any]]], metric: str, label: str) -> None:
    reflected = sorted((f, n) for n, runs in groups.items() if (f := _fraction(runs[0])) is not None)
    stats = [_mean_sd(groups[n], metric) for _, n in reflected]
    ax.errorbar([f for f, _ in reflected], [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3, label="C = W D (0: C = W)")
    styles = {"none": ("untied", "tab:green"), "gensim": ("gensim", "tab:red")}
    for n, runs in groups.items():
        model = runs[0]["recipe"]["model"]
        kind = "gensim" if model.get("kind") == "gensim" else model.get("tie")
        if kind in styles:
            ax.axhline(_mean_sd(runs, metric)[0], ls="--", color=styles[kind][1], label=f"{styles[kind][0]} ({n})")
    ax.set_xlabel("fraction of negative signs in D", fontsize=8)
    ax.set_ylabel(label, fontsize=8)
    ax.grid(alpha=0.3)


def _fractions(fig: Figure, groups: dict[str, list[dict[str, Any]]]) -> None:
    fig.set_size_inches(3.4 * len(SCORES), 3.4)
    axes = fig.subplots(1, len(SCORES))
    for ax, (metric, label) in zip(axes, SCORES.items()):
        _fraction_axis(ax, groups, metric, label)
    axes[0].legend(fontsize=7)


def score_figures(records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
    """``scores``: every run's test scores; ``fraction``: the tied runs' scores against their
    fraction of negative signs (the plain tie at 0; when two or more fractions were run)."""
    groups = grouped(records)
    if not groups:
        return []
    figures = [ReportFigure("scores", "test scores per run (mean ± sd over seeds)", lambda fig: _scores(fig, groups))]
    fractions = {f for runs in groups.values() if (f := _fraction(runs[0])) is not None}
    if len(fractions) > 1:
        figures.append(ReportFigure("fraction", "test scores against the reflected tie's fraction of negative signs", lambda fig: _fractions(fig, groups)))
    return figures
