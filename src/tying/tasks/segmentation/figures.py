"""The segmentation report's picture: test images, ground truth and each run's predictions.

A run record keeps its shown images compactly: each image, mask and prediction as base64 of its
uint8 bytes with the shape beside it (:func:`encode` / :func:`decode`).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["encode", "decode", "predictions_figure"]


def _pack(array: torch.Tensor) -> dict[str, Any]:
    data = array.to(torch.uint8).contiguous().numpy()
    return {"shape": list(data.shape), "uint8": base64.b64encode(data.tobytes()).decode("ascii")}


def _unpack(packed: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed["uint8"]), dtype=np.uint8).reshape(packed["shape"])


def encode(image: torch.Tensor, mask: torch.Tensor, prediction: torch.Tensor) -> dict[str, Any]:
    """One shown example: the image ``(C, H, W)`` in [0, 1], its mask and a prediction ``(H, W)``."""
    return {
        "image": _pack((image.clamp(0, 1) * 255).round().permute(1, 2, 0)),
        "mask": _pack(mask),
        "prediction": _pack(prediction),
    }


def decode(example: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image ``(H, W, C)`` uint8, mask and prediction ``(H, W)`` of :func:`encode`."""
    return _unpack(example["image"]), _unpack(example["mask"]), _unpack(example["prediction"])


def predictions_figure(fig: Figure, records: Sequence[dict[str, Any]]) -> None:
    """Columns: per shown example the image, then rows: ground truth, then each run's prediction."""
    examples = [[decode(e) for e in r["extras"]["shown"]] for r in records]
    classes = len(records[0]["extras"]["classes"])
    rows = [("image", [img for img, _, _ in examples[0]]), ("ground truth", [m for _, m, _ in examples[0]])]
    rows += [(r["name"], [p for _, _, p in ex]) for r, ex in zip(records, examples)]
    columns = len(rows[0][1])
    fig.set_size_inches(1.5 + 1.6 * columns, 1.5 * len(rows))
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, (label, pictures) in enumerate(rows):
        for c, picture in enumerate(pictures):
            ax = axes[r][c]
            if picture.ndim == 3:
                ax.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray")
            else:
                ax.imshow(picture, cmap="viridis", vmin=0, vmax=classes - 1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
