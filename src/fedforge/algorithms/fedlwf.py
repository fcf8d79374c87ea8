"""FedLwF: Learning without Forgetting (Li & Hoiem, 2017) on each client of a task stream.

A client learns its new classes with cross-entropy over their columns and keeps the old
classes' outputs close to the previous task's global model (the teacher) on its current
data. TARGET reuses this loss and changes only what is distilled on (`distillation_inputs`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch
from pydantic import Field

from fedforge.algorithms.base import ClientContext, ClientJob, register
from fedforge.algorithms.continual import Finetune, TaskView, distillation, frozen_logits, new_task_cross_entropy
from fedforge.plugins import StrictModel


@register("fedlwf")
class FedLwF(Finetune):
    """Cross-entropy on the new classes + distillation of the old classes from the previous global model."""

    sends_teacher: ClassVar[bool] = True

    class Params(StrictModel):
        kd_weight: float = Field(
            3.0, ge=0, description="weight of the distillation term (default 3, as in TARGET's LwF)"
        )
        temperature: float = Field(2.0, gt=0, description="distillation temperature (default 2)")

    def batch_loss(self, ctx: ClientContext, job: ClientJob) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        view = TaskView.of(ctx)
        teacher = job.payload.get("teacher")
        model, transform = ctx.model, ctx.data.transform
        distil = teacher is not None and len(view.old) > 0

        def loss(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            inputs = transform(images, ctx.generator)
            logits = model(inputs)
            total = new_task_cross_entropy(logits, labels, view)
            if distil:
                kd_inputs, kd_logits = self.distillation_inputs(ctx, job, inputs, logits)
                target = frozen_logits(ctx, teacher, kd_inputs)
                old = view.old
                total = total + self.params.kd_weight * distillation(
                    kd_logits[:, old], target[:, old], self.params.temperature
                )
            return total

        return loss

    def distillation_inputs(
        self, ctx: ClientContext, job: ClientJob, inputs: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the old classes are distilled on, and the local model's outputs there (LwF: the current batch)."""
        return inputs, logits
