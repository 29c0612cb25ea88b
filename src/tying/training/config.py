"""Settings of the training engine, shared by every task: epochs, optimizer, learning-rate
schedule, clipping, seed, data parallelism, device.

Recipe tables are pydantic models in strict mode: a value of the wrong type (``epochs = 2.5``,
``lr = "fast"``, ``tie = "False"``) or out of range (``epochs = 0``) is an error, never coerced.
A task adds its own training settings by subclassing :class:`TrainConfig`.
"""

from __future__ import annotations

import math
import re
import typing
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from tying.training.external import ExternalModel

__all__ = ["Table", "TrainConfig", "LRSchedule", "next_lr", "step_lr", "build_optimizer"]

#: ``"plateau"``: divide the learning rate by ``lr_decay`` after every epoch whose validation
#: metric is not a new best (pytorch/examples ``word_language_model``).
#: ``"step"``: divide it after every epoch from ``decay_start`` on (Zaremba et al. 2014: lr 1,
#: halved after each epoch from the 4th (small model), i.e. ``lr_decay=2, decay_start=4``).
#: ``"constant"``: never change it.
#: ``"inverse_sqrt"``: per optimizer step s (1-based, counted over all epochs), linear warmup to
#: ``lr`` over ``warmup_steps`` steps, then decay with the inverse square root of the step,
#: ``lr * min(s / w, sqrt(w / s))`` (Vaswani et al. 2017, arXiv 1706.03762; fairseq ``inverse_sqrt``).
#: ``"linear"``: per optimizer step s of T (all epochs' steps), ``lr * max(1 - (s - 1) / T, 1e-4)``,
#: from ``lr`` down towards zero over the run (word2vec's schedule, floored as word2vec floors it).
LRSchedule = Literal["plateau", "step", "constant", "inverse_sqrt", "linear"]

#: The ``"linear"`` schedule's floor, as a fraction of ``lr`` (word2vec: ``starting_alpha * 0.0001``).
LINEAR_FLOOR = 1e-4


class Table(BaseModel):
    """Base of recipe tables: strict types, unknown keys refused, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _tuples_from_toml(cls, data: Any) -> Any:
        # TOML has arrays, not tuples: a field typed as a tuple (betas, a model's widths) takes an array.
        if isinstance(data, dict):
            tuples = {name for name, field in cls.model_fields.items() if typing.get_origin(field.annotation) is tuple}
            data = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in data.items()}
        return data

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TrainConfig(Table):
    """The ``[train]`` table: settings of :class:`tying.training.Trainer`.

    The defaults belong to no task: AdamW at lr 1e-3 with torch's betas, no weight decay, no
    gradient clipping, a constant learning rate, on the CPU. A recipe states what its experiment
    uses (every built-in recipe states its optimizer, learning rate, clipping and schedule; the
    language-model recipes SGD at lr 20 clipped to 0.25, pytorch/examples ``word_language_model``).

    Attributes:
        epochs: passes over the training data (an epoch is ``max_batches`` batches if that is set).
        optimizer: ``"adamw"`` (``torch.optim.AdamW`` with ``betas``) or ``"sgd"``
            (``torch.optim.SGD`` with ``momentum``).
        lr: initial learning rate; weight_decay: passed to the optimizer.
        first_epoch_lr: the learning rate of the first epoch only; the per-epoch schedule then
            starts from ``lr`` (a gentler first epoch for a model whose start oscillates at
            ``lr``). None: ``lr`` from the start.
        clip: maximum global gradient L2 norm (``clip_grad_norm_``); 0 disables clipping.
        lr_schedule, lr_decay, decay_start, warmup_steps: see :data:`LRSchedule`. ``lr_decay``
            and ``decay_start`` act only under the ``"plateau"`` and ``"step"`` schedules; their
            defaults (4, 4) are tying 0.1's, kept so that every recorded run's settings still read
            the same.
        max_batches: cap on training batches per epoch; capped epochs follow on from each other
            through the batches, wrapping round at the end. 0: no cap.
        seed: ``torch.manual_seed`` before the model is built and before training (dropout
            masks); the same seed, data and settings give bit-identical losses.
        parallel: under ``torchrun`` with several processes, ``"ddp"`` (DistributedDataParallel)
            or ``"fsdp"`` (FSDP2 through :func:`tying.distributed.fully_shard_tied`).
        device: ``"cpu"``, ``"cuda"`` (under ``torchrun``: each process's own GPU) or
            ``"cuda:N"``; the model and the training batches go there
            (:func:`tying.training.device.resolve_device`: a clear error when it is absent).
    """

    epochs: int = Field(6, ge=1)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    first_epoch_lr: float | None = Field(None, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    clip: float = Field(0.0, ge=0)
    lr_schedule: LRSchedule = "constant"
    lr_decay: float = Field(4.0, ge=1)
    decay_start: int = Field(4, ge=1)
    warmup_steps: int = Field(0, ge=0)
    max_batches: int = Field(0, ge=0)
    seed: int = 1111
    parallel: Literal["ddp", "fsdp"] = "ddp"
    device: str = "cpu"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
            raise ValueError("must be \"cpu\", \"cuda\" or \"cuda:N\" (N: the GPU's index)")
        return value

    @model_validator(mode="after")
    def _warmup(self) -> TrainConfig:
        if self.lr_schedule == "inverse_sqrt" and self.warmup_steps < 1:
            raise ValueError("lr_schedule='inverse_sqrt' needs warmup_steps >= 1 (the step where the peak lr is reached)")
        if self.lr_schedule == "inverse_sqrt" and self.first_epoch_lr is not None:
            raise ValueError("first_epoch_lr applies to the per-epoch schedules; lr_schedule='inverse_sqrt' warms up with warmup_steps")
        if self.lr_schedule == "linear" and self.first_epoch_lr is not None:
            raise ValueError("first_epoch_lr applies to the per-epoch schedules; lr_schedule='linear' starts at lr")
        return self


def next_lr(config: TrainConfig, lr: float, *, epoch: int, improved: bool) -> float:
    """Learning rate for the epoch after ``epoch`` (1-based, just finished), given whether its
    validation metric was a new best (``"inverse_sqrt"`` changes it per step: :func:`step_lr`)."""
    if epoch == 1 and config.first_epoch_lr is not None:
        lr = config.lr  # the schedule proper starts after the first epoch
    if config.lr_schedule in ("constant", "inverse_sqrt", "linear"):
        return lr
    decay = not improved if config.lr_schedule == "plateau" else epoch >= config.decay_start
    return lr / config.lr_decay if decay else lr


def step_lr(config: TrainConfig, step: int, total: int | None = None) -> float | None:
    """Learning rate of optimizer step ``step`` (1-based, over all epochs) under a per-step
    schedule (``"inverse_sqrt"``; ``"linear"``, which needs ``total``, the run's steps); None
    under the per-epoch schedules (:func:`next_lr`)."""
    if config.lr_schedule == "linear":
        if total is None or total < 1:
            raise ValueError(f"lr_schedule='linear' needs the run's total number of steps, got {total!r}")
        return config.lr * max(1 - (step - 1) / total, LINEAR_FLOOR)
    if config.lr_schedule != "inverse_sqrt":
        return None
    w = config.warmup_steps
    return config.lr * min(step / w, math.sqrt(w / step))


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``config`` names over ``model``'s parameters (each shared tensor once); an
    :class:`~tying.training.external.ExternalModel` gets one with an empty group (it fits itself).

    Raises:
        ValueError: any other model has no trainable parameter.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params and not isinstance(model, ExternalModel):
        raise ValueError(
            f"{type(model).__name__} has no trainable parameter (requires_grad=True): nothing for the "
            f"{config.optimizer} optimizer to train; a model fitted by another library subclasses tying.training.ExternalModel"
        )
    groups = [{"params": params}]  # a list of one group: an ExternalModel's empty one is allowed
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
