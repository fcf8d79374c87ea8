"""FedU (Zhuang et al., ICCV 2021): divergence-aware predictor update.

Clients upload their online network and predictor. At the start of a round a client takes
the global online network, keeps its own target network, and takes the global predictor
only if its divergence from the global model is below `predictor_threshold`; otherwise it
keeps its local predictor (local knowledge is worth more than a far-away global one).
"""

from __future__ import annotations

from pydantic import Field

from fedforge.algorithms.base import ClientContext, register
from fedforge.algorithms.fedssl import DivergenceParams, FedSSL


@register("fedu")
class FedU(FedSSL):
    """BYOL with a local target and a divergence-aware predictor update (DAPU)."""

    class Params(DivergenceParams):
        predictor_threshold: float = Field(
            0.4, ge=0, description="take the global predictor when divergence is below this (default 0.4)"
        )

    ssl_losses = ("byol", "simsiam", "moco")
    keeps = ("online", "predictor", "target")

    def merge_local(self, ctx: ClientContext) -> None:
        divergence = self.divergence(ctx)
        take_global = divergence < self.params.predictor_threshold
        if not take_global:
            self.restore_kept(ctx, "predictor")
        self.restore_kept(ctx, "target")
        ctx.metrics.update(divergence=divergence, global_predictor=float(take_global))
