"""A task written outside tying: a linear autoencoder on points of a random low-dimensional
subspace, its decoder tied to the encoder's weight transposed (or not: ``model.tie``).

tying finds it by import path: a recipe says ``task = "my_task:MyTask"`` (module ``my_task``,
class ``MyTask``), so this folder must be on the Python path::

    PYTHONPATH=examples/custom_task tying train examples/custom_task/my_task.toml
    PYTHONPATH=examples/custom_task tying compare examples/custom_task/my_task.toml \
        examples/custom_task/my_task_untied.toml --seeds 2 --out runs/my-task

A package that installs its task can declare it as an entry point instead, so that recipes say
``task = "my-task"`` (docs/extending.md).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from pydantic import Field
from torch import nn

from tying.core import tie_transposed
from tying.training import Metric, StepOutput, Table, Task, TrainConfig


class SubspaceData(Table):
    """``[data]``: ``size`` points per split in ``features`` dimensions, on a random subspace of
    dimension ``rank`` drawn from ``seed``."""

    features: int = Field(16, ge=1)
    rank: int = Field(4, ge=1)
    size: int = Field(512, ge=1)
    seed: int = 0


class SubspaceModel(Table):
    """``[model]``: the code width and whether the decoder reads the encoder's weight transposed."""

    code: int = Field(4, ge=1)
    tie: bool = True


class SubspaceTrain(TrainConfig):
    """``[train]``: the engine's settings plus the batch size."""

    batch_size: int = Field(32, ge=1)


class MyTask(Task):
    """Reconstruct the points; mean squared error, lower is better."""

    name = "my-task"
    tables = {"data": SubspaceData, "model": SubspaceModel, "train": SubspaceTrain}
    metrics = (Metric("mse", "MSE", "lower", title="reconstruction MSE", fmt=".4f"),)
    unit = "examples"

    def load_data(self, data_root: str | os.PathLike[str] | None) -> dict[str, torch.Tensor]:
        d = self.config["data"]
        assert isinstance(d, SubspaceData)
        g = torch.Generator().manual_seed(d.seed)
        basis = torch.randn(d.rank, d.features, generator=g)
        return {split: torch.randn(d.size, d.rank, generator=g) @ basis for split in ("train", "valid", "test")}

    def data_summary(self, data: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {split: len(x) for split, x in data.items()}

    def build_model(self, data: dict[str, torch.Tensor]) -> nn.Module:
        m = self.config["model"]
        assert isinstance(m, SubspaceModel)
        features = data["train"].shape[1]
        model = nn.Sequential(nn.Linear(features, m.code), nn.Linear(m.code, features))
        if m.tie:
            tie_transposed(model, "0.weight", "1.weight")  # decoder weight = encoder weight transposed
        return model

    def train_batches(self, data: dict[str, torch.Tensor], epoch: int) -> list[torch.Tensor]:
        train = self.config["train"]
        assert isinstance(train, SubspaceTrain)
        order = torch.randperm(len(data["train"]), generator=torch.Generator().manual_seed(epoch))  # resumable
        return list(data["train"][order].split(train.batch_size))

    def step(self, model: nn.Module, batch: torch.Tensor, carry: Any) -> StepOutput:
        return StepOutput(nn.functional.mse_loss(model(batch), batch), len(batch))

    def evaluate(self, model: nn.Module, data: dict[str, torch.Tensor], split: str, *, epoch: int) -> dict[str, float] | None:
        x = data[split].to(next(model.parameters()).device)
        mse = nn.functional.mse_loss(model(x), x).item()
        return {"loss": mse, "mse": mse}
