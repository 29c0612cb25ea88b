r"""Tied autoencoders on handwritten digits (``task = "autoencoder"``): reconstruct 8x8 images
through a narrow code, mean squared error (lower is better).

The model is :class:`tying.models.AutoEncoder`: ``tie = true`` makes decoder layer :math:`k` read
encoder layer :math:`L-1-k` transposed (``tying.tie_transposed``; biases per layer), halving the
weights. An untied model is compared either at the same widths or, with
``equal_parameters = true``, at about the tied model's parameter count (hidden widths scaled by
:func:`tying.models.autoencoder.equal_parameter_widths`).

Recipe tables:

* ``[data]``: :class:`DigitsData`, how scikit-learn's bundled digits (:mod:`tying.tasks.autoencoder.digits`)
  are split into train, valid and test rows;
* ``[model]``: :class:`AutoEncoderModel`;
* ``[train]``: :class:`AutoEncoderTrain`, the engine's settings plus the batch size.

Each run keeps the reconstructions of the first :data:`SHOWN` test digits in its record
(:meth:`AutoEncoderTask.record_extras`), and comparison reports draw them under the originals
(``<report>-reconstructions.png``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

from tying.models.autoencoder import AutoEncoder, AutoEncoderConfig, equal_parameter_widths, reconstruction_mse
from tying.tasks.autoencoder.digits import DIGIT_PIXELS, load_digit_images
from tying.training.config import Table, TrainConfig
from tying.training.tables import build_config, config_table
from tying.training.task import Metric, ReportFigure, StepOutput, Task

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["SHOWN", "DigitsData", "AutoEncoderModel", "AutoEncoderTrain", "DigitSplits", "AutoEncoderTask", "autoencoder_config"]

#: Test digits whose reconstructions a run records and a report draws.
SHOWN = 8


class DigitsData(Table):
    """``[data]``: ``test_fraction`` of the 1,797 images are test rows; ``valid_fraction`` of the
    remaining rows are validation rows; both drawn by permutations seeded with ``seed``."""

    test_fraction: float = Field(0.2, gt=0, lt=1)
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0


#: ``[model]``: hidden widths (the input width is the 64 pixels), ``tie``, and
#: :class:`tying.models.AutoEncoderConfig`'s other fields (``activation``); with
#: ``equal_parameters = true`` (untied only) the hidden widths are scaled to the tied model's
#: parameter count (:func:`autoencoder_config`).
AutoEncoderModel = config_table(
    AutoEncoderConfig, name="AutoEncoderModel", exclude={"widths", "tied"},
    fields={
        "hidden": (list[Annotated[int, Field(ge=1)]], Field(default_factory=lambda: [32, 16], min_length=1)),
        "tie": (bool, True),
        "equal_parameters": (bool, False),
    },
    doc="``[model]``: hidden widths, tie, equal_parameters, and the other fields of :class:`tying.models.AutoEncoderConfig`.",
)  # fmt: skip


def autoencoder_config(model: Table) -> AutoEncoderConfig:
    """The model of a ``[model]`` table: widths ``(64, *hidden)``, tied as ``tie`` says, or the
    untied widths of about the tied model's parameter count (``equal_parameters``)."""
    m: Any = model
    config = build_config(AutoEncoderConfig, model, widths=(DIGIT_PIXELS, *m.hidden), tied=m.tie)
    if m.equal_parameters:
        config = replace(config, widths=equal_parameter_widths(config), tied=False)
    return config


class AutoEncoderTrain(TrainConfig):
    """``[train]``: the engine's settings plus ``batch_size`` (images per step, reshuffled every epoch)."""

    batch_size: int = Field(64, ge=1)


@dataclass
class DigitSplits:
    """Images ``(N, 64)`` in [0, 1] of each split."""

    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor


class AutoEncoderTask(Task):
    """Reconstruct digit images; mean squared error per pixel, lower is better."""

    name = "autoencoder"
    tables: ClassVar[dict[str, type[BaseModel]]] = {"data": DigitsData, "model": AutoEncoderModel, "train": AutoEncoderTrain}
    metrics = (Metric("mse", "MSE", "lower", title="reconstruction MSE", fmt=".4f"),)
    unit = "examples"

    def __init__(self, config: dict[str, BaseModel]) -> None:
        super().__init__(config)
        model = config["model"]
        assert isinstance(model, AutoEncoderModel)
        if model.equal_parameters and model.tie:  # type: ignore[attr-defined]
            raise ValueError("model.equal_parameters = true sizes an untied model to the tied one's parameter count; set model.tie = false")
        self.model_config = autoencoder_config(model)

    @property
    def settings(self) -> AutoEncoderTrain:
        return self.table("train", AutoEncoderTrain)

    def load_data(self, data_root: str | os.PathLike[str] | None) -> DigitSplits:
        data = self.config["data"]
        assert isinstance(data, DigitsData)
        train, test = load_digit_images(data.test_fraction, data.seed)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(data.seed))
        n_valid = int(len(train) * data.valid_fraction)
        return DigitSplits(train[order[n_valid:]], train[order[:n_valid]], test)

    def data_summary(self, data: DigitSplits) -> dict[str, Any]:
        return {"data": "sklearn.datasets.load_digits", "pixels": DIGIT_PIXELS, **{s: len(getattr(data, s)) for s in ("train", "valid", "test")}}

    def build_model(self, data: DigitSplits) -> nn.Module:
        return AutoEncoder(self.model_config)

    def train_batches(self, data: DigitSplits, epoch: int) -> Sequence[torch.Tensor]:
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(epoch))
        return data.train[order].split(self.settings.batch_size)

    def step(self, model: nn.Module, batch: torch.Tensor, carry: Any) -> StepOutput:
        return StepOutput(F.mse_loss(model(batch), batch), len(batch))

    def evaluate(self, model: nn.Module, data: DigitSplits, split: str, *, epoch: int) -> dict[str, float] | None:
        mse = reconstruction_mse(model, getattr(data, split).to(next(model.parameters()).device))
        return {"loss": mse, "mse": mse}

    def record_extras(self, model: nn.Module, data: DigitSplits) -> dict[str, Any]:
        """The model's widths, and the first :data:`SHOWN` test images with their reconstructions
        (4 decimals), for the report's figure."""
        assert isinstance(model, AutoEncoder)
        images = data.test[:SHOWN]
        with torch.no_grad():
            shown = model(images.to(next(model.parameters()).device)).clamp(0, 1).cpu()
        return {
            "widths": list(model.config.widths),
            "originals": images.round(decimals=4).tolist(),
            "reconstructions": shown.round(decimals=4).tolist(),
        }

    @classmethod
    def report_figures(cls, records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
        """The first test digits (top row) and each run's reconstructions of them (a row per run)."""
        shown = [x for x in records if "reconstructions" in x.get("extras", {})]
        if not shown:
            return []
        return [ReportFigure("reconstructions", "test digits and their reconstructions, a row per run", lambda fig: _reconstructions(fig, shown))]


def _reconstructions(fig: Figure, records: Sequence[dict[str, Any]]) -> None:
    rows = [("original", records[0]["extras"]["originals"])] + [(x["name"], x["extras"]["reconstructions"]) for x in records]
    columns = len(rows[0][1])
    fig.set_size_inches(1.0 + 0.8 * columns, 0.85 * len(rows))
    axes = fig.subplots(len(rows), columns, squeeze=False)
    side = int(DIGIT_PIXELS**0.5)
    for r, (label, images) in enumerate(rows):
        for c, image in enumerate(images):
            ax = axes[r][c]
            ax.imshow(torch.tensor(image).view(side, side).numpy(), cmap="gray_r", vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
