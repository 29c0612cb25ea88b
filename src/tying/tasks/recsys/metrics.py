"""Ranking and calibration metrics of binary predictions: AUC (scikit-learn's
``roc_auc_score``, ties counted half) and log loss (natural log, from logits), overall, on the
rare-item tail, and by the candidate's training-frequency bucket."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["auc", "log_loss", "binary_metrics"]


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (scikit-learn's
    ``roc_auc_score``: ties count half); NaN when ``labels`` holds one class only."""
    from sklearn.metrics import roc_auc_score  # the experiments extra

    if scores.shape != labels.shape or scores.dim() != 1:
        raise ValueError(f"scores {list(scores.shape)} and labels {list(labels.shape)} must be 1-d of one length")
    positive = (labels > 0.5).cpu().numpy()
    if positive.all() or not positive.any():
        return math.nan
    return float(roc_auc_score(positive, scores.detach().double().cpu().numpy()))


def log_loss(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean binary cross-entropy in nats of ``sigmoid(logits)`` against ``labels``; NaN when empty."""
    if len(labels) == 0:
        return math.nan
    return float(F.binary_cross_entropy_with_logits(logits.double(), labels.double()))


def binary_metrics(logits: torch.Tensor, labels: torch.Tensor, tail: torch.Tensor) -> dict[str, float]:
    """``auc``, ``logloss`` (also as ``loss``), ``tail_auc`` and ``tail_logloss`` (the examples
    where boolean ``tail`` holds)."""
    overall = log_loss(logits, labels)
    return {
        "loss": overall,
        "auc": auc(logits, labels),
        "logloss": overall,
        "tail_auc": auc(logits[tail], labels[tail]),
        "tail_logloss": log_loss(logits[tail], labels[tail]),
    }
