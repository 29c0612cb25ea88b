"""Training objectives of the language-model task, as interchangeable functions, and its
``[loss]`` table.

A loss function has the signature of :data:`LossFn`: it runs the model on one window and
returns the scalar objective and the recurrent state to carry on. The LM task's ``step`` calls
the one the recipe's ``[loss]`` table builds (:func:`build_loss`), so an objective that needs the
hidden states rather than the logits (Inan et al. 2017's augmented loss, arXiv 1611.01462; a
fused output + cross-entropy head) or adds a regulariser on the output embedding (Press & Wolf
2017, arXiv 1608.05859) plugs in without touching the task or the engine. Evaluation always
reports plain cross-entropy (:func:`lm_loss`), so perplexities stay comparable across objectives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from tying.training.config import Table

__all__ = [
    "LossFn",
    "LossConfig",
    "lm_loss",
    "fused_lm_loss",
    "augmented_kl",
    "real_loss",
    "projection_penalty",
    "with_projection_penalty",
    "build_loss",
    "perplexity",
]

#: ``(model, inputs (T, B), targets (T, B), state) -> (scalar loss, next state)``.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, Any]]


def lm_loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    r"""Mean next-token cross-entropy :math:`-\frac{1}{TB}\sum_{t,b} \log p(y_{t,b} \mid x_{\le t, b})`
    over ``model(inputs, state)``'s logits."""
    logits, state = model(inputs, state)
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)), state


def fused_lm_loss(model: Any, inputs: torch.Tensor, targets: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """:func:`lm_loss` computed from ``model.features`` by the output layer's fused
    ``model.decoder.loss`` (:class:`tying.nn.TiedOutput`): the same value and gradients, without
    the ``(T, B, V)`` logits in memory (:func:`tying.functional.tied_linear_cross_entropy`)."""
    features, state = model.features(inputs, state)
    return model.decoder.loss(features, targets), state


def augmented_kl(logits: torch.Tensor, targets: torch.Tensor, embedding: torch.Tensor, tau: float) -> torch.Tensor:
    r"""Inan et al.'s augmented loss term, mean over tokens:

    .. math::

        \mathrm{KL}\big(\tilde y_t \,\|\, \hat y_t\big), \qquad
        \tilde y_t = \mathrm{softmax}(L^\top u_t / \tau), \quad
        \hat y_t = \mathrm{softmax}(z_t / \tau)

    with :math:`L` the input embedding (``embedding``, ``[V, d]``), :math:`u_t = L_{y_t}` the
    target word's embedding and :math:`z_t` the model's logits (Inan, Khosravi & Socher 2017,
    arXiv 1611.01462, eq. 3–5). :math:`\tilde y_t` spreads the target's probability over words
    with similar embeddings. It is used as a fixed target: no gradient flows through it (the
    embedding is trained by the cross-entropy and through :math:`\hat y` when tied).

    Args:
        logits: ``(..., V)``; targets: matching ``(...)`` word ids; tau: temperature > 0.
    """
    flat = logits.reshape(-1, logits.size(-1))
    with torch.no_grad():
        u = embedding[targets.reshape(-1)]
        soft_targets = F.log_softmax(u @ embedding.t() / tau, dim=-1)
    return F.kl_div(F.log_softmax(flat / tau, dim=-1), soft_targets, reduction="batchmean", log_target=True)


def real_loss(alpha: float, tau: float) -> LossFn:
    r"""The REAL objective (*Reuse of Embeddings and Augmented Loss*, Inan et al. 2017):
    cross-entropy :math:`+\ \alpha \cdot` :func:`augmented_kl` at temperature ``tau``.
    Needs ``model.features``, ``model.logits`` and ``model.encoder.weight``."""

    def loss(model: Any, inputs: torch.Tensor, targets: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        features, state = model.features(inputs, state)
        logits = model.logits(features)
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return ce + alpha * augmented_kl(logits, targets, model.encoder.weight, tau), state

    return loss


def projection_penalty(model: nn.Module) -> torch.Tensor:
    r""":math:`\lVert P \rVert_F^2`, the squared Frobenius norm of ``model.projection.weight``
    (Press & Wolf 2017, section 5: the projection before the output layer, regularised)."""
    projection = getattr(model, "projection", None)
    if projection is None:
        raise ValueError(
            f"{type(model).__name__} has no projection layer to regularise; build it with projection=True "
            "(LSTMConfig) or set the projection penalty to 0"
        )
    return projection.weight.pow(2).sum()


def with_projection_penalty(loss_fn: LossFn, lam: float) -> LossFn:
    r"""``loss_fn`` plus :math:`\lambda \lVert P \rVert_F^2` (:func:`projection_penalty`)."""

    def loss(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        value, state = loss_fn(model, inputs, targets, state)
        return value + lam * projection_penalty(model), state

    return loss


class LossConfig(Table):
    """The ``[loss]`` table of a language-model recipe: the training objective (evaluation is
    always plain cross-entropy).

    Attributes:
        kind: ``"ce"``: next-token cross-entropy; ``"real"``: Inan et al.'s REAL
            (:func:`real_loss`, with ``alpha`` and ``tau``).
        fused: compute the cross-entropy with the fused output head (:func:`fused_lm_loss`):
            same values and gradients, no ``(T, B, V)`` logits in memory. ``"ce"`` only.
        projection_penalty: λ of Press & Wolf's projection regularization (0: none).
        alpha, tau: weight and temperature of the augmented loss (``kind="real"``).
    """

    kind: Literal["ce", "real"] = "ce"
    fused: bool = False
    projection_penalty: float = Field(0.0, ge=0)
    alpha: float = Field(0.5, ge=0)
    tau: float = Field(20.0, gt=0)

    @model_validator(mode="after")
    def _fused_needs_ce(self) -> LossConfig:
        if self.fused and self.kind != "ce":
            raise ValueError("fused=true computes plain cross-entropy; the 'real' loss needs the logits (set fused=false)")
        return self


def build_loss(config: LossConfig) -> LossFn:
    """The :data:`LossFn` a :class:`LossConfig` describes."""
    if config.kind == "real":
        loss_fn = real_loss(config.alpha, config.tau)
    else:
        loss_fn = fused_lm_loss if config.fused else lm_loss
    return with_projection_penalty(loss_fn, config.projection_penalty) if config.projection_penalty else loss_fn


def perplexity(loss: float) -> float:
    r""":math:`\exp(\text{mean cross-entropy in nats})`; ``inf`` where that overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
