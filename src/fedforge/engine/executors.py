"""Executors run client jobs. `sequential` is the baseline every other is measured on.

It holds ONE model instance whose weights are flat views (engine/weights.py): loading
a client's weights is a single copy, and no model is deep-copied per client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from fedforge.algorithms.base import Algorithm, ClientContext, ClientJob, ClientResult, NoParams
from fedforge.config import TrainConfig
from fedforge.data.federated import FederatedDataset
from fedforge.engine.aggregation import RoundOutcome
from fedforge.engine.client_store import ClientStore
from fedforge.engine.weights import FlatModel
from fedforge.registry import Registry
from fedforge.seeding import CLIENT, derive_seed
from fedforge.tasks import ClassificationTask, Task

EXECUTORS: Registry[type[Executor]] = Registry("backend")


@dataclass
class ClientFailure:
    """A client whose local update raised: the round goes on without it (recorded as an event)."""

    client_id: int
    error: Exception

    @property
    def reason(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


class Executor:
    """Runs a round's jobs into a RoundOutcome; each result carries `seconds` in its metrics.

    Subclasses may declare a pydantic `Params` model: its fields are the `backend.*` keys."""

    Params: ClassVar[type[BaseModel]] = NoParams

    def __init__(
        self,
        algorithm: Algorithm,
        data: FederatedDataset,
        model_factory: Callable[[], nn.Module],
        train: TrainConfig,
        client_store: ClientStore,
        seed: int,
        device: torch.device,
        task: Task | None = None,
        params: BaseModel | None = None,
        experiment: dict[str, Any] | None = None,
    ) -> None:
        self.params = params if params is not None else self.Params()
        self.experiment = experiment  # the resolved config, for executors whose clients rebuild it elsewhere
        self.algorithm, self.data, self.train = algorithm, data, train
        self.client_store, self.seed, self.device = client_store, seed, device
        self.model_factory = model_factory
        self.task = task if task is not None else ClassificationTask()

    @property
    def max_samples(self) -> int | None:
        """The largest sample count a result may claim; None where clients run trusted code (simulation)."""
        return None

    def execute(self, jobs: list[ClientJob], outcome: RoundOutcome) -> None:
        """Add one ClientResult or ClientFailure per job to `outcome` (a client that raises fails alone)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers and processes; the executor is not used afterwards."""


def on_device(state: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A client's state with its tensors on the executor's device (a disk store reads to the CPU)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in state.items()}


@EXECUTORS.register("sequential")
class SequentialExecutor(Executor):
    """Clients one after another in this process, on one reused model instance."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.flat = FlatModel(self.model_factory().to(self.device))
        self.role = self.algorithm.client_role(self.flat, self.data)  # derived here, never read off the server

    def execute(self, jobs: list[ClientJob], outcome: RoundOutcome) -> None:
        for job in jobs:
            outcome.add(self.run_one(job))

    def run_one(self, job: ClientJob) -> ClientResult | ClientFailure:
        client_seed = derive_seed(self.seed, CLIENT, job.round, job.client_id)
        ctx = ClientContext(
            client_id=job.client_id,
            round=job.round,
            flat=self.flat,
            data=self.data.at_round(job.round),  # a task stream shows only the current task's samples
            task=self.task,
            train=self.train,
            generator=torch.Generator().manual_seed(client_seed),
            state=on_device(self.client_store.get(job.client_id), self.device),
            role=self.role,
            flip_labels=job.attack == "label_flip",
            max_epochs=job.max_epochs,
            max_steps=job.max_steps,
        )
        start = time.perf_counter()
        # Layers that draw from the global RNG (dropout) get a per-client stream too. Only the
        # generators in use are seeded: torch.manual_seed would also queue lazy seeding of
        # every uninitialized backend (CUDA, XPU, MTIA), formatting a stack trace each time.
        cuda = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=cuda):
                torch.default_generator.manual_seed(client_seed)
                if cuda:
                    torch.cuda.manual_seed(client_seed)
                result = self.algorithm.client_update(ctx, job.to(self.device))
        except Exception as err:  # one client's crash must not end the federation
            return ClientFailure(job.client_id, err)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        result.metrics["seconds"] = time.perf_counter() - start
        self.client_store.put(job.client_id, ctx.state)
        return result
