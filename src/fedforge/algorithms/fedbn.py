"""FedBN (Li et al., 2021): FedAvg where normalization layers stay local to each client.

Each client keeps its own norm-layer weights and statistics in its client state and
restores them after loading the global weights; evaluation is personalized with them.
The server still averages the norm layers, but only to give a global-model view for
the global test accuracy; clients that have trained never load them.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from fedforge.algorithms.base import ClientContext, ClientJob, ServerState, register
from fedforge.algorithms.fedavg import FedAvg
from fedforge.data.federated import FederatedDataset
from fedforge.engine.weights import FlatModel
from fedforge.plugins import StrictModel

NORM_TYPES: dict[str, tuple[type[nn.Module], ...]] = {
    "batch": (nn.modules.batchnorm._BatchNorm,),
    "instance": (nn.modules.instancenorm._InstanceNorm,),
    "group": (nn.GroupNorm,),
    "layer": (nn.LayerNorm,),
}


@register("fedbn")
class FedBN(FedAvg):
    """FedAvg that keeps normalization layers local; evaluation is personalized."""

    class Params(StrictModel):
        norm_types: list[Literal["batch", "instance", "group", "layer"]] = Field(
            default_factory=lambda: ["batch"], description="normalization layers kept local (default [batch])"
        )

    def client_role(self, flat: FlatModel, data: FederatedDataset) -> torch.Tensor:
        """The positions of the local normalization layers in the flat vector."""
        kinds = tuple(t for name in self.params.norm_types for t in NORM_TYPES[name])
        prefixes = tuple(f"{name}." for name, m in flat.model.named_modules() if isinstance(m, kinds))
        return flat.layout.indices(lambda key: key.startswith(prefixes))

    def init_server(self, flat: FlatModel, data: FederatedDataset) -> ServerState:
        self.local_index = self.client_role(flat, data)  # for personalized evaluation on the server
        return super().init_server(flat, data)

    def prepare(self, ctx: ClientContext, job: ClientJob) -> None:
        if "local" in ctx.state:
            ctx.flat.vector[ctx.role.to(ctx.flat.vector.device)] = ctx.state["local"]

    def finish(self, ctx: ClientContext, job: ClientJob) -> None:
        ctx.state["local"] = ctx.flat.vector[ctx.role.to(ctx.flat.vector.device)].clone()

    def personalized_weights(self, state: ServerState, client_state: dict[str, Any]) -> torch.Tensor | None:
        if "local" not in client_state:
            return None
        weights = state.weights.clone()
        weights[self.local_index.to(weights.device)] = client_state["local"].to(weights.device)
        return weights
