"""Report figures of the CDEF task: held-out log-likelihood against training length per variant,
and the lag profile each variant recovered against the synthetic data's true one."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from tying.training.task import ReportFigure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["kernel_profile", "kernel_figures", "by_variant"]

_STYLE = {"tied": ("C0", "o"), "untied": ("C3", "s"), "dense": ("C2", "^"), "glm": ("C7", "D")}


def kernel_profile(kernels: torch.Tensor, reach: int) -> list[float]:
    """Expected counts a unit of every factor adds at each lag, averaged over the series:
    ``kernels`` ``(W, R, D, K)`` non-negative -> ``R`` floats, :math:`\\frac1D \\sum_{d,k} A_{t,\\tau,d,k}`
    averaged over the steps :math:`t \\ge R - 1` that read all ``reach`` lags (every step of a tied kernel)."""
    full = kernels[reach - 1 :] if len(kernels) >= reach else kernels
    return [round(v, 5) for v in full.sum(-1).mean(dim=(0, 2)).tolist()]


def by_variant(records: Sequence[dict[str, Any]]) -> dict[str, dict[int, list[float]]]:
    """variant -> training length -> the test log-likelihoods per cell of its runs (one per seed)."""
    table: dict[str, dict[int, list[float]]] = {}
    for r in records:
        extras = r.get("extras", {})
        if "variant" in extras and r.get("test"):
            table.setdefault(extras["variant"], {}).setdefault(extras["train_length"], []).append(r["test"]["loglik"])
    return table


def _likelihood_vs_length(fig: Figure, table: dict[str, dict[int, list[float]]]) -> None:
    fig.set_size_inches(6.0, 4.0)
    ax = fig.subplots()
    for variant, lengths in table.items():
        xs = sorted(lengths)
        means = [statistics.fmean(lengths[n]) for n in xs]
        sds = [statistics.stdev(lengths[n]) if len(lengths[n]) > 1 else 0.0 for n in xs]
        colour, marker = _STYLE.get(variant, ("C4", "x"))
        ax.errorbar(xs, means, yerr=sds, label=variant, color=colour, marker=marker, capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("training length (steps)")
    ax.set_ylabel("test log-likelihood per cell (nats)")
    ax.legend()
    ax.grid(alpha=0.3)


def _profiles(fig: Figure, records: Sequence[dict[str, Any]]) -> None:
    shown = [r for r in records if "profile" in r.get("extras", {})]
    variants = list(dict.fromkeys(r["extras"]["variant"] for r in shown))
    fig.set_size_inches(3.2 * len(variants), 3.2)
    axes = fig.subplots(1, len(variants), squeeze=False, sharey=True)[0]
    truth = shown[0]["extras"]["true_profile"]
    for ax, variant in zip(axes, variants):
        ax.plot(range(len(truth)), truth, "k--", label="true", linewidth=2)
        runs = [r for r in shown if r["extras"]["variant"] == variant]
        lengths = sorted({r["extras"]["train_length"] for r in runs})
        for i, n in enumerate(lengths):
            profiles = [r["extras"]["profile"] for r in runs if r["extras"]["train_length"] == n]
            mean = [statistics.fmean(p[t] for p in profiles) for t in range(len(profiles[0]))]
            ax.plot(range(len(mean)), mean, marker="o", color=f"C{i}", label=f"{n} steps")
        ax.set_title(variant)
        ax.set_xlabel("lag")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("counts added per unit factor")
    axes[-1].legend(fontsize=7)


def kernel_figures(records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
    """The task's report figures (:meth:`tying.tasks.cdef.CDEFTask.report_figures`)."""
    figures = []
    table = by_variant(records)
    if any(len(lengths) > 1 for lengths in table.values()):
        figures.append(ReportFigure(
            "loglik-vs-length", "test log-likelihood per cell against training length, mean ± sd over seeds",
            lambda fig: _likelihood_vs_length(fig, table),
        ))  # fmt: skip
    if any("profile" in r.get("extras", {}) for r in records):
        figures.append(ReportFigure(
            "kernel", "recovered lag profile (mean over seeds) against the true one, per variant and training length",
            lambda fig: _profiles(fig, records),
        ))  # fmt: skip
    return figures
