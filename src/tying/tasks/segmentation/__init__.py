"""Semantic segmentation with a shared-weight micro-network (``task = "segmentation"``): the task
(:class:`SegmentationTask`), its generated scenes and folder reader, the focal loss and IoU. The
models are :class:`tying.models.MAVNet` and its peer :class:`tying.models.UNet`."""

from tying.tasks.segmentation.folder import FolderError, read_folder
from tying.tasks.segmentation.metrics import confusion_matrix, focal_loss, iou_per_class, mean_iou
from tying.tasks.segmentation.scenes import CLASSES, draw_scene, make_scenes
from tying.tasks.segmentation.task import FocalLoss, MAVNetModel, SegmentationData, SegmentationTask, SegmentationTrain, Segments, UNetModel

__all__ = [
    "CLASSES",
    "FolderError",
    "FocalLoss",
    "MAVNetModel",
    "SegmentationData",
    "SegmentationTask",
    "SegmentationTrain",
    "Segments",
    "UNetModel",
    "confusion_matrix",
    "draw_scene",
    "focal_loss",
    "iou_per_class",
    "make_scenes",
    "mean_iou",
    "read_folder",
]
