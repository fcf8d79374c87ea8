"""`backend: ray`: clients run in long-lived Ray actors, one per CPU or GPU slot (DESIGN section 6).

Each worker builds its model once and reads the dataset once from Ray's object store. A round
puts its jobs (which share the global weights) into the store once; each worker gets the
positions of its clients and their persistent state, runs them with the sequential executor,
validates the results and, for weighted-sum methods, returns one partial sum instead of their
models. A worker that dies mid-round has its clients re-run on the workers that finished the
round, and is replaced for later rounds.

Ray is optional (`pip install 'fedforge[ray]'`); this module imports it only when used.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import Field, model_validator

from fedforge.algorithms.base import Algorithm, ClientJob, UploadSpec
from fedforge.config import TrainConfig
from fedforge.data.federated import FederatedDataset
from fedforge.engine.aggregation import RoundOutcome
from fedforge.engine.client_store import ClientStore
from fedforge.engine.executors import EXECUTORS, ClientFailure, Executor, SequentialExecutor
from fedforge.engine.validation import UpdateValidator
from fedforge.errors import ConfigError
from fedforge.plugins import StrictModel
from fedforge.resources import usable_cpus
from fedforge.tasks import Task


class RayParams(StrictModel):
    num_workers: int | None = Field(
        None, ge=1, description="worker actors (default: one per CPU of the Ray cluster, or per GPU share)"
    )
    cpus_per_worker: float = Field(
        1.0, gt=0, description="CPUs reserved per worker, also its torch threads (default 1)"
    )
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per worker; above 0 workers train on CUDA (default 0)")
    address: str | None = Field(
        None,
        description="join a running cluster: 'auto' or host:port of `ray start --head` (default: start a local Ray)",
    )
    max_attempts: int = Field(
        3, ge=1, description="runs of a client's job across worker failures before it counts as failed (default 3)"
    )

    @model_validator(mode="after")
    def _ray_installed(self) -> RayParams:
        if importlib.util.find_spec("ray") is None:
            raise ValueError("backend.kind=ray needs Ray; install it with: pip install 'fedforge[ray]'")
        return self


class WorkerLost(RuntimeError):
    """The worker running a client died on every attempt (recorded as that client's failure)."""


def balanced_shares(sizes: list[int], slots: list[int]) -> dict[int, list[int]]:
    """Job positions per worker slot: largest clients first to the least-loaded slot (deterministic,
    so the same round always yields the same partial sums). Each share stays in job order."""
    load = dict.fromkeys(slots, 0)
    shares: dict[int, list[int]] = {slot: [] for slot in slots}
    for position in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        slot = min(slots, key=lambda s: (load[s], s))
        shares[slot].append(position)
        load[slot] += max(sizes[position], 1)
    return {slot: sorted(share) for slot, share in shares.items() if share}


@dataclass
class WorkerSetup:
    """What every worker is built from (put into the object store once)."""

    algorithm: Algorithm
    data: FederatedDataset
    model_factory: Any
    train: TrainConfig
    seed: int
    task: Task


class ClientWorker:
    """The body of one Ray actor: a sequential executor over its own model and dataset copy."""

    def __init__(self, setup: WorkerSetup, use_gpu: bool, threads: int) -> None:
        torch.set_num_threads(threads)
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.store = ClientStore()
        self.executor = SequentialExecutor(
            setup.algorithm,
            setup.data.to(self.device),
            setup.model_factory,
            setup.train,
            self.store,
            setup.seed,
            self.device,
            task=setup.task,
        )

    def ready(self) -> int:
        return os.getpid()

    def run(
        self,
        round_data: tuple[list[ClientJob], dict[str, UploadSpec]],
        positions: list[int],
        states: dict[int, dict[str, Any]],
        validator: UpdateValidator,
        streaming: bool,
        held: frozenset[int],
    ) -> tuple[RoundOutcome, dict[int, dict[str, Any]]]:
        """Run the jobs at `positions`; return their outcome (moved to the CPU) and updated client states."""
        jobs, specs = round_data
        self.store.restore(states)
        on_device = {name: spec.to(self.device) for name, spec in specs.items()}
        outcome = RoundOutcome(validator, on_device, streaming, held)
        self.executor.execute([jobs[i] for i in positions], outcome)
        return outcome.to("cpu"), {cid: self.store.get(cid) for cid in states}


def _check_reachable(address: str) -> None:
    """Ray keeps retrying an address nobody listens on; fail fast with what to do instead."""
    if address == "auto" or "://" in address:
        return  # found through the local session file / Ray Client: Ray reports those itself
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"backend.address={address}: no Ray head listens there ({err}); start one with `ray start --head` "
            "and pass its host:port (or 'auto' on a node of the cluster)"
        ) from None


def _ray() -> Any:
    import ray

    return ray


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Clients spread over Ray worker actors; same results as `sequential` within float tolerance."""

    Params = RayParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        ray, p = _ray(), self.params
        self.started_ray = self._connect()
        try:
            self.num_workers = p.num_workers or self._slots()
            self._check_resources()
            self.actor_class = ray.remote(num_cpus=p.cpus_per_worker, num_gpus=p.gpus_per_worker)(ClientWorker)
            setup = WorkerSetup(
                self.algorithm, self.data.to("cpu"), self.model_factory, self.train, self.seed, self.task
            )
            self.setup_ref = ray.put(setup)
            self.workers = [self._spawn() for _ in range(self.num_workers)]
            ray.get([w.ready.remote() for w in self.workers])  # a worker that cannot start fails here, not mid-run
        except BaseException:
            self.close()
            raise

    def _connect(self) -> bool:
        """Join the configured cluster or start a local Ray; True when this executor started it."""
        ray, p = _ray(), self.params
        if ray.is_initialized():
            return False
        if p.address is not None:
            _check_reachable(p.address)
            try:
                ray.init(address=p.address, logging_level=logging.WARNING)
            except ConnectionError as err:
                raise ConfigError(f"backend.address={p.address}: no Ray cluster answers there ({err})") from err
            return False
        ray.init(
            num_cpus=usable_cpus(),  # what this machine gives us: more workers than that are refused
            num_gpus=torch.cuda.device_count(),
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
        return True

    def _slots(self) -> int:
        p, resources = self.params, _ray().cluster_resources()
        if p.gpus_per_worker > 0:
            return max(int(resources.get("GPU", 0) / p.gpus_per_worker), 1)
        return max(int(resources.get("CPU", 0) / p.cpus_per_worker), 1)

    def _check_resources(self) -> None:
        """Ray would wait forever for actors the cluster cannot place: refuse them up front."""
        p, resources = self.params, _ray().cluster_resources()
        for kind, per_worker, key in (("CPU", p.cpus_per_worker, "cpus"), ("GPU", p.gpus_per_worker, "gpus")):
            needed, available = self.num_workers * per_worker, resources.get(kind, 0)
            if needed > available + 1e-9:
                raise ConfigError(
                    f"backend.num_workers={self.num_workers} x backend.{key}_per_worker={per_worker} needs "
                    f"{needed:g} {kind}s but the Ray cluster has {available:g}; lower one of them"
                )

    def _spawn(self) -> Any:
        threads = max(int(self.params.cpus_per_worker), 1)
        return self.actor_class.remote(self.setup_ref, self.params.gpus_per_worker > 0, threads)

    def execute(self, jobs: list[ClientJob], outcome: RoundOutcome) -> None:
        """One call per worker with its balanced share; clients of a worker that died are re-run
        one per call on the workers that survived, so a client that kills every worker it runs
        on is found, charged an attempt per death and, at `max_attempts`, fails alone."""
        if not jobs:
            return
        ray = _ray()
        round_ref = ray.put((jobs, outcome.specs))  # one copy of the shared global weights per round
        sizes = [len(self.data.at_round(job.round).client_train[job.client_id]) for job in jobs]
        attempts = [0] * len(jobs)
        calls = list(balanced_shares(sizes, list(range(len(self.workers)))).items())
        while calls:
            submitted = [(slot, share, self._submit(slot, round_ref, jobs, share, outcome)) for slot, share in calls]
            retry: list[int] = []
            dead: set[int] = set()
            for slot, share, call in submitted:  # merged in submission order: deterministic
                try:
                    part, states = ray.get(call)
                except ray.exceptions.RayActorError as err:
                    # A worker runs its calls in order: the first of them to fail is the one that killed it.
                    culprit = slot not in dead and len(share) == 1
                    if slot not in dead:
                        dead.add(slot)
                        self.workers[slot] = self._spawn()  # replaced for later calls and rounds
                    for position in share:
                        attempts[position] += culprit
                        if attempts[position] < self.params.max_attempts:
                            retry.append(position)
                        else:
                            lost = WorkerLost(f"its worker died {attempts[position]} times running it ({err})")
                            outcome.add(ClientFailure(jobs[position].client_id, lost))
                    continue
                outcome.merge(part)
                for cid, state in states.items():
                    self.client_store.put(cid, state)
            survivors = [slot for slot in range(len(self.workers)) if slot not in dead] or list(
                range(len(self.workers))
            )
            calls = [(survivors[k % len(survivors)], [position]) for k, position in enumerate(sorted(retry))]

    def _submit(self, slot: int, round_ref: Any, jobs: list[ClientJob], share: list[int], outcome: RoundOutcome) -> Any:
        states = {jobs[i].client_id: self.client_store.get(jobs[i].client_id) for i in share}
        return self.workers[slot].run.remote(
            round_ref, share, states, outcome.validator, outcome.streaming, outcome.byzantine
        )

    def close(self) -> None:
        ray = _ray()
        for worker in getattr(self, "workers", []):
            ray.kill(worker)
        self.workers = []
        if self.started_ray and ray.is_initialized():
            ray.shutdown()
