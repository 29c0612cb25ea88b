r"""A generated inspection-scene benchmark for small segmentation networks, bundled as code.

Each image is an RGB surface — a grey level drawn per image, a smooth low-frequency shading and
pixel noise — on which three kinds of marks are drawn, and the mask labels every pixel
(:data:`CLASSES`):

* **crack** (class 1): one or two long thin random-walk curves (40 to 90 steps, one pixel wide,
  darker than the surface);
* **scratch** (background, a distractor): three to six *short* curves (4 to 10 steps) of exactly
  the crack's darkness and width, so a pixel and its neighbours cannot tell the two apart: only the
  curve's length can, which needs the context a dilated receptive field gives;
* **corrosion** (class 2): up to two small irregular reddish blobs (radius 2 to 4), on about half
  of the images;
* **stain** (background, a distractor): one or two larger, fainter reddish patches.

Cracks and corrosion each cover about 1 % of the pixels: the class imbalance of a crack or
corrosion class that the focal loss (:mod:`tying.tasks.segmentation.losses`) is for. Every image is
drawn from its own generator seeded by ``(seed, split, index)``, so a split's images do not
depend on the other splits' sizes: a training-length sweep keeps the same test images.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CLASSES", "draw_scene", "make_scenes"]

#: Class names by label id.
CLASSES = ("background", "crack", "corrosion")
_SPLIT_SALT = {"train": 0, "valid": 1, "test": 2}
_DARK = 0.28  # how much darker a crack or a scratch is than the surface
_RUST = torch.tensor([0.16, -0.04, -0.14])  # reddish shift of corrosion; stains get a fraction of it


def _walk(r: random.Random, size: int, steps: int) -> list[tuple[int, int]]:
    """Pixels of a random walk of ``steps`` unit steps whose heading turns slowly."""
    y, x = r.uniform(4, size - 4), r.uniform(4, size - 4)
    heading = r.uniform(0, 2 * math.pi)
    pixels = []
    for _ in range(steps):
        heading += r.gauss(0, 0.25)
        y, x = y + math.sin(heading), x + math.cos(heading)
        if not (0 <= y < size and 0 <= x < size):
            break
        pixels.append((int(y), int(x)))
    return pixels


def _blob(r: random.Random, size: int, radius: float) -> torch.Tensor:
    """A boolean ``(size, size)`` mask of an irregular disc of about ``radius`` pixels."""
    cy, cx = r.uniform(radius + 1, size - radius - 1), r.uniform(radius + 1, size - radius - 1)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)  # NumPy: elementwise maths on small grids without torch's thread start-up
    angle = np.arctan2(yy - cy, xx - cx)
    wobble = 1 + 0.25 * np.sin(3 * angle + r.uniform(0, 6.3)) + 0.15 * np.sin(5 * angle + r.uniform(0, 6.3))
    return torch.from_numpy((yy - cy) ** 2 + (xx - cx) ** 2 <= (radius * wobble) ** 2)


def draw_scene(seed: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """One scene drawn from ``seed``: an image ``(3, size, size)`` in [0, 1] and its mask
    ``(size, size)`` of label ids."""
    r, g = random.Random(seed), torch.Generator().manual_seed(seed)  # shapes and places; pixel noise
    base = r.uniform(0.45, 0.7)
    shading = F.interpolate(torch.randn(1, 1, 6, 6, generator=g), size=(size, size), mode="bicubic", align_corners=False)[0]
    image = base + 0.06 * shading + 0.03 * torch.randn(3, size, size, generator=g)
    mask = torch.zeros(size, size, dtype=torch.long)
    for _ in range(r.randint(1, 2)):  # stains under everything else
        stain = _blob(r, size, r.uniform(6, 10))
        image += 0.45 * _RUST[:, None, None] * stain
    for _ in range(r.randint(0, 2)):
        rust = _blob(r, size, r.uniform(2, 4))
        image += _RUST[:, None, None] * rust
        mask[rust] = 2
    strokes = [(1, r.randint(40, 90)) for _ in range(r.randint(1, 2))] + [(0, r.randint(4, 10)) for _ in range(r.randint(3, 6))]
    for label, steps in sorted(strokes):  # scratches first: a scratch crossing a crack leaves the crack whole
        pixels = torch.tensor(_walk(r, size, steps) or [(0, 0)][:0], dtype=torch.long).reshape(-1, 2)
        ys, xs = pixels[:, 0], pixels[:, 1]
        image[:, ys, xs] = base - _DARK + 0.03 * torch.randn(3, len(pixels), generator=g)
        mask[ys, xs] = label
    return image.clamp(0, 1), mask


def make_scenes(count: int, *, split: str, seed: int = 0, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` scenes of ``split`` (``"train"``, ``"valid"``, ``"test"``): images
    ``(count, 3, size, size)`` float32 and masks ``(count, size, size)`` int64."""
    if split not in _SPLIT_SALT:
        raise ValueError(f"split must be one of {', '.join(_SPLIT_SALT)}, got {split!r}")
    if size < 16 or size % 4:
        raise ValueError(f"scene size must be a multiple of 4 and at least 16, got {size}")
    images, masks = torch.empty(count, 3, size, size), torch.empty(count, size, size, dtype=torch.long)
    for i in range(count):
        images[i], masks[i] = draw_scene((seed * 3 + _SPLIT_SALT[split]) * 1_000_003 + i, size)
    return images, masks
