"""SCAFFOLD (Karimireddy et al., ICML 2020): local steps corrected by control variates.

Each client keeps a control variate c_i (its client state) and the server keeps c; every local
step follows g - c_i + c, so clients drift toward the global direction instead of their own
optimum. After K local steps at learning rate lr (K counts every step: epochs x batches), option II
sets c_i+ = c_i - c + (x - y_i) / (K lr) and the client uploads dc_i = c_i+ - c_i next to its model.
With momentum rho the model moves by lr * a * (mean gradient), a = step_norm(K, rho) (drift.py),
so K becomes a: dividing by K would make c_i 1/(1-rho) times too large and the run diverge.
The server moves x by the server learning rate toward the mean model and c by
sum_i p_i dc_i, p_i = n_i / n over ALL clients: with equal shards, |S|/N of the cohort's mean
change (the paper's 1/N sum). Sample weights p_i match the mean the model entry is reduced by, so
the fixed point is the sample-weighted optimum FedAvg aims at (with equal shards, the paper's).
"""

from __future__ import annotations

import torch
from pydantic import Field

from fedforge.algorithms.base import MODEL, ClientContext, ClientJob, ServerState, UploadSpec, register
from fedforge.algorithms.drift import LocalSGDMethod, step_norm, step_toward
from fedforge.plugins import StrictModel

CONTROL = "control"  # the server's c in a job; a client's change dc_i in its upload


@register("scaffold")
class Scaffold(LocalSGDMethod):
    """FedAvg with control variates that cancel client drift (option II)."""

    server_state = CONTROL

    class Params(StrictModel):
        server_lr: float = Field(1.0, gt=0, description="global step size eta_g on the mean model change (default 1)")

    # -- server ----------------------------------------------------------------------------
    def client_job(self, state: ServerState, client_id: int, round_index: int) -> ClientJob:
        job = super().client_job(state, client_id, round_index)
        job.payload[CONTROL] = state.extras[CONTROL]
        return job

    def upload_specs(self, state: ServerState) -> dict[str, UploadSpec]:
        control = UploadSpec(tuple(state.extras[CONTROL].shape), reduction="sum")
        return {**super().upload_specs(state), CONTROL: control}

    def apply(self, state: ServerState, reduced: dict[str, torch.Tensor], round_index: int) -> ServerState:
        if MODEL not in reduced:
            return state
        assert self.layout is not None
        weights = step_toward(state.weights, reduced[MODEL], self.params.server_lr, self.layout.num_params)
        control = state.extras[CONTROL]
        if CONTROL in reduced:
            control = control + reduced[CONTROL] / self.samples
        return ServerState(weights, {**state.extras, CONTROL: control})

    # -- client ----------------------------------------------------------------------------
    def after_backward(self, ctx: ClientContext, job: ClientJob) -> None:
        """g <- g - c_i + c."""
        ctx.flat.grad.add_(job.payload[CONTROL])
        if CONTROL in ctx.state:
            ctx.flat.grad.sub_(ctx.state[CONTROL])

    def upload_extras(self, ctx: ClientContext, job: ClientJob) -> dict[str, torch.Tensor]:
        """Stores c_i+ (option II) as the client's state and uploads dc_i = c_i+ - c_i."""
        c = job.payload[CONTROL]
        c_i = ctx.state.get(CONTROL, torch.zeros_like(c))
        if ctx.steps == 0:  # no local data: nothing learned about this client's gradient
            return {CONTROL: torch.zeros_like(c)}
        x = job.model[: ctx.flat.layout.num_params]
        c_new = c_i - c + (x - ctx.flat.params()) / (step_norm(ctx.steps, self.train.momentum) * self.train.lr)
        ctx.state[CONTROL] = c_new
        return {CONTROL: c_new - c_i}
