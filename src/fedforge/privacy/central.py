"""Central DP-FedAvg (McMahan et al. 2018) with fixed or adaptive clipping (Andrew et al. 2021).

The client clips its update (upload - global) to L2 norm C and weighs 1; the server adds
N(0, (z C)^2) to the sum of the cohort's updates and divides by the expected cohort size m, so
one client changes the released sum by at most C whatever it sends. The round's clip travels in
the job (`dp/clip`), so a client reads it from its job alone, in every executor. Adaptive
clipping moves C geometrically toward a quantile of the update norms, from a count of unclipped
clients that is itself noised; the update noise is raised so both releases together are the
Gaussian mechanism with multiplier z, which is what the accountant is told.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from fedforge.config import PrivacyConfig
from fedforge.errors import ConfigError
from fedforge.privacy import accountant
from fedforge.privacy.noise import noise_generator
from fedforge.records import MODEL, ClientJob, ClientResult, ServerState, UploadSpec

CLIP = "dp/clip"  # job entry: [clip bound, 1.0 when the server wants the unclipped bit back]
UNCLIPPED = "dp/unclipped"  # upload entry (adaptive clipping): 1 when the update was within the clip, else 0
TOLERANCE = 1e-4  # float32 rounding of a clipped update's norm: the server's bound allows this much over C


def clip_update(upload: torch.Tensor, reference: torch.Tensor, clip: float) -> tuple[torch.Tensor, bool]:
    """`upload` moved toward `reference` so that ||upload - reference|| <= clip; and whether it already was."""
    delta = upload - reference
    norm = float(torch.linalg.vector_norm(delta))
    if norm <= clip:
        return upload, True
    return reference + delta * (clip / norm), False


def clip_result(result: ClientResult, job: ClientJob) -> ClientResult:
    """The client's side: clip the MODEL upload to the job's bound, weigh it 1, report the bit if asked."""
    bound, wants_bit = (float(v) for v in job.payload[CLIP])
    upload, within = clip_update(result.update[MODEL], job.model, bound)
    result.update[MODEL] = upload
    result.entry_weights[MODEL] = 1.0
    if wants_bit:
        result.update[UNCLIPPED] = torch.tensor([1.0 if within else 0.0], device=upload.device)
        result.entry_weights[UNCLIPPED] = 1.0
    return result


class CentralDP:
    """The server's side: clip bound in the jobs, validation of the bound, noise on the sum, accounting."""

    def __init__(
        self,
        cfg: PrivacyConfig,
        num_clients: int,
        clients_per_round: int,
        rounds: int,
        seed: int,
        secret_noise: bool = False,
    ) -> None:
        self.cfg, self.seed, self.secret_noise = cfg, seed, secret_noise  # secret: a deployment (privacy/noise.py)
        self.m = clients_per_round  # the expected cohort: the denominator, fixed whoever reports
        self.q = clients_per_round / num_clients
        z = cfg.noise_multiplier
        if cfg.target_epsilon is not None and cfg.on_budget == "calibrate":
            z = accountant.noise_for_budget(self.q, rounds, cfg.delta, cfg.target_epsilon)
        self.noise_multiplier = z
        adaptive = cfg.adaptive_clip
        self.count_stddev = 0.0
        self.update_noise = z
        if adaptive is not None and z > 0:
            self.count_stddev = adaptive.count_stddev if adaptive.count_stddev is not None else self.m / 20
            if 2 * self.count_stddev <= z:
                raise ConfigError(
                    f"privacy.adaptive_clip.count_stddev: {self.count_stddev:g} is too little noise on the count for "
                    f"z={z:g} (it needs 2 x count_stddev > z, Andrew et al. 2021); raise count_stddev or the cohort"
                )
            self.update_noise = (z**-2 - (2 * self.count_stddev) ** -2) ** -0.5 if self.count_stddev > 0 else z
        self.rounds = rounds
        if cfg.target_epsilon is not None and cfg.on_budget == "stop":
            self.rounds = accountant.steps_within_budget(self.q, z, cfg.delta, cfg.target_epsilon, rounds)
            if self.rounds == 0:
                first = accountant.epsilon(self.q, z, 1, cfg.delta)
                raise ConfigError(
                    f"privacy.target_epsilon: {cfg.target_epsilon:g} is below what one round spends ({first:.3g} at "
                    f"z={z:g}, q={self.q:g}); raise the budget or z, or use on_budget calibrate"
                )

    # -- the round, in order ---------------------------------------------------------------
    def clip(self, state: ServerState) -> float:
        return float(state.extras.get("privacy", {}).get("clip", self.cfg.clip))

    def coordinate_bound(self, state: ServerState) -> float:
        """No coordinate of a clipped update exceeds the clip: secure aggregation's quantization range."""
        return self.clip(state)

    def dress(self, job: ClientJob, state: ServerState) -> None:
        """Put the round's clip bound into a client's job."""
        wants_bit = 1.0 if self.cfg.adaptive_clip is not None else 0.0
        job.payload[CLIP] = torch.tensor([self.clip(state), wants_bit], device=job.model.device)

    def specs(self, specs: dict[str, UploadSpec], state: ServerState) -> dict[str, UploadSpec]:
        """Uploads weigh 1 and stay within the clip of the global model; the bit is 0 or 1."""
        bound = self.clip(state) * (1 + TOLERANCE)
        specs = {**specs, MODEL: dataclasses.replace(specs[MODEL], weight=1.0, max_distance=bound)}
        if self.cfg.adaptive_clip is not None:
            specs[UNCLIPPED] = UploadSpec((1,), weight=1.0, max_norm=1.0, reduction="sum")
        return specs

    def release(
        self,
        state: ServerState,
        reduced: dict[str, torch.Tensor],
        count: float,
        client_metrics: list[dict[str, float]],
        round_index: int,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, float]]:
        """The noised MODEL mean over the expected cohort, the server's new privacy state, and the round's metrics.

        `reduced[MODEL]` is the plain mean of `count` clipped uploads (each weighs 1). Without noise
        (z=0) epsilon is infinite and is not reported."""
        clip = self.clip(state)
        generator = noise_generator(self.seed, self.secret_noise, round_index)
        reduced = dict(reduced)
        unclipped = reduced.pop(UNCLIPPED, None)
        if MODEL in reduced:
            reference = state.weights
            noise = torch.randn(reference.shape, generator=generator).to(reference.device)
            total = (reduced[MODEL] - reference) * count + noise * (self.update_noise * clip)
            reduced[MODEL] = reference + total / self.m
        metrics = {"clip": clip}
        if self.noise_multiplier > 0:
            metrics["epsilon"] = self.epsilon(round_index + 1)
        kept = {"clip": clip}
        if self.cfg.adaptive_clip is not None and unclipped is not None:
            noisy = float(unclipped.sum()) + float(torch.randn((), generator=generator)) * self.count_stddev
            fraction = noisy / self.m
            target = self.cfg.adaptive_clip
            kept["clip"] = clip * math.exp(-target.lr * (fraction - target.target_quantile))
            metrics["unclipped_fraction"] = fraction
        return reduced, kept, metrics

    def epsilon(self, rounds_done: int) -> float:
        return accountant.epsilon(self.q, self.noise_multiplier, rounds_done, self.cfg.delta)

    def summary(self, state: ServerState, rounds_done: int) -> dict[str, Any]:
        """The run's privacy for summary.json (epsilon null without noise: there is no bound)."""
        return {
            "privacy": {
                "mechanism": "central",
                "epsilon": self.epsilon(rounds_done) if self.noise_multiplier > 0 else None,
                "final_clip": self.clip(state),
                "delta": self.cfg.delta,
                "noise_multiplier": self.noise_multiplier,
                "sampling_rate": self.q,
                "rounds": rounds_done,
            }
        }
