"""Records: what flows between the round loop, methods, executors and the wire (DESIGN section 4).

Jobs and results carry *named* tensors. MODEL is the entry the aggregator reduces (the flat model,
or the part of it a method shares); a method's extras are further entries, declared by
`Algorithm.upload_specs`, validated, counted in bytes, reduced by their weighted mean (or sum), merged
across Ray workers and carried by the gRPC codec like the model. This module depends on torch
only, so every layer can use it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

MODEL = "model"  # the payload entry the aggregator reduces: the model (or the part of it a method shares)


@dataclass
class ServerState:
    """The global model as a flat vector, plus whatever else a method keeps on the server.

    `server_opt` is the server optimizer's state (momenta); the round loop owns it."""

    weights: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    server_opt: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class ClientJob:
    """What the server sends one client for one round: named tensors, MODEL among them.

    `attack` names the attack a simulated Byzantine client runs itself while training (label_flip);
    attacks on uploads are simulated where results are collected, not by the client. `max_epochs` and
    `max_steps` cap its local work where the system simulation (engine/system.py) says so."""

    client_id: int
    round: int
    payload: dict[str, torch.Tensor]
    attack: str = ""
    max_epochs: int | None = None  # a simulated straggler trains fewer local epochs (system.straggler_ratio)
    max_steps: int | None = None  # a simulated slow client stops at the round deadline (system.deadline)

    @property
    def model(self) -> torch.Tensor:
        return self.payload[MODEL]

    def to(self, device: torch.device) -> ClientJob:
        """This job with its tensors on `device` (a no-op where they are already): a job decoded
        from the network or shipped to a GPU worker arrives on the CPU."""
        payload = {k: v.to(device) for k, v in self.payload.items()}
        return dataclasses.replace(self, payload=payload)


@dataclass
class ClientResult:
    """What one client sends back: named tensors (MODEL among them), its sample count and metrics.

    Each entry is averaged with weight `entry_weights[name]`, or the sample count where absent."""

    client_id: int
    update: dict[str, torch.Tensor]
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)
    entry_weights: dict[str, float] = field(default_factory=dict)

    def weight(self, name: str) -> float:
        return float(self.entry_weights.get(name, self.num_samples))


@dataclass(frozen=True)
class UploadSpec:
    """What one entry of an upload must be: float32 of `shape`. With a `reference` (the entry's global
    counterpart) the distance bounds of validation apply to it too; `max_norm` bounds the entry's own
    L2 norm (e.g. a statistic with a known range). A non-required entry may be absent.

    `reduction` says what the round hands `Algorithm.apply` for the entry: `mean`, the weighted mean
    sum_i w_i v_i / sum_i w_i; or `sum`, sum_i w_i v_i itself (SCAFFOLD's control variates move by
    the cohort's share of all clients, which a mean cannot say). Both stream in float64.

    `weight` fixes the entry's weight (a result claiming another is rejected): under DP every client
    weighs 1, so no sample count can buy a larger share. `max_distance` bounds ||entry - reference||
    (a DP client's clipped update). A `hidden` entry is masked before the server sees it (secure
    aggregation): its values cannot be checked, only its shape.

    `positions` makes the entry a part of MODEL (a sub-model: HeteroFL's narrower widths): the values
    of MODEL at those flat positions. Parts are reduced into MODEL itself, each position averaged over
    the uploads that hold it, so the aggregator and server optimizer see one MODEL entry as ever.
    `senders` restricts who may send the entry (the clients the server gave that sub-model)."""

    shape: tuple[int, ...]
    reference: torch.Tensor | None = None
    required: bool = True
    max_norm: float | None = None
    reference_norm: float | None = None  # ||reference||, computed once per round for the ratio bound
    reduction: Literal["mean", "sum"] = "mean"
    weight: float | None = None
    max_distance: float | None = None
    hidden: bool = False  # secure aggregation: the server never reads the values, so only the shape is checked
    positions: torch.Tensor | None = None  # int64 positions in MODEL this entry fills (a sub-model's part)
    senders: frozenset[int] | None = None  # the only clients that may send this entry (None: any)

    @classmethod
    def of(cls, reference: torch.Tensor) -> UploadSpec:
        return cls(tuple(reference.shape), reference, reference_norm=float(torch.linalg.vector_norm(reference)))

    def to(self, device: torch.device | str) -> UploadSpec:
        reference = self.reference.to(device) if self.reference is not None else None
        positions = self.positions.to(device) if self.positions is not None else None
        return dataclasses.replace(self, reference=reference, positions=positions)
