"""Object detection: torchvision detectors trained on the sum of their loss dict, judged by COCO mAP.

Batches are index slices of the images and the packed box store (data/targets.py); the
detector gets the images as a list of float [0, 1] tensors and the targets as dicts
(`boxes`, `labels`), and normalizes and matches them itself. The headline is mAP@0.5
(`map50`); `map` (AP@[.5:.95]), `map75` and per-class AP@0.5 (`ap50_class_K`) are recorded too.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from fedforge.data.targets import BOXES
from fedforge.data.transforms import BatchTransform
from fedforge.tasks.base import TASKS, Headline
from fedforge.tasks.dense import DenseParams, DenseTask
from fedforge.tasks.dense_metrics import coco_map, torchmetrics_map


class DetectionParams(DenseParams):
    backend: Literal["torch", "torchmetrics"] = Field(
        "torch",
        description="mAP evaluator: torch (built in, equal to pycocotools) or torchmetrics (the detection extra)",
    )


@TASKS.register("detection")
class DetectionTask(DenseTask):
    """Boxes and classes per image; loss = the sum of the detector's losses; headline mAP@0.5."""

    name = "detection"
    Params = DetectionParams
    target = BOXES
    headline = Headline("map50", label="mAP@0.5")

    def train_loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: list[dict[str, torch.Tensor]],
        transform: BatchTransform,
        generator: torch.Generator,
    ) -> torch.Tensor:
        if self.augmenter is not None:
            x, targets, _ = self.augmenter(images, generator, boxes=labels)
        else:
            x, targets = images.float().div(255.0), labels
        losses = model(list(x.unbind(0)), targets)
        return sum(losses.values())

    @torch.inference_mode()
    def predict(self, model: nn.Module, images: torch.Tensor, transform: BatchTransform) -> list[Any]:
        out = model(list(images.float().div(255.0).unbind(0)))
        return [{k: v.detach() for k, v in o.items()} for o in out]

    def score(self, predictions: list[Any], targets: list[Any], num_classes: int) -> dict[str, float]:
        ours = coco_map(predictions, targets, num_classes)
        if self.params.backend == "torchmetrics":  # its numbers win; per-class AP@0.5 stays ours
            return {**ours, **torchmetrics_map(predictions, targets, num_classes)}
        return ours
