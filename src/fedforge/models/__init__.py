"""Model registry: `model: {name: cnn}` builds a network for the dataset's shape and classes.

Every factory takes (input_shape, num_classes) plus keyword-only parameters, which are its
config parameters (`model: {name: cnn, width: 64}`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from fedforge.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")


def build_model(
    model_cfg,
    input_shape: tuple[int, int, int],
    num_classes: int,
    seed: int,
    adapt: Callable[[nn.Module], nn.Module] | None = None,
) -> nn.Module:
    """Instantiate the configured model with initial weights fixed by `seed`.

    torchvision initializes with the global RNG inside constructors, so the RNG is forked
    and seeded here: the global stream outside is left untouched. `adapt` (the task's
    `adapt_model`, e.g. SSL heads around the backbone) runs under the same seed.
    """
    import torch

    factory = model_cfg.resolve()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory(input_shape, num_classes, **model_cfg.params.model_dump())
        return adapt(model) if adapt is not None else model


from fedforge.models import small, torchvision_nets  # noqa: E402,F401  (registers the built-ins)
