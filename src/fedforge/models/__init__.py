"""Model registry: `model: {name: cnn}` builds a network for the dataset's shape and classes.

A model is a class or a factory. fedforge passes it, by name, whichever of `input_shape`
(C, H, W), `num_classes` and `in_channels` its signature asks for; its keyword-only
arguments are its config parameters (`model: {name: cnn, width: 64}`). `torchvision:NAME`
names any torchvision classification model (models/torchvision_nets.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from fedforge.errors import ConfigError
from fedforge.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model")
MODEL_INPUTS = ("input_shape", "num_classes", "in_channels")  # what fedforge fills in from the data


def check_factory(factory: ModelFactory) -> ModelFactory:
    """Refuse, when it is registered, a model whose arguments fedforge could not fill."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        raise ConfigError(f"model {factory!r} is not a class or function fedforge can call") from None
    for param in signature.parameters.values():
        no_default = param.default is inspect.Parameter.empty
        filled = param.name in MODEL_INPUTS
        if param.kind is param.POSITIONAL_ONLY and no_default:
            raise ConfigError(
                f"model {_name(factory)}: positional-only argument '{param.name}' cannot be passed by name; "
                f"name it {' or '.join(MODEL_INPUTS)} without the `/`"
            )
        if param.kind is param.POSITIONAL_OR_KEYWORD and no_default and not filled:
            raise ConfigError(
                f"model {_name(factory)}: argument '{param.name}' has no default and fedforge only passes "
                f"{', '.join(MODEL_INPUTS)}; give it a default or make it keyword-only (after `*`) to set it "
                f"from the config (model.{param.name}=...)"
            )
    return factory


def _name(factory: Any) -> str:
    return getattr(factory, "__qualname__", repr(factory))


def call_factory(
    factory: ModelFactory, input_shape: tuple[int, int, int], num_classes: int, params: dict[str, Any]
) -> nn.Module:
    """Build one model, passing the data's shape and classes under the names the factory uses."""
    accepted = inspect.signature(factory).parameters
    given = {"input_shape": tuple(input_shape), "num_classes": num_classes, "in_channels": input_shape[0]}
    model = factory(**{k: v for k, v in given.items() if k in accepted}, **params)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {_name(factory)} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def build_model(
    model_cfg: Any,
    input_shape: tuple[int, int, int],
    num_classes: int,
    seed: int,
    adapt: Callable[[nn.Module], nn.Module] | None = None,
) -> nn.Module:
    """The network a `model:` config section describes (see build_network)."""
    params = model_cfg.params.model_dump()
    return build_network(model_cfg.resolve(), params, input_shape, num_classes, seed, adapt, model_cfg.weights)


def build_network(
    factory: ModelFactory,
    params: dict[str, Any],
    input_shape: tuple[int, int, int],
    num_classes: int,
    seed: int,
    adapt: Callable[[nn.Module], nn.Module] | None = None,
    weights: str | None = None,
) -> nn.Module:
    """Instantiate the model with initial weights fixed by `seed`, then local `weights` if given.

    torchvision initializes with the global RNG inside constructors, so the RNG is forked
    and seeded here: the global stream outside is left untouched. `adapt` (the task's
    `adapt_model`, e.g. SSL heads around the backbone) runs under the same seed, after the
    pretrained weights are in. The factory is passed resolved (not by name), so Ray workers
    build a model the driver registered without importing the module that registered it.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = call_factory(factory, input_shape, num_classes, params)
        if weights is not None:
            from fedforge.models.pretrained import load_weights

            load_weights(model, weights)
        return adapt(model) if adapt is not None else model


from fedforge.models import detection, segmentation, small, torchvision_nets  # noqa: E402,F401  (registers the built-ins)
