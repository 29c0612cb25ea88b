"""Peers fitted by another library (``tying.training.ExternalModel``) run as recipes of the same
task: the engine calls ``fit_epoch`` instead of its optimizer loop, and they are evaluated,
counted, checkpointed, resumed and reported like the task's torch models."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from pydantic import Field
from torch import nn

import tying
from tying.recipes import expand_seeds, load_recipe, read_metrics, run_recipes
from tying.recipes.report import write_report
from tying.training import ExternalModel, Interrupted, Metric, StepOutput, Table, Task, TrainConfig, Trainer, build_optimizer, register_task

FEATURES = 5


class LeastSquares(ExternalModel):
    """Linear regression fitted in closed form by NumPy's ``lstsq``: the learnt weight is a frozen
    parameter, so it is counted, saved and loaded like any weight."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(features), requires_grad=False)
        self.fits = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight

    def fit_epoch(self, data: Any, epoch: int) -> tuple[float, int]:
        x, y = data["train"]
        w, *_ = np.linalg.lstsq(x.numpy(), y.numpy(), rcond=None)
        self.weight.copy_(torch.from_numpy(w))
        self.fits += 1
        return float(((x @ self.weight - y) ** 2).mean()), len(y)


class RegressionModel(Table):
    kind: Literal["sgd", "lstsq"] = "sgd"


class RegressionTrain(TrainConfig):
    batch_size: int = Field(16, ge=1)


class RegressionTask(Task):
    name = "test-regression"
    tables = {"model": RegressionModel, "train": RegressionTrain}
    metrics = (Metric("mse", "MSE", "lower", fmt=".4f"),)

    def load_data(self, data_root: str | os.PathLike[str] | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(0)
        w = torch.randn(FEATURES, generator=g)
        out = {}
        for split, n in (("train", 64), ("valid", 32), ("test", 32)):
            x = torch.randn(n, FEATURES, generator=g)
            out[split] = (x, x @ w + 0.1 * torch.randn(n, generator=g))
        return out

    def data_summary(self, data: Any) -> dict[str, Any]:
        return {split: len(y) for split, (_, y) in data.items()}

    def build_model(self, data: Any) -> nn.Module:
        kind = self.config["model"].kind  # type: ignore[attr-defined]
        return LeastSquares(FEATURES) if kind == "lstsq" else nn.Linear(FEATURES, 1, bias=False)

    def train_batches(self, data: Any, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x, y = data["train"]
        return list(zip(x.split(16), y.split(16)))

    def step(self, model: nn.Module, batch: Any, carry: Any) -> StepOutput:
        x, y = batch
        return StepOutput(((model(x).reshape(-1) - y) ** 2).mean(), len(y))

    def evaluate(self, model: nn.Module, data: Any, split: str, *, epoch: int) -> dict[str, float]:
        x, y = data[split]
        mse = ((model(x).reshape(-1) - y) ** 2).mean().item()
        return {"loss": mse, "mse": mse}


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_task(RegressionTask)


def _recipe(tmp_path: Path, name: str, kind: str, epochs: int = 2) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\ntask = "test-regression"\n[model]\nkind = "{kind}"\n'
        f'[train]\nepochs = {epochs}\noptimizer = "sgd"\nlr = 0.05\nclip = 0.0\nlr_schedule = "constant"\n'
    )
    return path


def test_a_peer_fits_once_per_epoch_and_is_evaluated_counted_and_reported_beside_a_torch_model(tmp_path: Path) -> None:
    runs = expand_seeds([load_recipe(_recipe(tmp_path, "sgd", "sgd")), load_recipe(_recipe(tmp_path, "lstsq", "lstsq"))])
    run_recipes(runs, tmp_path / "runs")
    sgd, peer = read_metrics(tmp_path / "runs" / "sgd"), read_metrics(tmp_path / "runs" / "lstsq")
    assert sgd is not None and peer is not None
    assert peer["unique_parameters"] == FEATURES == sgd["unique_parameters"]  # the frozen fitted weight counts
    assert [h["train_examples"] for h in peer["history"]] == [64, 64]
    assert peer["test"]["mse"] < sgd["test"]["mse"]  # the closed form is optimal; two SGD epochs are not
    assert peer["test"]["mse"] < 0.05
    write_report(runs, tmp_path / "runs", "peer beside SGD", report="r")
    table = (tmp_path / "runs" / "r.md").read_text()
    assert "| lstsq |" in table and "| sgd |" in table


def test_a_peer_resumes_from_its_checkpointed_tensors(tmp_path: Path) -> None:
    task = load_recipe(_recipe(tmp_path, "p", "lstsq", epochs=1)).make_task()
    data = task.load_data(None)
    model = task.build_model(data)
    first = Trainer(task, model, data, tmp_path / "ck").fit()
    task2 = load_recipe(_recipe(tmp_path, "p", "lstsq", epochs=2)).make_task()
    fresh = task2.build_model(data)
    assert isinstance(fresh, LeastSquares)
    second = Trainer(task2, fresh, data, tmp_path / "ck").fit(resume=True)
    assert fresh.fits == 1 and second.history[0] == first.history[0]  # epoch 1 restored, only epoch 2 fitted
    assert torch.equal(fresh.weight, model.weight)  # lstsq is deterministic: the same fit again


def test_ctrl_c_during_a_peers_fit_stops_after_that_epoch_with_a_resumable_checkpoint(tmp_path: Path) -> None:
    class Interrupting(LeastSquares):
        def fit_epoch(self, data: Any, epoch: int) -> tuple[float, int]:
            os.kill(os.getpid(), signal.SIGINT)  # the handler only records the request
            return super().fit_epoch(data, epoch)

    task = load_recipe(_recipe(tmp_path, "p", "lstsq", epochs=3)).make_task()
    data = task.load_data(None)
    model = Interrupting(FEATURES)
    with pytest.raises(Interrupted, match=r"interrupted after epoch 1; its checkpoint in '.*ck' resumes"):
        Trainer(task, model, data, tmp_path / "ck").fit()
    assert model.fits == 1 and (tmp_path / "ck" / "model-epoch001.safetensors").is_file()


def test_a_torch_model_without_trainable_parameters_is_a_clear_error() -> None:
    frozen = nn.Linear(3, 1).requires_grad_(False)
    with pytest.raises(ValueError, match=r"^Linear has no trainable parameter \(requires_grad=True\): nothing for the adamw optimizer to train; .*ExternalModel$"):
        build_optimizer(TrainConfig(), frozen)
    assert build_optimizer(TrainConfig(), LeastSquares(3)).param_groups[0]["params"] == []


def test_a_peers_fitted_weight_survives_save_and_load(tmp_path: Path) -> None:
    model = LeastSquares(FEATURES)
    data = RegressionTask({"model": RegressionModel(kind="lstsq"), "train": RegressionTrain()}).load_data(None)
    loss, count = model.fit_epoch(data, 1)
    assert math.isfinite(loss) and count == 64
    tying.save(model, tmp_path / "m.safetensors")
    fresh = LeastSquares(FEATURES)
    tying.load(fresh, tmp_path / "m.safetensors")
    assert torch.equal(fresh.weight, model.weight) and not fresh.weight.requires_grad
    assert tying.summary(fresh).unique_parameters == FEATURES
