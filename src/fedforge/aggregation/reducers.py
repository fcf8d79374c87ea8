"""Aggregators: how the model entry of a round's uploads is reduced to one vector (`aggregation:`).

`mean` (the default) streams: each upload is folded into a float64 running sum as it arrives.
The robust reducers need every upload of the round at once and get them stacked, `[n, d]`.
They treat each client as one vote: a sample count is a client's claim, and a Byzantine client
would inflate it (only `geometric_median` weights by it, as RFA does, and caps no claim itself:
pair it with `backend.max_samples` on untrusted networks). Reducers are translation-equivariant
where their papers are, so they act on uploads and on updates (upload - global) alike;
`centered_clip` clips around the global model.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import BaseModel, Field

from fedforge.plugins import StrictModel
from fedforge.registry import Registry


class NoParams(StrictModel):
    """For aggregators without parameters."""


class Aggregator:
    """Reduces `n` uploads (rows of `uploads`) to one vector.

    `streams` True means the mean of the uploads is all it needs: executors then sum uploads where
    they are produced and `reduce` is never handed the whole list."""

    Params: ClassVar[type[BaseModel]] = NoParams
    streams: ClassVar[bool] = False

    def __init__(self, params: BaseModel | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def check_clients(self, clients_per_round: int) -> None:
        """Raise ValueError (naming the parameter) when a round of that many clients cannot be reduced."""

    def reduce(self, uploads: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """`uploads` [n, d] float32, `weights` [n] sample counts, `reference` [d] the global counterpart."""
        raise NotImplementedError


AGGREGATORS: Registry[type[Aggregator]] = Registry("aggregator")


@AGGREGATORS.register("mean")
class Mean(Aggregator):
    """Sample-weighted mean (FedAvg); streams, so a round holds one vector however many report."""

    streams = True

    def reduce(self, uploads: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        w = weights.to(torch.float64)
        return (w @ uploads.to(torch.float64) / w.sum()).to(torch.float32)


@AGGREGATORS.register("median")
class Median(Aggregator):
    """Coordinate-wise median (Yin et al. 2018); the mean of the two middle values for even counts."""

    def reduce(self, uploads: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        ordered = uploads.sort(dim=0).values
        n = len(ordered)
        return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


class TrimParams(StrictModel):
    beta: float = Field(
        0.2,
        ge=0,
        lt=0.5,
        description="share of the largest and of the smallest values dropped per coordinate (default 0.2)",
    )


@AGGREGATORS.register("trimmed_mean")
class TrimmedMean(Aggregator):
    """Coordinate-wise beta-trimmed mean (Yin et al. 2018): floor(beta n) values cut at each end."""

    Params = TrimParams

    def reduce(self, uploads: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        n = len(uploads)
        cut = min(math.floor(self.params.beta * n), (n - 1) // 2)  # at least one value survives
        ordered = uploads.sort(dim=0).values
        return ordered[cut : n - cut].to(torch.float64).mean(dim=0).to(torch.float32)


class KrumParams(StrictModel):
    f: int = Field(1, ge=0, description="Byzantine clients tolerated; needs clients_per_round >= 2f + 3 (default 1)")


class MultiKrumParams(KrumParams):
    m: int | None = Field(
        None, ge=1, description="uploads with the best scores that are averaged (default: clients - f)"
    )


def krum_scores(uploads: torch.Tensor, f: int) -> torch.Tensor:
    """Each upload's sum of squared distances to its n - f - 2 nearest others (Blanchard et al. 2017)."""
    n = len(uploads)
    x = uploads.to(torch.float64)
    squared = torch.cdist(x, x).pow(2)
    neighbours = max(n - f - 2, 1)
    nearest = squared.sort(dim=1).values[:, 1 : neighbours + 1]  # column 0 is the distance to itself
    return nearest.sum(dim=1)


def tolerated(f: int, n: int) -> int:
    """The f Krum may assume in a round of `n` uploads: the configured one, lowered only when
    dropouts or rejections left fewer than 2f + 3 (the config checks the planned round)."""
    return max(min(f, (n - 3) // 2), 0)


@AGGREGATORS.register("krum")
class Krum(Aggregator):
    """Krum (Blanchard et al. 2017): the one upload closest to its n - f - 2 nearest neighbours."""

    Params = KrumParams

    def check_clients(self, clients_per_round: int) -> None:
        f = self.params.f
        if clients_per_round < 2 * f + 3:
            raise ValueError(
                f"aggregation.f={f} needs at least 2f + 3 = {2 * f + 3} clients per round, but a round has "
                f"{clients_per_round}; lower f to at most {max((clients_per_round - 3) // 2, 0)}"
            )

    def selected(self, uploads: torch.Tensor, count: int) -> torch.Tensor:
        """Positions of the `count` best-scored uploads (ties: the earlier client)."""
        scores = krum_scores(uploads, tolerated(self.params.f, len(uploads)))
        return torch.sort(scores, stable=True).indices[:count]

    def reduce(self, uploads: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return uploads[self.selected(uploads, 1)[0]].clone()


@AGGREGATORS.register("multikrum")
class MultiKrum(Krum):
    """Multi-Krum: the mean of the m uploads with the best Krum scores (default m = n - f)."""

    Params = MultiKrumParams

    def check_clients(self, clients_per_round: int) -> None:
        super().check_clients(clients_per_round)
        m = self.params.m
        if m is not None and m > clients_per_round:
            raise ValueError(f"aggregation.m={m} exceeds the {clients_per_round} clients of a round")

    def reduce(self, uploads: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        n = len(uploads)
        m = min(self.params.m or n - tolerated(self.params.f, n), n)
        chosen = uploads[self.selected(uploads, m)]
        return chosen.to(torch.float64).mean(dim=0).to(torch.float32)


class WeiszfeldParams(StrictModel):
    iterations: int = Field(100, ge=1, description="Weiszfeld iterations at most (default 100)")
    tolerance: float = Field(
        1e-6, gt=0, description="stop when the estimate moves less than this, relatively (default 1e-6)"
    )
    eps: float = Field(1e-8, gt=0, description="smoothing: distances below it count as it (default 1e-8)")


@AGGREGATORS.register("geometric_median")
class GeometricMedian(Aggregator):
    """Sample-weighted geometric median by smoothed Weiszfeld iterations (RFA, Pillutla et al. 2022)."""

    Params = WeiszfeldParams

    def reduce(self, uploads: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        x, alpha = uploads.to(torch.float64), weights.to(torch.float64)
        alpha = alpha / alpha.sum()
        estimate = alpha @ x
        for _ in range(self.params.iterations):
            distances = torch.linalg.vector_norm(x - estimate, dim=1).clamp_min(self.params.eps)
            beta = alpha / distances
            moved = beta @ x / beta.sum()
            step = float(torch.linalg.vector_norm(moved - estimate))
            estimate = moved
            if step <= self.params.tolerance * max(float(torch.linalg.vector_norm(estimate)), 1.0):
                break
        return estimate.to(torch.float32)


class ClipParams(StrictModel):
    tau: float | None = Field(
        None,
        gt=0,
        description="clipping radius around the centre (default: the median distance of the uploads to it, "
        "which needs no tuning to the model's scale)",
    )
    iterations: int = Field(3, ge=1, description="clipping iterations (default 3)")


@AGGREGATORS.register("centered_clip")
class CenteredClip(Aggregator):
    """Centered clipping (Karimireddy, He & Jaggi 2021): steps from the global model by clipped offsets.

    Each iteration moves the centre by the mean of the uploads' offsets from it, each clipped to radius tau."""

    Params = ClipParams

    def reduce(self, uploads: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        x = uploads.to(torch.float64)
        centre = reference.to(torch.float64)
        for _ in range(self.params.iterations):
            offsets = x - centre
            distances = torch.linalg.vector_norm(offsets, dim=1)
            tau = self.params.tau if self.params.tau is not None else float(distances.median())
            scale = torch.where(distances > tau, tau / distances.clamp_min(1e-30), torch.ones_like(distances))
            centre = centre + (offsets * scale[:, None]).mean(dim=0)
        return centre.to(torch.float32)
