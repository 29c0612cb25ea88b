"""The task protocol: what a kind of experiment brings to the training engine.

The engine (:class:`tying.training.Trainer`) owns what every experiment shares: the optimizer
and learning-rate schedule, gradient clipping, checkpoints and exact resume, interrupts,
progress output, per-epoch history, throughput, and data parallelism. A :class:`Task` owns what
differs: how to read its data, build its model from the recipe's tables, cut the data into
batches, compute the training loss, and evaluate. A language model, a translation model and an
autoencoder are each one subclass; a recipe file selects one with ``task = "<name>"`` or
``task = "package.module:ClassName"`` (:mod:`tying.training.registry`).

A task's recipe tables (``[model]``, ``[data]``, ``[train]``, ``[loss]`` ...) are pydantic
models in strict mode, so ``model.tie = "False"`` is an error rather than a truthy string; the
``[train]`` table is always :class:`~tying.training.config.TrainConfig` or a subclass adding the
task's own settings (batch size, sequence length). ``docs/extending.md`` walks through a
complete task.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import torch
from pydantic import BaseModel
from torch import nn

from tying.training.config import TrainConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Metric", "Task", "StepOutput", "ReportFigure"]

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Metric:
    """A quantity a task reports for the validation and test data.

    Attributes:
        name: key in the dict :meth:`Task.evaluate` returns (``"ppl"``, ``"bleu"``).
        label: column heading in reports (``"ppl"``, ``"BLEU"``).
        title: its name in prose (``"perplexity"``); default: ``label``.
        direction: ``"lower"`` or ``"higher"`` is better.
        unit: printed after the value (``""``, ``"%"``, ``"nats"``).
        fmt: format spec of the value (``".2f"``).
        report: shown as a column of comparison tables (paper reference: ``paper.test_<name>``).
        curve: the one plotted per epoch in reports and named as what picks the reported epoch
            (default: the first reported metric; mark ``metrics[0]`` when their orders differ, as loss and BLEU).
    """

    name: str
    label: str
    direction: Literal["lower", "higher"]
    unit: str = ""
    fmt: str = ".2f"
    report: bool = True
    title: str = ""
    curve: bool = False

    @property
    def words(self) -> str:
        """How prose names it: :attr:`title`, else :attr:`label`."""
        return self.title or self.label

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` is strictly better than ``b``."""
        return a < b if self.direction == "lower" else a > b

    def format(self, value: float | None) -> str:
        return "-" if value is None else f"{value:{self.fmt}}{self.unit}"


@dataclass
class StepOutput:
    """One training step's result: the scalar loss to back-propagate, how many items (tokens,
    examples) it averages over, and what the task carries to the next step (an LSTM's hidden
    state; None for most tasks)."""

    loss: torch.Tensor
    count: int
    carry: Any = None


@dataclass(frozen=True)
class ReportFigure:
    """A figure a task adds to comparison reports (:meth:`Task.report_figures`): written as
    ``<report>-<name>.png`` and shown in the report's markdown under ``alt``; ``draw`` fills a
    blank matplotlib ``Figure`` (it may resize it)."""

    name: str
    alt: str
    draw: Callable[[Figure], None]


class Task(ABC):
    """One kind of experiment. Subclasses set the class attributes and implement the methods;
    one instance is made per recipe, holding its validated tables in :attr:`config`.

    Class attributes:
        name: the task's name (a recipe's ``task = ...`` where it is registered or declared as an
            entry point under that name).
        tables: recipe table name -> its pydantic model (``"train"`` must map to
            :class:`TrainConfig` or a subclass). Tables may be omitted from a recipe when every
            field has a default.
        metrics: what :meth:`evaluate` returns; ``metrics[0]`` selects the best epoch (and drives
            the plateau schedule).
        unit: what :class:`StepOutput.count` counts, for throughput (``"tokens"``: tokens/s).
        batch_dim: the dimension of every batch tensor that data parallelism splits across ranks.
    """

    name: ClassVar[str]
    tables: ClassVar[dict[str, type[BaseModel]]]
    metrics: ClassVar[tuple[Metric, ...]]
    unit: ClassVar[str] = "examples"
    batch_dim: ClassVar[int] = 0

    def __init__(self, config: dict[str, BaseModel]) -> None:
        self.config = config

    @classmethod
    def table_types(cls, raw: dict[str, Any]) -> dict[str, type[BaseModel]]:
        """The pydantic model of each table, given the recipe's raw tables (override to choose a
        model by a key, e.g. the LM task's ``model.arch``)."""
        return cls.tables

    def table(self, name: str, kind: type[T]) -> T:
        """The recipe's ``[name]`` table as the ``kind`` the task declared for it (a typed accessor:
        ``self.table("train", MyTrain)``)."""
        table = self.config[name]
        if not isinstance(table, kind):
            raise TypeError(f"[{name}] is a {type(table).__name__}, not the {kind.__name__} {type(self).__name__} declares")
        return table

    @property
    def train(self) -> TrainConfig:
        return self.table("train", TrainConfig)

    @abstractmethod
    def load_data(self, data_root: str | os.PathLike[str] | None) -> Any:
        """Read the data the recipe names (``data_root``: where named data sets live; may be
        None for built-in data). Raise a clear error (naming the path) when it is missing."""

    @abstractmethod
    def data_summary(self, data: Any) -> dict[str, Any]:
        """JSON-serialisable facts about the data for the run record (path, sizes, vocabulary)."""

    @abstractmethod
    def build_model(self, data: Any) -> nn.Module:
        """The model of the recipe's ``[model]`` table, ties declared (:func:`tying.tie`)."""

    @abstractmethod
    def train_batches(self, data: Any, epoch: int) -> Sequence[Any]:
        """The training batches of 1-based ``epoch``, in order (a task that shuffles draws the
        order from ``epoch``, so a resumed run sees the same batches)."""

    @abstractmethod
    def step(self, model: nn.Module, batch: Any, carry: Any) -> StepOutput:
        """The training loss of one batch (``carry``: the previous step's, None at the start of
        an epoch). The engine has moved the batch's tensors to the model's device
        (:func:`tying.training.device.to_device`)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, data: Any, split: str, *, epoch: int) -> dict[str, float] | None:
        """Every metric of :attr:`metrics` (and ``"loss"``) on ``split`` (``"valid"``, ``"test"``)
        for the model of 1-based ``epoch`` (validation: the epoch just trained; test: the epoch
        whose model is tested), or None when the data has no such split. The model is already in
        eval mode under ``torch.no_grad``, on ``train.device``: the task reads its data there.
        (A task whose ``evaluate`` takes no ``epoch`` is still called, without it, until tying 0.3.)"""

    def checkpoint_metadata(self, data: Any) -> dict[str, str]:
        """String entries for the header of every model checkpoint the trainer writes, so the file
        alone can be used later (the translation task: its model config and subword models)."""
        return {}

    def train_metrics(self, loss: float) -> dict[str, float]:
        """Metrics derived from the mean training loss for the history (LM: perplexity)."""
        return {}

    def record_extras(self, model: nn.Module, data: Any) -> dict[str, Any]:
        """JSON-serialisable results beyond the metrics, from the tested (best-epoch) model, kept
        in the run record as ``"extras"`` for :meth:`report_figures` (the autoencoder: a few test
        reconstructions); default none."""
        return {}

    @classmethod
    def report_figures(cls, records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
        """Figures of this task's finished runs (their records, in report order) that reports
        add after the engine's own plots; default none."""
        return []

    def split_batch(self, batch: Any, rank: int, world_size: int) -> Any:
        """This rank's share of a global batch under data parallelism: every tensor of ``batch``
        (a tensor or a tuple of tensors) cut into ``world_size`` equal chunks along
        :attr:`batch_dim`."""
        if isinstance(batch, torch.Tensor):
            size = batch.shape[self.batch_dim]
            if size % world_size:
                raise ValueError(f"a batch of {size} along dim {self.batch_dim} does not split evenly over {world_size} ranks")
            return batch.chunk(world_size, self.batch_dim)[rank]
        return type(batch)(self.split_batch(b, rank, world_size) for b in batch)
