"""Narrower sub-models of a chain network: the first (or a rolling window of) channels of every layer.

HeteroFL (Diao et al. 2021) and FedRolex (Alam et al. 2022) give a client of capacity r the model
whose every hidden layer keeps ceil(r * C) of its C channels; the input channels and the classes
stay whole. Which channels is a per-layer index set (the first ones, or a window rolling with the
round). A sub-model is then a real, smaller `nn.Module` (it costs r^2 of the compute and memory),
and its weights are the global flat vector at known positions, so the server can average each
position over the clients that hold it.

Slicing is well defined for a chain: each layer feeds the next (mlp, cnn, wscnn). `WidthPlan.of`
traces one forward pass and refuses a model with branches (residual nets), naming the layer.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from fedforge.errors import ConfigError

if TYPE_CHECKING:  # models sit below the engine: only the type is needed
    from fedforge.engine.weights import Entry

PRODUCERS = (nn.Conv2d, nn.Linear)  # layers that make a new set of channels
NORMS = (_BatchNorm, nn.LayerNorm)  # per-channel layers that follow the current set


@dataclass(frozen=True)
class LayerPlan:
    """One parametric layer of the chain: which channel group its input and output belong to.

    Group 0 is the input image's channels; producer k makes group k. `spread` is how many input
    features each channel of the input group becomes (a Linear after Flatten: the spatial size)."""

    name: str
    in_group: int
    out_group: int  # for a norm layer, the group it normalizes (== in_group)
    spread: int = 1
    producer: bool = True  # a Conv2d or Linear (its weight's second dimension indexes the input group)


@dataclass(frozen=True)
class WidthPlan:
    """The chain's channel groups and, per parametric layer, which groups its tensors index."""

    layers: tuple[LayerPlan, ...]
    group_sizes: tuple[int, ...]  # group 0: input channels; the last: the outputs (classes)

    @classmethod
    def of(cls, model: nn.Module, input_shape: tuple[int, ...]) -> WidthPlan:
        """Trace one forward pass of `model` (on zeros) and map its layers to channel groups."""
        leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
        order: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
        hooks = [
            m.register_forward_hook(lambda mod, args, out, name=n: order.append((name, mod, args[0], out)))
            for n, m in leaves
        ]
        x = torch.zeros(1, *input_shape, device=next(model.parameters()).device)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                final = model(x)
        finally:
            model.train(was_training)
            for hook in hooks:
                hook.remove()
        return cls._from_trace(model, x, final, order)

    @classmethod
    def _from_trace(cls, model: nn.Module, x: torch.Tensor, final: torch.Tensor, order: list) -> WidthPlan:
        layers: list[LayerPlan] = []
        sizes = [int(x.shape[1])]
        previous, seen = x, set()
        for name, module, inp, out in order:
            if inp is not previous or name in seen:
                raise ConfigError(
                    f"width slicing (HeteroFL, FedRolex) needs a model that is one chain of layers (mlp, cnn, "
                    f"wscnn); {type(model).__name__} branches or reuses a layer at '{name}'"
                )
            seen.add(name)
            previous = out
            has_params = any(True for _ in module.parameters(recurse=False))
            if isinstance(module, PRODUCERS):
                if isinstance(module, nn.Conv2d) and module.groups != 1:
                    raise ConfigError(f"width slicing cannot slice the grouped convolution '{name}'")
                channels = sizes[-1]
                features = module.in_channels if isinstance(module, nn.Conv2d) else module.in_features
                if features % channels:
                    raise ConfigError(f"layer '{name}' takes {features} inputs, not a multiple of the {channels} "
                                      "channels before it; width slicing needs a chain")  # fmt: skip
                sizes.append(module.out_channels if isinstance(module, nn.Conv2d) else module.out_features)
                layers.append(LayerPlan(name, len(sizes) - 2, len(sizes) - 1, features // channels))
            elif isinstance(module, NORMS):
                if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) != 1:
                    raise ConfigError(f"width slicing needs a LayerNorm over channels only; '{name}' is not")
                layers.append(LayerPlan(name, len(sizes) - 1, len(sizes) - 1, producer=False))
            elif has_params:
                raise ConfigError(f"width slicing does not know how to slice '{name}' ({type(module).__name__})")
        if final is not previous:
            raise ConfigError(f"width slicing needs a chain; {type(model).__name__}'s output is not its last layer's")
        return cls(tuple(layers), tuple(sizes))

    @property
    def hidden_groups(self) -> range:
        """The groups a narrower model shrinks: all but the input channels and the outputs."""
        return range(1, len(self.group_sizes) - 1)

    def channels(self, rate: float, offset: int = 0) -> list[torch.Tensor]:
        """Per group, the channels a sub-model of capacity `rate` keeps: ceil(rate * C) of them, from
        `offset` on (mod C: FedRolex's rolling window), in ascending order; input and outputs whole."""
        sets = []
        for g, size in enumerate(self.group_sizes):
            if g in self.hidden_groups:
                keep = max(1, math.ceil(rate * size - 1e-9))
                sets.append(torch.sort((offset + torch.arange(keep)) % size).values)
            else:
                sets.append(torch.arange(size))
        return sets

    @staticmethod
    def tensor_indices(
        layer: LayerPlan, tensor: str, shape: tuple[int, ...], sets: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Per dimension of the layer's tensor `tensor` (of full `shape`), the indices a sub-model keeps:
        the first indexes the layer's output channels, a producer's weight's second its inputs."""
        dims = [torch.arange(d) for d in shape]
        dims[0] = sets[layer.out_group]
        if tensor == "weight" and layer.producer:
            inputs = sets[layer.in_group]
            spread = torch.arange(layer.spread)
            dims[1] = (inputs[:, None] * layer.spread + spread[None, :]).reshape(-1)
        return dims

    def sub_module(self, model: nn.Module, rate: float) -> nn.Module:
        """A copy of `model` at capacity `rate` (its tensors uninitialized: load weights into it)."""
        sub = copy.deepcopy(model)
        sets = self.channels(rate)
        for layer in self.layers:
            module = sub.get_submodule(layer.name)
            for tensor, value in list(module.named_parameters(recurse=False)) + list(
                module.named_buffers(recurse=False)
            ):
                if not value.is_floating_point():
                    continue
                shape = tuple(len(d) for d in self.tensor_indices(layer, tensor, tuple(value.shape), sets))
                fresh = torch.zeros(shape, dtype=value.dtype, device=value.device)
                setattr(module, tensor, nn.Parameter(fresh) if isinstance(value, nn.Parameter) else fresh)
            _resize_attributes(module, len(sets[layer.in_group]) * layer.spread, len(sets[layer.out_group]))
        return sub

    def positions(self, entries: Iterable[Entry], rate: float, offset: int = 0) -> torch.Tensor:
        """The flat positions (in the full model's vector) of a sub-model's tensors: the layout
        `entries` one after another, each tensor's kept elements in row-major order."""
        sets = self.channels(rate, offset)
        by_name = {layer.name: layer for layer in self.layers}
        parts = []
        for entry in entries:
            owner, _, tensor = entry.name.rpartition(".")
            full = entry.shape
            if owner in by_name:
                dims = self.tensor_indices(by_name[owner], tensor, full, sets)
            else:
                dims = [torch.arange(d) for d in full]
            strides = torch.tensor(full[1:] + (1,)).flip(0).cumprod(0).flip(0).tolist()
            index = torch.zeros((), dtype=torch.int64)
            for d, (kept, stride) in enumerate(zip(dims, strides, strict=True)):
                view = [1] * len(dims)
                view[d] = len(kept)
                index = index + (kept * stride).view(view)
            parts.append(entry.offset + index.reshape(-1))
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)


def _resize_attributes(module: nn.Module, inputs: int, outputs: int) -> None:
    """Keep a sliced layer's size attributes true (they show in repr and some forward checks)."""
    if isinstance(module, nn.Conv2d):
        module.in_channels, module.out_channels = inputs, outputs
    elif isinstance(module, nn.Linear):
        module.in_features, module.out_features = inputs, outputs
    elif isinstance(module, _BatchNorm):
        module.num_features = outputs
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = (outputs,)
