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
    """Checks shape, dtype, finiteness, sample count and distance to the global model.

    `max_update_ratio` (on by default) rejects an update whose distance to the global model is
    more than that many times the global model's norm (at least 1): honest local training moves
    a model by a fraction of its norm, while a finite but absurd upload (every weight 3e38)
    would otherwise wreck the model for every later round. `max_samples` caps the sample count a
    result may claim (its weight in the mean)."""

    def __init__(
        self,
        max_update_norm: float | None = None,
        max_update_ratio: float | None = None,
        max_samples: int | None = None,
    ) -> None:
        self.max_update_norm, self.max_update_ratio, self.max_samples = max_update_norm, max_update_ratio, max_samples
        self._norm_cache: tuple[torch.Tensor, float] | None = None  # a round's reference is checked once

    def _norm_of(self, reference: torch.Tensor) -> float:
        if self._norm_cache is None or self._norm_cache[0] is not reference:
            self._norm_cache = (reference, float(torch.linalg.vector_norm(reference)))
        return self._norm_cache[1]

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
        if self.max_samples is not None and result.num_samples > self.max_samples:
            raise InvalidUpdate(
                f"num_samples={result.num_samples} exceeds the {self.max_samples} a client may claim "
                "(backend.max_samples)"
            )
        if self.max_update_norm is None and self.max_update_ratio is None:
            return
        norm = float(torch.linalg.vector_norm(w - global_weights))  # an absurd upload's overflows to inf: rejected
        if self.max_update_norm is not None and norm > self.max_update_norm:
            raise InvalidUpdate(f"update norm {norm:.4g} exceeds validation.max_update_norm={self.max_update_norm}")
        if self.max_update_ratio is not None:
            bound = self.max_update_ratio * max(self._norm_of(global_weights), 1.0)
            if norm > bound:
                raise InvalidUpdate(
                    f"update norm {norm:.4g} is over validation.max_update_ratio={self.max_update_ratio:g} times the "
                    f"global model's norm (bound {bound:.4g})"
                )

    def verdict(self, result, global_weights: torch.Tensor) -> Rejection | None:
        """None when the result may be aggregated, else why it is rejected."""
        try:
            self.check(result, global_weights)
        except InvalidUpdate as err:
            return Rejection(result.client_id, str(err))
        return None
