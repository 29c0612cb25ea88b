r"""Semantic segmentation with a shared-weight micro-network (``task = "segmentation"``).

The models are :class:`tying.models.MAVNet` (``model.arch = "mavnet"``; ``share`` ties its context
blocks across the dilation rates) and its peer :class:`tying.models.UNet` (``arch = "unet"``), both
trained with the focal loss (``[loss] gamma``, 2 as MAVNet) on the same data and budget. Metrics
on a whole split: mIoU in percent (``metrics[0]``: it picks the best epoch), the IoU of each class
of the generated scenes, and pixel accuracy.

Recipe tables:

* ``[data]``: :class:`SegmentationData` — the generated scenes (:mod:`tying.tasks.segmentation.scenes`)
  or a folder of images and masks (:mod:`tying.tasks.segmentation.folder`);
* ``[model]``: the fields of :class:`~tying.models.MAVNetConfig` or :class:`~tying.models.UNetConfig`
  (chosen by ``arch``) but the channel and class counts, which come from the data;
* ``[loss]``: :class:`FocalLoss`; ``[train]``: :class:`SegmentationTrain` (the engine's settings plus the batch size).

Each run records two test images, their masks and its predictions (``extras``), which comparison
reports draw side by side (``<report>-predictions.png``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, Field
from torch import nn

from tying.models.mavnet import MAVNet, MAVNetConfig
from tying.models.unet import UNet, UNetConfig
from tying.tasks.segmentation.figures import encode, predictions_figure
from tying.tasks.segmentation.folder import read_folder
from tying.tasks.segmentation.metrics import confusion_matrix, focal_loss, iou_per_class
from tying.tasks.segmentation.scenes import CLASSES, make_scenes
from tying.training.config import Table, TrainConfig
from tying.training.tables import build_config, config_table
from tying.training.task import Metric, ReportFigure, StepOutput, Task

__all__ = ["SegmentationData", "MAVNetModel", "UNetModel", "FocalLoss", "SegmentationTrain", "Segments", "SegmentationTask"]

#: Test images whose predictions a run records.
SHOWN = 2


class SegmentationData(Table):
    """``[data]``: ``source = "scenes"``: ``train`` / ``valid`` / ``test`` generated scenes of
    ``size`` pixels square, drawn from ``seed``; or ``source`` = a folder of images and masks with
    ``classes`` label ids, cut into splits by a permutation seeded with ``seed``
    (``valid_fraction``, ``test_fraction``)."""

    source: str = "scenes"
    size: int = Field(64, ge=16, multiple_of=4)
    train: int = Field(600, ge=1)
    valid: int = Field(150, ge=1)
    test: int = Field(150, ge=1)
    seed: int = 0
    classes: int = Field(len(CLASSES), ge=2)
    valid_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)


_FILLED = {"in_channels", "classes"}
MAVNetModel = config_table(MAVNetConfig, name="MAVNetModel", exclude=_FILLED, fields={"arch": (Literal["mavnet"], "mavnet")})
UNetModel = config_table(UNetConfig, name="UNetModel", exclude=_FILLED, fields={"arch": (Literal["unet"], ...)})


class FocalLoss(Table):
    """``[loss]``: the focal loss's ``gamma`` (0: cross-entropy)."""

    gamma: float = Field(2.0, ge=0)


class SegmentationTrain(TrainConfig):
    """``[train]``: the engine's settings plus ``batch_size`` (images per step, reshuffled every epoch)."""

    batch_size: int = Field(16, ge=1)


@dataclass
class Segments:
    """Images ``(N, C, H, W)`` and masks ``(N, H, W)`` per split, and the class names."""

    splits: dict[str, tuple[torch.Tensor, torch.Tensor]]
    classes: tuple[str, ...]


class SegmentationTask(Task):
    """Label every pixel; mIoU over a split, higher is better."""

    name = "segmentation"
    tables: ClassVar[dict[str, type[BaseModel]]] = {"data": SegmentationData, "model": MAVNetModel, "loss": FocalLoss, "train": SegmentationTrain}
    metrics = (
        Metric("miou", "mIoU", "higher", title="mean IoU", unit="%", fmt=".1f", curve=True),
        *(Metric(f"iou_{c}", f"IoU {name}", "higher", unit="%", fmt=".1f") for c, name in enumerate(CLASSES)),
        Metric("accuracy", "pixel acc.", "higher", title="pixel accuracy", unit="%", fmt=".2f", report=False),
    )
    unit = "images"

    @classmethod
    def table_types(cls, raw: dict[str, Any]) -> dict[str, type[BaseModel]]:
        model = raw.get("model")
        arch = model.get("arch", "mavnet") if isinstance(model, dict) else "mavnet"
        return {**cls.tables, "model": UNetModel if arch == "unet" else MAVNetModel}

    @property
    def settings(self) -> SegmentationTrain:
        return self.table("train", SegmentationTrain)

    def load_data(self, data_root: str | os.PathLike[str] | None) -> Segments:
        d = self.config["data"]
        assert isinstance(d, SegmentationData)
        if d.source == "scenes":
            return Segments({s: make_scenes(getattr(d, s), split=s, seed=d.seed, size=d.size) for s in ("train", "valid", "test")}, CLASSES)
        images, masks = read_folder(d.source, classes=d.classes)
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(d.seed))
        n_test, n_valid = int(len(order) * d.test_fraction), int(len(order) * d.valid_fraction)
        if min(n_test, n_valid, len(order) - n_test - n_valid) < 1:
            raise ValueError(f"data.source {d.source!r}: {len(order)} images are too few for a train, valid and test split")
        cut = {"test": order[:n_test], "valid": order[n_test : n_test + n_valid], "train": order[n_test + n_valid :]}
        return Segments({s: (images[i], masks[i]) for s, i in cut.items()}, tuple(f"class {c}" for c in range(d.classes)))

    def data_summary(self, data: Segments) -> dict[str, Any]:
        images, masks = data.splits["train"]
        share = torch.bincount(masks.flatten(), minlength=len(data.classes)).double() / masks.numel()
        source = self.config["data"].source  # type: ignore[attr-defined]
        sizes = {s: len(x) for s, (x, _) in data.splits.items()}
        return {"source": source, "image": list(images.shape[1:]), **sizes, "train_class_share": dict(zip(data.classes, share.round(decimals=4).tolist()))}

    def build_model(self, data: Segments) -> nn.Module:
        m = self.config["model"]
        channels, classes = data.splits["train"][0].shape[1], len(data.classes)
        if isinstance(m, UNetModel):
            return UNet(build_config(UNetConfig, m, in_channels=channels, classes=classes))
        assert isinstance(m, MAVNetModel)
        return MAVNet(build_config(MAVNetConfig, m, in_channels=channels, classes=classes))

    def train_batches(self, data: Segments, epoch: int) -> Sequence[tuple[torch.Tensor, torch.Tensor]]:
        images, masks = data.splits["train"]
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch))
        return list(zip(images[order].split(self.settings.batch_size), masks[order].split(self.settings.batch_size)))

    def step(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], carry: Any) -> StepOutput:
        images, masks = batch
        return StepOutput(focal_loss(model(images), masks, self.config["loss"].gamma), len(images))  # type: ignore[attr-defined]

    def evaluate(self, model: nn.Module, data: Segments, split: str, *, epoch: int) -> dict[str, float] | None:
        images, masks = data.splits[split]
        device, k = next(model.parameters()).device, len(data.classes)
        confusion, loss = torch.zeros(k, k, dtype=torch.long), 0.0
        for x, y in zip(images.split(64), masks.split(64)):
            logits = model(x.to(device)).cpu()
            loss += focal_loss(logits, y, self.config["loss"].gamma).item() * len(x)  # type: ignore[attr-defined]
            confusion += confusion_matrix(logits.argmax(1), y, k)
        iou = (iou_per_class(confusion) * 100).tolist()
        values = {"loss": loss / len(images), "miou": float(torch.tensor(iou).nanmean()), "accuracy": 100 * confusion.trace().item() / confusion.sum().item()}
        return values | {f"iou_{c}": v for c, v in enumerate(iou) if c < len(CLASSES)}

    def record_extras(self, model: nn.Module, data: Segments) -> dict[str, Any]:
        """The first :data:`SHOWN` test images, their masks and this model's predictions (bytes as base64)."""
        images, masks = data.splits["test"]
        with torch.no_grad():
            pred = model(images[:SHOWN].to(next(model.parameters()).device)).argmax(1).cpu()
        return {"classes": list(data.classes), "shown": [encode(images[i], masks[i], pred[i]) for i in range(min(SHOWN, len(images)))]}

    @classmethod
    def report_figures(cls, records: Sequence[dict[str, Any]]) -> list[ReportFigure]:
        """Test images, their ground truth, and each recipe's predictions (its first seed's run: a row per recipe)."""
        first: dict[str, dict[str, Any]] = {}
        for x in records:
            if x.get("extras", {}).get("shown"):
                first.setdefault(x["recipe"]["name"], x)
        shown = list(first.values())
        if not shown:
            return []
        return [ReportFigure("predictions", "test images, ground truth and each recipe's predictions (first seed)", lambda fig: predictions_figure(fig, shown))]
