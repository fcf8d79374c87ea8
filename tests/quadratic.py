"""Closed-form federations: client k's loss is f_k(x) = a_k/2 ||x - b_k||^2, so every fixed point is known.

Each sample of client k carries label k and the task's loss is f_label(x), so a batch's gradient is
exactly a_k (x - b_k) and local SGD is gradient descent: K = epochs x ceil(n_k / batch) steps of it.
The real method classes run on the real sequential executor; only data, model and task are tiny.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedforge.algorithms.base import Algorithm
from fedforge.config import TrainConfig
from fedforge.data.federated import FederatedDataset
from fedforge.data.sources import DatasetTensors
from fedforge.data.transforms import BatchTransform
from fedforge.engine.client_store import ClientStore
from fedforge.engine.executors import SequentialExecutor
from fedforge.engine.weights import FlatModel
from fedforge.tasks.classification import ClassificationTask
from tests.rounds import aggregate


class Point(nn.Module):
    """The model: one parameter vector x, started at 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.zeros(dim))


class QuadraticTask(ClassificationTask):
    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.a, self.b = a, b

    def train_loss(self, model, images, labels, transform, generator) -> torch.Tensor:
        a, b = self.a[labels], self.b[labels]
        return (0.5 * a * ((model.x - b) ** 2).sum(dim=1)).mean()


@dataclass
class Quadratic:
    """Clients with curvatures `a` [K], optima `b` [K, d] and `n` samples each."""

    a: list[float]
    b: list[list[float]]
    n: list[int]

    @property
    def p(self) -> torch.Tensor:
        n = torch.tensor(self.n, dtype=torch.float64)
        return n / n.sum()

    def optimum(self, weights: torch.Tensor | None = None) -> torch.Tensor:
        """argmin sum_k w_k f_k (w: the sample shares p by default)."""
        w = self.p if weights is None else weights
        wa = w * torch.tensor(self.a, dtype=torch.float64)
        return (wa[:, None] * torch.tensor(self.b, dtype=torch.float64)).sum(0) / wa.sum()

    def data(self) -> FederatedDataset:
        labels = torch.cat([torch.full((n,), k) for k, n in enumerate(self.n)])
        images = torch.zeros(len(labels), 1, 1, 1, dtype=torch.uint8)
        source = DatasetTensors("quadratic", images, labels, images[:1], labels[:1], len(self.n))
        starts = torch.cumsum(torch.tensor([0, *self.n]), 0)
        shards = [torch.arange(int(starts[k]), int(starts[k + 1])) for k in range(len(self.n))]
        identity = BatchTransform(torch.zeros(1), torch.full((1,), 1 / 255))
        return FederatedDataset(source, shards, [s[:0] for s in shards], identity)

    def run(self, algorithm: Algorithm, rounds: int, cohorts=None, edit_job=None) -> tuple[torch.Tensor, list]:
        """The global x after `rounds` (each round's cohort from `cohorts(r)`, default all clients),
        and the server state after every round; `edit_job(job)` may change each job (e.g. its caps)."""
        data = self.data()
        dim = len(self.b[0])
        task = QuadraticTask(torch.tensor(self.a), torch.tensor(self.b))
        state = algorithm.init_server(FlatModel(Point(dim)), data)
        executor = SequentialExecutor(
            algorithm, data, lambda: Point(dim), algorithm.train, ClientStore(), 0, torch.device("cpu"), task=task
        )
        states = []
        for r in range(rounds):
            ids = cohorts(r) if cohorts is not None else range(len(self.n))
            jobs = [algorithm.client_job(state, cid, r) for cid in ids]
            for job in jobs:
                if edit_job is not None:
                    edit_job(job)
            results = [executor.run_one(job) for job in jobs]
            state = aggregate(algorithm, state, results, r)
            states.append(state)
        return state.weights[:dim].double(), states


def sgd(lr: float, epochs: int, batch: int, momentum: float = 0.0) -> TrainConfig:
    return TrainConfig(lr=lr, local_epochs=epochs, batch_size=batch, momentum=momentum, optimizer="sgd")


def fedavg_fixed_point(problem: Quadratic, lr: float, steps: list[int]) -> torch.Tensor:
    """FedAvg's fixed point: y_k = b_k + q_k (x - b_k), q_k = (1 - lr a_k)^K_k, averaged with p_k, is
    sum p_k (1 - q_k) b_k / sum p_k (1 - q_k) (a step-weighted surrogate, not the optimum)."""
    return problem.optimum(_contraction(problem, lr, steps) / torch.tensor(problem.a, dtype=torch.float64))


def fednova_fixed_point(problem: Quadratic, lr: float, steps: list[int]) -> torch.Tensor:
    """FedNova's: each change divided by K_k, so the weights are p_k (1 - q_k) / K_k."""
    contraction = _contraction(problem, lr, steps) / torch.tensor(steps, dtype=torch.float64)
    return problem.optimum(contraction / torch.tensor(problem.a, dtype=torch.float64))


def _contraction(problem: Quadratic, lr: float, steps: list[int]) -> torch.Tensor:
    a = torch.tensor(problem.a, dtype=torch.float64)
    q = (1 - lr * a) ** torch.tensor(steps, dtype=torch.float64)
    return problem.p * (1 - q)
