"""FedEMA (Zhuang et al., ICLR 2022): divergence-aware EMA of the global model into the local one.

A client that has trained before starts its round with
    local <- mu * local + (1 - mu) * global,   mu = min(lambda * divergence, 1)
for the online network and the predictor; its target network stays local. lambda is set
once per client, the first time a divergence is available, to tau / divergence, so mu
starts at tau (0.7 in the paper) and then follows the divergence: a client far from the
global model keeps more of its own knowledge.
"""

from __future__ import annotations

import torch
from pydantic import Field

from fedforge.algorithms.base import ClientContext, register
from fedforge.algorithms.fedssl import DivergenceParams, FedSSL


def ema_decay(scale: float, divergence: float) -> float:
    """mu = min(lambda * divergence, 1)."""
    return min(scale * divergence, 1.0)


def ema_merge(local: torch.Tensor, global_: torch.Tensor, mu: float) -> torch.Tensor:
    """mu * local + (1 - mu) * global."""
    return torch.lerp(global_, local.to(global_.device), mu)


@register("fedema")
class FedEMA(FedSSL):
    """BYOL whose local online network and predictor are EMAs of the global ones, decay set by divergence."""

    class Params(DivergenceParams):
        tau: float = Field(0.7, gt=0, le=1, description="the decay mu at a client's first update (default 0.7)")

    ssl_losses = ("byol", "simsiam", "moco", "simclr")
    keeps = ("online", "predictor", "target")

    def merge_local(self, ctx: ClientContext) -> None:
        divergence = self.divergence(ctx)
        scale = ctx.state.get("lambda")
        if scale is None and divergence > 0:
            scale = ctx.state["lambda"] = self.params.tau / divergence
        mu = ema_decay(scale, divergence) if scale is not None else 0.0
        for name in ("online", "predictor"):
            if name in ctx.role.index:
                self.set_part(ctx, name, ema_merge(ctx.state[name], self.part(ctx, name), mu))
        self.restore_kept(ctx, "target")
        ctx.metrics.update(divergence=divergence, ema_decay=mu)
