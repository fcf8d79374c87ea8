"""Derived seeds: one `seed` fans out to independent, reproducible streams per purpose.

Streams are keyed by (seed, purpose, round, client), never by call order, so a resumed
or re-ordered run draws exactly the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch

# Purposes; fixed integers so seeds stay stable across versions.
PARTITION, SPLIT, INIT, SELECTION, CLIENT, DROPOUT, EVAL, CLASS_ORDER, SYNTHESIS, ATTACK = 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
SERVER_EXCHANGE = 11  # FedExchange's fallback draws
SYSTEM = 12  # clients' speeds and stragglers (engine/system.py)
ASYNC = 13  # which idle client an asynchronous server starts next (engine/asynchronous.py)
PRIVACY = 14  # DP noise: the server's on sums and counts, a DP-SGD client's on its gradients (privacy/)
SECAGG = 15  # secure aggregation: simulated dropouts, neighbour graphs and stochastic rounding (privacy/secagg)
WIDTHS = 16  # which clients get which model width (HeteroFL, FedRolex)
MASKS = 17  # the initial random masks of sparse training (FedMef)


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed determined by `seed` and the integer keys."""
    words = np.random.SeedSequence([seed, *keys]).generate_state(2, dtype=np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1]))


def numpy_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *keys))


def torch_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator: identical draws whether training runs on CPU or GPU."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))
