"""Round progress on stderr: a rich bar in a terminal, one plain line per round elsewhere
(log files, Slurm, CI), where a redrawn bar would be noise or nothing at all."""

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
        self.console = console or Console(stderr=True)
        self.rounds, self.title = rounds, title
        self.progress: Progress | None = None
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("round"),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self.task = self.progress.add_task(title, total=rounds, completed=start, status="")
            self.progress.start()
        elif start:
            self._line(f"{title}: resuming at round {start + 1}/{rounds}")

    def close(self, summary: object = None) -> None:
        if self.progress is not None:
            self.progress.stop()

    def status(self, record: RoundRecord) -> str:
        status = f"loss {record.train_loss:.3f}"
        if record.eval is not None:
            status = f"{self.learning.headline.name} {self.learning.headline_value(record.eval):.4f}"
            if record.eval.personalized_mean is not None:
                status += f"  client mean {record.eval.personalized_mean:.4f}"
            if record.eval.domain_mean is not None:
                status += f"  domain mean {record.eval.domain_mean:.4f}"
            if "knn_accuracy" in record.eval.extra:
                status += f"  knn {record.eval.extra['knn_accuracy']:.4f}"
        if "epsilon" in record.metrics:
            status += f"  epsilon {record.metrics['epsilon']:.2f}"
        return status

    def log_round(self, record: RoundRecord) -> None:
        status = self.status(record)
        if self.progress is not None:
            self.progress.update(self.task, completed=record.number, status=status)
        else:
            self._line(f"{self.title}: round {record.number}/{self.rounds}  {status}  {record.seconds:.1f} s")

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
