r"""Deep-equilibrium linear models (``task = "deq-linear"``): full-batch gradient descent on the
mean squared error of scikit-learn's diabetes regression, for the equilibrium of a weight-tied
linear block (:class:`tying.models.DEQLinear`, ``depth`` left out), its finite-depth truncations
and the shallow linear model (``depth = 1``).

Kawaguchi (arXiv 2102.07346) proves that gradient descent on deep-equilibrium linear models
reaches the global minimum at a linear rate, despite the non-convexity in :math:`(A, B)`. Every
model here spans all linear maps of the input, so that minimum is the least-squares optimum,
computed in closed form (:func:`tying.tasks.deqlinear.data.least_squares_optimum`); the task
records the gap *training loss - optimum* at every gradient step and fits its rate
(:func:`linear_rate`): linear convergence is a straight line of :math:`\log(\text{gap})` against
steps. An "epoch" is ``steps_per_epoch`` full-batch steps.

Recipe tables: ``[data]`` (:class:`DEQLinearData`), ``[model]`` (:class:`DEQLinearModel`),
``[train]`` (:class:`DEQLinearTrain`). Reports draw every run's gap on a log scale
(``<report>-gap.png``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

from tying.models.deqlinear import DEQLinear, DEQLinearConfig
from tying.tasks.deqlinear.data import Regression, load_diabetes_split
from tying.training.config import Table, TrainConfig
from tying.training.tables import build_config, config_table
from tying.training.task import Metric, ReportFigure, StepOutput, Task

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DEQLinearData", "DEQLinearModel", "DEQLinearTrain", "DEQLinearTask", "linear_rate"]

#: Gaps below this (relative to the optimum) are float64 and solver noise, not convergence.
FLOOR = 1e-9


class DEQLinearData(Table):
    """``[data]``: ``test_fraction`` of the 442 rows held out (a permutation seeded with ``seed``)."""

    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 0


#: ``[model]``: :class:`tying.models.DEQLinearConfig` but the widths (the data's).
DEQLinearModel = config_table(
    DEQLinearConfig, name="DEQLinearModel", exclude={"in_features", "out_features", "depth"},
    fields={"depth": (Optional[int], Field(None, ge=1))},
    doc="``[model]``: depth (left out: the equilibrium; 1: shallow), gamma, delta, init_scale, tol.",
)  # fmt: skip


class DEQLinearTrain(TrainConfig):
    """``[train]``: the engine's settings plus ``steps_per_epoch`` full-batch gradient steps."""

    steps_per_epoch: int = Field(50, ge=1)


def linear_rate(gaps: Sequence[float], optimum: float) -> dict[str, float]:
    r"""The least-squares line through :math:`\log_{10}(\text{gap}_t)` over the steps from the first
    whose gap is under a tenth of the first gap to the last above the noise floor
    (:data:`FLOOR` times the optimum): ``slope`` (decades per step), ``rate`` (the factor per step,
    :math:`10^{\text{slope}}`), ``r2`` of the fit, and the window. NaN when fewer than 10 steps qualify."""
    floor = FLOOR * max(optimum, 1.0)
    start = next((t for t, g in enumerate(gaps) if g < gaps[0] / 10), len(gaps))
    end = max((t for t, g in enumerate(gaps) if g > floor), default=-1) + 1
    if end - start < 10:
        return {"slope": math.nan, "rate": math.nan, "r2": math.nan, "from": start, "to": end}
    t = torch.arange(start, end, dtype=torch.float64)
    y = torch.tensor(gaps[start:end], dtype=torch.float64).clamp_min(floor).log10()
    slope = float(((t - t.mean()) * (y - y.mean())).sum() / (t - t.mean()).square().sum())
    fit = y.mean() + slope * (t - t.mean())
    r2 = 1 - float((y - fit).square().sum() / (y - y.mean()).square().sum())
    return {"slope": slope, "rate": 10**slope, "r2": r2, "from": start, "to": end}


class DEQLinearTask(Task):
    """Regression by deep-equilibrium, finite-depth and shallow linear models; the metric is the
    training loss minus its global minimum."""

    name = "deq-linear"
    tables: ClassVar[dict[str, type[BaseModel]]] = {"data": DEQLinearData, "model": DEQLinearModel, "train": DEQLinearTrain}
    metrics = (
        Metric("gap", "train gap", "lower", title="training loss minus the global minimum", fmt=".3e"),
        Metric("mse", "MSE", "lower", title="mean squared error (standardised target)", fmt=".4f"),
    )
    unit = "examples"

    def __init__(self, config: dict[str, BaseModel]) -> None:
        super().__init__(config)
        self.gaps: list[float] = []  # the training gap before each gradient step of this run

    @property
    def settings(self) -> DEQLinearTrain:
        return self.table("train", DEQLinearTrain)

    def load_data(self, data_root: str | os.PathLike[str] | None) -> Regression:
        data = self.table("data", DEQLinearData)
        return load_diabetes_split(data.test_fraction, data.seed)

    def data_summary(self, data: Regression) -> dict[str, Any]:
        return {"data": "sklearn.datasets.load_diabetes (standardised)", "features": data.train_x.shape[1], "train": len(data.train_x), "test": len(data.test_x), "optimum": data.optimum}

    def build_model(self, data: Regression) -> nn.Module:
        config = build_config(DEQLinearConfig, self.table("model", DEQLinearModel), in_features=data.train_x.shape[1], out_features=data.train_y.shape[1])
        return DEQLinear(config).double()

    def train_batches(self, data: Regression, epoch: int) -> Sequence[tuple[torch.Tensor, torch.Tensor, float]]:
        return [(data.train_x, data.train_y, data.optimum)] * self.settings.steps_per_epoch

    def step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, float], carry: Any) -> StepOutput:
        x, y, optimum = batch
        loss = F.mse_loss(model(x), y)
        self.gaps.append(loss.item() - optimum)
        return StepOutput(loss, len(x))

    def evaluate(self, model: nn.Module, data: Regression, split: str, *, epoch: int) -> dict[str, float] | None:
        x, y = (data.train_x, data.train_y) if split == "valid" else (data.test_x, data.test_y)
        mse = float(F.mse_loss(model(x), y))
        gap = float(F.mse_loss(model(data.train_x), data.train_y)) - data.optimum
        return {"loss": mse, "mse": mse, "gap": gap}

    def record_extras(self, model: nn.Module, data: Regression) -> dict[str, Any]:
        """The gap at every step (4 significant digits), its fitted linear rate, and the trained
        block's contraction factor, the spectral norm of gamma sigma(A) (None for the shallow model)."""
        assert isinstance(model, DEQLinear)
        contraction = None if model.block is None else float(torch.linalg.matrix_norm(model.block.matrix().detach(), 2))
        return {"gaps": [float(f"{g:.4g}") for g in self.gaps], "optimum": data.optimum, "fit": linear_rate(self.gaps, data.optimum), "contraction": contraction}

    @classmethod
    def report_figures(cls, records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
        """Every run's training gap against gradient steps, log scale."""
        shown = [x for x in records if x.get("extras", {}).get("gaps")]
        if not shown:
            return []
        return [ReportFigure("gap", "training loss minus the global minimum (least squares) against gradient steps, log scale", lambda fig: draw_gaps(fig, shown))]


def draw_gaps(fig: Figure, records: Sequence[dict[str, Any]]) -> None:
    ax = fig.subplots()
    colours: dict[str, Any] = {}
    for record in records:
        name = record["recipe"]["name"]
        gaps = [max(g, 1e-16) for g in record["extras"]["gaps"]]
        line = ax.plot(range(len(gaps)), gaps, lw=1, color=colours.get(name), label=None if name in colours else name)
        colours.setdefault(name, line[0].get_color())
    ax.set_yscale("log")
    ax.set_xlabel("gradient step (full batch)")
    ax.set_ylabel("training MSE - least-squares optimum")
    ax.legend(fontsize=7)
