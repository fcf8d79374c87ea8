"""How a round's client outcomes are collected before the server folds them in.

Most methods aggregate with a sample-weighted sum of the uploads (FedAvg and everything
built on its hooks). For those, each result is validated and added to a running sum as it
arrives and its weights are dropped: a round holds one vector however many clients report,
and a Ray worker returns one partial sum for all its clients. Methods that override
`Algorithm.aggregate` get the validated results as a list instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from fedforge.engine.validation import Rejection, UpdateValidator
from fedforge.engine.weights import payload_bytes


def _accumulator_dtype(vector: torch.Tensor) -> torch.dtype:
    return torch.float32 if vector.device.type == "mps" else torch.float64  # MPS has no float64


@dataclass
class WeightedSum:
    """sum_i w_i v_i and sum_i w_i over some uploads; partial sums merge by addition.

    The sum is kept in float64: rounded back to float32 once, it does not depend on the order
    clients were added in, so a round split over workers averages to the sequential weights.
    """

    total: torch.Tensor | None = None
    weight: float = 0.0

    def add(self, vector: torch.Tensor, weight: float) -> None:
        if weight <= 0:
            return
        if self.total is None:
            self.total = vector.detach().to(_accumulator_dtype(vector)).mul(float(weight))
        else:
            self.total.add_(vector, alpha=float(weight))
        self.weight += float(weight)

    def merge(self, other: WeightedSum) -> None:
        if other.total is None:
            return
        if self.total is None:
            self.total = other.total.clone()
        else:
            self.total.add_(other.total.to(self.total.device))
        self.weight += other.weight

    def mean(self) -> torch.Tensor:
        if self.total is None or self.weight <= 0:
            raise ValueError("the weighted mean of no uploads is undefined")
        return (self.total / self.weight).to(torch.float32)

    @classmethod
    def of(cls, results: list[Any]) -> WeightedSum:
        """The sample-weighted sum of results' uploads (clients without samples do not count)."""
        total = cls()
        for result in results:
            total.add(result.weights, result.num_samples)
        return total


@dataclass
class ClientReceipt:
    """What the round record keeps of one client's result (its weights may be summed away)."""

    client_id: int
    num_samples: int
    metrics: dict[str, float]
    bytes_up: int
    kept: bool  # passed validation and reached aggregation


@dataclass
class RoundOutcome:
    """A round's outcomes as they arrive: validated, then summed (weighted-sum methods) or kept whole.

    `reference` is the global counterpart of an upload (`Algorithm.upload_reference`).
    """

    validator: UpdateValidator
    reference: torch.Tensor
    streaming: bool
    receipts: list[ClientReceipt] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    failures: list[Any] = field(default_factory=list)  # ClientFailure from the executors
    kept: list[Any] = field(default_factory=list)  # whole ClientResults (non-streaming methods only)
    total: WeightedSum = field(default_factory=WeightedSum)

    def screen(self, result: Any) -> str | None:
        """Why `result` may not be aggregated this round, or None (callable from any thread)."""
        rejection = self.validator.verdict(result, self.reference)
        return None if rejection is None else rejection.reason

    def add(self, outcome: Any) -> None:
        """One client's ClientResult or ClientFailure."""
        if not hasattr(outcome, "weights"):
            self.failures.append(outcome)
            return
        reason = self.screen(outcome)
        if reason is not None:
            self.reject(outcome, reason)
            return
        bytes_up = payload_bytes(outcome.weights, outcome.extras)
        self.receipts.append(ClientReceipt(outcome.client_id, outcome.num_samples, outcome.metrics, bytes_up, True))
        if self.streaming:
            self.total.add(outcome.weights, outcome.num_samples)
        else:
            self.kept.append(outcome)

    def reject(self, result: Any, reason: str) -> None:
        """Record a result that failed validation: its bytes count, its claims (samples, metrics) do not."""
        bytes_up = payload_bytes(result.weights, result.extras) if isinstance(result.weights, torch.Tensor) else 0
        self.receipts.append(ClientReceipt(result.client_id, 0, {}, bytes_up, False))
        self.rejected.append(Rejection(result.client_id, reason))

    def to(self, device: torch.device | str) -> RoundOutcome:
        """Move the summed and kept weights (e.g. a GPU worker's, to the CPU before shipping)."""
        if self.total.total is not None:
            self.total.total = self.total.total.to(device)
        for result in self.kept:
            result.weights = result.weights.to(device)
        return self

    def merge(self, other: RoundOutcome) -> None:
        """Fold in another collector's outcomes (a Ray worker's share of the round)."""
        other.to(self.reference.device)
        self.receipts += other.receipts
        self.rejected += other.rejected
        self.failures += other.failures
        self.kept += other.kept
        self.total.merge(other.total)

    def order_by(self, client_ids: list[int]) -> None:
        """Put receipts and kept results in job order, whichever worker produced them."""
        position = {cid: i for i, cid in enumerate(client_ids)}
        for items in (self.receipts, self.rejected, self.failures, self.kept):
            items.sort(key=lambda item: position.get(item.client_id, len(position)))
