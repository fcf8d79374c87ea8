"""A rich progress bar over rounds with the latest headline metric and per-client accuracy."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fedforge.engine.federation import RoundRecord
from fedforge.tasks import ClassificationTask, Task


class ProgressSink:
    def __init__(
        self, rounds: int, title: str, start: int = 0, console: Console | None = None, task: Task | None = None
    ) -> None:
        self.learning = task if task is not None else ClassificationTask()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("round"),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self.task = self.progress.add_task(title, total=rounds, completed=start, status="")
        self.progress.start()

    def close(self, summary: object = None) -> None:
        self.progress.stop()

    def log_round(self, record: RoundRecord) -> None:
        status = f"loss {record.train_loss:.3f}"
        if record.eval is not None:
            status = f"{self.learning.headline.name} {self.learning.headline_value(record.eval):.4f}"
            if record.eval.personalized_mean is not None:
                status += f"  client acc {record.eval.personalized_mean:.4f}"
            if record.eval.domain_mean is not None:
                status += f"  domain acc {record.eval.domain_mean:.4f}"
            if "knn_accuracy" in record.eval.extra:
                status += f"  knn {record.eval.extra['knn_accuracy']:.4f}"
        self.progress.update(self.task, completed=record.round + 1, status=status)
