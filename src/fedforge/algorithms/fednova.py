"""FedNova (Wang et al., NeurIPS 2020): normalized averaging for clients that take different step counts.

FedAvg weights client i's change x - y_i, which grows with its local step count tau_i, so clients
that run more steps (more data, more epochs) pull the model toward their own optimum: it minimizes
a step-weighted surrogate, not the objective. FedNova divides each change by a_i, the L1 norm of
the client's step weights (tau_i for plain SGD; with momentum rho,
a_i = [tau_i - rho (1 - rho^tau_i) / (1 - rho)] / (1 - rho)), and rescales the mean by
tau_eff = sum_i p_i a_i: x <- x - tau_eff sum_i p_i (x - y_i) / a_i.

On the wire the MODEL entry is the one-normalized-step model x - (x - y_i) / a_i (buffers: y_i),
so validation and any aggregator see a model near x; `tau` carries a_i, whose p-weighted mean is
tau_eff.
"""

from __future__ import annotations

import torch

from fedforge.algorithms.base import MODEL, ClientContext, ClientJob, ServerState, UploadSpec, register
from fedforge.algorithms.drift import LocalSGDMethod, step_norm, step_toward

TAU = "tau"  # a client's a_i; its sample-weighted mean is tau_eff


@register("fednova")
class FedNova(LocalSGDMethod):
    """FedAvg with each client's change normalized by its step count (momentum-aware a_i)."""

    def upload_specs(self, state: ServerState) -> dict[str, UploadSpec]:
        return {**super().upload_specs(state), TAU: UploadSpec((1,))}

    def apply(self, state: ServerState, reduced: dict[str, torch.Tensor], round_index: int) -> ServerState:
        if MODEL not in reduced:
            return state
        assert self.layout is not None
        tau_eff = reduced[TAU].to(state.weights.device).squeeze() if TAU in reduced else 1.0
        weights = step_toward(state.weights, reduced[MODEL], tau_eff, self.layout.num_params)
        return ServerState(weights, state.extras)

    def upload(self, ctx: ClientContext, job: ClientJob) -> torch.Tensor:
        """x - (x - y_i) / a_i on the parameters, y_i on the buffers."""
        y = ctx.flat.read()
        a_i = step_norm(ctx.steps, self.train.momentum)
        if a_i == 0:
            return y  # no step taken: y is x
        x = job.model
        n = ctx.flat.layout.num_params
        y[:n] = x[:n] - (x[:n] - y[:n]) / a_i
        return y

    def upload_extras(self, ctx: ClientContext, job: ClientJob) -> dict[str, torch.Tensor]:
        a_i = step_norm(ctx.steps, self.train.momentum)
        return {TAU: torch.tensor([a_i], dtype=torch.float32, device=job.model.device)}
