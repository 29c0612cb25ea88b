"""gensim's ``Word2Vec`` (skip-gram, negative sampling) as a peer of the SGNS task
(``model.kind = "gensim"``): trained on the same ``train.txt``, one sentence per line, with the
recipe's dimension, window, negatives, min_count, subsampling threshold, seed and learning rate,
in one worker thread, and scored by the same ``evaluate``.

Each engine epoch is one ``Word2Vec.train(epochs=1)`` call whose learning rate falls linearly over
its share of the run (``train.lr`` to gensim's ``min_alpha`` across all ``train.epochs``), as one
``Word2Vec(epochs=E)`` call decays it. After each epoch gensim's word vectors (``wv.vectors``) and
context vectors (``syn1neg``) are copied into the frozen parameters ``words`` and ``contexts``, in
the task's vocabulary order (gensim's holds the same words, checked), so checkpoints, the held-out loss and the scores read them as they
read :class:`tying.models.SkipGram`'s. A resumed run rebuilds the gensim model from those tensors
(gensim's own random state is not restored, so its remaining epochs draw other noise words).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tying.models.sgns import SGNSConfig, SGNSLoss
from tying.training.external import ExternalModel

if TYPE_CHECKING:
    from tying.tasks.sgns.task import SGNSCorpus, SGNSData, SGNSTrain

__all__ = ["GensimWord2Vec", "MIN_ALPHA"]

#: gensim's default final learning rate.
MIN_ALPHA = 1e-4


class GensimWord2Vec(ExternalModel):
    """gensim ``Word2Vec(sg=1, workers=1)`` with the recipe's settings; ``words`` (:math:`W`) and
    ``contexts`` (:math:`C`, gensim's ``syn1neg``), ``nn.Embedding`` s with frozen weights, hold its vectors."""

    def __init__(self, config: SGNSConfig, data: SGNSCorpus, settings: SGNSData, train: SGNSTrain) -> None:
        super().__init__()
        if config.tie != "none":
            raise ValueError(f"model.tie = {config.tie!r}: gensim's Word2Vec keeps its context vectors untied; set model.tie = \"none\"")
        self.config, self.settings, self.train_settings = config, settings, train
        self.words = nn.Embedding(config.vocab_size, config.dim).requires_grad_(False)
        self.contexts = nn.Embedding(config.vocab_size, config.dim).requires_grad_(False)
        with open(f"{data.path}/train.txt", encoding="utf-8") as f:
            self.sentences = [words for words in (line.split() for line in f) if words]
        self.w2v = self._build(data)
        self._copy_out()
        self.fitted = False  # whether fit_epoch ran in this process (else the tensors may be a checkpoint's)

    def _build(self, data: SGNSCorpus) -> Any:
        from gensim.models import Word2Vec

        d, t = self.settings, self.train_settings
        w2v = Word2Vec(
            vector_size=self.config.dim, window=d.window, negative=d.negatives, min_count=d.min_count, sample=d.sample,
            sg=1, hs=0, workers=1, seed=t.seed, alpha=t.lr, min_alpha=MIN_ALPHA, epochs=t.epochs,
        )  # fmt: skip
        w2v.build_vocab(self.sentences)
        if set(w2v.wv.index_to_key) != set(data.vocab.words):
            raise ValueError(f"gensim's vocabulary of {len(w2v.wv):,} words differs from the task's {len(data.vocab.words):,}")
        self.order = torch.tensor([w2v.wv.get_index(w) for w in data.vocab.words])  # task row -> gensim row
        return w2v

    def _copy_out(self) -> None:
        with torch.no_grad():
            self.words.weight.copy_(torch.from_numpy(np.asarray(self.w2v.wv.vectors))[self.order])
            self.contexts.weight.copy_(torch.from_numpy(np.asarray(self.w2v.syn1neg))[self.order])

    def fit_epoch(self, data: SGNSCorpus, epoch: int) -> tuple[float, int]:
        if not self.fitted and epoch > 1:  # resumed: continue from the checkpointed vectors
            self.w2v.wv.vectors[self.order.numpy()] = self.words.weight.numpy()
            self.w2v.syn1neg[self.order.numpy()] = self.contexts.weight.numpy()
        self.fitted = True
        t = self.train_settings
        start, end = (t.lr - (t.lr - MIN_ALPHA) * (e - 1) / t.epochs for e in (epoch, epoch + 1))
        self.w2v.train(self.sentences, total_examples=len(self.sentences), epochs=1, start_alpha=start, end_alpha=end)
        self._copy_out()
        return float("nan"), len(data.splits["train"])

    def word_vectors(self) -> torch.Tensor:
        return self.words.weight

    def loss(self, words: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The SGNS loss of :meth:`tying.models.SkipGram.loss` on gensim's vectors."""
        loss = SGNSLoss.apply(self.words.weight, self.contexts.weight, words, targets, weights)
        assert isinstance(loss, torch.Tensor)
        return loss
