r"""Word vectors by skip-gram with negative sampling (``task = "sgns"``), with the context vectors
untied, tied, or tied as reflections (:class:`tying.models.SkipGram`), and gensim's ``Word2Vec``
as a peer trained on the same text (``model.kind = "gensim"``, :mod:`tying.tasks.sgns.peer`).

The training follows word2vec's recipe (:mod:`tying.tasks.sgns.corpus`): a vocabulary of the
words seen ``min_count`` times, frequent words subsampled, a dynamic window, noise words from
the unigram distribution to the power 3/4, text read in order, plain SGD on the rows a batch
touches with the learning rate decaying linearly to zero (``lr_schedule = "linear"``). The
loss a step reports is nats per training word (the batch's summed pair losses over its words);
its gradient is that of the summed loss, so ``train.lr`` is word2vec's per-pair ``alpha``
(0.025), whatever the batch's size.

Metrics, on ``"valid"`` and ``"test"``: ``loss``, the same loss on that split's text (its pairs
and noise words drawn once from a fixed seed; ``metrics[0]``, picking the best epoch), and the
word vectors :math:`W` scored by gensim's own evaluators (:mod:`tying.tasks.sgns.evaluation`):
``ws353`` and ``simlex`` (Spearman's rho) and, on the test split only (it takes a while),
``analogy`` accuracy with its out-of-vocabulary share ``analogy_oov``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, cast

import torch
from pydantic import BaseModel, Field
from torch import nn

from tying.data.files import resolve_corpus
from tying.models.sgns import SGNSConfig, SkipGram
from tying.tasks.sgns.corpus import EpochBatches, NoiseSampler, Stream, Vocabulary, keep_probabilities, read_stream, read_vocabulary
from tying.tasks.sgns.evaluation import WORDS_KEY, keyed_vectors, similarity_scores
from tying.tasks.sgns.figures import score_figures
from tying.training.config import Table, TrainConfig
from tying.training.tables import build_config, config_table
from tying.training.task import Metric, ReportFigure, StepOutput, Task

__all__ = ["WordVectors", "SGNSData", "SGNSModel", "SGNSTrain", "SGNSCorpus", "SGNSTask", "EVAL_SEED"]

#: Seed of the pairs and noise words of the held-out loss (the same for every run and epoch).
EVAL_SEED = 0


class WordVectors(Protocol):
    """What the task reads of a model: :class:`tying.models.SkipGram` and the gensim peer."""

    def loss(self, words: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor: ...

    def word_vectors(self) -> torch.Tensor: ...


class SGNSData(Table):
    """``[data]``: the corpus (a name under the data root, or a folder of train/valid/test.txt,
    one sentence per line) and word2vec's data settings: ``min_count``, ``sample`` (subsampling
    threshold; 0: none), ``window`` (the largest; each centre draws its own), ``negatives``
    (noise words per pair) and ``noise``: drawn per pair as word2vec does, or per centre word
    (:class:`~tying.tasks.sgns.corpus.EpochBatches`; the held-out loss always draws per pair)."""

    corpus: str = "wikitext-2"
    min_count: int = Field(5, ge=1)
    sample: float = Field(1e-3, ge=0)
    window: int = Field(5, ge=1)
    negatives: int = Field(5, ge=1)
    noise: Literal["pair", "centre"] = "pair"


#: ``[model]``: ``kind`` ("tying": :class:`tying.models.SkipGram`; "gensim": gensim's Word2Vec
#: with the same settings, untied) and :class:`tying.models.SGNSConfig`'s fields.
SGNSModel = config_table(
    SGNSConfig, name="SGNSModel", exclude={"vocab_size"},
    fields={"kind": (Literal["tying", "gensim"], "tying")},
    doc="``[model]``: kind (tying or gensim), and the fields of :class:`tying.models.SGNSConfig` but vocab_size.",
)  # fmt: skip


class SGNSTrain(TrainConfig):
    """``[train]``: the engine's settings plus ``batch_words``, the words of text per batch."""

    batch_words: int = Field(2000, ge=1)


@dataclass
class SGNSCorpus:
    """The vocabulary, each split's text as word ids, the subsampling and noise distributions,
    and (filled when first used) the held-out batches of each split."""

    path: str
    vocab: Vocabulary
    splits: dict[str, Stream]
    keep: torch.Tensor
    noise: NoiseSampler
    held_out: dict[str, list[tuple[torch.Tensor, ...]]] = field(default_factory=dict)


class SGNSTask(Task):
    """Train skip-gram word vectors; held-out SGNS loss, word-similarity and analogy scores."""

    name = "sgns"
    tables: ClassVar[dict[str, type[BaseModel]]] = {"data": SGNSData, "model": SGNSModel, "train": SGNSTrain}
    metrics = (
        Metric("loss", "SGNS loss", "lower", fmt=".3f", title="held-out SGNS loss (nats per word)"),
        Metric("ws353", "WS-353 ρ", "higher", fmt=".3f", title="WordSim-353 Spearman"),
        Metric("simlex", "SimLex ρ", "higher", fmt=".3f", title="SimLex-999 Spearman"),
        Metric("analogy", "analogy", "higher", unit="%", fmt=".2f", title="Google analogy accuracy"),
        Metric("analogy_oov", "analogy OOV", "lower", unit="%", fmt=".1f", title="analogy questions out of vocabulary"),
    )
    unit = "words"

    @property
    def data_settings(self) -> SGNSData:
        return self.table("data", SGNSData)

    @property
    def settings(self) -> SGNSTrain:
        return self.table("train", SGNSTrain)

    def load_data(self, data_root: str | os.PathLike[str] | None) -> SGNSCorpus:
        d = self.data_settings
        folder = resolve_corpus(d.corpus, data_root)
        if folder is None:
            raise ValueError("data.corpus = 'builtin' is a language-modelling corpus; name a corpus folder such as 'wikitext-2'")
        files = {split: folder / f"{split}.txt" for split in ("train", "valid", "test")}
        for file in files.values():
            if not file.is_file():
                raise FileNotFoundError(f"corpus file {str(file)!r} missing; a corpus folder holds train.txt, valid.txt and test.txt")
        vocab = read_vocabulary(files["train"], d.min_count)
        index = vocab.index()
        splits = {split: read_stream(file, index) for split, file in files.items()}
        return SGNSCorpus(str(folder), vocab, splits, keep_probabilities(vocab.counts, d.sample), NoiseSampler(vocab.counts))

    def data_summary(self, data: SGNSCorpus) -> dict[str, Any]:
        return {"corpus": data.path, "vocab": len(data.vocab.words), **{s: len(x) for s, x in data.splits.items()}}

    def checkpoint_metadata(self, data: SGNSCorpus) -> dict[str, str]:
        """The vocabulary, one word a line, so a checkpoint alone can be exported (:func:`tying.tasks.sgns.export_checkpoint`)."""
        return {WORDS_KEY: "\n".join(data.vocab.words)}

    def build_model(self, data: SGNSCorpus) -> nn.Module:
        m: Any = self.config["model"]
        config = build_config(SGNSConfig, m, vocab_size=len(data.vocab.words))
        if m.kind == "gensim":
            from tying.tasks.sgns.peer import GensimWord2Vec

            return GensimWord2Vec(config, data, self.data_settings, self.settings)
        return SkipGram(config)

    def batches(self, data: SGNSCorpus, split: str, seed: tuple[int, ...], per: Literal["pair", "centre"] = "pair") -> EpochBatches:
        d = self.data_settings
        return EpochBatches(
            data.splits[split], data.keep, data.noise, window=d.window, negatives=d.negatives, chunk_words=self.settings.batch_words,
            seed=seed, per=per,
        )  # fmt: skip

    def train_batches(self, data: SGNSCorpus, epoch: int) -> Sequence[Any]:
        return self.batches(data, "train", (self.settings.seed, epoch), self.data_settings.noise)

    def step(self, model: nn.Module, batch: Any, carry: Any) -> StepOutput:
        words, targets, weights, n = batch
        total = cast(WordVectors, model).loss(words, targets, weights)
        per_word = total.detach() / n
        # Reported: nats per word; back-propagated: the summed loss (lr is the per-pair alpha).
        return StepOutput(total - total.detach() + per_word, int(n))

    def held_out_loss(self, model: nn.Module, data: SGNSCorpus, split: str) -> float:
        """The summed loss of ``split``'s pairs (drawn once, from :data:`EVAL_SEED`) per word of its text."""
        if split not in data.held_out:
            data.held_out[split] = [b[:3] for b in self.batches(data, split, (EVAL_SEED, ("valid", "test").index(split)))]
        batches, sgns = data.held_out[split], cast(WordVectors, model)
        device = sgns.word_vectors().device
        total = sum(sgns.loss(*(x.to(device) for x in batch)).item() for batch in batches)
        return total / max(len(data.splits[split]), 1)

    def evaluate(self, model: nn.Module, data: SGNSCorpus, split: str, *, epoch: int) -> dict[str, float] | None:
        if split not in ("valid", "test"):
            return None
        scores = similarity_scores(keyed_vectors(data.vocab.words, cast(WordVectors, model).word_vectors()), analogies=split == "test")
        return {"loss": self.held_out_loss(model, data, split), **scores}

    @classmethod
    def report_figures(cls, records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
        return score_figures(records)
