"""Ranking and calibration metrics of binary predictions: AUC (ties counted half, as
``sklearn.metrics.roc_auc_score``) and log loss (natural log, from logits), overall, on the
rare-item tail, and by the candidate's training-frequency bucket."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["auc", "log_loss", "binary_metrics"]


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (the Mann-Whitney statistic,
    average ranks for tied scores); NaN when ``labels`` holds one class only."""
    if scores.shape != labels.shape or scores.dim() != 1:
        raise ValueError(f"scores {list(scores.shape)} and labels {list(labels.shape)} must be 1-d of one length")
    positive = labels > 0.5
    n_pos = int(positive.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = scores.double().argsort()
    _, inverse, counts = torch.unique_consecutive(scores.double()[order], return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average = ends - (counts.double() - 1) / 2  # 1-based mean rank of each run of equal scores
    ranks = torch.empty(len(scores), dtype=torch.float64)
    ranks[order] = average[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


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
