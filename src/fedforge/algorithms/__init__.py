"""Federated algorithms, one module per method, all behind the protocol in base.py."""

from fedforge.algorithms import (  # noqa: F401,I001  (registers the built-ins)
    continual, fedavg, fedbn, fedema, fedmef, fedbuff, fedewc, fedexchange, fedlwf, feddyn, fednova, fedprox, fedssl,
    fedu,
    fedwon, heterofl, moon, scaffold, target,
)  # fmt: skip
from fedforge.algorithms.base import (
    ALGORITHMS,
    Algorithm,
    ClientContext,
    ClientJob,
    ClientResult,
    ServerState,
    register,
)

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "ClientContext",
    "ClientJob",
    "ClientResult",
    "ServerState",
    "register",
]
