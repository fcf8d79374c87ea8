"""What detection and segmentation share: seeded dense augmentation and per-image predictions.

A dense task is judged by `DenseEvaluator` (engine/evaluation.py): the model predicts each test
image once (`predict`), and `score` turns any subset of those predictions (the global test set,
one domain, one client) into named metrics, so per-domain and per-client numbers cost no
second pass.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, model_validator
from torch import nn

from fedforge.data.dense_augment import DenseAugment
from fedforge.data.transforms import BatchTransform
from fedforge.plugins import StrictModel
from fedforge.tasks.base import Task


class DenseParams(StrictModel):
    augment: bool = Field(True, description="flip, scale-jitter crop and colour while training (default true)")
    flip: bool = Field(True, description="random horizontal flip, boxes and masks moved with it (default true)")
    scale_min: float = Field(0.75, gt=0, description="smallest scale-jitter factor (default 0.75)")
    scale_max: float = Field(1.25, gt=0, description="largest scale-jitter factor (default 1.25)")
    colour: float = Field(0.3, ge=0, le=1, description="brightness and contrast jitter, +-this share (default 0.3)")

    @model_validator(mode="after")
    def _scale_range(self) -> DenseParams:
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min={self.scale_min} exceeds scale_max={self.scale_max}")
        return self


class DenseTask(Task):
    """Base of detection and segmentation (not registered itself)."""

    Params: ClassVar[type[StrictModel]] = DenseParams
    evaluation = "dense"

    def __init__(self, params: DenseParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        self.augmenter = DenseAugment(p.flip, (p.scale_min, p.scale_max), p.colour, p.colour) if p.augment else None

    def predict(self, model: nn.Module, images: torch.Tensor, transform: BatchTransform) -> list[Any]:
        """One prediction per image of a uint8 batch, the model in eval mode."""
        raise NotImplementedError

    def score(self, predictions: list[Any], targets: list[Any], num_classes: int) -> dict[str, float]:
        """Named metrics (the headline among them) of predictions against their targets."""
        raise NotImplementedError

    def split_targets(self, targets: Any) -> list[Any]:
        """A batch's targets as one entry per image (boxes come so already)."""
        return list(targets)
