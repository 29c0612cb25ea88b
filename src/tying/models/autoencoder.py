r"""Multi-layer autoencoder whose decoder is the transpose of its encoder (a *tied* autoencoder).

With widths :math:`w_0 \dots w_L` the encoder maps :math:`h^0 = x \in \mathbb{R}^{w_0}` through
:math:`L` layers :math:`h^{k+1} = \sigma(W_k h^k + b_k)`, :math:`W_k \in \mathbb{R}^{w_{k+1} \times w_k}`,
and the decoder mirrors it back to :math:`\hat x \in \mathbb{R}^{w_0}`: its layer :math:`k` maps
width :math:`w_{L-k}` to :math:`w_{L-k-1}`, with the activation on every layer but the last
(the reconstruction is linear). **Tied**, decoder layer :math:`k` uses
:math:`W_{L-1-k}^\top` (0-indexed: the first decoder layer reads the last encoder layer
transposed), as in the tied autoencoders of Vincent et al. 2008 and Hinton & Salakhutdinov 2006:
one ``tying.tie_transposed`` line per layer. Biases stay per layer (a decoder bias has the
encoder layer's *input* width). Tying halves the weight parameters:

.. math::

    P_\text{tied} = \sum_{k<L} w_k w_{k+1} + \sum_{k<L} (w_{k+1} + w_k), \qquad
    P_\text{untied} = 2 \sum_{k<L} w_k w_{k+1} + \sum_{k<L} (w_{k+1} + w_k).

:func:`parameter_count` gives these; :func:`equal_parameter_widths` the untied widths with about
the tied model's parameter count, for a comparison at equal size rather than equal width.
"""

from __future__ import annotations

from collections.abc import Callable

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tying.core import tie_transposed

__all__ = ["AutoEncoder", "AutoEncoderConfig", "equal_parameter_widths", "parameter_count", "reconstruction_mse"]

Activation = Literal["sigmoid", "tanh", "relu"]
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": F.relu}


@dataclass(frozen=True)
class AutoEncoderConfig:
    """Sizes of an :class:`AutoEncoder`.

    Attributes:
        widths: :math:`(w_0, \\dots, w_L)`, the input width then each encoder layer's output
            width (the code is :math:`w_L`); at least two entries.
        activation: applied after every layer except the decoder's last.
        tied: decoder weights are the encoder weights transposed.
    """

    widths: tuple[int, ...] = (64, 32, 16)
    activation: Activation = "sigmoid"
    tied: bool = True

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in self.widths):
            raise ValueError(f"widths must be two or more positive integers (input width, then each layer's), got {self.widths!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {', '.join(_ACTIVATIONS)}")


class AutoEncoder(nn.Module):
    """``encoder`` and ``decoder``: ``nn.ModuleList`` s of ``nn.Linear``; ``forward`` reconstructs
    its input ``(B, w_0)``, :meth:`encode` gives the code ``(B, w_L)``."""

    def __init__(self, config: AutoEncoderConfig) -> None:
        super().__init__()
        self.config = config
        w, depth = config.widths, len(config.widths) - 1
        self.encoder = nn.ModuleList(nn.Linear(w[k], w[k + 1]) for k in range(depth))
        self.decoder = nn.ModuleList(nn.Linear(w[depth - k], w[depth - k - 1]) for k in range(depth))
        self.act = _ACTIVATIONS[config.activation]
        if config.tied:
            for k in range(depth):
                tie_transposed(self, f"encoder.{depth - 1 - k}.weight", f"decoder.{k}.weight")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.encoder:
            x = self.act(layer(x))
        return x

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        for layer in self.decoder[:-1]:
            code = self.act(layer(code))
        return self.decoder[-1](code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def parameter_count(config: AutoEncoderConfig) -> int:
    """Unique parameters of ``AutoEncoder(config)`` (closed form; module docstring)."""
    w = config.widths
    weights = sum(a * b for a, b in zip(w, w[1:]))
    biases = sum(a + b for a, b in zip(w, w[1:]))
    return weights * (1 if config.tied else 2) + biases


def equal_parameter_widths(config: AutoEncoderConfig) -> tuple[int, ...]:
    """Widths of an *untied* autoencoder with about as many parameters as ``config``'s tied one:
    the input width kept, every hidden width scaled by one factor (each at least 1), the factor
    chosen so the count is closest to the tied count (a tied model compared at equal size).

    >>> equal_parameter_widths(AutoEncoderConfig((64, 32)))
    (64, 16)
    """
    target = parameter_count(replace(config, tied=True))

    def widths(scale: float) -> tuple[int, ...]:
        return (config.widths[0], *(max(1, round(h * scale)) for h in config.widths[1:]))

    def count(scale: float) -> int:
        return parameter_count(AutoEncoderConfig(widths(scale), config.activation, tied=False))

    lo, hi = 0.0, 1.0  # the count grows with the scale; at scale 1 the untied model is larger
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return min((widths(lo), widths(hi)), key=lambda ws: abs(parameter_count(AutoEncoderConfig(ws, tied=False)) - target))


@torch.no_grad()
def reconstruction_mse(model: nn.Module, x: torch.Tensor, batch_size: int = 4096) -> float:
    """Mean squared reconstruction error over every element of ``x`` ``(N, w_0)``, in eval mode,
    in batches of ``batch_size`` rows (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        total = sum(F.mse_loss(model(chunk), chunk, reduction="sum").item() for chunk in x.split(batch_size))
    finally:
        model.train(was_training)
    return total / x.numel()
