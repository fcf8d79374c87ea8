"""FedProx (Li et al., 2020): FedAvg plus a proximal term (mu/2)||w - w_global||^2 locally.

The term's gradient, mu (w - w_global), is added to the flat gradient in one fused op.
"""

from __future__ import annotations

from pydantic import Field

from fedforge.algorithms.base import ClientContext, ClientJob, register
from fedforge.algorithms.fedavg import FedAvg
from fedforge.plugins import StrictModel


@register("fedprox")
class FedProx(FedAvg):
    """FedAvg with a proximal term that keeps local models near the global one."""

    class Params(StrictModel):
        mu: float = Field(0.01, ge=0, description="proximal coefficient (default 0.01)")

    def after_backward(self, ctx: ClientContext, job: ClientJob) -> None:
        num_params = ctx.flat.layout.num_params
        ctx.flat.grad.add_(ctx.flat.params() - job.model[:num_params], alpha=self.params.mu)
