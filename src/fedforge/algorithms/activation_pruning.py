"""What autograd keeps for backward, measured, and pruned where it feeds weight gradients (FedMef's SAP).

In training, the activations saved for the backward pass dominate a small device's memory, not the
weights (FedMef, Huang et al. CVPR 2024). `SavedActivations` wraps a training loop in
`torch.autograd.graph.saved_tensors_hooks`: every tensor autograd saves is counted in bytes as it is
stored (the model's own parameters excepted: they are model state, counted once). With `keep` set
(scaled activation pruning), the inputs a conv or linear layer saves (used only for its weight
gradient) are stored sparse: the `keep` share of largest magnitude as values plus a bit set, scaled
so the tensor keeps its L1 norm. Those bytes, not a dense copy, are what the context holds until
backward, so the measured saving is real.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from fedforge.algorithms.masks import pack_bits, unpack_bits

PRUNED_IN = (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d)  # layers whose saved tensors SAP prunes
MIN_PRUNED = 64  # elements: smaller saved tensors stay dense (the bit set would not pay for itself)


class SavedActivations:
    """Counts (and with `keep`, prunes) what autograd saves; `peak` is the largest step's total.

    A tensor saved by several operations (a ReLU's output, which the next pool saves too) is stored
    and counted once per step."""

    def __init__(self, model: nn.Module, parameters: torch.Tensor, keep: float | None = None) -> None:
        self.model, self.keep = model, keep
        self.inside = 0  # >0 while a layer of PRUNED_IN runs its forward
        self._hooks: list[Any] = []
        self.parameter_storage = parameters.untyped_storage().data_ptr()
        self.step_bytes = 0
        self.peak = 0
        self._stored: dict[tuple[Any, ...], Any] = {}  # this step's saved tensors, by where they live
        self._saving: Any = None

    def __enter__(self) -> SavedActivations:
        for module in self.model.modules():
            if isinstance(module, PRUNED_IN):
                self._hooks.append(module.register_forward_pre_hook(self._enter_layer))
                self._hooks.append(module.register_forward_hook(self._leave_layer))
        self._saving = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._saving.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._saving.__exit__(*exc)
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self.end_step()

    def end_step(self) -> None:
        """Close one training step: what it saved was all alive when its backward began."""
        self.peak = max(self.peak, self.step_bytes)
        self.step_bytes = 0
        self._stored.clear()

    def _enter_layer(self, *_: object) -> None:
        self.inside += 1

    def _leave_layer(self, *_: object) -> None:
        self.inside -= 1

    def _pack(self, tensor: torch.Tensor) -> Any:
        storage = tensor.untyped_storage().data_ptr()
        if storage == self.parameter_storage:
            return ("kept", tensor)  # model state, counted as such
        key = (storage, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()), tensor._version)
        if key in self._stored:
            return self._stored[key]
        prunable = self.inside and tensor.is_floating_point() and tensor.numel() >= MIN_PRUNED
        if self.keep is not None and prunable:
            shape, bits, values = prune_activation(tensor, self.keep)
            self.step_bytes += bits.numel() + values.numel() * values.element_size()
            packed: Any = ("sparse", shape, bits, values)
        else:
            self.step_bytes += tensor.numel() * tensor.element_size()
            packed = ("kept", tensor)
        self._stored[key] = packed
        return packed

    @staticmethod
    def _unpack(packed: Any) -> torch.Tensor:
        if packed[0] == "kept":
            return packed[1]
        _, shape, bits, values = packed
        dense = torch.zeros(math.prod(shape), dtype=values.dtype, device=values.device)
        dense[unpack_bits(bits, dense.numel())] = values
        return dense.view(shape)


def prune_activation(tensor: torch.Tensor, keep: float) -> tuple[tuple[int, ...], torch.Tensor, torch.Tensor]:
    """(shape, bit set of the kept entries, their values scaled to the tensor's L1 norm)."""
    flat = tensor.detach().reshape(-1)
    k = max(1, math.ceil(keep * flat.numel()))
    magnitude = flat.abs()
    kept = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    kept[torch.topk(magnitude, k, sorted=False).indices] = True
    values = flat[kept]
    total, retained = magnitude.sum(), values.abs().sum()
    scale = total / retained if retained > 0 else torch.ones((), device=flat.device)
    return tuple(tensor.shape), pack_bits(kept), values * scale
