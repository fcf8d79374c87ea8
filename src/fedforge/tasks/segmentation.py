"""Semantic segmentation: per-pixel cross-entropy (IGNORE pixels skipped), judged by mIoU.

Batches are index slices of the images and the mask store; images are normalized with the
training set's statistics after augmentation. The headline is `miou` from a confusion matrix
streamed over the evaluated pixels; `pixel_accuracy` and `iou_class_K` are recorded too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fedforge.data.targets import IGNORE, MASKS
from fedforge.data.transforms import BatchTransform
from fedforge.tasks.base import TASKS, Headline
from fedforge.tasks.dense import DenseParams, DenseTask
from fedforge.tasks.dense_metrics import Confusion


def logits_of(output: Any) -> torch.Tensor:
    """torchvision segmenters return {"out": logits, ...}; plain ones the logits."""
    return output["out"] if isinstance(output, dict) else output


class SegmentationParams(DenseParams):
    ignore_index: int = Field(IGNORE, ge=0, le=255, description=f"mask value no loss or metric counts ({IGNORE})")


@TASKS.register("segmentation")
class SegmentationTask(DenseTask):
    """A class per pixel; cross-entropy with an ignore index; headline mIoU."""

    name = "segmentation"
    Params = SegmentationParams
    target = MASKS
    headline = Headline("miou", label="mIoU")

    def train_loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: BatchTransform,
        generator: torch.Generator,
    ) -> torch.Tensor:
        if self.augmenter is not None:
            x, _, masks = self.augmenter(images, generator, masks=labels)
        else:
            x, masks = images.float().div(255.0), labels
        assert masks is not None
        logits = logits_of(model(transform.from_unit(x)))
        return F.cross_entropy(logits, masks.long(), ignore_index=self.params.ignore_index)

    @torch.inference_mode()
    def predict(self, model: nn.Module, images: torch.Tensor, transform: BatchTransform) -> list[Any]:
        logits = logits_of(model(transform(images)))
        return list(logits.argmax(1).to(torch.uint8).unbind(0))

    def score(self, predictions: list[Any], targets: list[Any], num_classes: int) -> dict[str, float]:
        confusion = Confusion(num_classes, ignore=self.params.ignore_index)
        for predicted, truth in zip(predictions, targets, strict=True):
            confusion.add(predicted, truth)
        return confusion.metrics()
