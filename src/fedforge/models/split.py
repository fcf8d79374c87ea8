"""The features / head split of a classifier: its last Linear layer is the head, the rest the features.

Methods that treat the representation and the classifier differently (MOON's contrastive term on
features, FedRep/FedBABU's local or frozen heads, knowledge distillation on features, SSL encoders
and multi-task heads) use this one definition, for every registered model: the small nets end in
a Linear layer, torchvision's classifiers too (`fc`, `classifier[-1]`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.func import functional_call

from fedforge.errors import ConfigError

if TYPE_CHECKING:  # models sit below the engine: only the type is needed
    from fedforge.engine.weights import Layout


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of the model's last Linear layer (its classifier)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            found = name, module
    if found is None:
        raise ConfigError(
            f"{type(model).__name__} has no Linear layer to split off as its head; use a model ending in a "
            "Linear classifier (e.g. cnn, resnet18)"
        )
    return found


@dataclass(frozen=True)
class FeaturesHead:
    """Where a model's head sits, by module name; works on the live model and on its flat layout."""

    head_name: str

    @classmethod
    def of(cls, model: nn.Module) -> FeaturesHead:
        return cls(last_linear(model)[0])

    def head(self, model: nn.Module) -> nn.Module:
        return model.get_submodule(self.head_name)

    def forward(
        self, model: nn.Module, x: torch.Tensor, weights: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of one forward pass: the features are what the head receives. With
        `weights` (named tensors, e.g. `Layout.views`), the pass uses them instead of the model's own."""
        captured: list[torch.Tensor] = []
        hook = self.head(model).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
        try:
            logits = model(x) if weights is None else functional_call(model, weights, (x,))
        finally:
            hook.remove()
        return captured[0], logits

    def head_positions(self, layout: Layout) -> torch.Tensor:
        """The head's positions in the flat vector (to keep it local, freeze it or send it alone)."""
        prefix = f"{self.head_name}."
        return layout.indices(lambda key: key.startswith(prefix))


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """A pass of a teacher or reference model: eval mode (running statistics), no graph; the
    model's training mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
