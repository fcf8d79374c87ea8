"""FedAvg (McMahan et al., 2017): local SGD, then a sample-weighted average of the models.

Its hooks (`receive`, `prepare`, `batch_loss`, `after_backward`, `finish`, `upload`) are how FedProx, FedBN and later
methods change one step without copying the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fedforge.algorithms.base import MODEL, Algorithm, ClientContext, ClientJob, ClientResult, ServerState, register


@register("fedavg")
class FedAvg(Algorithm):
    """Local SGD on each client, then the sample-weighted average of their models."""

    any_supervised_task = True

    def apply_mean(self, state: ServerState, mean: torch.Tensor, round_index: int) -> ServerState:
        return ServerState(weights=mean, extras=state.extras)

    def local_update(self, ctx: ClientContext, job: ClientJob) -> ClientResult:
        self.receive(ctx, job)
        self.prepare(ctx, job)
        loss = ctx.run_sgd(self.train.local_epochs, lambda: self.after_backward(ctx, job), self.batch_loss(ctx, job))
        self.finish(ctx, job)
        metrics = {"train_loss": loss, **ctx.metrics}
        update = {MODEL: self.upload(ctx, job), **self.upload_extras(ctx, job)}
        return ClientResult(job.client_id, update, ctx.num_samples, metrics)

    # hooks
    def receive(self, ctx: ClientContext, job: ClientJob) -> None:
        """Put the server's payload into the client's model (here: the whole global model)."""
        ctx.flat.load(job.model)

    def upload(self, ctx: ClientContext, job: ClientJob) -> torch.Tensor:
        """What the client sends back (here: its whole model)."""
        return ctx.flat.read()

    def upload_extras(self, ctx: ClientContext, job: ClientJob) -> dict[str, torch.Tensor]:
        """Named tensors sent back besides the model, each reduced by its weighted mean (here: none);
        declare them in `upload_specs`."""
        return {}

    def prepare(self, ctx: ClientContext, job: ClientJob) -> None:
        """Runs after the global weights are loaded, before training."""

    def batch_loss(
        self, ctx: ClientContext, job: ClientJob
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
        """The loss of one mini-batch `(images, labels)`; None keeps the task's own (here: None)."""
        return None

    def after_backward(self, ctx: ClientContext, job: ClientJob) -> None:
        """Runs after each backward pass; may edit `ctx.flat.grad` in place."""

    def finish(self, ctx: ClientContext, job: ClientJob) -> None:
        """Runs after training, before the weights are read back."""
