"""Peers that another library trains: a model the engine runs like any other but does not optimise.

A comparison is only fair when the obvious baseline runs on the same data split and is scored
by the same code. gensim's ``Word2Vec``, a statsmodels GLM or a scikit-learn classifier fit
themselves; wrapped as an :class:`ExternalModel`, such a peer becomes one more recipe of the
task: the engine calls :meth:`ExternalModel.fit_epoch` in place of its optimizer loop, then
evaluates, checkpoints, reports and resumes it exactly like the task's torch models.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from torch import nn

__all__ = ["ExternalModel"]


class ExternalModel(nn.Module):
    """A model fitted by its own library, one engine epoch per :meth:`fit_epoch` call.

    Its fitted state lives in its tensors: the learnt values as frozen parameters
    (``requires_grad=False``, so :func:`tying.summary` counts them and the optimizer skips them),
    anything else as buffers. Checkpoints therefore hold the whole fitted model, the task's
    ``evaluate`` reads it like any module, and a resumed run continues from those tensors (a
    peer that cannot continue a fit from its tensors trains in one epoch: ``train.epochs = 1``).
    The ``[train]`` table's optimizer, learning rate and clipping do not apply to it; the task
    passes the seed and the library's own settings in when it builds the model.
    """

    @abstractmethod
    def fit_epoch(self, data: Any, epoch: int) -> tuple[float, int]:
        """Fit 1-based ``epoch`` on the task's ``data``, starting from the state in this module's
        tensors, and write the result back into them.

        Returns:
            The mean training loss (``nan`` when the library reports none) and how many items
            (the task's :attr:`~tying.training.Task.unit`) the epoch trained on, for throughput.
        """
