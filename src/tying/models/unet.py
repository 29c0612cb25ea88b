r"""U-Net (Ronneberger, Fischer & Brox 2015, arXiv 1505.04597): the segmentation model a practitioner
reaches for first, the peer of :class:`tying.models.mavnet.MAVNet` (the MAVNet group's earlier
penstock work, arXiv 1809.06576, used a U-Net with the focal loss).

A contracting path of ``depth`` levels — two 3×3 convolutions (BatchNorm, ReLU) then 2×2 max
pooling, the width doubling from ``base`` at each level — a bottleneck of two convolutions, and
an expanding path that upsamples ×2 with a transposed convolution, concatenates the same level's
encoder features (the skip connection) and applies two convolutions; a 1×1 classifier. Padded
convolutions keep the input size (the paper's valid convolutions crop instead), as the common
implementations do. It shares nothing: every level has its own weights.

``segmentation-models-pytorch`` provides this model with pretrained encoders, but it requires
torchvision, which installs only with a CUDA build of torch on this project's reference machine
(``docs/segmentation.md``); this file is the plain architecture in torch alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["UNet", "UNetConfig", "parameter_count"]


@dataclass(frozen=True)
class UNetConfig:
    """Sizes of a :class:`UNet`: ``base`` channels at the first level, ``depth`` poolings."""

    in_channels: int = 3
    classes: int = 3
    base: int = 16
    depth: int = 3

    def __post_init__(self) -> None:
        for name in ("in_channels", "base", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"UNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.classes < 2:
            raise ValueError(f"UNetConfig.classes must be >= 2 (background and one class), got {self.classes}")


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )  # fmt: skip


class UNet(nn.Module):
    """``forward``: images ``(B, in_channels, H, W)``, H and W divisible by ``2**depth`` → logits
    ``(B, classes, H, W)``."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base * 2**level for level in range(config.depth + 1)]
        self.down = nn.ModuleList(_double_conv(cin, cout) for cin, cout in zip([config.in_channels, *widths[:-2]], widths[:-1]))
        self.bottleneck = _double_conv(widths[-2], widths[-1])
        self.upsample = nn.ModuleList(nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in reversed(widths[1:]))
        self.up = nn.ModuleList(_double_conv(w, w // 2) for w in reversed(widths[1:]))
        self.classifier = nn.Conv2d(config.base, config.classes, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        step = 2**self.config.depth
        if x.shape[-2] % step or x.shape[-1] % step:
            raise ValueError(f"UNet of depth {self.config.depth} needs image height and width divisible by {step}, got {tuple(x.shape[-2:])}")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips)):
            x = block(torch.cat([skip, upsample(x)], dim=1))
        return self.classifier(x)


def parameter_count(config: UNetConfig) -> int:
    """Parameters of ``UNet(config)`` by formula."""
    widths = [config.base * 2**level for level in range(config.depth + 1)]

    def double(cin: int, cout: int) -> int:
        return 9 * cin * cout + 9 * cout * cout + 4 * cout

    total = sum(double(cin, cout) for cin, cout in zip([config.in_channels, *widths[:-2]], widths[:-1]))
    total += double(widths[-2], widths[-1])
    total += sum(4 * w * (w // 2) + w // 2 + double(w, w // 2) for w in widths[1:])
    return total + config.base * config.classes + config.classes
