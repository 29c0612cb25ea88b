"""Side-by-side reports of training runs: a rich table and a validation-perplexity plot."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from rich.table import Table

from tying.training.trainer import TrainResult

__all__ = ["Run", "comparison_rows", "comparison_table", "comparison_markdown", "new_figure", "plot_valid_ppl"]


@dataclass
class Run:
    """One trained model: its name, parameter counts (from :func:`tying.summary`) and result."""

    name: str
    total_parameters: int
    unique_parameters: int
    result: TrainResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "total_parameters": self.total_parameters,
            "unique_parameters": self.unique_parameters,
            **self.result.to_dict(),
        }


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def comparison_rows(runs: Sequence[Run]) -> list[tuple[str, list[str]]]:
    """``(measure, one formatted cell per run)`` rows shared by the terminal and markdown tables."""
    return [
        ("parameters (with duplicates)", [f"{r.total_parameters:,}" for r in runs]),
        ("unique parameters", [f"{r.unique_parameters:,}" for r in runs]),
        ("best valid perplexity", [_fmt(r.result.best_valid_ppl, ".2f") for r in runs]),
        ("  at epoch", [str(r.result.best_epoch) for r in runs]),
        ("test perplexity", [_fmt(r.result.test_ppl, ".2f") for r in runs]),
        ("training tokens/s", [f"{r.result.tokens_per_s:,.0f}" for r in runs]),
        ("wall time", [f"{r.result.wall_s:.1f} s" for r in runs]),
    ]


def comparison_table(runs: Sequence[Run], title: str | None = None) -> Table:
    """One column per run, one row per measure (a rich table for the terminal)."""
    table = Table(title=title)
    table.add_column("")
    for run in runs:
        table.add_column(run.name, justify="right")
    for label, cells in comparison_rows(runs):
        table.add_row(label, *cells)
    return table


def comparison_markdown(runs: Sequence[Run]) -> str:
    """The same table as :func:`comparison_table`, as GitHub markdown."""
    lines = ["| | " + " | ".join(r.name for r in runs) + " |", "|---|" + "---:|" * len(runs)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in comparison_rows(runs)]
    return "\n".join(lines) + "\n"


def new_figure() -> Figure:
    """A bare 6.4 x 4 inch Figure with the Agg canvas: no pyplot global state, no display needed."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def plot_valid_ppl(runs: Sequence[Run], path: str | os.PathLike[str], title: str = "") -> Path:
    """Write a PNG of validation perplexity per epoch, one line per run."""
    fig = new_figure()
    ax = fig.add_subplot()
    for run in runs:
        epochs = [m["epoch"] for m in run.result.history]
        ax.plot(epochs, [m["valid_ppl"] for m in run.result.history], marker="o", label=run.name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation perplexity")
    ax.set_title(title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path
