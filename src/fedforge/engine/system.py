"""System heterogeneity on a virtual clock (`system:`): how long each client takes, who is late.

Every client gets a fixed slowness s_k, drawn once from the run's seed by the speed profile
(`uniform` in [low, high], `lognormal` exp(N(0, sigma)), or `real`: phone latencies), and one
local step takes `step_seconds * s_k` virtual seconds. A synchronous round lasts as long as its
slowest client; with a `deadline`, a client that cannot finish either does only the steps it has
time for (`on_deadline: partial`) or is dropped (`drop`), and the round ends at the deadline.
FL-bench's stragglers: a seeded `straggler_ratio` of the clients trains only `straggler_epochs`.
Nothing sleeps: the clock is computed, so a run with stragglers is as fast as one without, and
bit-reproducible from the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedforge.config import SystemConfig
from fedforge.seeding import SYSTEM, numpy_rng

# MobileNet-V2 (FP16) inference latency tiers of 2020 Android phones, summarised by hand from the
# public AI-Benchmark ranking (ai-benchmark.com/ranking_detailed.html), which COALA's `real` profile
# also draws on: (latency in ms, share of devices). A device's slowness is its latency over the median.
REAL_DEVICE_TIERS: tuple[tuple[float, float], ...] = (
    (5.0, 0.04),  # 2020 flagships with NPUs
    (10.0, 0.20),  # 2019-2020 flagships
    (15.0, 0.14),  # upper mid-range
    (25.0, 0.14),  # mid-range
    (60.0, 0.07),  # older mid-range
    (150.0, 0.20),  # low-end, no accelerator
    (250.0, 0.16),  # old low-end
    (600.0, 0.05),  # very old devices
)


@dataclass(frozen=True)
class ClientPlan:
    """One client's work in one round, as the virtual clock allows it."""

    epochs: int  # local epochs it is asked for
    max_steps: int | None  # the deadline's cap on its steps (None: it finishes)
    seconds: float  # virtual seconds it is busy
    dropped: bool  # it cannot make the deadline and on_deadline is drop (or has no time for one step)
    planned_steps: int  # steps it would take without a deadline

    @property
    def work_fraction(self) -> float:
        done = self.planned_steps if self.max_steps is None else min(self.max_steps, self.planned_steps)
        return done / self.planned_steps if self.planned_steps else 1.0


def draw_slowness(cfg: SystemConfig, num_clients: int, rng: np.random.Generator) -> np.ndarray:
    """Per-client step-time multipliers from the speed profile."""
    profile = cfg.profile
    if profile.kind == "uniform":
        return rng.uniform(profile.low, profile.high, size=num_clients)
    if profile.kind == "lognormal":
        return np.exp(rng.normal(0.0, profile.sigma, size=num_clients))
    latency = np.array([t for t, _ in REAL_DEVICE_TIERS])
    share = np.array([p for _, p in REAL_DEVICE_TIERS])
    share = share / share.sum()
    median = latency[np.searchsorted(np.cumsum(share), 0.5)]
    return latency[rng.choice(len(latency), size=num_clients, p=share)] / median


class SystemModel:
    """Slowness, stragglers and each round's plan for every client of one run."""

    def __init__(self, cfg: SystemConfig, sizes: list[int], batch_size: int, local_epochs: int, seed: int) -> None:
        self.cfg, self.sizes, self.batch_size, self.local_epochs = cfg, sizes, batch_size, local_epochs
        rng = numpy_rng(seed, SYSTEM)
        self.slowness = draw_slowness(cfg, len(sizes), rng)
        count = int(round(cfg.straggler_ratio * len(sizes)))
        self.stragglers = frozenset(int(c) for c in rng.choice(len(sizes), size=count, replace=False))

    def step_seconds(self, client_id: int) -> float:
        return self.cfg.step_seconds * float(self.slowness[client_id])

    def plan(self, client_id: int) -> ClientPlan:
        epochs = self.local_epochs
        if client_id in self.stragglers:
            epochs = min(epochs, self.cfg.straggler_epochs)
        steps = epochs * math.ceil(self.sizes[client_id] / self.batch_size)
        per_step = self.step_seconds(client_id)
        full = steps * per_step
        deadline = self.cfg.deadline
        if deadline is None or full <= deadline:
            return ClientPlan(epochs, None, full, False, steps)
        fit = int(deadline // per_step)
        if self.cfg.on_deadline == "drop" or fit == 0:
            return ClientPlan(epochs, 0, deadline, True, steps)
        return ClientPlan(epochs, fit, fit * per_step, False, steps)

    def round_seconds(self, plans: list[ClientPlan]) -> float:
        """A synchronous round waits for its slowest client, or until the deadline for a dropped one."""
        if not plans:
            return 0.0
        if self.cfg.deadline is not None and any(p.dropped for p in plans):
            return float(self.cfg.deadline)
        return max(p.seconds for p in plans)
