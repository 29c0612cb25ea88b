"""Translation (``task = "translation"``): a bitext, a Transformer encoder-decoder whose embeddings
and output layer are tied by ``model.tie``, label-smoothed cross-entropy, BLEU and chrF.

Recipe tables:

* ``[data]`` (:class:`TranslationData`): ``corpus``, a folder under the data root
  (``"multi30k"``), a path, or ``"builtin"`` (:func:`tying.tasks.translation.builtin_bitext`); the languages;
  the SentencePiece vocabulary, learnt on the training split only (:func:`tying.tasks.translation.train_subwords`);
* ``[model]`` (:class:`TranslationModel`): the fields of :class:`tying.models.TranslationConfig`
  but the vocabulary sizes, which come from the subword models; ``tie`` is ``"none"``,
  ``"decoder"``, ``"three_way"`` or ``"joint"`` (the last two need ``data.joint_vocab``);
* ``[train]`` (:class:`TranslationTrain`): the engine's settings plus the token budget per batch
  (:func:`tying.tasks.translation.token_batches`); the Transformer schedule is ``optimizer = "adamw"``,
  ``betas = [0.9, 0.98]``, ``lr_schedule = "inverse_sqrt"`` with ``warmup_steps``;
* ``[eval]`` (:class:`TranslationEval`): beam size, length penalty, and whether validation
  translates (BLEU, chrF) after every epoch or only after the last.

Metrics: the validation loss (negative log-likelihood per target token, no label smoothing)
selects the best epoch and is the per-epoch curve of reports; BLEU and chrF (sacrebleu, on
detokenised beam-search output against the raw references; signatures in the run record's
``data.sacrebleu``) are the report columns. Throughput counts target tokens.

Every model checkpoint carries the model configuration and the subword models in its header
(:mod:`tying.tasks.translation.checkpoint`), so ``tying translate RUN_FOLDER`` needs nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, Field
from torch import nn

from tying.data.files import resolve_corpus
from tying.errors import RecipeError
from tying.models import TranslationConfig, TranslationTransformer
from tying.tasks.translation.batches import TranslationBatch, token_batches
from tying.tasks.translation.bitext import Bitext, builtin_bitext, read_bitext
from tying.tasks.translation.checkpoint import checkpoint_metadata
from tying.tasks.translation.evaluation import evaluate, reference_loss, translation_loss
from tying.tasks.translation.metrics import signatures
from tying.tasks.translation.subword import Subwords, train_subwords
from tying.training.config import Table, TrainConfig
from tying.training.tables import build_config, config_table
from tying.training.task import Metric, StepOutput, Task

__all__ = ["TranslationData", "TranslationModel", "TranslationTrain", "TranslationEval", "TranslationDataset", "TranslationTask"]


class TranslationData(Table):
    """``[data]``: the bitext and its subword vocabulary.

    Attributes:
        corpus: ``"builtin"``, a folder name under the data root, or a folder path, holding
            ``{train,valid,test}.{src_lang,tgt_lang}`` (:func:`tying.tasks.translation.read_bitext`).
        vocab_size: SentencePiece pieces (per language when not joint).
        joint_vocab: one vocabulary learnt from both languages (three-way and joint tying need it).
        subword_model: SentencePiece's ``"unigram"`` or ``"bpe"``.
    """

    corpus: str = "builtin"
    src_lang: str = "en"
    tgt_lang: str = "de"
    vocab_size: int = Field(8000, ge=8)
    joint_vocab: bool = True
    subword_model: Literal["unigram", "bpe"] = "unigram"


#: ``[model]``: the fields of :class:`tying.models.TranslationConfig` but the vocabulary sizes and
#: special token ids, which come from the subword models.
TranslationModel = config_table(
    TranslationConfig, name="TranslationModel", exclude={"src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id"},
    doc="``[model]``: :class:`tying.models.TranslationConfig` without the vocabulary sizes and special ids (from the subword models).",
)  # fmt: skip


class TranslationTrain(TrainConfig):
    """``[train]``: the engine's settings plus

    Attributes:
        max_tokens: padded tokens per training batch and side (``batch size x longest sentence``).
        eval_max_tokens: the same for evaluation and decoding batches.
    """

    max_tokens: int = Field(4096, ge=1)
    eval_max_tokens: int = Field(4096, ge=1)


class TranslationEval(Table):
    """``[eval]``: how translations are scored.

    Attributes:
        beam_size: beam search width (1: greedy search).
        length_penalty: alpha of Wu et al.'s length penalty (:func:`tying.tasks.translation.beam_search`).
        bleu_every_epoch: translate the validation data after every epoch (BLEU and chrF per
            epoch); False: after the last epoch only (earlier epochs report the loss alone).
    """

    beam_size: int = Field(4, ge=1)
    length_penalty: float = Field(0.6, ge=0)
    bleu_every_epoch: bool = True


@dataclass
class TranslationDataset:
    """The bitext, its subword models and the encoded training pairs (those that fit the model)."""

    bitext: Bitext
    subwords: Subwords
    source: list[list[int]]
    target: list[list[int]]
    skipped: int


class TranslationTask(Task):
    """Source → target translation with a tied Transformer; BLEU and chrF (higher is better)."""

    name = "translation"
    tables: ClassVar[dict[str, type[BaseModel]]] = {
        "data": TranslationData, "model": TranslationModel, "train": TranslationTrain, "eval": TranslationEval,
    }  # fmt: skip
    metrics = (
        Metric("loss", "valid loss", "lower", unit=" nats", fmt=".3f", report=False, title="loss", curve=True),
        Metric("bleu", "BLEU", "higher"),
        Metric("chrf", "chrF", "higher"),
    )
    unit = "tokens"

    def __init__(self, config: dict[str, BaseModel]) -> None:
        super().__init__(config)
        data, model, train, ev = config["data"], config["model"], config["train"], config["eval"]
        assert isinstance(data, TranslationData) and isinstance(model, TranslationModel)
        assert isinstance(train, TranslationTrain) and isinstance(ev, TranslationEval)
        self.data_config, self.settings, self.eval_config = data, train, ev
        tie = model.tie  # type: ignore[attr-defined]
        if tie in ("three_way", "joint") and not data.joint_vocab:
            raise ValueError(f"model.tie={tie!r} shares the source and target embeddings and needs data.joint_vocab=true")
        # The model's own checks (heads divide the width ...) before any data is read, at the vocabulary
        # size asked for; the subword models' own sizes replace it (_model_config).
        self.model_config = build_config(TranslationConfig, model, src_vocab_size=data.vocab_size, tgt_vocab_size=data.vocab_size)

    def load_data(self, data_root: str | os.PathLike[str] | None) -> TranslationDataset:
        d = self.data_config
        if d.corpus == "builtin":
            bitext = builtin_bitext()
        else:  # a path is read as given, so a missing one is named with the files it must hold
            folder = Path(d.corpus) if "/" in d.corpus or Path(d.corpus).is_absolute() else resolve_corpus(d.corpus, data_root)
            assert folder is not None
            bitext = read_bitext(folder, d.src_lang, d.tgt_lang)
        try:
            subwords = train_subwords(bitext, d.vocab_size, joint=d.joint_vocab, model_type=d.subword_model)
        except ValueError as exc:  # e.g. more pieces than the text has: a setting to change
            raise RecipeError(f"data.vocab_size = {d.vocab_size} does not fit corpus {bitext.name!r}: {exc}") from exc
        source, target = subwords.encode_source(bitext.source("train")), subwords.encode_target(bitext.target("train"))
        # Pairs longer than the model reads are left out of training (fairseq's skip of invalid sizes).
        limit = self.model_config.max_positions
        keep = [i for i, (s, t) in enumerate(zip(source, target, strict=True)) if len(s) <= limit and len(t) < limit]
        return TranslationDataset(bitext, subwords, [source[i] for i in keep], [target[i] for i in keep], len(source) - len(keep))

    def data_summary(self, data: TranslationDataset) -> dict[str, Any]:
        b = data.bitext
        return {
            "path": b.name,
            "direction": f"{b.src_lang}->{b.tgt_lang}",
            **{split: len(b.source(split)) for split in b.splits},
            "train_skipped_too_long": data.skipped,
            "subwords": {"joint": data.subwords.joint, "source_size": data.subwords.source_size, "target_size": data.subwords.target_size},
            "sacrebleu": signatures(),
        }

    def _model_config(self, data: TranslationDataset) -> TranslationConfig:
        return replace(self.model_config, src_vocab_size=data.subwords.source_size, tgt_vocab_size=data.subwords.target_size)

    def build_model(self, data: TranslationDataset) -> nn.Module:
        return TranslationTransformer(self._model_config(data))

    def checkpoint_metadata(self, data: TranslationDataset) -> dict[str, str]:
        return checkpoint_metadata(self._model_config(data), data.subwords)

    def train_batches(self, data: TranslationDataset, epoch: int) -> Sequence[TranslationBatch]:
        return token_batches(data.source, data.target, max_tokens=self.settings.max_tokens, shuffle=True, seed=self.settings.seed + epoch)

    def step(self, model: nn.Module, batch: TranslationBatch, carry: Any) -> StepOutput:
        assert isinstance(model, TranslationTransformer)
        return StepOutput(translation_loss(model, batch.to(model.output.weight.device)), batch.target_tokens)

    def split_batch(self, batch: TranslationBatch, rank: int, world_size: int) -> TranslationBatch:
        """This rank's rows of the batch (as even as the row count allows; each rank's loss is its
        own tokens' mean, so ranks with fewer tokens weigh slightly more in the averaged gradient)."""
        if len(batch.index) < world_size:
            raise ValueError(f"a batch of {len(batch.index)} sentence pairs cannot be split over {world_size} ranks; raise train.max_tokens")

        def rows(t: torch.Tensor) -> torch.Tensor:
            return t.tensor_split(world_size)[rank]

        tgt_in, tgt_out = (None if t is None else rows(t) for t in (batch.tgt_in, batch.tgt_out))
        return TranslationBatch(rows(batch.src), tgt_in, tgt_out, rows(batch.index))

    def evaluate(self, model: nn.Module, data: TranslationDataset, split: str, *, epoch: int) -> dict[str, float] | None:
        assert isinstance(model, TranslationTransformer)
        if split not in data.bitext.splits or not data.bitext.source(split):
            return None
        e = self.eval_config
        sources, references = data.bitext.source(split), data.bitext.target(split)
        if split == "valid" and not e.bleu_every_epoch and epoch < self.settings.epochs:
            return {"loss": reference_loss(model, data.subwords, sources, references, max_tokens=self.settings.eval_max_tokens)}
        result = evaluate(
            model, data.subwords, sources, references, beam_size=e.beam_size, length_penalty=e.length_penalty,
            max_tokens=self.settings.eval_max_tokens,
        )  # fmt: skip
        return result.metrics()

