"""Federated algorithms, one module per method, all behind the protocol in base.py."""

from fedforge.algorithms import fedavg, fedbn, fedema, fedprox, fedssl, fedu, fedwon  # noqa: E402,F401,I001  (registers the built-ins)
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
