"""FedEWC: elastic weight consolidation (Kirkpatrick et al., 2017) on a federated task stream.

In the last round of each task, every client also estimates the diagonal Fisher information
of its trained model on that task's data (it will not see that data again) and uploads it as the
`fisher` entry of its result; the round reduces it like any entry (a sample-weighted mean, streamed
where it is produced), and the server scales the mean to a maximum of 1 and adds it to the
Fisher of earlier tasks (online EWC, Schwarz et al., 2018). In later tasks each client's loss gains
(lambda/2) * sum_i F_i (w_i - w*_i)^2, with w* the global model at the end of the previous
task, which keeps the weights that mattered for old classes where they were.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from fedforge.algorithms.base import ClientContext, ClientJob, ServerState, UploadSpec, register
from fedforge.algorithms.continual import Finetune, client_plan
from fedforge.plugins import StrictModel

FISHER = "fisher"


@register("fedewc")
class FedEWC(Finetune):
    """Finetune plus an EWC penalty toward the previous task's global model, weighted by the Fisher."""

    sends_teacher: ClassVar[bool] = True

    class Params(StrictModel):
        ewc_lambda: float = Field(
            50.0, ge=0, description="strength of the EWC penalty on the Fisher scaled to max 1 (default 50)"
        )

    # -- server ------------------------------------------------------------------------------
    def upload_specs(self, state: ServerState) -> dict[str, UploadSpec]:
        assert self.layout is not None
        # Validated like the model (shape, dtype, finite); only the last round of a task carries it.
        return {**super().upload_specs(state), FISHER: UploadSpec((self.layout.num_params,), required=False)}

    def apply(self, state: ServerState, reduced: dict[str, torch.Tensor], round_index: int) -> ServerState:
        new = super().apply(state, reduced, round_index)
        if FISHER in reduced:
            task_fisher = reduced[FISHER]
            # Importances in [0, 1]: a model that fits its task well has a tiny empirical Fisher
            # (mean ~1e-8 on digits), which would make ewc_lambda depend on the dataset.
            task_fisher = task_fisher / task_fisher.max().clamp_min(1e-30)
            accumulated = task_fisher + new.extras.get(FISHER, 0.0)
            new = ServerState(new.weights, {**new.extras, FISHER: accumulated})
        return new

    def job_entries(self, state: ServerState) -> dict[str, torch.Tensor]:
        entries = super().job_entries(state)
        if FISHER in state.extras and "teacher" in entries:
            entries[FISHER] = state.extras[FISHER]
        return entries

    # -- client ------------------------------------------------------------------------------
    def after_backward(self, ctx: ClientContext, job: ClientJob) -> None:
        """Adds the penalty's gradient, lambda * F * (w - w*), to the flat gradient."""
        fisher = job.payload.get(FISHER)
        if fisher is None:
            return
        anchor = job.payload["teacher"][: ctx.flat.layout.num_params]
        ctx.flat.grad.addcmul_(fisher, ctx.flat.params() - anchor, value=self.params.ewc_lambda)

    def upload_extras(self, ctx: ClientContext, job: ClientJob) -> dict[str, torch.Tensor]:
        return {FISHER: self.fisher(ctx)} if client_plan(ctx).hands_over(job.round) else {}

    def fisher(self, ctx: ClientContext) -> torch.Tensor:
        """The diagonal empirical Fisher of the trained local model on this task's data: the mean
        squared gradient of the loss, over mini-batches (no update is made)."""
        model, flat, task = ctx.model, ctx.flat, ctx.task
        total = torch.zeros_like(flat.grad)
        batches = 0
        model.eval()  # the statistics of the model as trained, without moving its BN buffers
        for images, labels in ctx.batches(1):
            flat.zero_grad()
            task.train_loss(model, images, labels, ctx.data.transform, None).backward()  # type: ignore[arg-type]
            total.addcmul_(flat.grad, flat.grad)
            batches += 1
        model.train()
        flat.zero_grad()
        return total / max(batches, 1)
