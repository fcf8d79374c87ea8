"""Flat weights: a model's parameters and float buffers live as views of one vector.

Loading global weights into a client is then a single `copy_`, reading them one `clone`,
and aggregation is arithmetic on 1-D tensors: no state_dict dicts, no deepcopy per client.
Parameters come first in the vector, then buffers, so `vector[:num_params]` lines up
with the flat gradient.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fedforge.errors import InvalidUpdate


@dataclass(frozen=True)
class Entry:
    name: str
    offset: int
    shape: tuple[int, ...]
    is_param: bool

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class Layout:
    """Where each named tensor sits in the flat vector; picklable, shared by server and clients."""

    entries: tuple[Entry, ...]
    num_params: int
    size: int

    def indices(self, keep: Callable[[str], bool]) -> torch.Tensor:
        """Positions in the flat vector of every tensor whose name `keep` accepts."""
        parts = [torch.arange(e.offset, e.offset + e.numel) for e in self.entries if keep(e.name)]
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.int64)

    def views(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named views into `vector` (no copy): a second set of weights for `torch.func.functional_call`."""
        return {e.name: vector[e.offset : e.offset + e.numel].view(e.shape) for e in self.entries}

    def to_state_dict(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        return {e.name: vector[e.offset : e.offset + e.numel].view(e.shape).clone() for e in self.entries}


ALIGN = 16  # floats: every tensor starts on a 64-byte boundary in the flat vector


def aligned(offset: int) -> int:
    """`offset` rounded up to ALIGN. CUDA kernels (cuDNN's BatchNorm, vectorized loads) fault on
    tensors that start at an odd address, e.g. a buffer right after a 10-element bias."""
    return -(-offset // ALIGN) * ALIGN


class FlatModel:
    """Rebinds `model`'s parameters, gradients and float buffers to views of flat tensors."""

    def __init__(self, model: nn.Module) -> None:
        params = list(model.named_parameters())
        buffers = [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
        for name, t in params + buffers:
            if t.dtype != torch.float32:
                raise TypeError(f"flat weights need float32 tensors; '{name}' is {t.dtype}")
        device = params[0][1].device if params else torch.device("cpu")
        entries, offset = [], 0
        for name, t in params:
            offset = aligned(offset)
            entries.append(Entry(name, offset, tuple(t.shape), is_param=True))
            offset += t.numel()
        num_params = offset
        for name, t in buffers:
            offset = aligned(offset)
            entries.append(Entry(name, offset, tuple(t.shape), is_param=False))
            offset += t.numel()
        self.layout = Layout(tuple(entries), num_params, offset)
        self.model = model
        self.vector = torch.zeros(offset, dtype=torch.float32, device=device)  # the alignment gaps stay 0
        self.grad = torch.zeros(num_params, dtype=torch.float32, device=device)
        with torch.no_grad():
            for entry, (name, t) in zip(entries, params + buffers, strict=True):
                view = self.vector[entry.offset : entry.offset + entry.numel].view(entry.shape)
                view.copy_(t)
                if entry.is_param:
                    t.data = view
                    t.grad = self.grad[entry.offset : entry.offset + entry.numel].view(entry.shape)
                else:
                    owner, _, attr = name.rpartition(".")
                    setattr(model.get_submodule(owner), attr, view)

    def load(self, vector: torch.Tensor) -> None:
        self.vector.copy_(vector)

    def read(self) -> torch.Tensor:
        return self.vector.clone()

    def params(self) -> torch.Tensor:
        """The trainable part of the vector (aligned with `grad`)."""
        return self.vector[: self.layout.num_params]

    def zero_grad(self) -> None:
        self.grad.zero_()


def payload_bytes(*tensors_or_dicts: object) -> int:
    """Bytes a payload would occupy on the wire: the sum of its tensors' sizes."""
    total = 0
    for item in tensors_or_dicts:
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, dict):
            total += payload_bytes(*item.values())
        elif isinstance(item, list | tuple):
            total += payload_bytes(*item)
    return total


def serialize(vector: torch.Tensor) -> bytes:
    """Raw little-endian float32 bytes of a flat vector (for transport and checkpoints)."""
    return vector.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()


def deserialize(blob: bytes, layout: Layout) -> torch.Tensor:
    """Inverse of `serialize`, checked against the expected layout."""
    if len(blob) != 4 * layout.size:
        raise InvalidUpdate(
            f"serialized update has {len(blob)} bytes, expected {4 * layout.size} ({layout.size} floats)"
        )
    return torch.frombuffer(bytearray(blob), dtype=torch.float32)


def save_state_dict(layout: Layout, vector: torch.Tensor, path: str) -> None:
    """Write the named tensors of a flat vector as a regular torch state_dict file."""
    buffer = io.BytesIO()
    torch.save(layout.to_state_dict(vector.cpu()), buffer)
    with open(path, "wb") as fh:
        fh.write(buffer.getvalue())
