"""Sparse masks over a flat model: ERK densities, compact bit sets, magnitude prune and gradient grow.

A mask covers the *prunable* tensors (conv and linear weights); biases, gains and normalization
parameters stay dense, as in RigL / FedDST / FedMef. Layer by layer the density follows
Erdős–Rényi-Kernel (Evci et al. 2020): a layer's density is proportional to the sum of its
dimensions over their product, scaled to the target overall density, layers that would exceed 1
kept dense and the rest re-scaled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedforge.engine.weights import Layout

BIT_WEIGHTS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


@dataclass(frozen=True)
class PrunableLayer:
    name: str
    offset: int  # where the tensor starts in the flat vector
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def prunable_layers(layout: Layout) -> list[PrunableLayer]:
    """The conv and linear weights of a layout (parameters with at least two dimensions)."""
    return [PrunableLayer(e.name, e.offset, e.shape) for e in layout.entries if e.is_param and len(e.shape) >= 2]


def erk_densities(layers: list[PrunableLayer], density: float) -> list[float]:
    """Per-layer densities whose parameter-weighted mean is `density` (ERK)."""
    sizes = torch.tensor([layer.numel for layer in layers], dtype=torch.float64)
    raw = torch.tensor([sum(layer.shape) / layer.numel for layer in layers], dtype=torch.float64)
    dense = torch.zeros(len(layers), dtype=torch.bool)
    while True:
        budget = density * sizes.sum() - sizes[dense].sum()
        scale = budget / (raw[~dense] * sizes[~dense]).sum()
        out = torch.where(dense, torch.ones_like(raw), raw * scale)
        over = (out > 1) & ~dense
        if not over.any():
            return out.clamp(max=1.0).tolist()
        dense |= over


def random_mask(layers: list[PrunableLayer], densities: list[float], generator: torch.Generator) -> torch.Tensor:
    """One bool per prunable weight (layers concatenated): a seeded random subset of each layer's
    weights at its density (exactly round(density * size) of them)."""
    parts = []
    for layer, d in zip(layers, densities, strict=True):
        keep = int(round(d * layer.numel))
        part = torch.zeros(layer.numel, dtype=torch.bool)
        part[torch.randperm(layer.numel, generator=generator)[:keep]] = True
        parts.append(part)
    return torch.cat(parts)


def prunable_positions(layers: list[PrunableLayer]) -> torch.Tensor:
    """Flat-vector positions of the prunable weights, in mask order."""
    return torch.cat([torch.arange(layer.offset, layer.offset + layer.numel) for layer in layers])


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A bool vector as uint8 bytes, 8 entries each (what travels: n/8 bytes, not n floats)."""
    padded = torch.zeros(-(-len(mask) // 8) * 8, dtype=torch.uint8, device=mask.device)
    padded[: len(mask)] = mask.to(torch.uint8)
    return (padded.view(-1, 8) * BIT_WEIGHTS.to(mask.device)).sum(dim=1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, length: int) -> torch.Tensor:
    """Inverse of `pack_bits`; refuses a bit set of the wrong size (a malformed job)."""
    if packed.dtype != torch.uint8 or packed.dim() != 1 or len(packed) != -(-length // 8):
        raise ValueError(f"a mask of {length} entries packs into {-(-length // 8)} uint8 bytes, got "
                         f"{packed.dtype} {tuple(packed.shape)}")  # fmt: skip
    bits = (packed[:, None] & BIT_WEIGHTS.to(packed.device)) != 0
    return bits.reshape(-1)[:length]


def layer_slices(layers: list[PrunableLayer]) -> list[slice]:
    """Each layer's slice of a mask vector."""
    out, start = [], 0
    for layer in layers:
        out.append(slice(start, start + layer.numel))
        start += layer.numel
    return out


def lowest_active(mask: torch.Tensor, weights: torch.Tensor, layers: list[PrunableLayer], share: float) -> torch.Tensor:
    """Per layer, the `share` of its active weights with the smallest magnitude (a bool vector):
    what magnitude pruning removes. `weights` are the prunable weights in mask order. A layer marks
    no more than it has inactive weights to grow in their place (an ERK layer kept dense marks none)."""
    marked = torch.zeros_like(mask)
    for part in layer_slices(layers):
        active = torch.nonzero(mask[part]).squeeze(1)
        count = min(int(share * len(active)), part.stop - part.start - len(active))
        if count:
            order = torch.argsort(weights[part][active].abs(), stable=True)[:count]
            marked[part.start + active[order]] = True
    return marked


def prune_and_grow(
    mask: torch.Tensor, pruned: torch.Tensor, gradient: torch.Tensor, layers: list[PrunableLayer]
) -> torch.Tensor:
    """The adjusted mask: per layer, the `pruned` weights leave and as many weights that were inactive
    (not the ones just pruned) with the largest gradient magnitude join, so density is unchanged."""
    new = mask & ~pruned
    for part in layer_slices(layers):
        count = int(pruned[part].sum())
        candidates = torch.nonzero(~mask[part]).squeeze(1)
        if count and len(candidates):
            order = torch.argsort(gradient[part][candidates].abs(), descending=True, stable=True)[:count]
            new[part.start + candidates[order]] = True
    return new
