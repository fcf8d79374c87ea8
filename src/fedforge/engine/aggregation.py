"""How a round's client outcomes are collected and reduced before the server folds them in.

Each result is validated entry by entry (`Algorithm.upload_specs`) as it arrives. Entries that
reduce by their weighted mean (every entry but the model under a robust aggregator) are added
to a float64 running sum and dropped: a round holds one vector per entry however many clients
report, and a Ray worker returns one partial sum per entry for all its clients. Under a robust
aggregator the model entries are kept (in job order) and reduced together at the end.

Simulated Byzantine clients' results are held back whole until the round's results are in,
then corrupted (aggregation/attacks.py) and admitted like any other: every executor produces
honest results and the attack acts at the same place for all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from fedforge.aggregation.reducers import Aggregator
from fedforge.engine.validation import Rejection, UpdateValidator
from fedforge.engine.weights import payload_bytes
from fedforge.records import MODEL, ClientResult, UploadSpec


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

    def reduced(self, reduction: str) -> torch.Tensor:
        """The entry as `Algorithm.apply` receives it: the weighted mean, or the weighted sum."""
        if reduction == "mean":
            return self.mean()
        assert self.total is not None
        return self.total.to(torch.float32)


@dataclass
class PartialSum:
    """Uploads of parts of MODEL (sub-models, `UploadSpec.positions`), summed per position: the total
    sum_i w_i v_i and the weight sum_i w_i of the uploads that hold each position, in float64, so
    each position is averaged over its holders alone. Partial sums merge by addition."""

    total: torch.Tensor | None = None
    cover: torch.Tensor | None = None
    weight: float = 0.0  # the uploads' total weight, whatever part each holds

    def add(self, positions: torch.Tensor, vector: torch.Tensor, weight: float, size: int) -> None:
        if weight <= 0:
            return
        if self.total is None or self.cover is None:
            dtype = _accumulator_dtype(vector)
            self.total = torch.zeros(size, dtype=dtype, device=vector.device)
            self.cover = torch.zeros(size, dtype=dtype, device=vector.device)
        self.total.index_add_(0, positions, vector.detach().to(self.total.dtype), alpha=float(weight))
        self.cover.index_add_(0, positions, torch.ones_like(positions, dtype=self.cover.dtype), alpha=float(weight))
        self.weight += float(weight)

    def merge(self, other: PartialSum) -> None:
        if other.total is None or other.cover is None:
            return
        if self.total is None or self.cover is None:
            self.total, self.cover = other.total.clone(), other.cover.clone()
        else:
            self.total.add_(other.total.to(self.total.device))
            self.cover.add_(other.cover.to(self.cover.device))
        self.weight += other.weight

    def mean(self, reference: torch.Tensor, whole: WeightedSum | None) -> torch.Tensor:
        """Each position's mean over the uploads holding it (whole-model uploads hold them all); a
        position nobody held keeps the reference's value."""
        assert self.total is not None and self.cover is not None
        total, cover = self.total, self.cover
        if whole is not None and whole.total is not None:
            total, cover = total + whole.total.to(total.device), cover + whole.weight
        held = cover > 0
        mean = torch.where(held, total / cover.clamp_min(1e-300), reference.to(total.dtype))
        return mean.to(torch.float32)

    def to(self, device: torch.device | str) -> None:
        if self.total is not None and self.cover is not None:
            self.total, self.cover = self.total.to(device), self.cover.to(device)


@dataclass
class ClientReceipt:
    """What the round record keeps of one client's result (its tensors may be summed away)."""

    client_id: int
    num_samples: int
    metrics: dict[str, float]
    bytes_up: int
    kept: bool  # passed validation and reached aggregation


@dataclass
class KeptUpload:
    """One client's MODEL entry, kept whole for an aggregator that needs them all."""

    client_id: int
    vector: torch.Tensor
    weight: float


@dataclass
class MaskedSum:
    """What secure aggregation over the network produced: the survivors' weighted mean upload (None:
    the round was aborted), their total weight, the protocol's metrics and events."""

    mean: torch.Tensor | None
    weight: float
    metrics: dict[str, float]
    events: list[tuple[int | None, str, str]]


@dataclass
class RoundOutcome:
    """A round's outcomes as they arrive: validated, then summed per entry or kept whole.

    `specs`: what a result may carry (`Algorithm.upload_specs`); `streaming`: whether the MODEL
    entry is reduced by its weighted mean (the aggregator streams); `byzantine`: clients whose
    results are held for the attack simulation."""

    validator: UpdateValidator
    specs: dict[str, UploadSpec]
    streaming: bool
    byzantine: frozenset[int] = frozenset()
    receipts: list[ClientReceipt] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    failures: list[Any] = field(default_factory=list)  # ClientFailure from the executors
    sums: dict[str, WeightedSum] = field(default_factory=dict)
    parts: PartialSum = field(default_factory=PartialSum)  # uploads of parts of MODEL (sub-models)
    kept: list[KeptUpload] = field(default_factory=list)
    held: list[ClientResult] = field(default_factory=list)
    masked: MaskedSum | None = None  # set by a remote executor that ran secure aggregation with its clients

    @property
    def reference(self) -> torch.Tensor:
        """The global counterpart of the MODEL entry."""
        reference = self.specs[MODEL].reference
        assert reference is not None
        return reference

    def screen(self, result: Any) -> str | None:
        """Why `result` may not be aggregated this round, or None (callable from any thread)."""
        rejection = self.validator.verdict(result, self.specs)
        return None if rejection is None else rejection.reason

    def add(self, outcome: Any, screened: bool = False) -> None:
        """One client's ClientResult or ClientFailure; `screened`: it already passed `screen` (a
        remote upload is validated at the door, before the client is answered)."""
        if not isinstance(outcome, ClientResult):
            self.failures.append(outcome)
        elif outcome.client_id in self.byzantine:
            self.held.append(outcome)  # turned by the attack later, and validated then
        else:
            self.admit(outcome, screened)

    def admit(self, result: ClientResult, screened: bool = False) -> None:
        """Validate one result (unless it was already) and fold in its entries."""
        reason = None if screened else self.screen(result)
        if reason is not None:
            self.reject(result, reason)
            return
        bytes_up = payload_bytes(result.update)
        self.receipts.append(ClientReceipt(result.client_id, result.num_samples, result.metrics, bytes_up, True))
        for name, tensor in result.update.items():
            positions = self.specs[name].positions
            if positions is not None:
                self.parts.add(positions, tensor, result.weight(name), self.reference.numel())
            elif name == MODEL and not self.streaming:
                if result.weight(name) > 0:  # as in the mean: a client without samples has no say
                    self.kept.append(KeptUpload(result.client_id, tensor, result.weight(name)))
            else:
                self.sums.setdefault(name, WeightedSum()).add(tensor, result.weight(name))

    def reject(self, result: Any, reason: str) -> None:
        """Record a result that failed validation: its bytes count, its claims (samples, metrics) do not."""
        update = getattr(result, "update", None)
        bytes_up = payload_bytes(update) if isinstance(update, dict) else 0
        self.receipts.append(ClientReceipt(result.client_id, 0, {}, bytes_up, False))
        self.rejected.append(Rejection(result.client_id, reason))

    def release_held(self, corrupt: Callable[[list[ClientResult]], list[ClientResult]]) -> None:
        """Admit the held Byzantine results once `corrupt` (the attack) has turned them."""
        held, self.held = self.held, []
        for result in corrupt(held) if held else []:
            self.admit(result)

    def weight_of(self, name: str) -> float:
        """The total weight the round's admitted uploads give entry `name` (their count, where each weighs 1)."""
        parts = self.parts.weight if name == MODEL else 0.0
        if name in self.sums:
            return self.sums[name].weight + parts
        return sum(k.weight for k in self.kept) + parts if name == MODEL else 0.0

    def reduce_sums(self) -> dict[str, torch.Tensor]:
        """The streamed entries reduced by the weighted mean or sum their spec names (not the kept uploads);
        parts of MODEL are averaged per position into MODEL."""
        reduced = {
            name: total.reduced(self.specs[name].reduction) for name, total in self.sums.items() if total.weight > 0
        }
        if self.parts.weight > 0:
            reduced[MODEL] = self.parts.mean(self.reference, self.sums.get(MODEL))
        return reduced

    def reduce(self, aggregator: Aggregator) -> dict[str, torch.Tensor]:
        """Every entry that some upload carried, reduced: MODEL by `aggregator`, the rest by the weighted
        mean or sum their spec names."""
        reduced = self.reduce_sums()
        if self.kept:
            stacked = torch.stack([k.vector.to(self.reference.device) for k in self.kept])
            weights = torch.tensor([k.weight for k in self.kept], dtype=torch.float64, device=stacked.device)
            reduced[MODEL] = aggregator.reduce(stacked, weights, self.reference)
        return reduced

    def to(self, device: torch.device | str) -> RoundOutcome:
        """Move the summed, kept and held tensors (e.g. a GPU worker's, to the CPU before shipping)."""
        for total in self.sums.values():
            if total.total is not None:
                total.total = total.total.to(device)
        self.parts.to(device)
        for upload in self.kept:
            upload.vector = upload.vector.to(device)
        for result in self.held:
            result.update = {k: v.to(device) for k, v in result.update.items()}
        return self

    def merge(self, other: RoundOutcome) -> None:
        """Fold in another collector's outcomes (a Ray worker's share of the round)."""
        other.to(self.reference.device)
        self.receipts += other.receipts
        self.rejected += other.rejected
        self.failures += other.failures
        self.kept += other.kept
        self.held += other.held
        for name, total in other.sums.items():
            self.sums.setdefault(name, WeightedSum()).merge(total)
        self.parts.merge(other.parts)

    def order_by(self, client_ids: list[int]) -> None:
        """Put receipts, kept and held results in job order, whichever worker produced them."""
        position = {cid: i for i, cid in enumerate(client_ids)}
        for items in (self.receipts, self.rejected, self.failures, self.kept, self.held):
            items.sort(key=lambda item: position.get(item.client_id, len(position)))
