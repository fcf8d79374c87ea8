"""Running totals of a federation, turned into `summary.json` at the end."""

from __future__ import annotations

import math
from typing import Any

from fedforge.engine.evaluation import mean_of
from fedforge.engine.federation import RoundRecord
from fedforge.tasks import ClassificationTask, Task
from fedforge.tracking.continual import continual_summary


class SummarySink:
    """`final_metric` / `best_metric` follow the task's headline (its direction decides "best");
    `final_accuracy` / `best_accuracy` stay for classification and its probes."""

    def __init__(self, rounds_per_task: int | None = None, task: Task | None = None) -> None:
        self.task = task if task is not None else ClassificationTask()
        self.rounds_per_task = rounds_per_task  # class-continual runs: one accuracy-matrix row per task
        self.final_metric: float | None = None
        self.best_metric: float | None = None
        self.task_rows: list[list[float]] = []
        self.task_seen: list[float] = []
        self.task_old: float | None = None
        self.final_accuracy: float | None = None
        self.best_accuracy: float | None = None
        self.final_loss: float | None = None
        self.final_personalized: float | None = None
        self.final_worst10: float | None = None
        self.final_domains: dict[str, float] | None = None
        self.final_metrics: dict[str, float] = {}
        self.rounds = 0
        self.bytes_down = 0
        self.bytes_up = 0
        self.train_seconds = 0.0
        self.rejected = 0
        self.virtual_time: float | None = None  # the virtual clock at the last round (a system section)

    def log_round(self, record: RoundRecord) -> None:
        self.rounds = record.round + 1
        self.bytes_down += record.bytes_down
        self.bytes_up += record.bytes_up
        self.train_seconds += record.train_seconds
        self.rejected += len(record.rejected)
        self.virtual_time = record.metrics.get("virtual_time", self.virtual_time)
        if record.eval is not None and not math.isnan(headline := self.task.headline_value(record.eval)):
            self.final_metric = headline
            if self.task.headline.better(headline, self.best_metric):
                self.best_metric = headline
        if record.eval is not None and not math.isnan(record.eval.accuracy):
            self.final_accuracy = record.eval.accuracy
            self.final_loss = record.eval.loss
            self.best_accuracy = max(self.best_accuracy or 0.0, record.eval.accuracy)
            self.final_personalized = record.eval.personalized_mean
            self.final_worst10 = record.eval.personalized_worst10
            self.final_domains = record.eval.domain_accuracy
            self.final_metrics = dict(record.eval.extra)
            if self.rounds_per_task is not None and (record.round + 1) % self.rounds_per_task == 0:
                self._task_end(record.eval.accuracy, record.eval.extra)

    def _task_end(self, seen: float, extra: dict[str, float]) -> None:
        task = int(extra["task"])
        del self.task_rows[task:], self.task_seen[task:]  # a resumed run may log a task end again
        self.task_rows.append([extra[f"task_{j}_accuracy"] for j in range(task + 1)])
        self.task_seen.append(seen)
        self.task_old = extra.get("old_accuracy")

    def state(self) -> dict[str, Any]:
        """Everything accumulated so far (saved in checkpoints)."""
        return {k: v for k, v in vars(self).items() if k != "task"}

    def load(self, state: dict[str, Any]) -> None:
        vars(self).update(state)

    def as_dict(self, **extra: Any) -> dict[str, Any]:
        headline = self.task.headline
        return {
            "headline": {"name": headline.name, "higher_is_better": headline.higher_is_better},
            "final_metric": self.final_metric,
            "best_metric": self.best_metric,
            "final_accuracy": self.final_accuracy,
            "best_accuracy": self.best_accuracy,
            "final_loss": self.final_loss,
            "final_personalized_accuracy": self.final_personalized,
            "final_worst10_accuracy": self.final_worst10,
            "final_domain_accuracy": self.final_domains,
            "final_domain_mean_accuracy": mean_of(self.final_domains),
            "final_metrics": self.final_metrics,
            "rounds": self.rounds,
            "train_seconds": round(self.train_seconds, 3),
            "bytes_down": self.bytes_down,
            "bytes_up": self.bytes_up,
            "rejected_updates": self.rejected,
            **({"virtual_time": self.virtual_time} if self.virtual_time is not None else {}),
            **(
                {"continual": continual_summary(self.task_rows, self.task_seen, self.task_old)}
                if self.rounds_per_task is not None
                else {}
            ),
            **extra,
        }
