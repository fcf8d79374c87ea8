"""FedDyn (Acar et al., ICLR 2021): dynamic regularization that makes local optima global ones.

Client k minimizes L_k(w) - <g_k, w> + (alpha/2) ||w - x||^2, where x is the server model and g_k
(its client state) tracks the gradient of L_k at its last local model: after training,
g_k <- g_k - alpha (w_k - x). The server keeps h, the p-weighted mean of every client's g_k
(p_k = n_k / n over ALL clients, which is why each upload carries a unit entry whose sample-weighted
sum is the cohort's n_S): h <- h - alpha (n_S / n) (mean_S w_k - x), and the new model is mean_S w_k - h / alpha. At a
fixed point sum_k p_k grad L_k = 0: the sample-weighted optimum, not FedAvg's drifted one.
h and the correction act on parameters only; buffers (BN statistics) take the mean.
"""

from __future__ import annotations

import torch
from pydantic import Field

from fedforge.algorithms.base import MODEL, ClientContext, ClientJob, ServerState, UploadSpec, register
from fedforge.algorithms.drift import LocalSGDMethod
from fedforge.plugins import StrictModel

STATE = "h"  # the server's mean gradient state
GRADIENT = "dyn_gradient"  # a client's g_k in its client state
SAMPLES = "samples"  # 1 in each upload, weighted by n_k: summed, the cohort's n_S


@register("feddyn")
class FedDyn(LocalSGDMethod):
    """FedAvg with FedDyn's linear and quadratic local penalty and the server's h state."""

    server_state = STATE

    class Params(StrictModel):
        alpha: float = Field(0.1, gt=0, description="regularization strength alpha (default 0.1, the paper's)")

    # -- server ----------------------------------------------------------------------------
    def upload_specs(self, state: ServerState) -> dict[str, UploadSpec]:
        return {**super().upload_specs(state), SAMPLES: UploadSpec((1,), max_norm=1.0, reduction="sum")}

    def apply(self, state: ServerState, reduced: dict[str, torch.Tensor], round_index: int) -> ServerState:
        if MODEL not in reduced:
            return state
        assert self.layout is not None
        n, alpha = self.layout.num_params, self.params.alpha
        mean = reduced[MODEL]
        share = float(reduced[SAMPLES]) / self.samples if SAMPLES in reduced else 0.0
        h = state.extras[STATE] - alpha * share * (mean[:n] - state.weights[:n])
        weights = mean.clone()
        weights[:n] -= h / alpha
        return ServerState(weights, {**state.extras, STATE: h})

    # -- client ----------------------------------------------------------------------------
    def after_backward(self, ctx: ClientContext, job: ClientJob) -> None:
        """grad L_k(w) - g_k + alpha (w - x)."""
        flat = ctx.flat
        flat.grad.add_(flat.params() - job.model[: flat.layout.num_params], alpha=self.params.alpha)
        if GRADIENT in ctx.state:
            flat.grad.sub_(ctx.state[GRADIENT])

    def upload_extras(self, ctx: ClientContext, job: ClientJob) -> dict[str, torch.Tensor]:
        """Stores g_k <- g_k - alpha (w_k - x); the unit entry, weighted by n_k, sums to the cohort's samples."""
        drift = ctx.flat.params() - job.model[: ctx.flat.layout.num_params]
        previous = ctx.state.get(GRADIENT, torch.zeros_like(drift))
        ctx.state[GRADIENT] = previous - self.params.alpha * drift
        return {SAMPLES: torch.ones(1, device=drift.device)}
