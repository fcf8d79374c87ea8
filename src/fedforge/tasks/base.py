"""The Task protocol: what a model is trained to do (its loss) and how it is judged.

The round loop and the executors call only these methods, so a new kind of problem
(self-supervised, segmentation, ...) is one registered class, not a fork of the engine.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from fedforge.data.transforms import BatchTransform
from fedforge.plugins import StrictModel
from fedforge.registry import Registry


class NoTaskParams(StrictModel):
    """For tasks without parameters."""


class Task:
    """Base class of every task; ClassificationTask is the reference."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoTaskParams
    evaluation: ClassVar[str] = "classification"  # which evaluator judges it (engine/evaluation.py)

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


TASKS: Registry[type[Task]] = Registry("task")
