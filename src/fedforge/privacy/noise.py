"""Where DP noise comes from: the run's seed in simulation (reproducible, resumable), the operating
system's entropy in a deployment, where the seed sits in a config every peer can read and noise
drawn from it could be regenerated and subtracted."""

from __future__ import annotations

import secrets

import torch

from fedforge.seeding import PRIVACY, torch_generator


def noise_generator(seed: int, secret: bool, *keys: int) -> torch.Generator:
    if secret:
        return torch.Generator().manual_seed(secrets.randbits(63))
    return torch_generator(seed, PRIVACY, *keys)
