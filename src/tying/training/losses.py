"""Training objectives of language models, as interchangeable functions.

A loss function has the signature of :data:`LossFn`: it runs the model on one window and
returns the scalar objective and the recurrent state to carry on. The trainer calls whichever
it is given, so an objective that needs the hidden states rather than the logits (Inan et al.
2017's augmented loss, arXiv 1611.01462; a fused output + cross-entropy head) or adds a
regulariser on the output embedding (Press & Wolf 2017, arXiv 1608.05859) plugs in without
touching the loop. Evaluation always reports plain cross-entropy (:func:`lm_loss`), so
perplexities stay comparable across objectives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LossFn", "lm_loss", "fused_lm_loss", "perplexity"]

#: ``(model, inputs (T, B), targets (T, B), state) -> (scalar loss, next state)``.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, Any]]


def lm_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    r"""Mean next-token cross-entropy :math:`-\frac{1}{TB}\sum_{t,b} \log p(y_{t,b} \mid x_{\le t, b})`
    over ``model(inputs, state)``'s logits."""
    logits, state = model(inputs, state)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)), state


def fused_lm_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """:func:`lm_loss` computed from ``model.features`` by the output layer's fused
    ``model.decoder.loss`` (:class:`tying.nn.TiedOutput`): the same value and gradients, without
    the ``(T, B, V)`` logits in memory (:func:`tying.functional.tied_linear_cross_entropy`)."""
    hidden, state = model.features(inputs, state)
    return model.decoder.loss(hidden, targets), state


def perplexity(loss: float) -> float:
    r""":math:`\exp(\text{mean cross-entropy in nats})`; ``inf`` where that overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
