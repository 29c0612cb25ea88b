"""Word-level language modelling (``task = "lm"``): a corpus, an LSTM, Transformer or trellis LM,
a next-token objective, perplexity.

Recipe tables:

* ``[data]``: ``corpus``, a folder under the data root (``"ptb"``, ``"wikitext-2"``), a path, or
  ``"builtin"`` (:func:`tying.tasks.lm.load_corpus`);
* ``[model]``: ``arch = "lstm"`` (default; :class:`LSTMModel`), ``"transformer"``
  (:class:`TransformerModel`) or ``"trellis"`` (:class:`TrellisModel`); ``vocab_size`` comes from the corpus;
* ``[loss]``: :class:`tying.tasks.lm.LossConfig`;
* ``[train]``: :class:`LMTrain`, the engine's settings plus batch sizes and the BPTT length.

Batches are truncated-BPTT windows of the batchified training stream (:mod:`tying.tasks.lm.batching`).
The LSTM and the trellis network carry their state from window to window, detached (gradients truncated at window
boundaries; Zaremba et al. 2014, arXiv 1409.2329), starting from zeros each epoch and each
evaluation; the Transformer reads each window on its own (``bptt <= context_size``).
Data parallelism splits the windows' batch columns across ranks, each carrying its own columns' state.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field
from torch import nn

from tying.data.files import resolve_corpus
from tying.errors import TieError
from tying.models import LSTMConfig, LSTMLanguageModel, TransformerConfig, TransformerLanguageModel, TrellisConfig, TrellisLanguageModel
from tying.tasks.lm.batching import BPTTBatches, batchify
from tying.tasks.lm.corpus import Corpus, load_corpus
from tying.tasks.lm.losses import LossConfig, build_loss, perplexity
from tying.training.config import Table, TrainConfig
from tying.training.tables import build_config, config_table
from tying.training.task import Metric, ReportFigure, StepOutput, Task

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LMData", "LSTMModel", "TransformerModel", "TrellisModel", "LMTrain", "LMTask", "LMDataset", "detach_state"]

class LMData(Table):
    """``[data]``: the corpus (see the module docstring)."""

    corpus: str = "builtin"


#: ``[model]`` with ``arch = "lstm"`` (the default): the fields of :class:`tying.models.LSTMConfig`.
LSTMModel = config_table(
    LSTMConfig, name="LSTMModel", exclude={"vocab_size"}, fields={"arch": (Literal["lstm"], "lstm")},
    doc='``[model]`` with ``arch = "lstm"``: the fields of :class:`tying.models.LSTMConfig` but ``vocab_size`` (from the corpus).',
)  # fmt: skip
#: ``[model]`` with ``arch = "transformer"``: the fields of :class:`tying.models.TransformerConfig`.
TransformerModel = config_table(
    TransformerConfig, name="TransformerModel", exclude={"vocab_size"}, fields={"arch": (Literal["transformer"], ...)},
    doc='``[model]`` with ``arch = "transformer"``: the fields of :class:`tying.models.TransformerConfig` but ``vocab_size`` (from the corpus).',
)  # fmt: skip
#: ``[model]`` with ``arch = "trellis"``: the fields of :class:`tying.models.TrellisConfig`.
TrellisModel = config_table(
    TrellisConfig, name="TrellisModel", exclude={"vocab_size"}, fields={"arch": (Literal["trellis"], ...)},
    doc='``[model]`` with ``arch = "trellis"``: the fields of :class:`tying.models.TrellisConfig` but ``vocab_size`` (from the corpus).',
)  # fmt: skip
#: The ``[model]`` table of each ``arch``.
MODEL_TABLES: dict[str, type[BaseModel]] = {"lstm": LSTMModel, "transformer": TransformerModel, "trellis": TrellisModel}


class LMTrain(TrainConfig):
    """``[train]``: the engine's settings plus

    Attributes:
        batch_size: parallel streams the training data is cut into (:func:`tying.tasks.lm.batchify`).
        eval_batch_size: the same for validation and test data.
        bptt: window length in tokens (truncated back-propagation; the Transformer's sequence length).
    """

    batch_size: int = Field(20, ge=1)
    eval_batch_size: int = Field(10, ge=1)
    bptt: int = Field(35, ge=1)


def detach_state(state: Any) -> Any:
    """``state`` (a tensor, or nested tuples of tensors, or None) cut from its autograd history,
    so the next window's backward stops here (truncated BPTT)."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return tuple(detach_state(s) for s in state)


@dataclass
class LMDataset:
    """A loaded corpus and its batchified splits (``(rows, batch)`` token matrices)."""

    corpus: Corpus
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor


class LMTask(Task):
    """Next-token prediction on a word-level corpus; perplexity (lower is better)."""

    name = "lm"
    tables: ClassVar[dict[str, type[BaseModel]]] = {"data": LMData, "model": LSTMModel, "loss": LossConfig, "train": LMTrain}
    # The loss selects the best epoch: the same order as perplexity, but finite where exp overflows.
    metrics = (Metric("loss", "loss", "lower", unit=" nats", fmt=".3f", report=False), Metric("ppl", "ppl", "lower", title="perplexity"))
    unit = "tokens"
    batch_dim = 1  # windows are (T, B): ranks take batch columns

    @classmethod
    def table_types(cls, raw: dict[str, Any]) -> dict[str, type[BaseModel]]:
        arch = raw.get("model", {}).get("arch", "lstm") if isinstance(raw.get("model"), dict) else "lstm"
        return {**cls.tables, "model": MODEL_TABLES.get(arch, LSTMModel)}

    def __init__(self, config: dict[str, BaseModel]) -> None:
        super().__init__(config)
        model, loss = config["model"], config["loss"]
        assert isinstance(loss, LossConfig) and isinstance(model, (LSTMModel, TransformerModel, TrellisModel))
        self.loss_config = loss
        self.recurrent = not isinstance(model, TransformerModel)  # the LSTM and the trellis carry state
        if isinstance(model, TrellisModel):
            self._check_trellis(build_config(TrellisConfig, model, vocab_size=1))
        if not self.recurrent:
            if self.loss_config.kind != "ce" or self.loss_config.projection_penalty:
                raise ValueError("loss.kind='real' and loss.projection_penalty need model.arch='lstm' or 'trellis'; the Transformer LM trains on cross-entropy")
            context_size = self._transformer_config(model).context_size
            if self.settings.bptt > context_size:
                raise ValueError(f"train.bptt={self.settings.bptt} exceeds model.context_size={context_size}")
        self.loss_fn = build_loss(self.loss_config)

    def _check_trellis(self, trellis: TrellisConfig) -> None:
        if self.loss_config.projection_penalty and not trellis.projection:
            raise ValueError(
                "loss.projection_penalty needs a projection: the trellis has one when model.tie_embeddings is true "
                f"and model.hidden_size ({trellis.hidden_size}) != model.embedding_size ({trellis.embedding_size})"
            )
        # The model reads the missing columns from the carried state, but a window shorter than the
        # kernel is almost always swapped or mistyped settings.
        if trellis.kernel_size > self.settings.bptt:
            raise ValueError(f"model.kernel_size={trellis.kernel_size} is longer than a training window (train.bptt={self.settings.bptt})")

    @staticmethod
    def _transformer_config(model: Table, vocab_size: int = 1) -> TransformerConfig:
        """The model's config; a sharing that does not fit the layers names the keys."""
        try:
            return build_config(TransformerConfig, model, vocab_size=vocab_size)
        except TieError as exc:
            m: Any = model
            raise ValueError(
                f"model.share_unique = {m.share_unique} with model.num_layers = {m.num_layers} and "
                f"model.share_strategy = {m.share_strategy!r}: {exc}"
            ) from None

    def model_for(self, vocab_size: int) -> nn.Module:
        """The recipe's model for a vocabulary of ``vocab_size`` words."""
        model = self.config["model"]
        assert isinstance(model, Table)
        if isinstance(model, TrellisModel):
            return TrellisLanguageModel(build_config(TrellisConfig, model, vocab_size=vocab_size))
        if self.recurrent:
            return LSTMLanguageModel(build_config(LSTMConfig, model, vocab_size=vocab_size))
        return TransformerLanguageModel(self._transformer_config(model, vocab_size))

    @property
    def settings(self) -> LMTrain:
        return self.table("train", LMTrain)

    def load_data(self, data_root: str | os.PathLike[str] | None) -> LMDataset:
        data = self.config["data"]
        assert isinstance(data, LMData)
        corpus = load_corpus(resolve_corpus(data.corpus, data_root))
        s = self.settings
        return LMDataset(corpus, batchify(corpus.train, s.batch_size), *(batchify(x, s.eval_batch_size) for x in (corpus.valid, corpus.test)))

    def data_summary(self, data: LMDataset) -> dict[str, Any]:
        c = data.corpus
        return {"path": str(c.path), "vocab_size": len(c.dictionary), **{s: getattr(c, s).numel() for s in ("train", "valid", "test")}}

    def build_model(self, data: LMDataset) -> nn.Module:
        return self.model_for(len(data.corpus.dictionary))

    def train_batches(self, data: LMDataset, epoch: int) -> Sequence[tuple[torch.Tensor, torch.Tensor]]:
        return BPTTBatches(data.train, self.settings.bptt)  # type: ignore[return-value]

    def step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], carry: Any) -> StepOutput:
        inputs, targets = batch
        if not self.recurrent:
            return StepOutput(self.loss_fn(_BatchFirst(model), inputs, targets, None)[0], targets.numel())
        state = model.init_state(inputs.size(1)) if carry is None else detach_state(carry)  # type: ignore[operator]
        loss, state = self.loss_fn(model, inputs, targets, state)
        return StepOutput(loss, targets.numel(), state)

    def evaluate(self, model: nn.Module, data: LMDataset, split: str, *, epoch: int) -> dict[str, float] | None:
        stream = getattr(data, split)
        if not stream.numel():
            return None
        stream = stream.to(next(model.parameters()).device)
        state = model.init_state(stream.size(1)) if self.recurrent else None  # type: ignore[operator]
        total, tokens = 0.0, 0
        for inputs, targets in BPTTBatches(stream, self.settings.bptt):
            if self.recurrent:
                logits, state = model(inputs, state)
            else:
                logits = model(inputs.t()).transpose(0, 1)
            total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)).item() * targets.numel()
            tokens += targets.numel()
        return {"loss": total / tokens, "ppl": perplexity(total / tokens)}

    def train_metrics(self, loss: float) -> dict[str, float]:
        return {"ppl": perplexity(loss)}

    @classmethod
    def report_figures(cls, records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
        """When some run shares layers and all are of one architecture (a cross-layer sharing
        grid): test perplexity against unique parameters, one marker per strategy, each point
        labelled with its N layers and M sets (an unshared model has M = N). Runs of several
        architectures (an LSTM beside trellis networks) have no common N to label by."""
        if not any(x.get("layer_sharing") for x in records):
            return []
        if len({x["recipe"]["model"].get("arch", "lstm") for x in records}) > 1:
            return []
        return [ReportFigure("sharing", "test perplexity against unique parameters, by sharing strategy", lambda fig: _sharing_plot(fig, records))]


def _sharing_plot(fig: Figure, records: Sequence[dict[str, Any]]) -> None:
    ax = fig.add_subplot()
    points: dict[str, list[tuple[float, float, str]]] = {}
    for x in records:
        if not x["test"] or "ppl" not in x["test"]:
            continue
        model = x["recipe"]["model"]
        layers = model.get("num_layers", model.get("levels"))  # a Transformer's layers, a trellis's levels
        shared = x.get("layer_sharing") or []
        strategy, unique = (shared[0]["strategy"] or "other", shared[0]["unique"]) if shared else ("unshared", layers)
        points.setdefault(strategy, []).append((x["unique_parameters"] / 1e6, x["test"]["ppl"], f"N={layers} M={unique}"))
    labels: dict[str, tuple[float, float]] = {}
    for (strategy, pts), marker in zip(points.items(), "osD^vP*X"):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=strategy)
        for px, py, text in pts:
            if text not in labels or py > labels[text][1]:
                labels[text] = (px, py)
    # One label per N, M (its strategies share the unique-parameter count), above the highest point.
    for text, point in labels.items():
        ax.annotate(text, point, textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel="unique parameters (millions)", ylabel="test perplexity (lower is better)", title="cross-layer sharing")
    ax.grid(alpha=0.3)
    ax.legend(title="strategy", fontsize=8)


class _BatchFirst(nn.Module):
    """A Transformer LM seen through the sequence-first interface of the LM objectives:
    ``(logits (T, B, V), None)`` for tokens ``(T, B)``, with ``features``/``decoder`` for the fused head."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.decoder = model.lm_head

    def features(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, None]:
        return self.model.features(tokens.t()).transpose(0, 1), None  # type: ignore[operator]

    def forward(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, None]:
        return self.model(tokens.t()).transpose(0, 1), None
