"""Secure aggregation inside a simulated round: the cohort's MODEL uploads go through the protocol.

Each client's input is its weighted update w (upload - global); the server learns only the sum
over the clients whose masked input arrived, and their total weight. Simulated dropouts (seeded,
`secure_aggregation.dropout_rate`) leave after sharing keys, so their masks must be recovered.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from fedforge.config import SecureAggregationConfig
from fedforge.records import MODEL, UploadSpec
from fedforge.seeding import SECAGG, derive_seed


class SecureAggregation:
    def __init__(self, cfg: SecureAggregationConfig, seed: int) -> None:
        from fedforge.privacy.secagg import keys  # noqa: F401  (the cryptography extra, said before the run)

        self.cfg, self.seed = cfg, seed

    def specs(self, specs: dict[str, UploadSpec]) -> dict[str, UploadSpec]:
        """The MODEL entry is masked: the server checks its shape only."""
        return {**specs, MODEL: dataclasses.replace(specs[MODEL], hidden=True)}

    def dropouts(self, clients: list[int], round_index: int) -> frozenset[int]:
        count = round(self.cfg.dropout_rate * len(clients))
        rng = np.random.default_rng(derive_seed(self.seed, SECAGG, round_index, 1))
        return (
            frozenset(int(c) for c in rng.choice(sorted(clients), size=count, replace=False)) if count else frozenset()
        )

    def reduce(
        self, outcome: Any, reference: torch.Tensor, round_index: int, clip_range: float | None
    ) -> tuple[torch.Tensor | None, float, dict[str, float], list[tuple[int | None, str, str]]]:
        """(the weighted mean upload or None when aborted, the survivors' weight, metrics, events).

        A remote executor ran the protocol with its clients (`outcome.masked`); otherwise the round's
        kept uploads play the clients here."""
        if outcome.masked is not None:
            masked = outcome.masked
            return masked.mean, masked.weight, masked.metrics, masked.events
        from fedforge.privacy.secagg.protocol import simulate

        uploads = outcome.kept
        if not uploads:
            return None, 0.0, {}, []
        inputs = {u.client_id: ((u.vector - reference).cpu(), u.weight) for u in uploads}
        bound = clip_range if clip_range is not None else self.cfg.clip_range
        outcome = simulate(inputs, self.cfg, bound, round_index, self.seed, self.dropouts(list(inputs), round_index))
        n = max(len(inputs), 1)
        metrics = {
            "secagg_bytes_up": float(outcome.bytes_up),
            "secagg_bytes_down": float(outcome.bytes_down),
            "secagg_client_seconds": outcome.client_seconds / n,
            "secagg_server_seconds": outcome.server_seconds,
            "secagg_survivors": float(len(outcome.survivors)),
            "secagg_clipped": float(outcome.clipped),
        }
        if outcome.total is None or outcome.weight <= 0:
            return None, 0.0, metrics, outcome.events
        mean = reference + (outcome.total / outcome.weight).to(reference.dtype).to(reference.device)
        return mean, outcome.weight, metrics, outcome.events
