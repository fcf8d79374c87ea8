"""Local DP-SGD (Abadi et al. 2016) on each client: per-sample clipping and Gaussian noise.

Every step's gradient is the sum of per-sample gradients, each clipped to L2 norm C, plus
N(0, (z C)^2), divided by the batch size; the per-sample gradients come from `torch.func`
(vmap over grad), so no extra dependency is needed. The client accounts for itself: its steps
are kept in its own state and its epsilon is that of the subsampled Gaussian with rate
batch_size / shard size. Batches are shuffled, not Poisson-sampled, as in most DP-SGD code; the
accountant's Poisson bound is the usual approximation (docs/privacy.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from fedforge.privacy import accountant
from fedforge.privacy.noise import noise_generator
from fedforge.records import ClientJob

SAMPLE = "dp/sample"  # job entry: [clip, noise multiplier, delta, target epsilon (0: none), secret noise (0/1)]
STEPS = "dp_steps"  # client state (a file name in a disk store): DP-SGD steps this client has taken over the whole run


class BudgetSpent(RuntimeError):
    """This client's next round would exceed privacy.target_epsilon: it declines to train."""


@dataclass(frozen=True)
class SampleDP:
    clip: float
    noise_multiplier: float
    delta: float
    target_epsilon: float | None
    secret_noise: bool = False  # a deployment: the noise must not follow from the run's seed (privacy/noise.py)

    @classmethod
    def from_job(cls, job: ClientJob) -> SampleDP | None:
        if SAMPLE not in job.payload:
            return None
        clip, z, delta, target, secret = (float(v) for v in job.payload[SAMPLE])
        return cls(clip, z, delta, target if target > 0 else None, secret > 0)

    def epsilon(self, num_samples: int, batch_size: int, steps: int) -> float:
        q = min(1.0, batch_size / max(num_samples, 1))
        return accountant.epsilon(q, self.noise_multiplier, steps, self.delta)

    def check_budget(self, state: dict[str, Any], num_samples: int, batch_size: int, planned: int) -> None:
        """Raise BudgetSpent when `planned` more steps would take this client over its budget."""
        if self.target_epsilon is None:
            return
        after = self.epsilon(num_samples, batch_size, steps_taken(state) + planned)
        if after > self.target_epsilon:
            raise BudgetSpent(
                f"privacy budget spent: {planned} more DP-SGD steps would reach epsilon {after:.3g} > "
                f"privacy.target_epsilon={self.target_epsilon:g}"
            )

    def backward(
        self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Fill the trainable parameters' `.grad` with the clipped, noised mean gradient; return the mean loss.

        The noise comes from `generator` (the client's seeded stream), or from the system's entropy
        when the job asks for secret noise."""
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            raise ValueError(
                "local DP-SGD needs per-sample gradients, which BatchNorm's batch statistics do not have; "
                "use a model without BatchNorm (e.g. model.norm=none or ws)"
            )
        trainable = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        fixed = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        fixed.update(dict(model.named_buffers()))

        def sample_loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = functional_call(model, {**params, **fixed}, (x.unsqueeze(0),))
            return F.cross_entropy(out, y.unsqueeze(0))

        grads, losses = vmap(grad_and_value(sample_loss), in_dims=(None, 0, 0), randomness="different")(
            trainable, inputs, labels
        )
        norms = torch.sqrt(sum(g.flatten(1).pow(2).sum(1) for g in grads.values()))
        factor = (self.clip / (norms + 1e-6)).clamp(max=1.0)
        batch = len(labels)
        params = dict(model.named_parameters())
        if self.secret_noise:
            generator = noise_generator(0, True)
        for name, g in grads.items():
            total = torch.einsum("b,b...->...", factor, g)
            if self.noise_multiplier > 0:
                noise = torch.randn(total.shape, generator=generator).to(total.device)
                total = total + noise * (self.noise_multiplier * self.clip)
            param = params[name]
            if param.grad is None:
                param.grad = total / batch
            else:
                param.grad.copy_(total / batch)
        return losses.mean()


def steps_taken(state: dict[str, Any]) -> int:
    value = state.get(STEPS)
    return int(value.item()) if isinstance(value, torch.Tensor) else 0


def planned_steps(num_samples: int, batch_size: int, epochs: int, max_epochs: int | None, max_steps: int | None) -> int:
    """The local steps a job will take: epochs x batches, under the job's caps."""
    if max_epochs is not None:
        epochs = min(epochs, max_epochs)
    steps = epochs * math.ceil(num_samples / batch_size)
    return min(steps, max_steps) if max_steps is not None else steps


class LocalAccounting:
    """The server's side of local DP: the DP-SGD settings in each job; the worst client's epsilon so far."""

    def __init__(self, cfg: Any, rounds: int, secret_noise: bool = False) -> None:
        self.cfg, self.rounds, self.secret_noise = cfg, rounds, secret_noise

    def coordinate_bound(self, state: Any) -> float | None:
        return None  # a DP-SGD update has no per-coordinate bound: secure aggregation uses its own range

    def dress(self, job: ClientJob, state: Any) -> None:
        cfg = self.cfg
        values = [cfg.clip, cfg.noise_multiplier, cfg.delta, cfg.target_epsilon or 0.0, float(self.secret_noise)]
        job.payload[SAMPLE] = torch.tensor(values, dtype=torch.float32, device=job.model.device)

    def specs(self, specs: dict[str, Any], state: Any) -> dict[str, Any]:
        return specs  # a DP-SGD client's upload is an ordinary one: the noise is already in it

    def release(
        self,
        state: Any,
        reduced: dict[str, torch.Tensor],
        count: float,
        client_metrics: list[dict[str, float]],
        round_index: int,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, float]]:
        """The round's upload is released as is; the worst epsilon any client has reported so far."""
        previous = float(state.extras.get("privacy", {}).get("epsilon", 0.0))
        reported = [float(m["epsilon"]) for m in client_metrics if "epsilon" in m]
        worst = max([previous, *reported])
        shown = {"epsilon": worst} if self.cfg.noise_multiplier > 0 else {}  # z=0: no bound to show
        return reduced, {"epsilon": worst}, shown

    def summary(self, state: Any, rounds_done: int) -> dict[str, Any]:
        cfg = self.cfg
        worst = float(state.extras.get("privacy", {}).get("epsilon", 0.0))
        return {"privacy": {"mechanism": "local", "epsilon": worst if cfg.noise_multiplier > 0 else None,
                            "delta": cfg.delta, "noise_multiplier": cfg.noise_multiplier}}  # fmt: skip
