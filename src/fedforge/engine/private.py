"""What DP and secure aggregation need of a method and a model, checked once the run is built.

The config cannot see these: which entries a method uploads is known only from its server state,
and whether a model normalizes over the batch only from the built model. Each refusal is a
ConfigError naming the section and what to change.
"""

from __future__ import annotations

from torch import nn

from fedforge.algorithms.base import MODEL, Algorithm, ServerState
from fedforge.config import Config
from fedforge.errors import ConfigError


def check_private(cfg: Config, algorithm: Algorithm, state: ServerState, model: nn.Module) -> None:
    privacy, secure = cfg.privacy, cfg.secure_aggregation
    if privacy is None and secure is None:
        return
    method = cfg.algorithm.name
    if privacy is not None and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ConfigError(
            f"privacy: model '{cfg.model.name}' has BatchNorm, whose running statistics are computed from clients' "
            "batches outside any clipping (and block per-sample gradients); use a model without it, e.g. "
            "model.norm=none or ws (as Opacus does)"
        )
    shared = (privacy is not None and privacy.mechanism == "central") or secure is not None
    if not shared:
        return
    section = "privacy" if privacy is not None and privacy.mechanism == "central" else "secure_aggregation"
    extras = sorted(set(algorithm.upload_specs(state)) - {MODEL})
    if extras:
        raise ConfigError(
            f"{section}: {method} also uploads {extras}, which the mechanism would leave in the clear; it protects "
            "methods whose upload is the model alone (fedavg, fedprox, ...)"
        )
    overridden = [
        name
        for name in ("upload_reference", "keeps_uploads")
        if getattr(type(algorithm), name) is not getattr(Algorithm, name)
    ]
    if overridden:
        what = "uploads part of the model" if "upload_reference" in overridden else "reads uploads one by one"
        raise ConfigError(
            f"{section}: {method} {what}, which a clipped (or masked) sum of whole-model updates cannot serve; "
            "use a method whose upload is the whole model (fedavg, fedprox, ...)"
        )
