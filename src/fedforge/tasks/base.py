"""The Task protocol: what a model is trained to do (its loss) and how it is judged.

The round loop and the executors call only these methods, so a new kind of problem
(self-supervised, segmentation, ...) is one registered class, not a fork of the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from fedforge.data.transforms import BatchTransform
from fedforge.plugins import StrictModel
from fedforge.registry import Registry

if TYPE_CHECKING:
    from fedforge.engine.evaluation import EvalMetrics


@dataclass(frozen=True)
class Headline:
    """The one number a task is judged by: summary (`final_metric`, `best_metric`), progress bar,
    CLI and reports read it by name."""

    name: str  # e.g. accuracy, linear_probe, map50, miou, rank1
    higher_is_better: bool = True
    label: str = ""  # how people say it ("linear-probe accuracy"); default: the name

    def better(self, a: float, b: float | None) -> bool:
        """Whether `a` beats `b` (anything beats None)."""
        return b is None or (a > b if self.higher_is_better else a < b)

    def describe(self) -> str:
        return self.label or self.name


class NoTaskParams(StrictModel):
    """For tasks without parameters."""


class Task:
    """Base class of every task; ClassificationTask is the reference."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoTaskParams
    evaluation: ClassVar[str] = "classification"  # which evaluator judges it (engine/evaluation.py)
    target: ClassVar[str] = "labels"  # the target store its batches carry (data/targets.py)
    supervised: ClassVar[bool] = True  # trained on (images, targets) by `train_loss` alone: any
    # method that only runs local SGD on the task's loss (FedAvg and its kin) can train it
    headline: ClassVar[Headline] = Headline("accuracy")

    def __init__(self, params: BaseModel | None = None) -> None:
        self.params: Any = params if params is not None else self.Params()

    def adapt_model(self, backbone: nn.Module) -> nn.Module:
        """The network trained federatedly, built around the configured model."""
        return backbone

    def train_loss(
        self,
        model: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: BatchTransform,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """The loss of one mini-batch of raw (uint8) images."""
        raise NotImplementedError

    def after_step(self, model: nn.Module) -> None:
        """Runs after each optimizer step (e.g. a momentum target network's update)."""

    def headline_value(self, metrics: EvalMetrics) -> float:
        """The headline metric of one evaluation (default: its accuracy; a task whose headline is
        another number reports it in `metrics.extra` under the headline's name)."""
        return metrics.extra.get(self.headline.name, metrics.accuracy)


TASKS: Registry[type[Task]] = Registry("task")
