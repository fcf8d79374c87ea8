"""The Algorithm protocol (DESIGN section 4) and what flows between server and clients.

A method is a subclass: it decides what the server sends (`client_job`), what a client
does with it (`local_update`), which named entries come back (`upload_specs`) and how the
reduced entries fold into the global state (`apply`). How the MODEL entry is reduced is the
`aggregation:` plug-in's business and the server optimizer's, never the method's. The round
loop in engine/federation.py calls these and knows nothing else about any method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from fedforge.config import TrainConfig
from fedforge.data.federated import FederatedDataset
from fedforge.engine.optim import FlatSGD
from fedforge.engine.weights import FlatModel, Layout
from fedforge.plugins import StrictModel
from fedforge.privacy.central import CLIP, clip_result
from fedforge.privacy.local import STEPS, SampleDP, planned_steps, steps_taken
from fedforge.records import MODEL, ClientJob, ClientResult, ServerState, UploadSpec
from fedforge.registry import Registry
from fedforge.tasks import Task


@dataclass
class ClientContext:
    """Everything a client's local update may touch; built by the executor per job."""

    client_id: int
    round: int
    flat: FlatModel
    data: FederatedDataset
    task: Task
    train: TrainConfig
    generator: torch.Generator
    state: dict[str, Any]  # persistent per-client state (kept in the ClientStore between rounds)
    metrics: dict[str, float] = field(default_factory=dict)  # per-round scalars a method reports (in ClientResult)
    role: Any = None  # what the method's client side needs from the experiment (Algorithm.client_role)
    flip_labels: bool = False  # a simulated label-flipping client (attack.kind=label_flip) trains on C-1-y
    steps: int = 0  # local optimizer steps taken so far this round (every batch of every epoch)
    max_epochs: int | None = None  # the job's cap on local epochs (a simulated straggler)
    max_steps: int | None = None  # the job's cap on local steps (a slow client at the round deadline)
    sample_dp: SampleDP | None = None  # local DP-SGD: every step clips and noises per-sample gradients

    @property
    def model(self) -> nn.Module:
        return self.flat.model

    @property
    def num_samples(self) -> int:
        return len(self.data.client_train[self.client_id])

    def batches(self, epochs: int) -> Iterator[tuple[torch.Tensor, Any]]:
        """Shuffled mini-batches of this client's shard: index slices into shared tensors.

        Images stay raw (uint8): the task turns them into inputs (one view or two). Targets come
        from the store the task learns (labels, masks or boxes)."""
        idx = self.data.client_train[self.client_id]
        src, size, kind = self.data.source, self.train.batch_size, self.task.target
        for _ in range(epochs):
            order = idx[torch.randperm(len(idx), generator=self.generator).to(idx.device)]
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                targets = src.targets("train", kind, batch)
                yield src.train_x[batch], self.data.num_classes - 1 - targets if self.flip_labels else targets

    def optimizer(self) -> torch.optim.Optimizer | FlatSGD:
        """A fresh local optimizer, as in FedAvg: no optimizer state survives between rounds.

        SGD over a fully trainable model steps on the flat vectors (same arithmetic, no per-client setup)."""
        every = list(self.model.parameters())
        params = [p for p in every if p.requires_grad]
        t = self.train
        if t.optimizer == "sgd" and len(params) == len(every):
            return FlatSGD(self.flat, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        if t.optimizer == "sgd":
            return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
        if t.optimizer == "adam":
            return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)

    def run_sgd(
        self,
        epochs: int,
        after_backward: Callable[[], None] | None = None,
        batch_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> float:
        """The local training loop every method shares; returns the mean training loss.

        `after_backward` may edit `self.flat.grad` in place (proximal terms, corrections);
        `batch_loss(images, labels)` replaces the task's loss (e.g. a distillation term added).
        The job's caps (`max_epochs`, `max_steps`) bound the work, whatever the method asks for.
        """
        model = self.model
        model.train()
        optimizer = self.optimizer()
        total = torch.zeros((), device=self.flat.vector.device)
        steps = 0
        task, transform = self.task, self.data.transform
        if self.max_epochs is not None:
            epochs = min(epochs, self.max_epochs)
        if self.sample_dp is not None and batch_loss is not None:
            raise ValueError("local DP-SGD clips per-sample gradients of the task's loss; this method replaces "
                             "the loss, so use privacy.mechanism=central with it")  # fmt: skip
        for images, labels in self.batches(epochs):
            if self.max_steps is not None and self.steps + steps >= self.max_steps:
                break  # the deadline: the work done so far is what the client sends
            self.flat.zero_grad()
            if self.sample_dp is not None:
                inputs = transform(images, self.generator)
                loss = self.sample_dp.backward(model, inputs, labels, self.generator)
            elif batch_loss is None:
                loss = task.train_loss(model, images, labels, transform, self.generator)
                loss.backward()
            else:
                loss = batch_loss(images, labels)
                loss.backward()
            if after_backward is not None:
                after_backward()
            optimizer.step()
            task.after_step(model)
            total += loss.detach()
            steps += 1
        self.steps += steps
        return float(total) / steps if steps else float("nan")


class NoParams(StrictModel):
    """For methods without hyper-parameters."""


class Algorithm:
    """Base class of every federated method; see FedAvg for the reference implementation."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    task: ClassVar[str] = "classification"  # the task it trains; config.task defaults to it
    any_supervised_task: ClassVar[bool] = False  # True: it only runs local SGD on the task's loss, so it
    # trains every supervised task (detection, segmentation, ...), not just `task`
    uploads_parts: ClassVar[bool] = False  # True: clients upload parts of MODEL (UploadSpec.positions), which
    # only the mean reduces and no attack simulation turns

    @classmethod
    def trains(cls, task: Any) -> bool:
        """Whether this method can train `task` (a Task class)."""
        return task.name == cls.task or (cls.any_supervised_task and task.supervised)

    @classmethod
    def configure_task(cls, task: Any) -> None:
        """Check (or complete) the task section for this method; raise ValueError to refuse it."""

    def __init__(self, params: BaseModel | None = None, train: TrainConfig | None = None, seed: int = 0) -> None:
        self.params = params if params is not None else self.Params()
        self.train = train if train is not None else TrainConfig()
        self.seed = seed  # the run's seed, for server-side randomness (e.g. a generator's noise)
        self.layout: Layout | None = None

    def client_role(self, flat: FlatModel, data: FederatedDataset) -> Any:
        """What this method's client side needs from the experiment (index sets of model parts, the
        initial weights of parts never received), derived from a model built by the run's seeded factory
        and the data alone. Every executor calls it once on its own model and hands it to each local
        update as `ctx.role`, so a client never depends on what `init_server` left on a server's
        object; server code that needs the same calls it in `init_server`. Default: None."""
        return None

    def observe_system(self, slowness: Any) -> None:
        """The clients' step-time multipliers of the `system:` section (an array, or None without one),
        given before `init_server`, for a server that plans by client speed (HeteroFL's widths)."""

    def eval_variants(self, state: ServerState, flat: FlatModel) -> dict[str, tuple[FlatModel, torch.Tensor]]:
        """Further models to evaluate beside the global one, by name: (a flat model, its weights); e.g.
        each HeteroFL width alone. `flat` is the evaluator's own model. Default: none."""
        return {}

    # -- server side ----------------------------------------------------------------------
    def init_server(self, flat: FlatModel, data: FederatedDataset) -> ServerState:
        """The initial global state; remembers the weight layout for later index work."""
        self.layout = flat.layout
        return ServerState(weights=flat.read())

    def client_job(self, state: ServerState, client_id: int, round_index: int) -> ClientJob:
        return ClientJob(client_id=client_id, round=round_index, payload={MODEL: state.weights})

    def upload_reference(self, state: ServerState) -> torch.Tensor:
        """The global counterpart of the MODEL entry a client uploads: validation checks size and
        distance against it, and a server optimizer steps from it."""
        return state.weights

    def upload_specs(self, state: ServerState) -> dict[str, UploadSpec]:
        """Every entry a result may carry (others are rejected); a method with extras adds its own."""
        return {MODEL: UploadSpec.of(self.upload_reference(state))}

    def trainable_upload(self, state: ServerState) -> torch.Tensor | None:
        """Which positions of the MODEL entry are parameters (a server optimizer steps only those;
        buffers such as BN statistics take the reduced value). None: all of them."""
        assert self.layout is not None
        return torch.arange(self.layout.size, device=state.weights.device) < self.layout.num_params

    def apply(self, state: ServerState, reduced: dict[str, torch.Tensor], round_index: int) -> ServerState:
        """The new global state from the round's reduced entries (MODEL: the aggregator's output,
        after the server optimizer's step; every other entry: its weighted mean). A round in which no
        upload counted has no MODEL entry and leaves the state as it was."""
        if MODEL not in reduced:
            return state
        return self.apply_mean(state, reduced[MODEL], round_index)

    def keeps_uploads(self, round_index: int) -> bool:
        """Whether this round's MODEL uploads reach `apply_uploads` one by one (clustered or
        exchanging methods); the aggregator still reduces them. Default: never, so they stream."""
        return False

    def apply_uploads(self, state: ServerState, uploads: dict[int, torch.Tensor], round_index: int) -> ServerState:
        """After `apply`, in rounds where `keeps_uploads`: the accepted MODEL uploads by client id."""
        return state

    def apply_mean(self, state: ServerState, mean: torch.Tensor, round_index: int) -> ServerState:
        """The new global state from the reduced MODEL entry (the sample-weighted mean under the default aggregator)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither apply_mean nor apply")

    def summary(self, state: ServerState) -> dict[str, Any]:
        """Method-specific entries for summary.json (e.g. the cost of a server-side step)."""
        return {}

    def personalized_weights(self, state: ServerState, client_state: dict[str, Any]) -> torch.Tensor | None:
        """The weights to evaluate one client with; None means the global model."""
        return None

    # -- client side ----------------------------------------------------------------------
    def local_update(self, ctx: ClientContext, job: ClientJob) -> ClientResult:
        raise NotImplementedError

    def client_update(self, ctx: ClientContext, job: ClientJob) -> ClientResult:
        """What every executor runs for a job: `local_update` under the privacy the job asks for.

        A job carrying `dp/sample` trains with DP-SGD and the client accounts its own epsilon; one
        carrying `dp/clip` has its upload clipped (central DP). Methods never see either."""
        sample_dp = SampleDP.from_job(job)
        if sample_dp is not None:
            batch = self.train.batch_size
            planned = planned_steps(ctx.num_samples, batch, self.train.local_epochs, job.max_epochs, job.max_steps)
            sample_dp.check_budget(ctx.state, ctx.num_samples, batch, planned)
            ctx.sample_dp = sample_dp
        result = self.local_update(ctx, job)
        if sample_dp is not None:
            steps = steps_taken(ctx.state) + ctx.steps
            ctx.state[STEPS] = torch.tensor([float(steps)])
            epsilon = sample_dp.epsilon(ctx.num_samples, self.train.batch_size, steps)
            if epsilon < float("inf"):
                result.metrics["epsilon"] = epsilon
        if CLIP in job.payload:
            result = clip_result(result, job)
        return result


ALGORITHMS: Registry[type[Algorithm]] = Registry("algorithm")


def register(name: str, *, replace: bool = False) -> Callable[[type[Algorithm]], type[Algorithm]]:
    """`@register("mine")` on an Algorithm subclass makes it usable as `algorithm.name: mine`."""

    def decorator(cls: type[Algorithm]) -> type[Algorithm]:
        if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
            raise TypeError(f"@register('{name}') expects an Algorithm subclass, got {cls!r}")
        cls.name = name
        ALGORITHMS.add(name, cls, replace=replace)
        return cls

    return decorator
