"""Update validation: a client result reaches aggregation only if it is well formed.

Rejected results are dropped (with the reason reported to the tracker), never raised:
one broken or malicious client must not stop the federation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from fedforge.errors import InvalidUpdate
from fedforge.records import UploadSpec


@dataclass
class Rejection:
    client_id: int
    reason: str


def _all_finite(w: torch.Tensor) -> bool:
    """One reduction instead of a boolean mask: a finite sum means every element is finite;
    only a non-finite sum (NaN/Inf present, or float32 overflow) needs the exact check."""
    return bool(torch.isfinite(w.sum())) or bool(torch.isfinite(w).all())


class UpdateValidator:
    """Checks every named entry (shape, dtype, finiteness), the sample count and entry weights, and
    the distance of entries with a global counterpart (the model) to it.

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

    def check(self, result, specs: dict[str, UploadSpec]) -> None:
        """`specs`: every entry a result may carry (`Algorithm.upload_specs`); those with a reference
        are also held to the distance bounds."""
        update = result.update
        if not isinstance(update, dict) or not all(isinstance(k, str) for k in update):
            raise InvalidUpdate(f"the update is a {type(update).__name__}, not named tensors")
        unexpected = sorted(set(update) - set(specs))
        if unexpected:
            raise InvalidUpdate(f"unexpected entries {unexpected[:5]}; this method takes {sorted(specs)}")
        missing = [name for name, spec in specs.items() if spec.required and name not in update]
        if missing:
            raise InvalidUpdate(f"missing entries {missing}")
        if not isinstance(result.num_samples, int) or result.num_samples < 0:
            raise InvalidUpdate(f"num_samples={result.num_samples!r} is not a non-negative integer")
        if self.max_samples is not None and result.num_samples > self.max_samples:
            raise InvalidUpdate(
                f"num_samples={result.num_samples} exceeds the {self.max_samples} a client may claim "
                "(backend.max_samples)"
            )
        self._check_weights(result.entry_weights, specs)
        for name, spec in specs.items():
            if spec.weight is not None and name in update and result.weight(name) != spec.weight:
                raise InvalidUpdate(f"entry '{name}' claims weight {result.weight(name):g}; every client weighs "
                                    f"{spec.weight:g} here (privacy)")  # fmt: skip
        for name, tensor in update.items():
            senders = specs[name].senders
            if senders is not None and result.client_id not in senders:
                raise InvalidUpdate(f"entry '{name}' was not asked of client {result.client_id} this round")
            self._check_entry(name, tensor, specs[name])

    def _check_weights(self, weights: object, specs: dict[str, UploadSpec]) -> None:
        """An entry's weight is a claim like the sample count: finite, non-negative, capped alike."""
        if not isinstance(weights, dict):
            raise InvalidUpdate(f"entry weights are a {type(weights).__name__}, not a mapping")
        for name, weight in weights.items():
            if name not in specs or not isinstance(weight, int | float) or not math.isfinite(weight) or weight < 0:
                raise InvalidUpdate(
                    f"entry weight {str(name)[:64]!r}={weight!r} is not a finite weight >= 0 of an entry"
                )
            if self.max_samples is not None and weight > self.max_samples:
                raise InvalidUpdate(f"entry weight {name!r}={weight:g} exceeds backend.max_samples={self.max_samples}")

    def _check_entry(self, name: str, w: object, spec: UploadSpec) -> None:
        if not isinstance(w, torch.Tensor):
            raise InvalidUpdate(f"entry '{name}' is {type(w).__name__}, not a tensor")
        if w.dtype != torch.float32 or tuple(w.shape) != spec.shape:
            raise InvalidUpdate(f"entry '{name}' is {w.dtype} {tuple(w.shape)}, expected float32 {spec.shape}")
        if spec.hidden:
            return  # masked under secure aggregation: the server can read no value of it
        if not _all_finite(w):
            raise InvalidUpdate(f"entry '{name}' contains NaN or infinite values")
        if spec.max_norm is not None and (norm := float(torch.linalg.vector_norm(w))) > spec.max_norm:
            raise InvalidUpdate(f"entry '{name}' has norm {norm:.4g}, over the {spec.max_norm:g} the method allows")
        reference = spec.reference
        if reference is None or (self.max_update_norm is None and self.max_update_ratio is None
                                 and spec.max_distance is None):  # fmt: skip
            return
        norm = float(torch.linalg.vector_norm(w - reference))  # an absurd upload's overflows to inf: rejected
        if spec.max_distance is not None and norm > spec.max_distance:
            raise InvalidUpdate(
                f"entry '{name}' moved {norm:.4g} from the global model, over the clip {spec.max_distance:.4g} "
                "(privacy.clip): a DP client clips its update"
            )
        if self.max_update_norm is not None and norm > self.max_update_norm:
            raise InvalidUpdate(
                f"entry '{name}': update norm {norm:.4g} exceeds validation.max_update_norm={self.max_update_norm}"
            )
        if self.max_update_ratio is not None:
            scale = (
                spec.reference_norm if spec.reference_norm is not None else float(torch.linalg.vector_norm(reference))
            )
            bound = self.max_update_ratio * max(scale, 1.0)
            if norm > bound:
                raise InvalidUpdate(
                    f"entry '{name}': update norm {norm:.4g} is over validation.max_update_ratio="
                    f"{self.max_update_ratio:g} times the global model's norm (bound {bound:.4g})"
                )

    def verdict(self, result, specs: dict[str, UploadSpec]) -> Rejection | None:
        """None when the result may be aggregated, else why it is rejected."""
        try:
            self.check(result, specs)
        except InvalidUpdate as err:
            return Rejection(result.client_id, str(err))
        return None
