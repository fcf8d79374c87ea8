"""Server optimizers (`server_opt:`): the reduced uploads become a pseudo-gradient step.

With x the global value of the uploaded entry and r the aggregator's output, the pseudo-gradient
is g = x - r (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, with their Delta = -g):
- `none`: x <- r (plain FedAvg; r itself, bit for bit);
- `avgm`: m <- beta m + g; x <- x - lr m (FedAvgM, Hsu et al. 2019);
- `adagrad`: v <- v + g^2;
- `adam`: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2;
- `yogi`: m as adam, v <- v - (1 - b2) g^2 sign(v - g^2);
  each then x <- x - lr m / (sqrt(v) + tau), with m starting at 0 and v at tau^2, no bias correction.
Only trainable positions take the step: buffers (BN statistics) are set to r, since a running
variance moved by a momentum step could turn negative. The state is a dict of tensors; the
checkpoint carries it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel, Field

from fedforge.aggregation.reducers import NoParams
from fedforge.plugins import StrictModel
from fedforge.registry import Registry

OptState = dict[str, torch.Tensor]


class ServerOptimizer:
    """Turns (global x, reduced r) into the new global value; `step` returns it and the new state."""

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(self, params: BaseModel | None = None) -> None:
        self.params = params if params is not None else self.Params()

    def step(
        self, x: torch.Tensor, reduced: torch.Tensor, state: OptState, trainable: torch.Tensor | None
    ) -> tuple[torch.Tensor, OptState]:
        """`trainable`: a bool mask of the positions that take the step (None: all of them)."""
        g = x - reduced
        direction, state = self.direction(g, state)
        new = x - direction
        if trainable is not None:
            new = torch.where(trainable.to(new.device), new, reduced)
        return new, state

    def direction(self, g: torch.Tensor, state: OptState) -> tuple[torch.Tensor, OptState]:
        """The step subtracted from x for pseudo-gradient g."""
        raise NotImplementedError


SERVER_OPTIMIZERS: Registry[type[ServerOptimizer]] = Registry("server optimizer")


@SERVER_OPTIMIZERS.register("none")
class NoServerOptimizer(ServerOptimizer):
    """The reduced uploads are the new global model (FedAvg)."""

    def step(
        self, x: torch.Tensor, reduced: torch.Tensor, state: OptState, trainable: torch.Tensor | None
    ) -> tuple[torch.Tensor, OptState]:
        return reduced, state


class MomentumParams(StrictModel):
    lr: float = Field(1.0, gt=0, description="server learning rate (default 1.0)")
    momentum: float = Field(0.9, ge=0, lt=1, description="server momentum beta (default 0.9)")


@SERVER_OPTIMIZERS.register("avgm")
class ServerMomentum(ServerOptimizer):
    """FedAvgM: heavy-ball momentum on the pseudo-gradient (Hsu et al. 2019)."""

    Params = MomentumParams

    def direction(self, g: torch.Tensor, state: OptState) -> tuple[torch.Tensor, OptState]:
        m = g if "m" not in state else self.params.momentum * state["m"] + g
        return self.params.lr * m, {"m": m}


class AdaptiveParams(StrictModel):
    lr: float = Field(0.01, gt=0, description="server learning rate eta (default 0.01)")
    beta1: float = Field(0.9, ge=0, lt=1, description="first-moment decay (default 0.9)")
    beta2: float = Field(0.99, ge=0, lt=1, description="second-moment decay; unused by adagrad (default 0.99)")
    tau: float = Field(1e-3, gt=0, description="adaptivity: added to sqrt(v), and v starts at tau^2 (default 1e-3)")


class Adaptive(ServerOptimizer):
    """The shared FedAdagrad / FedAdam / FedYogi step; each says how v moves."""

    Params = AdaptiveParams

    def second_moment(self, v: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def direction(self, g: torch.Tensor, state: OptState) -> tuple[torch.Tensor, OptState]:
        p = self.params
        m_old = state.get("m", torch.zeros_like(g))
        v_old = state.get("v", torch.full_like(g, p.tau**2))
        m = p.beta1 * m_old + (1 - p.beta1) * g
        v = self.second_moment(v_old, g * g)
        return p.lr * m / (v.sqrt() + p.tau), {"m": m, "v": v}


@SERVER_OPTIMIZERS.register("adagrad")
class FedAdagrad(Adaptive):
    """FedAdagrad (Reddi et al. 2021): v accumulates g^2."""

    def second_moment(self, v: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
        return v + g2


@SERVER_OPTIMIZERS.register("adam")
class FedAdam(Adaptive):
    """FedAdam (Reddi et al. 2021): v is an exponential average of g^2."""

    def second_moment(self, v: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
        b2 = self.params.beta2
        return b2 * v + (1 - b2) * g2


@SERVER_OPTIMIZERS.register("yogi")
class FedYogi(Adaptive):
    """FedYogi (Reddi et al. 2021): v moves toward g^2 additively, by sign."""

    def second_moment(self, v: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
        return v - (1 - self.params.beta2) * g2 * torch.sign(v - g2)
