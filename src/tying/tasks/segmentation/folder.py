"""Images and masks from a folder the user gives: ``ROOT/images/NAME.png`` (or ``.jpg``) beside
``ROOT/masks/NAME.png`` — one image per mask, the mask a single-channel PNG of label ids
``0 .. classes-1`` of the image's size — such as the public MAVNet penstock and drone images
(never committed to this project). Every image must have the same size.

Everything is read and checked before anything is used, and the first problem is a one-line
:class:`FolderError` naming the file: a missing folder, an image without its mask (or a mask
without its image), a size that differs, a channel count that is not ``channels``, a label id
outside ``0 .. classes-1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["FolderError", "read_folder"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class FolderError(ValueError):
    """A segmentation folder whose layout, sizes, channels or labels are wrong."""


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not folder.is_dir():
        raise FolderError(f"{str(folder)!r} is not a folder: a segmentation folder holds images/ and masks/ side by side")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in suffixes}


def _read(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError  # Pillow arrives with matplotlib, in the experiments extra

    try:
        with Image.open(path) as image:
            return np.asarray(image)
    except (UnidentifiedImageError, OSError) as exc:
        raise FolderError(f"{str(path)!r} is not a readable image: {exc}") from None


def read_folder(root: str | os.PathLike[str], *, classes: int, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``root`` as ``(N, channels, H, W)`` float32 in [0, 1] and its mask as
    ``(N, H, W)`` int64, in file-name order.

    Raises:
        FolderError: naming the file and what is wrong with it (module docstring).
    """
    root = Path(root)
    images = _files(root / "images", _IMAGE_SUFFIXES)
    masks = _files(root / "masks", (".png",))
    if not images:
        raise FolderError(f"{str(root / 'images')!r} holds no .png or .jpg image")
    unmasked, orphans = sorted(images.keys() - masks.keys()), sorted(masks.keys() - images.keys())
    if unmasked:
        raise FolderError(f"{str(images[unmasked[0]])!r} has no mask: expected {str(root / 'masks' / (unmasked[0] + '.png'))!r}")
    if orphans:
        raise FolderError(f"{str(masks[orphans[0]])!r} has no image of the same name in {str(root / 'images')!r}")
    xs, ys, size = [], [], None
    for stem in sorted(images):
        image, mask = _read(images[stem]), _read(masks[stem])
        have = 1 if image.ndim == 2 else image.shape[2]
        if have != channels:
            raise FolderError(f"{str(images[stem])!r} has {have} channel(s); the model reads {channels}")
        if size is None:
            size = image.shape[:2]
        if image.shape[:2] != size:
            raise FolderError(f"{str(images[stem])!r} is {image.shape[1]}x{image.shape[0]} pixels; the first image is {size[1]}x{size[0]}: every image must have one size")
        if mask.ndim != 2 or mask.shape != size:
            raise FolderError(f"{str(masks[stem])!r} must be a single-channel image of {size[1]}x{size[0]} pixels, got shape {mask.shape}")
        top = int(mask.max())
        if top >= classes:
            raise FolderError(f"{str(masks[stem])!r} holds label id {top}; with classes = {classes} the ids are 0 to {classes - 1}")
        xs.append(torch.from_numpy(image.reshape(*size, channels).copy()).permute(2, 0, 1).float() / 255)
        ys.append(torch.from_numpy(mask.astype(np.int64)))
    return torch.stack(xs), torch.stack(ys)
