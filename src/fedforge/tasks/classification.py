"""Image classification: cross-entropy training loss; per-sample correctness for evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedforge.data.transforms import BatchTransform
from fedforge.tasks.base import TASKS, Task


@dataclass
class Outcomes:
    """Per-sample results, so callers can reduce them globally or per client without re-running."""

    correct: torch.Tensor  # bool [N]
    loss: torch.Tensor  # float [N]

    def accuracy(self) -> float:
        return float(self.correct.float().mean()) if len(self.correct) else float("nan")

    def mean_loss(self) -> float:
        return float(self.loss.mean()) if len(self.loss) else float("nan")


@TASKS.register("classification")
class ClassificationTask(Task):
    """Supervised classification with cross-entropy (the default task)."""

    name = "classification"

    def train_loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: BatchTransform,
        generator: torch.Generator,
    ) -> torch.Tensor:
        return F.cross_entropy(model(transform(images, generator)), labels)

    @torch.inference_mode()
    def outcomes(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: BatchTransform,
        batch_size: int,
    ) -> Outcomes:
        """Evaluate `model` (in eval mode) on uint8 `images` in batches."""
        was_training = model.training
        model.eval()
        correct, losses = [], []
        for start in range(0, len(images), batch_size):
            logits = model(transform(images[start : start + batch_size]))
            target = labels[start : start + batch_size]
            correct.append(logits.argmax(dim=1) == target)
            losses.append(F.cross_entropy(logits, target, reduction="none"))
        model.train(was_training)
        if not correct:
            return Outcomes(torch.empty(0, dtype=torch.bool), torch.empty(0))
        return Outcomes(torch.cat(correct).cpu(), torch.cat(losses).float().cpu())
