"""FedMef (Huang, Zhuang, Chen & Lyu, CVPR 2024): memory-efficient federated dynamic pruning.

The model is sparse from round 0 and stays at the target density: ERK densities per layer, a seeded
random mask (algorithms/masks.py). Clients train only the active weights and send only them (a part
of MODEL at the mask's positions); the server sends the active values plus the mask as a bit set.

Every `adjust_every` rounds until `adjust_until` of the run, the server adjusts the mask: it prunes
the share alpha_t = alpha / 2 * (1 + cos(pi * t / T_end)) of each layer's active weights with the
smallest magnitude and grows as many inactive ones with the largest gradient magnitude (the mean of
the dense gradients the clients upload in that round), initialized at 0. Density never changes.

- **BaE, budget-aware extrusion**: the weights to be pruned are announced `extrusion_rounds` rounds
  ahead (the budget); in those rounds clients add `extrusion_strength * w` to their gradients, which
  drives them to 0 while the others absorb what they carried, so pruning them costs little.
- **SAP, scaled activation pruning**: the activations autograd saves for backward are stored sparse,
  keeping the `activation_keep` share of largest magnitude, scaled to the same L1 norm
  (algorithms/activation_pruning.py): what conv, linear, ReLU and pooling layers save, not the loss.
  The paper pairs it with NSConv (standardized sparse convolutions) to centre activations; here it
  runs on the plain ReLU network.

Without `extrusion` and `activation_keep` this is the prune-and-grow baseline (FedDST / PruneFL
style); with `adjust_every: 0`, static sparse training; at `density: 1`, dense FedAvg. Each client
reports the bytes it held: `activation_bytes` (measured with saved_tensors_hooks, the largest step)
and `model_bytes` (weights, gradients and momentum at their sparse size: values plus a bit set).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field

from fedforge.algorithms.activation_pruning import SavedActivations
from fedforge.algorithms.base import MODEL, Algorithm, ClientContext, ClientJob, ClientResult, ServerState, register
from fedforge.algorithms.masks import (
    PrunableLayer,
    erk_densities,
    lowest_active,
    pack_bits,
    prunable_layers,
    prunable_positions,
    prune_and_grow,
    random_mask,
    unpack_bits,
)
from fedforge.data.federated import FederatedDataset
from fedforge.engine.weights import FlatModel, Layout
from fedforge.plugins import StrictModel
from fedforge.records import UploadSpec
from fedforge.seeding import MASKS, torch_generator

MASK, MARKED, GROW = "mask", "mask/extrude", "mask/grow"  # job entries: bit sets, and the ask for a gradient
PART, GRADIENT = "model/sparse", "gradient"  # upload entries: the active weights, the dense gradient


@dataclass
class SparseRole:
    """The prunable weights of the model's layout, as client and server both derive them."""

    layers: list[PrunableLayer]
    positions: torch.Tensor  # flat positions of the prunable weights, in mask order
    elements: torch.Tensor  # flat positions of every tensor element (the layout without its gaps)
    size: int  # flat vector length

    @classmethod
    def of(cls, layout: Layout) -> SparseRole:
        layers = prunable_layers(layout)
        return cls(layers, prunable_positions(layers), layout.indices(lambda _: True), layout.size)

    def active(self, mask: torch.Tensor) -> torch.Tensor:
        """Flat positions of the elements a mask leaves trainable (every non-prunable one too)."""
        keep = torch.zeros(self.size, dtype=torch.bool, device=mask.device)
        keep[self.elements.to(mask.device)] = True
        keep[self.positions.to(mask.device)[~mask]] = False
        return torch.nonzero(keep).squeeze(1)


class FedMefParams(StrictModel):
    density: float = Field(0.2, gt=0, le=1, description="share of conv/linear weights kept active (default 0.2)")
    adjust_every: int = Field(5, ge=0, description="rounds between mask adjustments; 0: a static mask (default 5)")
    adjust_until: float = Field(0.5, gt=0, le=1, description="share of the rounds that adjust masks (default 0.5)")
    prune_share: float = Field(
        0.2, gt=0, lt=1, description="alpha: share of active weights replaced at first (default 0.2)"
    )
    extrusion: bool = Field(
        True, description="BaE: announce the weights to prune and drive them to 0 first (default true)"
    )
    extrusion_rounds: int = Field(
        1, ge=1, description="BaE's budget: rounds of extrusion before each adjustment (default 1)"
    )
    extrusion_strength: float = Field(
        0.5, gt=0, description="BaE: the pull toward 0 added to their gradient (default 0.5)"
    )
    activation_keep: float | None = Field(
        0.3, gt=0, le=1, description="SAP: share of each saved activation kept (default 0.3; null: off)"
    )
    grow_batches: int = Field(
        2, ge=1, description="mini-batches of the dense gradient a client sends for growing (default 2)"
    )


@register("fedmef")
class FedMef(Algorithm):
    """Sparse training at a fixed density with server-side prune-and-grow, BaE and SAP."""

    Params = FedMefParams
    uploads_parts = True

    def client_role(self, flat: FlatModel, data: FederatedDataset) -> SparseRole:
        return SparseRole.of(flat.layout)

    # -- schedule --------------------------------------------------------------------------
    @property
    def last_adjustment(self) -> float:
        return self.params.adjust_until * self.train.rounds

    def adjusts(self, round_index: int) -> bool:
        every = self.params.adjust_every
        return every > 0 and (round_index + 1) % every == 0 and round_index + 1 < self.last_adjustment

    def prune_share(self, round_index: int) -> float:
        """alpha_t: the cosine-decayed share of active weights an adjustment replaces."""
        return self.params.prune_share / 2 * (1 + math.cos(math.pi * round_index / self.last_adjustment))

    def extrudes(self, round_index: int) -> int | None:
        """The adjustment round whose marked weights round `round_index` extrudes, or None."""
        if not self.params.extrusion:
            return None
        for ahead in range(self.params.extrusion_rounds):
            if self.adjusts(round_index + ahead):
                return round_index + ahead
        return None

    # -- server side ------------------------------------------------------------------------
    def init_server(self, flat: FlatModel, data: FederatedDataset) -> ServerState:
        state = super().init_server(flat, data)
        self.role = self.client_role(flat, data)
        self._active: tuple[torch.Tensor, torch.Tensor] | None = None  # (mask, its active positions)
        densities = erk_densities(self.role.layers, self.params.density)
        mask = random_mask(self.role.layers, densities, torch_generator(self.seed, MASKS)).to(state.weights.device)
        prunable = self.role.positions.to(mask.device)
        fan_in = [torch.full((layer.numel,), d**-0.5) for layer, d in zip(self.role.layers, densities, strict=True)]
        state.weights[prunable] *= torch.cat(fan_in).to(state.weights.device)  # RigL's scaled init
        state.weights[prunable[~mask]] = 0.0
        return ServerState(state.weights, {"mask": mask, "marked": self.announce(state.weights, mask, None, 0)})

    def announce(
        self, weights: torch.Tensor, mask: torch.Tensor, marked: torch.Tensor | None, round_index: int
    ) -> torch.Tensor | None:
        """The weights marked for pruning that round `round_index` extrudes (BaE): announced in the
        first round of an extrusion, from the global weights then, and kept until the adjustment."""
        target = self.extrudes(round_index)
        if target is None or marked is not None:
            return marked
        prunable = weights[self.role.positions.to(mask.device)]
        return lowest_active(mask, prunable, self.role.layers, self.prune_share(target))

    def active_positions(self, state: ServerState) -> torch.Tensor:
        """Flat positions of the active weights; computed once per mask, not once per client."""
        mask = state.extras["mask"]
        if self._active is None or self._active[0] is not mask:
            self._active = (mask, self.role.active(mask))
        return self._active[1]

    def client_job(self, state: ServerState, client_id: int, round_index: int) -> ClientJob:
        mask, marked = state.extras["mask"], state.extras["marked"]
        payload = {MODEL: state.weights[self.active_positions(state)], MASK: pack_bits(mask)}
        if marked is not None and self.extrudes(round_index) is not None:
            payload[MARKED] = pack_bits(marked)
        if self.adjusts(round_index):
            payload[GROW] = torch.ones(1)
        return ClientJob(client_id, round_index, payload)

    def upload_specs(self, state: ServerState) -> dict[str, UploadSpec]:
        active = self.active_positions(state)
        reference = state.weights[active]
        specs = {
            MODEL: dataclasses.replace(UploadSpec.of(state.weights), required=False),
            PART: UploadSpec((len(active),), reference, positions=active,
                             reference_norm=float(torch.linalg.vector_norm(reference))),
            GRADIENT: UploadSpec((len(self.role.positions),), required=False),
        }  # fmt: skip
        return specs

    def apply(self, state: ServerState, reduced: dict[str, torch.Tensor], round_index: int) -> ServerState:
        """The mean of the active weights; in an adjustment round, prune and grow; then announce what
        the next round extrudes."""
        weights = reduced.get(MODEL, state.weights)
        mask, marked = state.extras["mask"], state.extras["marked"]
        if self.adjusts(round_index) and GRADIENT in reduced:
            prunable = self.role.positions.to(weights.device)
            if marked is None:  # no extrusion: magnitude pruning on the aggregated weights
                marked = lowest_active(mask, weights[prunable], self.role.layers, self.prune_share(round_index))
            mask = prune_and_grow(mask, marked, reduced[GRADIENT], self.role.layers)
            weights = weights.clone()
            weights[prunable[~mask]] = 0.0  # the pruned leave; the grown start at 0 (they were)
            marked = None
        marked = self.announce(weights, mask, marked, round_index + 1)
        return ServerState(weights, {**state.extras, "mask": mask, "marked": marked})

    def summary(self, state: ServerState) -> dict[str, Any]:
        mask = state.extras["mask"]
        return {"density": float(mask.float().mean())}

    # -- client side ------------------------------------------------------------------------
    def local_update(self, ctx: ClientContext, job: ClientJob) -> ClientResult:
        role: SparseRole = ctx.role
        device = ctx.flat.vector.device
        mask = unpack_bits(job.payload[MASK], len(role.positions)).to(device)
        prunable = role.positions.to(device)
        inactive = prunable[~mask]
        active = role.active(mask)
        ctx.flat.vector.zero_()
        ctx.flat.vector[active] = job.model
        marked = prunable[unpack_bits(job.payload[MARKED], len(prunable)).to(device)] if MARKED in job.payload else None
        strength = self.params.extrusion_strength
        meter = SavedActivations(ctx.model, ctx.flat.vector, self.params.activation_keep)

        def after_backward() -> None:
            ctx.flat.grad[inactive] = 0.0
            if marked is not None:  # BaE: pull the weights marked for pruning toward 0
                ctx.flat.grad[marked] += strength * ctx.flat.vector[marked]
            meter.end_step()

        with meter:
            loss = ctx.run_sgd(self.train.local_epochs, after_backward)
        update = {PART: ctx.flat.vector[active].clone()}
        if GROW in job.payload:
            update[GRADIENT] = dense_gradient(ctx, self.params.grow_batches)[prunable]
        metrics = {
            "train_loss": loss,
            "density": float(mask.float().mean()),
            "activation_bytes": float(meter.peak),
            "model_bytes": float(self.model_bytes(ctx, role, int(mask.sum()))),
        }
        return ClientResult(job.client_id, update, ctx.num_samples, metrics)

    def model_bytes(self, ctx: ClientContext, role: SparseRole, active: int) -> int:
        """Weights, gradients and (with momentum) the momentum buffer at their sparse size: the dense
        tensors' values, the active prunable values and a bit set over the prunable ones."""
        dense = ctx.flat.layout.num_params - len(role.positions)
        sparse = active < len(role.positions)
        per_copy = 4 * (dense + active) + (-(-len(role.positions) // 8) if sparse else 0)
        return per_copy * (3 if self.train.momentum > 0 else 2)


def dense_gradient(ctx: ClientContext, batches: int) -> torch.Tensor:
    """The gradient of the task's loss at the client's final weights with respect to every parameter,
    active or not (what growing ranks), averaged over `batches` mini-batches."""
    total = torch.zeros_like(ctx.flat.grad)
    taken = 0
    for images, labels in ctx.batches(1):
        ctx.flat.zero_grad()
        ctx.task.train_loss(ctx.model, images, labels, ctx.data.transform, ctx.generator).backward()
        total += ctx.flat.grad
        taken += 1
        if taken == batches:
            break
    ctx.flat.zero_grad()
    return total / max(taken, 1)
