r"""A segmentation micro-network in the style of MAVNet, with one context block shared across dilations.

MAVNet (Nguyen et al. 2019, arXiv 1904.01795) segments images on micro aerial vehicles with a few
thousand parameters: an encoder of two conv-conv-pool blocks, a context of depthwise-separable
blocks at dilation rates 2, 4, 8 and 16 (ERFNet's non-bottleneck blocks made depthwise), and a
short upsampling decoder, trained with the focal loss. This file is this project's
reconstruction of that layout (``docs/segmentation.md`` says what follows the paper):

* encoder: ``conv3x3(3→w₀) conv3x3(w₀→w₀) pool``, ``conv3x3(w₀→w₁) conv3x3(w₁→C) pool``,
  each conv followed by BatchNorm and ReLU (no conv bias: the norm has one);
* context: four residual blocks ``x + f_d(x)`` at dilations ``d ∈ (2, 4, 8, 16)``, each ``f_d``
  two depthwise-separable convolutions (a dilated depthwise 3×3 then a pointwise 1×1, each
  followed by BatchNorm and ReLU);
* decoder: ×2 bilinear upsampling, ``conv3x3(C→w₀)`` + BatchNorm + ReLU, ×2 upsampling and a 1×1
  classifier with bias.

**Sharing** (``share``): the four context blocks differ only in their dilation, which is not a
parameter, so one block's convolution weights can serve every rate. With ``share="conv"`` the
blocks' convolution weights are tied to block 0's through :func:`tying.share_layers` (declared
ties: ``tying.summary``, ``save``, ``load`` and ``materialize`` show and keep them) and every
rate keeps its own BatchNorm; with ``share="all"`` the BatchNorm scale and shift are tied too.
The norms' *running statistics* are buffers and stay per rate in both: activations at dilation
2 and 16 have different statistics, and one running mean for all four would normalise every rate
with their average at inference. Weights per context block, channels :math:`C`:

.. math::

    P_\text{conv} = 2 (9 C + C^2), \qquad P_\text{norm} = 4 \cdot 2 C,

so sharing removes :math:`3 P_\text{conv}` (``"conv"``) or :math:`3 (P_\text{conv} + P_\text{norm})`
(``"all"``) of the :func:`parameter_count`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tying.sharing import share_layers

__all__ = ["MAVNet", "MAVNetConfig", "Share", "parameter_count"]

Share = Literal["none", "conv", "all"]


@dataclass(frozen=True)
class MAVNetConfig:
    """Sizes of a :class:`MAVNet`.

    Attributes:
        in_channels: image channels (3 for RGB).
        classes: output classes (background included).
        widths: ``(w₀, w₁)``, the encoder's first block width and its second block's middle width.
        context: channels :math:`C` of the context blocks (the encoder's output).
        dilations: one context block per rate.
        share: ``"none"``, ``"conv"`` (the context blocks' convolutions tied to block 0's) or
            ``"all"`` (their BatchNorm scale and shift too).
    """

    in_channels: int = 3
    classes: int = 3
    widths: tuple[int, int] = (4, 8)
    context: int = 12
    dilations: tuple[int, ...] = (2, 4, 8, 16)
    share: Share = "none"

    def __post_init__(self) -> None:
        for name in ("in_channels", "classes", "context"):
            if getattr(self, name) < 1:
                raise ValueError(f"MAVNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.classes < 2:
            raise ValueError(f"MAVNetConfig.classes must be >= 2 (background and one class), got {self.classes}")
        if len(self.widths) != 2 or min(self.widths) < 1:
            raise ValueError(f"MAVNetConfig.widths must be two positive widths (w0, w1), got {self.widths!r}")
        if not self.dilations or min(self.dilations) < 1:
            raise ValueError(f"MAVNetConfig.dilations must be one or more rates >= 1, got {self.dilations!r}")
        if self.share not in ("none", "conv", "all"):
            raise ValueError(f"MAVNetConfig.share must be 'none', 'conv' or 'all', got {self.share!r}")


def _conv_bn(cin: int, cout: int, kernel: int = 3, *, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ContextBlock(nn.Module):
    """``x + f_d(x)``: two depthwise-separable convolutions at dilation ``d``."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        c = channels
        self.body = nn.Sequential(
            _conv_bn(c, c, dilation=dilation, groups=c), _conv_bn(c, c, 1),
            _conv_bn(c, c, dilation=dilation, groups=c), _conv_bn(c, c, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class MAVNet(nn.Module):
    """``forward``: images ``(B, in_channels, H, W)`` with H and W divisible by 4 → class logits
    ``(B, classes, H, W)``."""

    def __init__(self, config: MAVNetConfig) -> None:
        super().__init__()
        self.config = config
        w0, w1 = config.widths
        c = config.context
        self.encoder = nn.Sequential(
            _conv_bn(config.in_channels, w0), _conv_bn(w0, w0), nn.MaxPool2d(2),
            _conv_bn(w0, w1), _conv_bn(w1, c), nn.MaxPool2d(2),
        )  # fmt: skip
        self.context = nn.ModuleList(ContextBlock(c, d) for d in config.dilations)
        self.decode = _conv_bn(c, w0)
        self.classifier = nn.Conv2d(w0, config.classes, 1)
        if config.share != "none":
            share_layers(self, "context", unique=1, strategy="all", share_norms=config.share == "all")  # one block, every rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if size[0] % 4 or size[1] % 4:
            raise ValueError(f"MAVNet needs image height and width divisible by 4 (two 2x2 poolings), got {tuple(size)}")
        h = self.encoder(x)
        for block in self.context:
            h = block(h)
        h = self.decode(F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False))
        return self.classifier(F.interpolate(h, size=size, mode="bilinear", align_corners=False))


def parameter_count(config: MAVNetConfig) -> int:
    """Unique parameters of ``MAVNet(config)`` by formula (module docstring)."""
    w0, w1 = config.widths
    c, k, n = config.context, config.classes, len(config.dilations)

    def conv_bn(cin: int, cout: int, kernel: int = 3, groups: int = 1) -> int:
        return cin // groups * cout * kernel * kernel + 2 * cout

    encoder = conv_bn(config.in_channels, w0) + conv_bn(w0, w0) + conv_bn(w0, w1) + conv_bn(w1, c)
    conv, norm = 2 * (9 * c + c * c), 4 * 2 * c
    blocks = n if config.share == "none" else 1
    norms = 1 if config.share == "all" else n
    decoder = conv_bn(c, w0) + w0 * k + k
    return encoder + blocks * conv + norms * norm + decoder
