"""The classical peer of Wide & Deep: scikit-learn's ``LogisticRegression`` on exactly the wide
part's hashed features, fitted by the engine's :class:`~tying.training.ExternalModel` hook.

Each example is a sparse row of ``buckets`` counts (how often each hashed id occurs in its wide
features; id 0, the padding, never does), so the fitted model scores ``w^T x + b`` just as the wide
part does; it differs in being fitted to convergence (lbfgs, L2 penalty of inverse strength ``C``)
rather than by AdamW beside an MLP. The coefficients and the intercept are frozen parameters, so
checkpoints, :func:`tying.summary` and the report treat the peer like the torch models; its
``forward`` is the wide part's sum over an ``nn.EmbeddingBag``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tying.models.wide_deep import Ratings
from tying.training.external import ExternalModel

__all__ = ["LogRegPeer", "wide_matrix"]


def wide_matrix(wide: torch.Tensor, buckets: int) -> Any:
    """The ``(N, buckets)`` scipy CSR matrix counting each row's hashed ids (0 left out)."""
    from scipy.sparse import csr_matrix

    rows = np.repeat(np.arange(len(wide)), wide.shape[1])
    cols = wide.reshape(-1).numpy()
    keep = cols > 0
    ones = np.ones(int(keep.sum()), dtype=np.float64)
    return csr_matrix((ones, (rows[keep], cols[keep])), shape=(len(wide), buckets))  # duplicates add up


class LogRegPeer(ExternalModel):
    """Logistic regression over ``buckets`` hashed wide ids; ``forward(x: Ratings)`` gives logits."""

    def __init__(self, buckets: int, *, C: float, max_iter: int, seed: int) -> None:
        super().__init__()
        self.wide = nn.EmbeddingBag(buckets, 1, mode="sum", padding_idx=0)
        self.wide.weight.requires_grad_(False)
        nn.init.zeros_(self.wide.weight)
        self.wide_bias = nn.Parameter(torch.zeros(1), requires_grad=False)
        self.C, self.max_iter, self.seed = C, max_iter, seed

    def forward(self, x: Ratings) -> torch.Tensor:
        buckets = self.wide.num_embeddings
        if x.wide.numel() and (int(x.wide.min()) < 0 or int(x.wide.max()) >= buckets):
            bad = int(x.wide.min()) if int(x.wide.min()) < 0 else int(x.wide.max())
            raise ValueError(f"wide id {bad} is unknown: the model knows wide ids 0 to {buckets - 1}")
        return self.wide(x.wide).squeeze(1) + self.wide_bias

    def fit_epoch(self, data: Any, epoch: int) -> tuple[float, int]:
        """Fit on ``data.train`` (a :class:`~tying.tasks.recsys.movielens.MovieLens`), warm-started
        from the current coefficients after the first epoch; the mean training log loss."""
        try:
            from sklearn.linear_model import LogisticRegression
        except ImportError as exc:
            raise ImportError("the logreg peer needs scikit-learn: pip install 'tying[experiments]'") from exc
        features = wide_matrix(data.train.x.wide, self.wide.num_embeddings)
        labels = data.train.label.numpy()
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.seed, warm_start=epoch > 1)
        if epoch > 1:
            model.coef_ = self.wide.weight.detach().double().numpy().T.copy()
            model.intercept_ = self.wide_bias.detach().double().numpy().copy()
            model.classes_ = np.array([0.0, 1.0])
        model.fit(features, labels)
        with torch.no_grad():
            self.wide.weight.copy_(torch.from_numpy(model.coef_.T).float())
            self.wide.weight[0] = 0.0
            self.wide_bias.copy_(torch.from_numpy(model.intercept_).float())
        logits = torch.from_numpy(features @ model.coef_[0] + model.intercept_[0])
        loss = float(F.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels).double()))
        return (loss if math.isfinite(loss) else math.nan), len(labels)
