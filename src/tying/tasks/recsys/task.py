r"""Rating prediction on MovieLens with Wide & Deep (``task = "recsys"``): does the user rate the
movie 4 or more? AUC (higher is better) picks the best epoch; log loss, and both again on the
rare-item tail (candidates with at most ``data.rare`` training ratings), are reported.

The model is :class:`tying.models.WideDeep` (``[model] kind = "wide_deep"``, the default):
``shared = true`` ties the history bag to the candidate item table; ``parts`` keeps the wide or the
deep part only. ``kind = "logreg"`` is the classical peer: scikit-learn's logistic regression on
the same hashed wide features (:mod:`tying.tasks.recsys.logreg`), fitted by the engine's
``ExternalModel`` hook.

Recipe tables:

* ``[data]``: :class:`RecsysData`, the split and the features (:mod:`tying.tasks.recsys.movielens`);
* ``[model]``: :data:`WideDeepModel` or :class:`LogRegModel`;
* ``[train]``: :class:`RecsysTrain`, the engine's settings plus the batch size.

Each run records the test AUC and log loss by the candidate's number of training ratings
(:data:`BUCKETS`), and comparison reports draw them (``<report>-auc-by-frequency.png``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

from tying.models.wide_deep import Ratings, WideDeep, WideDeepConfig
from tying.tasks.recsys.figures import frequency_figure
from tying.tasks.recsys.metrics import auc, binary_metrics, log_loss
from tying.tasks.recsys.movielens import Examples, MovieLens, build_examples, frequency_buckets, read_movielens, tail_mask
from tying.training.config import Table, TrainConfig
from tying.training.tables import build_config, config_table
from tying.training.task import Metric, ReportFigure, StepOutput, Task

__all__ = ["BUCKETS", "RecsysData", "WideDeepModel", "LogRegModel", "RecsysTrain", "RecsysTask", "predict"]

#: Upper edges of the item-frequency buckets of the per-bucket metrics: 0, 1-5, 6-20, 21-100, more.
BUCKETS = (0, 5, 20, 100)


class RecsysData(Table):
    """``[data]``: per user, the last ``test_fraction`` of the ratings (by time) are test and the
    ``valid_fraction`` before them validation examples; histories of the last ``history`` items;
    wide features hashed into ``wide_buckets`` ids; the tail is candidates with at most ``rare``
    training ratings."""

    history: int = Field(20, ge=1)
    wide_buckets: int = Field(2**18, ge=2)
    valid_fraction: float = Field(0.1, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    rare: int = Field(5, ge=0)


#: ``[model]`` of ``kind = "wide_deep"``: the fields of :class:`tying.models.WideDeepConfig` but the
#: sizes taken from the data (``vocab_size``, ``num_users``, ``num_genres``, and ``history`` and
#: ``wide_buckets`` from ``[data]``).
WideDeepModel = config_table(
    WideDeepConfig, name="WideDeepModel", exclude={"vocab_size", "num_users", "num_genres", "history", "wide_buckets"},
    fields={"kind": (Literal["wide_deep"], "wide_deep")},
)  # fmt: skip


class LogRegModel(Table):
    """``[model]`` of ``kind = "logreg"``: scikit-learn's ``LogisticRegression`` on the hashed wide
    features, L2 penalty of inverse strength ``C``, lbfgs for at most ``max_iter`` iterations."""

    kind: Literal["logreg"]
    C: float = Field(1.0, gt=0)
    max_iter: int = Field(300, ge=1)


class RecsysTrain(TrainConfig):
    """``[train]``: the engine's settings plus ``batch_size`` (examples per step, reshuffled every epoch)."""

    batch_size: int = Field(256, ge=1)


@torch.no_grad()
def predict(model: nn.Module, examples: Examples, batch_size: int = 8192) -> torch.Tensor:
    """The model's logits of every example, in batches, on the model's device (returned on the CPU)."""
    device = next(iter(model.state_dict().values())).device
    chunks = [model(Ratings(*(t[i : i + batch_size].to(device) for t in examples.x))).cpu() for i in range(0, len(examples), batch_size)]
    return torch.cat(chunks) if chunks else torch.zeros(0)


class RecsysTask(Task):
    """Predict whether a user rates a movie 4 or more; AUC, higher is better."""

    name = "recsys"
    tables: ClassVar[dict[str, type[BaseModel]]] = {"data": RecsysData, "model": WideDeepModel, "train": RecsysTrain}
    metrics = (
        Metric("auc", "AUC", "higher", fmt=".4f"),
        Metric("logloss", "log loss", "lower", fmt=".4f"),
        Metric("tail_auc", "tail AUC", "higher", fmt=".4f", title="AUC on the rare-item tail"),
        Metric("tail_logloss", "tail log loss", "lower", fmt=".4f", title="log loss on the rare-item tail"),
    )
    unit = "examples"

    @classmethod
    def table_types(cls, raw: dict[str, Any]) -> dict[str, type[BaseModel]]:
        kind = raw.get("model", {}).get("kind", "wide_deep") if isinstance(raw.get("model"), dict) else "wide_deep"
        return {**cls.tables, "model": LogRegModel if kind == "logreg" else WideDeepModel}

    @property
    def data_settings(self) -> RecsysData:
        return self.table("data", RecsysData)

    def load_data(self, data_root: str | os.PathLike[str] | None) -> MovieLens:
        d = self.data_settings
        return build_examples(read_movielens(), history=d.history, buckets=d.wide_buckets, valid_fraction=d.valid_fraction, test_fraction=d.test_fraction)

    def data_summary(self, data: MovieLens) -> dict[str, Any]:
        return {**data.summary(), "tail_test": int(tail_mask(data, data.test, self.data_settings.rare).sum())}

    def model_config(self, data: MovieLens) -> WideDeepConfig:
        """The :class:`WideDeepConfig` of the recipe's ``[model]`` table and the data's sizes."""
        d, model = self.data_settings, self.config["model"]
        assert isinstance(model, WideDeepModel), "a logreg peer has no WideDeepConfig"
        sizes = {"vocab_size": data.vocab_size, "num_users": data.num_users, "num_genres": data.num_genres}
        return build_config(WideDeepConfig, model, history=d.history, wide_buckets=d.wide_buckets, **sizes)

    def build_model(self, data: MovieLens) -> nn.Module:
        model = self.config["model"]
        if isinstance(model, LogRegModel):
            from tying.tasks.recsys.logreg import LogRegPeer

            return LogRegPeer(self.data_settings.wide_buckets, C=model.C, max_iter=model.max_iter, seed=self.train.seed)
        return WideDeep(self.model_config(data))

    def train_batches(self, data: MovieLens, epoch: int) -> Sequence[tuple[Ratings, torch.Tensor]]:
        train = self.config["train"]
        assert isinstance(train, RecsysTrain)
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(train.seed * 100_003 + epoch))
        batches = []
        for index in order.split(train.batch_size):
            part = data.train.take(index)
            batches.append((part.x, part.label))
        return batches

    def step(self, model: nn.Module, batch: tuple[Ratings, torch.Tensor], carry: Any) -> StepOutput:
        x, label = batch
        return StepOutput(F.binary_cross_entropy_with_logits(model(x), label), len(label))

    def evaluate(self, model: nn.Module, data: MovieLens, split: str, *, epoch: int) -> dict[str, float] | None:
        examples: Examples = getattr(data, split)
        return binary_metrics(predict(model, examples), examples.label, tail_mask(data, examples, self.data_settings.rare))

    def record_extras(self, model: nn.Module, data: MovieLens) -> dict[str, Any]:
        """Test AUC, log loss and example count per item-frequency bucket (:data:`BUCKETS`)."""
        logits, labels = predict(model, data.test), data.test.label
        bucket = frequency_buckets(data, data.test, BUCKETS)
        names = ["0", *(f"{lo + 1}-{hi}" for lo, hi in zip(BUCKETS, BUCKETS[1:])), f">{BUCKETS[-1]}"]
        masks = [bucket == b for b in range(len(names))]
        return {
            "buckets": names,
            "bucket_n": [int(m.sum()) for m in masks],
            "bucket_auc": [round(auc(logits[m], labels[m]), 5) for m in masks],
            "bucket_logloss": [round(log_loss(logits[m], labels[m]), 5) for m in masks],
        }

    @classmethod
    def report_figures(cls, records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
        """Test AUC by the candidate's number of training ratings, a bar per recipe (mean over seeds)."""
        shown = [x for x in records if "bucket_auc" in x.get("extras", {})]
        if not shown:
            return []
        return [ReportFigure("auc-by-frequency", "test AUC by the candidate item's number of training ratings", lambda fig: frequency_figure(fig, shown))]
