"""The algebra that drift-correcting methods (SCAFFOLD, FedNova, FedDyn) share.

Local SGD with heavy-ball momentum rho moves a model by lr * sum_t w_t g_t with step weights w_t
summing to `step_norm(K, rho)`, not K: an estimate of the mean gradient from a model change
(SCAFFOLD's option II) or a change normalized per step (FedNova) must divide by it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import BaseModel

from fedforge.algorithms.base import ServerState
from fedforge.algorithms.fedavg import FedAvg
from fedforge.config import TrainConfig
from fedforge.data.federated import FederatedDataset
from fedforge.engine.weights import FlatModel
from fedforge.errors import ConfigError


def step_norm(steps: int, momentum: float) -> float:
    """a = sum of the weights K local SGD steps with heavy-ball `momentum` put on their gradients:
    K without momentum, [K - rho (1 - rho^K) / (1 - rho)] / (1 - rho) with it (FedNova, eq. 8)."""
    if momentum == 0:
        return float(steps)
    return (steps - momentum * (1 - momentum**steps) / (1 - momentum)) / (1 - momentum)


def step_toward(x: torch.Tensor, mean: torch.Tensor, scale: float | torch.Tensor, num_params: int) -> torch.Tensor:
    """x + scale (mean - x) on the first `num_params` positions (the parameters); the buffers after
    them (BN statistics) take `mean`. SCAFFOLD's server learning rate and FedNova's tau_eff are this."""
    new = mean.clone()
    new[:num_params] = x[:num_params] + scale * (mean[:num_params] - x[:num_params])
    return new


def total_samples(data: FederatedDataset) -> int:
    """Every client's training samples: the n in p_i = n_i / n that weights state kept for ALL clients."""
    return sum(len(idx) for idx in data.client_train)


def require_sgd(method: str, train: TrainConfig) -> None:
    """Methods whose algebra assumes local SGD steps refuse other local optimizers up front."""
    if train.optimizer != "sgd":
        raise ConfigError(
            f"{method} assumes local SGD steps (its correction is derived for them); "
            f"set train.optimizer: sgd (got {train.optimizer})"
        )


class LocalSGDMethod(FedAvg):
    """FedAvg whose algebra assumes local SGD steps (SCAFFOLD, FedNova, FedDyn): other local
    optimizers are refused up front; `server_state`, if set, names a parameter-sized server
    vector that starts at zero (SCAFFOLD's c, FedDyn's h)."""

    server_state: ClassVar[str | None] = None

    def __init__(self, params: BaseModel | None = None, train: TrainConfig | None = None, seed: int = 0) -> None:
        super().__init__(params, train, seed)
        require_sgd(self.name, self.train)

    def init_server(self, flat: FlatModel, data: FederatedDataset) -> ServerState:
        state = super().init_server(flat, data)
        self.samples = total_samples(data)
        if self.server_state is None:
            return state
        zeros = torch.zeros(flat.layout.num_params, device=state.weights.device)
        return ServerState(state.weights, {self.server_state: zeros})
