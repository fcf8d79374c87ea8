"""MOON (Li, He & Song, CVPR 2021): model-contrastive federated learning.

Each local step adds mu * l_con to the cross-entropy, where l_con pulls the local representation
z of a batch toward the global model's z_glob and away from the client's previous local model's
z_prev: l_con = -log(e^{sim(z, z_glob)/tau} / (e^{sim(z, z_glob)/tau} + e^{sim(z, z_prev)/tau}))
with cosine similarity. The representation is what the classifier head receives (models/split.py):
for the small cnn its 128-wide hidden layer, which plays the paper's projection head. The previous
local model is the client's state; a client that never trained uses the global model (as the
paper's code does in round one, when l_con is the constant log 2). The two reference passes run on
the client's one network with the other weights swapped in (no model copies).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pydantic import Field

from fedforge.algorithms.base import ClientContext, ClientJob, register
from fedforge.algorithms.fedavg import FedAvg
from fedforge.data.federated import FederatedDataset
from fedforge.engine.weights import FlatModel
from fedforge.models.split import FeaturesHead, frozen
from fedforge.plugins import StrictModel

PREVIOUS = "moon_previous"  # the client's last local model (client state)


def model_contrastive_loss(
    z: torch.Tensor, z_global: torch.Tensor, z_previous: torch.Tensor, temperature: float
) -> torch.Tensor:
    """l_con over a batch: cross-entropy with the global model's representation as the positive."""
    positive = F.cosine_similarity(z, z_global, dim=1)
    negative = F.cosine_similarity(z, z_previous, dim=1)
    logits = torch.stack([positive, negative], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(z), dtype=torch.long, device=z.device))


@register("moon")
class Moon(FedAvg):
    """FedAvg with the model-contrastive term on the representation (classification)."""

    any_supervised_task = False  # the term is defined on a classifier's representation

    class Params(StrictModel):
        mu: float = Field(5.0, ge=0, description="weight of the model-contrastive loss (default 5, the paper's)")
        temperature: float = Field(0.5, gt=0, description="temperature tau of the contrastive loss (default 0.5)")

    def client_role(self, flat: FlatModel, data: FederatedDataset) -> FeaturesHead:
        return FeaturesHead.of(flat.model)

    def batch_loss(self, ctx: ClientContext, job: ClientJob) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        split: FeaturesHead = ctx.role
        model, transform, layout = ctx.model, ctx.data.transform, ctx.flat.layout
        global_weights = layout.views(job.model)
        previous_weights = layout.views(ctx.state.get(PREVIOUS, job.model).to(job.model.device))
        mu, temperature = self.params.mu, self.params.temperature

        def loss(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            inputs = transform(images, ctx.generator)
            z, logits = split.forward(model, inputs)
            with frozen(model):
                z_global = split.forward(model, inputs, global_weights)[0]
                z_previous = split.forward(model, inputs, previous_weights)[0]
            contrastive = model_contrastive_loss(z, z_global, z_previous, temperature)
            return F.cross_entropy(logits, labels) + mu * contrastive

        return loss

    def finish(self, ctx: ClientContext, job: ClientJob) -> None:
        ctx.state[PREVIOUS] = ctx.flat.read()
