r"""The focal loss and intersection-over-union for semantic segmentation.

**Focal loss** (Lin et al. 2017, arXiv 1708.02002), the loss MAVNet trains with: for a pixel of
class :math:`t` predicted with probability :math:`p_t`,

.. math::

    \mathrm{FL}(p_t) = -(1 - p_t)^\gamma \log p_t,

averaged over pixels. :math:`\gamma = 0` is cross-entropy; :math:`\gamma = 2` (the paper's and
MAVNet's value) scales down the loss of pixels already classified well — the many easy background
pixels — so the rare thin and small classes weigh more.

**IoU** of class :math:`c` over a whole split: :math:`|P_c \cap T_c| / |P_c \cup T_c|` from the
confusion matrix summed over every image (not averaged per image); mIoU is its mean over the
classes present in the targets or the predictions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["focal_loss", "confusion_matrix", "iou_per_class", "mean_iou"]


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss of ``logits`` ``(B, K, H, W)`` against labels ``(B, H, W)``."""
    if gamma < 0:
        raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
    logp = F.log_softmax(logits, dim=1).gather(1, target.unsqueeze(1)).squeeze(1)
    return (-((1 - logp.exp()) ** gamma) * logp).mean()


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, classes: int) -> torch.Tensor:
    """``(classes, classes)`` int64 counts, row = true class, column = predicted class."""
    index = target.reshape(-1) * classes + pred.reshape(-1)
    return torch.bincount(index, minlength=classes * classes).reshape(classes, classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """IoU of each class from a confusion matrix; NaN for a class absent from both targets and predictions."""
    hits = confusion.diagonal().double()
    union = confusion.sum(0).double() + confusion.sum(1).double() - hits
    return torch.where(union > 0, hits / union.clamp(min=1), torch.full_like(hits, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean of :func:`iou_per_class` over the classes that occur."""
    return float(iou_per_class(confusion).nanmean())
