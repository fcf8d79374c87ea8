"""Class-continual task streams: the label space split into tasks that arrive one after another.

Each task's training samples are partitioned across the clients on their own (with the
configured partition, e.g. Dirichlet), so in task t a client holds only task t's samples:
nothing of an earlier task stays on any client. Round r belongs to task r // rounds_per_task.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fedforge.errors import ConfigError


@dataclass(frozen=True)
class TaskPlan:
    """Which classes each task brings and how long it lasts: all a method needs to know (small, picklable)."""

    classes: tuple[tuple[int, ...], ...]  # task -> its class ids, in the seeded class order
    rounds_per_task: int

    @property
    def num_tasks(self) -> int:
        return len(self.classes)

    def task_of(self, round_index: int) -> int:
        return min(round_index // self.rounds_per_task, self.num_tasks - 1)

    def is_task_end(self, round_index: int) -> bool:
        return (round_index + 1) % self.rounds_per_task == 0

    def hands_over(self, round_index: int) -> bool:
        """The last round of a task that another task follows: when methods save what the next task needs."""
        return self.is_task_end(round_index) and self.task_of(round_index) < self.num_tasks - 1

    def seen_classes(self, task: int) -> list[int]:
        """Every class of tasks 0..task."""
        return [c for t in range(task + 1) for c in self.classes[t]]

    def old_classes(self, task: int) -> list[int]:
        """The classes of the tasks before `task` (what must not be forgotten)."""
        return self.seen_classes(task - 1) if task > 0 else []


@dataclass
class TaskStream:
    """A TaskPlan plus, per task, the samples each client holds and the global test samples."""

    plan: TaskPlan
    client_train: list[list[torch.Tensor]]  # task -> client -> training indices (that task's classes only)
    client_test: list[list[torch.Tensor]]  # task -> client -> local test indices
    test: list[torch.Tensor]  # task -> indices of the global test set in that task's classes

    def to(self, device: torch.device | str) -> TaskStream:
        return TaskStream(
            self.plan,
            [[idx.to(device) for idx in task] for task in self.client_train],
            [[idx.to(device) for idx in task] for task in self.client_test],
            [idx.to(device) for idx in self.test],
        )


def class_order(num_classes: int, rng: np.random.Generator | None) -> list[int]:
    """The order in which classes arrive: a seeded permutation, or 0..C-1 when `rng` is None."""
    return list(range(num_classes)) if rng is None else [int(c) for c in rng.permutation(num_classes)]


def split_classes(order: list[int], tasks: int, classes_per_task: int | None) -> tuple[tuple[int, ...], ...]:
    """Consecutive groups of the class order, one per task (all classes when not given)."""
    per_task = classes_per_task if classes_per_task is not None else len(order) // tasks
    if per_task < 1 or per_task * tasks > len(order):
        raise ConfigError(
            f"continual: {tasks} tasks of {per_task} classes need {tasks * per_task} classes, but the dataset has "
            f"{len(order)}; lower continual.tasks or continual.classes_per_task"
        )
    return tuple(tuple(order[t * per_task : (t + 1) * per_task]) for t in range(tasks))


def in_classes(labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """Positions of the samples whose label is one of `classes`."""
    return np.flatnonzero(np.isin(labels, classes))
