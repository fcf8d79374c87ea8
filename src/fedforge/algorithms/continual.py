"""Federated class-continual learning: what every method on a task stream shares.

`Finetune` is FedAvg run through the stream (each task's data only, nothing against
forgetting), and the base of the other continual methods: it knows the task plan, keeps
the global model of the end of the previous task as the *teacher*, and gives them a
hook (`end_task`) for a server-side step between tasks. The model keeps one output per
class of the dataset; a task's loss looks at the columns of its own classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.func import functional_call

from fedforge.algorithms.base import ClientContext, ClientJob, ServerState, register
from fedforge.algorithms.fedavg import FedAvg
from fedforge.data.continual import TaskPlan
from fedforge.data.federated import FederatedDataset
from fedforge.engine.weights import FlatModel
from fedforge.errors import ConfigError
from fedforge.models.split import frozen


def task_plan(data: FederatedDataset, method: str) -> TaskPlan:
    if data.stream is None:
        raise ConfigError(
            f"algorithm '{method}' learns a class-continual task stream; add a continual section, "
            "e.g. continual: {tasks: 5, rounds_per_task: 10} (see docs/continual.md)"
        )
    return data.stream.plan


def client_plan(ctx: ClientContext) -> TaskPlan:
    """The task plan as a client sees it (its data view carries the stream)."""
    assert ctx.data.stream is not None, "a continual method runs only on a task stream"
    return ctx.data.stream.plan


@dataclass
class TaskView:
    """A client's view of the current round: which classes are new, which are old."""

    task: int
    new: torch.Tensor  # class ids of the current task
    old: torch.Tensor  # class ids of the earlier tasks (empty in the first task)
    position: torch.Tensor  # class id -> its column among `new` (-1 for other classes)

    @classmethod
    def of(cls, ctx: ClientContext) -> TaskView:
        plan, device = client_plan(ctx), ctx.flat.vector.device
        task = plan.task_of(ctx.round)
        new = torch.tensor(plan.classes[task], device=device)
        position = torch.full((ctx.data.num_classes,), -1, dtype=torch.int64, device=device)
        position[new] = torch.arange(len(new), device=device)
        return cls(task, new, torch.tensor(plan.old_classes(task), dtype=torch.int64, device=device), position)


def new_task_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, view: TaskView) -> torch.Tensor:
    """Cross-entropy over the current task's columns only, so learning new classes does not
    push the old classes' outputs down (TARGET Sec. 4.3, the L_CE of the client objective)."""
    return F.cross_entropy(logits[:, view.new], view.position[labels])


def distillation(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Knowledge distillation: cross-entropy from the teacher's softened outputs to the
    student's (Hinton et al., 2015; TARGET's L_KD, temperature 2)."""
    soft = F.softmax(teacher / temperature, dim=1)
    return -(soft * F.log_softmax(student / temperature, dim=1)).sum(dim=1).mean()


def frozen_logits(ctx: ClientContext, weights: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """The outputs of the model with other `weights` (e.g. the teacher), in eval mode, without
    building a second network: the client's one model is called with those weights swapped in."""
    with frozen(ctx.model):
        return functional_call(ctx.model, ctx.flat.layout.views(weights), (inputs,))


@register("finetune")
class Finetune(FedAvg):
    """FedAvg on each new task's data only: the lower bound every continual method must beat."""

    any_supervised_task = False  # continual methods learn class streams: classification only
    sends_teacher: ClassVar[bool] = False  # methods that distil from or regularize toward it set True

    def init_server(self, flat: FlatModel, data: FederatedDataset) -> ServerState:
        self.plan = task_plan(data, self.name)
        return super().init_server(flat, data)

    def apply_mean(self, state: ServerState, mean: torch.Tensor, round_index: int) -> ServerState:
        new = super().apply_mean(state, mean, round_index)
        if self.plan.hands_over(round_index):
            new = self.end_task(new, self.plan.task_of(round_index))
        return new

    def end_task(self, state: ServerState, task: int) -> ServerState:
        """Runs on the server after the last round of every task but the final one.

        Keeps the global model as the teacher of the tasks to come (what the old classes looked like)."""
        return ServerState(state.weights, {**state.extras, "teacher": state.weights.clone()})

    def client_job(self, state: ServerState, client_id: int, round_index: int) -> ClientJob:
        job = super().client_job(state, client_id, round_index)
        job.payload.update(self.job_entries(state))
        return job

    def job_entries(self, state: ServerState) -> dict[str, torch.Tensor]:
        """The payload entries besides the model a client of the current task needs (counted as bytes down)."""
        if self.sends_teacher and "teacher" in state.extras:
            return {"teacher": state.extras["teacher"]}
        return {}
