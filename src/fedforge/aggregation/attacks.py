"""Attack simulation (`attack:`): a seeded share of each round's clients is Byzantine.

Which clients attack in round r is drawn from (seed, ATTACK, r) among the clients that report,
so every executor attacks with the same clients. Attacks on uploads act where results are
collected, on the honest result the client produced (the same code for sequential, Ray and
remote clients); `label_flip` is the one a client runs itself (the job tells it), training on
label C - 1 - y. With x the global model and u the honest upload of a Byzantine client:
- `sign_flip`: x - s (u - x), the update reversed and scaled (default s = 1);
- `scale`: x + s (u - x) (default s = 10);
- `gaussian`: x + N(0, s^2) per coordinate, an update of pure noise (default s = 1);
- `alie` ("A Little Is Enough", Baruch et al. 2019): every Byzantine client sends mu - z sigma,
  the coordinate-wise mean and standard deviation of the Byzantine clients' own honest uploads
  (what they can know without seeing the others'); z = s, or by default the paper's
  z_max = Phi^-1((n - k) / n), k = floor(n / 2 + 1) - m, for n clients of which m attack.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from fedforge.plugins import StrictModel
from fedforge.records import MODEL, ClientResult
from fedforge.seeding import ATTACK, torch_generator

DEFAULT_STRENGTH = {"sign_flip": 1.0, "scale": 10.0, "gaussian": 1.0}


class AttackConfig(StrictModel):
    """Simulated Byzantine clients, for measuring robustness (docs/robustness.md)."""

    kind: Literal["sign_flip", "scale", "gaussian", "label_flip", "alie"] = Field(
        ..., description="sign_flip | scale | gaussian | label_flip | alie"
    )
    fraction: float = Field(0.2, gt=0, lt=1, description="share of each round's clients that attack (default 0.2)")
    strength: float | None = Field(
        None,
        gt=0,
        description="sign_flip/scale: the factor s (default 1 / 10); gaussian: the noise std (default 1); alie: "
        "z (default: the paper's z_max for the round); label_flip: unused",
    )


def alie_z(clients: int, attackers: int) -> float:
    """Baruch et al.'s z_max: the largest z for which the crafted value still looks like a majority."""
    supporters = math.floor(clients / 2 + 1) - attackers
    share = (clients - supporters) / clients
    return float(torch.special.ndtri(torch.tensor(share, dtype=torch.float64))) if 0 < share < 1 else 0.0


class Attack:
    """Chooses each round's Byzantine clients and turns their honest results."""

    def __init__(self, config: AttackConfig, seed: int) -> None:
        self.config, self.seed = config, seed

    @property
    def runs_on_client(self) -> bool:
        return self.config.kind == "label_flip"

    def choose(self, round_index: int, client_ids: list[int]) -> frozenset[int]:
        """round(fraction x reporting clients) of them, seeded by round (at least one when any report)."""
        if not client_ids:
            return frozenset()
        count = max(round(self.config.fraction * len(client_ids)), 1)
        order = torch.randperm(len(client_ids), generator=torch_generator(self.seed, ATTACK, round_index))
        return frozenset(client_ids[int(i)] for i in order[:count])

    def corrupt(
        self, results: list[ClientResult], reference: torch.Tensor, round_index: int, clients: int
    ) -> list[ClientResult]:
        """The held results of this round's Byzantine clients, turned; `clients`: how many reported."""
        kind = self.config.kind
        if kind == "label_flip":
            return results  # they already trained on flipped labels
        if kind == "alie":
            return self._alie(results, clients)
        s = self.config.strength if self.config.strength is not None else DEFAULT_STRENGTH[kind]
        turned = []
        for result in results:
            u = result.update[MODEL]
            x = reference.to(u.device)
            if kind == "sign_flip":
                bad = x - s * (u - x)
            elif kind == "scale":
                bad = x + s * (u - x)
            else:
                noise = torch.randn(
                    u.shape, generator=torch_generator(self.seed, ATTACK, round_index, result.client_id)
                )
                bad = x + s * noise.to(u.device)
            turned.append(self._with_model(result, bad))
        return turned

    def _alie(self, results: list[ClientResult], clients: int) -> list[ClientResult]:
        uploads = torch.stack([r.update[MODEL] for r in results]).to(torch.float64)
        z = self.config.strength if self.config.strength is not None else alie_z(clients, len(results))
        std = uploads.std(dim=0, unbiased=False)
        crafted = (uploads.mean(dim=0) - z * std).to(torch.float32)
        return [self._with_model(r, crafted.clone()) for r in results]

    @staticmethod
    def _with_model(result: ClientResult, model: torch.Tensor) -> ClientResult:
        return ClientResult(
            result.client_id, {**result.update, MODEL: model}, result.num_samples, result.metrics, result.entry_weights
        )
