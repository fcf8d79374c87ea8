"""Update validation: a client result reaches aggregation only if it is well formed.

Rejected results are dropped (with the reason reported to the tracker), never raised:
one broken or malicious client must not stop the federation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedforge.errors import InvalidUpdate


@dataclass
class Rejection:
    client_id: int
    reason: str


def _all_finite(w: torch.Tensor) -> bool:
    """One reduction instead of a boolean mask: a finite sum means every element is finite;
    only a non-finite sum (NaN/Inf present, or float32 overflow) needs the exact check."""
    return bool(torch.isfinite(w.sum())) or bool(torch.isfinite(w).all())


class UpdateValidator:
    """Checks shape, dtype, finiteness, sample count and (optionally) distance to the global model."""

    def __init__(self, max_update_norm: float | None = None) -> None:
        self.max_update_norm = max_update_norm

    def check(self, result, global_weights: torch.Tensor) -> None:
        """`global_weights`: the global counterpart of what the client uploads (its size is the expected one)."""
        w = result.weights
        if not isinstance(w, torch.Tensor):
            raise InvalidUpdate(f"weights are {type(w).__name__}, not a tensor")
        size = global_weights.numel()
        if w.dtype != torch.float32 or w.ndim != 1 or w.numel() != size:
            raise InvalidUpdate(f"weights are {w.dtype} {tuple(w.shape)}, expected float32 ({size},)")
        if not _all_finite(w):
            raise InvalidUpdate("weights contain NaN or infinite values")
        if not isinstance(result.num_samples, int) or result.num_samples < 0:
            raise InvalidUpdate(f"num_samples={result.num_samples!r} is not a non-negative integer")
        if self.max_update_norm is not None:
            norm = float(torch.linalg.vector_norm(w - global_weights))
            if norm > self.max_update_norm:
                raise InvalidUpdate(f"update norm {norm:.4g} exceeds validation.max_update_norm={self.max_update_norm}")

    def verdict(self, result, global_weights: torch.Tensor) -> Rejection | None:
        """None when the result may be aggregated, else why it is rejected."""
        try:
            self.check(result, global_weights)
        except InvalidUpdate as err:
            return Rejection(result.client_id, str(err))
        return None
