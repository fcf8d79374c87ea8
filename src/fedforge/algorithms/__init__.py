"""Federated algorithms, one module per method, all behind the protocol in base.py."""

from fedforge.algorithms import continual, fedavg, fedbn, fedema, fedewc, fedlwf, fedprox, fedssl, fedu, fedwon, target  # noqa: E402,F401,I001  (registers the built-ins)
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
