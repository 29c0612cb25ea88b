"""The engine is task-agnostic: neutral defaults, ``train.device`` (the model and every batch moved
there, a one-line error when it is absent), and ``evaluate`` told the epoch whose model it scores."""

from __future__ import annotations

import warnings
from collections import namedtuple
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn
from typer.testing import CliRunner

from tying.cli.main import app
from tying.errors import RecipeError
from tying.recipes import builtin_recipes, load_recipe
from tying.recipes.config import _read
from tying.tasks.translation import TranslationBatch
from tying.training import Metric, StepOutput, Task, TrainConfig, Trainer
from tying.training import device as device_module
from tying.training import trainer as trainer_module
from tying.training.device import resolve_device, to_device


def test_train_defaults_belong_to_no_task() -> None:
    t = TrainConfig()
    assert (t.optimizer, t.lr, t.clip, t.lr_schedule, t.momentum, t.weight_decay, t.device) == ("adamw", 1e-3, 0.0, "constant", 0.0, 0.0, "cpu")


@pytest.mark.parametrize("name", sorted(builtin_recipes()))
def test_every_builtin_recipe_states_its_optimizer_lr_clipping_and_schedule(name: str) -> None:
    stated = _read(builtin_recipes()[name]).get("train", {})  # the files down the base chain, before defaults
    assert {"optimizer", "lr", "clip", "lr_schedule"} <= set(stated), name


# --------------------------------------------------------------------------- device


@pytest.mark.parametrize("value", ["gpu", "cuda:x", "CPU", "cuda:"])
def test_device_values_are_checked_in_the_recipe(value: str) -> None:
    with pytest.raises(RecipeError, match=rf"train\.device = '{value}': must be \"cpu\", \"cuda\" or \"cuda:N\""):
        load_recipe("digits-ae-tied", [f'train.device="{value}"'])
    assert TrainConfig(device="cuda:1").device == "cuda:1"
    with pytest.raises(ValidationError):
        TrainConfig(device=value)


def test_absent_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RecipeError, match=r"^train\.device = 'cuda': no CUDA device is available here \(torch\.cuda\.is_available\(\) is False\); set train\.device = \"cpu\"$"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(RecipeError, match=r"^train\.device = 'cuda:2': this machine has 2 CUDA device\(s\), cuda:0 to cuda:1$"):
        resolve_device("cuda:2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("cuda", world_size=2) == torch.device("cuda", 1)  # each torchrun process its own GPU


def test_tying_train_on_absent_cuda_fails_in_one_line_before_writing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "digits-ae-tied", "--set", "train.epochs=1", "--set", 'train.device="cuda"', "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: train.device = 'cuda': no CUDA device is available here" in " ".join(result.output.split())
    assert not out.exists()


def test_to_device_moves_every_tensor_of_a_batch() -> None:
    meta = torch.device("meta")  # a device every torch build has: proves the move without a GPU
    Pair = namedtuple("Pair", "inputs targets")
    batch = TranslationBatch(torch.ones(2, 3, dtype=torch.long), None, torch.ones(2, 3, dtype=torch.long), torch.arange(2))
    moved = to_device({"pair": Pair(torch.ones(2), torch.zeros(2)), "list": [torch.ones(1), 3, "x"], "batch": batch, "none": None}, meta)
    assert isinstance(moved["pair"], Pair) and all(t.device == meta for t in moved["pair"])
    assert moved["list"][0].device == meta and moved["list"][1:] == [3, "x"] and moved["none"] is None
    assert moved["batch"].src.device == meta and moved["batch"].tgt_in is None and moved["batch"].index.device.type == "cpu"
    same = torch.ones(3)
    assert to_device((same,), torch.device("cpu"))[0] is same  # already there: no copy


# --------------------------------------------------------------------------- a small task


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4)
        self.moved_to: list[torch.device] = []

    def _apply(self, fn: Any, recurse: bool = True) -> Any:  # what Module.to runs
        self.moved_to.append(fn(torch.empty(0)).device)
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class _Toy(Task):
    """Identity regression on random points; records what the engine hands it."""

    name = "toy-engine"
    tables = {"train": TrainConfig}
    metrics = (Metric("mse", "MSE", "lower", fmt=".4f"),)

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.batch_devices: list[torch.device] = []
        self.evaluated: list[tuple[str, int]] = []

    def load_data(self, data_root: Any) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return {split: torch.randn(32, 4, generator=g) for split in ("train", "valid", "test")}

    def data_summary(self, data: Any) -> dict[str, Any]:
        return {}

    def build_model(self, data: Any) -> nn.Module:
        return _Model()

    def train_batches(self, data: Any, epoch: int) -> Any:
        return [(x, x) for x in data["train"].split(8)]

    def step(self, model: nn.Module, batch: Any, carry: Any) -> StepOutput:
        self.batch_devices += [t.device for t in batch]
        inputs, targets = batch
        return StepOutput(nn.functional.mse_loss(model(inputs), targets), len(inputs))

    def evaluate(self, model: nn.Module, data: Any, split: str, *, epoch: int) -> dict[str, float] | None:
        self.evaluated.append((split, epoch))
        worse = float(epoch) if split == "valid" else 0.0  # validation gets worse: epoch 1 is the best
        return {"loss": worse, "mse": worse}


def _toy(**train: Any) -> _Toy:
    return _Toy({"train": TrainConfig(**{"epochs": 2, **train})})


def test_the_model_and_every_batch_go_to_the_configured_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[tuple[str, torch.device]] = []

    def spy(obj: Any, device: torch.device) -> Any:
        moves.append((type(obj).__name__, device))
        return to_device(obj, device)

    monkeypatch.setattr(trainer_module, "to_device", spy)
    task = _toy(device="cpu")
    data = task.load_data(None)
    model = task.build_model(data)
    Trainer(task, model, data, tmp_path).fit()
    cpu = torch.device("cpu")
    assert model.moved_to == [cpu]  # once, before the optimizer is built
    assert moves == [("tuple", cpu)] * 8 and task.batch_devices == [cpu] * 16  # 4 batches x 2 epochs, 2 tensors each
    assert device_module.resolve_device(task.train.device) == cpu


def test_evaluate_is_told_the_epoch_whose_model_it_scores(tmp_path: Path) -> None:
    task = _toy(epochs=3)
    data = task.load_data(None)
    result = Trainer(task, task.build_model(data), data, tmp_path).fit()
    assert result.best_epoch == 1
    # validation after each epoch; test of the last epoch's model, then of the best epoch's (reloaded)
    assert task.evaluated == [("valid", 1), ("valid", 2), ("valid", 3), ("test", 3), ("test", 1)]


def test_a_task_whose_evaluate_takes_no_epoch_still_runs_with_a_deprecation_warning(tmp_path: Path) -> None:
    class Old(_Toy):
        def evaluate(self, model: nn.Module, data: Any, split: str) -> dict[str, float] | None:  # type: ignore[override]
            return {"loss": 1.0, "mse": 1.0}

    task = Old({"train": TrainConfig(epochs=1)})
    data = task.load_data(None)
    with pytest.warns(DeprecationWarning, match=r"Old\.evaluate\(model, data, split\) takes no epoch; accept the keyword argument `\*, epoch: int`"):
        trainer = Trainer(task, task.build_model(data), data, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trainer.fit().test == {"loss": 1.0, "mse": 1.0}


def test_a_task_reads_its_tables_typed_and_a_wrong_kind_is_named() -> None:
    from tying.tasks.autoencoder import AutoEncoderTrain

    task = load_recipe("digits-ae-tied").make_task()
    assert task.table("train", AutoEncoderTrain) is task.config["train"] is task.train
    with pytest.raises(TypeError, match=r"^\[model\] is a AutoEncoderModel, not the AutoEncoderTrain AutoEncoderTask declares$"):
        task.table("model", AutoEncoderTrain)
