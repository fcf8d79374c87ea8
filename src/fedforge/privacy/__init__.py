"""Privacy mechanisms (docs/privacy.md): DP-FedAvg, DP-SGD, their RDP accountant, secure aggregation.

This is a layer of its own, below the engine: it knows records, the config and torch, never a method.
"""

from __future__ import annotations

from fedforge.config import PrivacyConfig
from fedforge.privacy.central import CentralDP
from fedforge.privacy.local import LocalAccounting


def build_privacy(
    cfg: PrivacyConfig | None, num_clients: int, clients_per_round: int, rounds: int, seed: int, deployed: bool
) -> CentralDP | LocalAccounting | None:
    """The server's side of the configured mechanism (None without a privacy section). `deployed`:
    real clients over the network, so the noise is drawn from secret entropy (privacy/noise.py)."""
    if cfg is None:
        return None
    if cfg.mechanism == "central":
        return CentralDP(cfg, num_clients, clients_per_round, rounds, seed, secret_noise=deployed)
    return LocalAccounting(cfg, rounds, secret_noise=deployed)
